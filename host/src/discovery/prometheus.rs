//! The scrape configuration users paste into `prometheus.yml`.

/// A scrape job discovering every dataplane through our `http_sd` endpoint at `discovery`.
///
/// `honor_labels: true` keeps the `mesh`/`dataplane`/`service` the filter put on app samples;
/// Envoy's samples (unlabelled by default) get the same three from the relabelling below. With
/// `honor_labels: false` Prometheus would rename the app samples' labels to `exported_*` even
/// though the values are equal.
/// Files Prometheus needs for TLS targets (`providedTLS`: the CA; `activeMTLSBackend`: the mesh
/// CA and a client certificate of the mesh, e.g. `spiffe://<mesh>/prometheus-server`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// How Prometheus authenticates to discovery, and trusts it.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryAuth {
    /// A file holding the bearer token discovery requires.
    pub token_file: Option<String>,
    /// The CA of an https discovery endpoint (the control plane's).
    pub ca: Option<String>,
    /// The MeshMetric `clientId` this Prometheus is (`/sd?client_id=`).
    pub client_id: Option<String>,
}

pub fn scrape_config(
    discovery: &str,
    job: &str,
    interval: &str,
    tls: &TlsFiles,
    auth: &DiscoveryAuth,
) -> String {
    let discovery = discovery.trim_end_matches('/');
    let query = auth
        .client_id
        .as_deref()
        .map(|id| {
            format!(
                "?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", id)
                    .finish()
            )
        })
        .unwrap_or_default();
    let mut sd_auth = String::new();
    if let Some(t) = &auth.token_file {
        sd_auth.push_str(&format!(
            "    authorization:\n      type: Bearer\n      credentials_file: {t}\n"
        ));
    }
    if let Some(ca) = &auth.ca {
        sd_auth.push_str(&format!("    tls_config:\n      ca_file: {ca}\n"));
    }
    let mut tls_config = String::new();
    for (key, value) in [
        ("ca_file", &tls.ca),
        ("cert_file", &tls.cert),
        ("key_file", &tls.key),
    ] {
        if let Some(v) = value {
            tls_config.push_str(&format!("    {key}: {v}\n"));
        }
    }
    let tls_config = if tls_config.is_empty() {
        "  # Targets served over TLS announce __scheme__ https; give Prometheus the CA (and, under\n  # activeMTLSBackend, a client certificate of the mesh): --tls-ca, --tls-cert, --tls-key.\n".to_owned()
    } else {
        format!(
            "  # TLS targets (__scheme__ https); plaintext ones ignore this.\n  tls_config:\n{tls_config}"
        )
    };
    format!(
        r#"scrape_configs:
- job_name: {job}
  scrape_interval: {interval}
  honor_labels: true
  http_sd_configs:
  - url: {discovery}/sd{query}
    refresh_interval: {interval}
{sd_auth}  relabel_configs:
  - source_labels: [__meta_kuma_mesh]
    target_label: mesh
  - source_labels: [__meta_kuma_dataplane]
    target_label: dataplane
  - source_labels: [__meta_kuma_service]
    target_label: service
{tls_config}"#
    )
}
