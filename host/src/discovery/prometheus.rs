//! The scrape configuration users paste into `prometheus.yml`.

/// A scrape job discovering every dataplane through our `http_sd` endpoint at `discovery`.
///
/// `honor_labels: true` keeps the `mesh`/`dataplane`/`service` the filter put on app samples;
/// Envoy's samples (unlabelled by default) get the same three from the relabelling below. With
/// `honor_labels: false` Prometheus would rename the app samples' labels to `exported_*` even
/// though the values are equal.
pub fn scrape_config(discovery: &str, job: &str, interval: &str) -> String {
    let discovery = discovery.trim_end_matches('/');
    format!(
        r#"scrape_configs:
- job_name: {job}
  scrape_interval: {interval}
  honor_labels: true
  http_sd_configs:
  - url: {discovery}/sd
    refresh_interval: {interval}
  relabel_configs:
  - source_labels: [__meta_kuma_mesh]
    target_label: mesh
  - source_labels: [__meta_kuma_dataplane]
    target_label: dataplane
  - source_labels: [__meta_kuma_service]
    target_label: service
  # Targets served over TLS (providedTLS) announce __scheme__ https; give Prometheus the CA:
  # tls_config: {{ca_file: /path/to/ca.pem}}
"#
    )
}
