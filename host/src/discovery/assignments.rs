//! What Prometheus should scrape: one monitoring assignment per dataplane, computed from the
//! resources (SPEC §6).

use serde_json::{Map, Value, json};

use crate::diag::Diagnostics;
use crate::effective::effective_for;
use crate::resources::Resources;
use crate::resources::metrics::TlsMode;

/// A scrape target of one dataplane.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub mesh: String,
    pub service: String,
    pub dataplane: String,
    pub scheme: &'static str,
    /// `host:port`.
    pub address: String,
    pub metrics_path: String,
    /// The dataplane's tags, names sanitized to `[a-zA-Z0-9_]`.
    pub labels: Vec<(String, String)>,
    /// Which discovery client gets it: `None` every client (the legacy form); `Some(id)` only
    /// the client whose id (MADS `node.id`, http_sd `client_id`) is `id` (`""`: the default
    /// client, which sends none), as MeshMetric's `clientId` says.
    pub client: Option<String>,
}

/// Label names Prometheus accepts: every other character becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every dataplane's assignment; dataplanes whose configuration has errors (or that have no
/// address to scrape) are left out and reported.
pub fn compute(res: &Resources) -> (Vec<Assignment>, Diagnostics) {
    let mut out = Vec::new();
    let mut diags = Diagnostics::default();
    for dp in &res.dataplanes {
        match effective_for(res, dp) {
            Ok((e, d)) => {
                diags.merge_unique(d);
                let host = dp.address.clone().unwrap_or_else(|| e.address.clone());
                if host == "0.0.0.0" {
                    diags.warn(
                        &dp.resource,
                        "",
                        "no address to scrape (a Pod without status.podIP): not discovered",
                    );
                    continue;
                }
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                // Port 0: a proxy that only pushes (OpenTelemetry); nothing to scrape.
                for (_, endpoint) in e.endpoints().into_iter().filter(|(_, x)| x.port != 0) {
                    out.push(Assignment {
                        mesh: e.mesh.clone(),
                        service: e.service.clone(),
                        dataplane: e.dataplane.clone(),
                        // Both TLS modes need Prometheus to speak TLS itself (mTLS: with a
                        // client certificate of the mesh, `meshmetrics ca issue`).
                        scheme: if endpoint.tls != TlsMode::Disabled {
                            "https"
                        } else {
                            "http"
                        },
                        address: format!("{host}:{}", endpoint.port),
                        metrics_path: endpoint.path.clone(),
                        labels: e
                            .dataplane_tags
                            .iter()
                            .map(|(k, v)| (sanitize(k), v.clone()))
                            .collect(),
                        client: endpoint.client_id.clone(),
                    });
                }
            }
            Err(invalid) => diags.merge_unique(invalid.0),
        }
    }
    (out, diags)
}

pub const TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

impl Assignment {
    /// Whether the discovery client `id` gets it (see [`Assignment::client`]).
    pub fn for_client(&self, id: &str) -> bool {
        self.client.as_deref().is_none_or(|c| c == id)
    }

    fn labels_json(&self) -> Value {
        Value::Object(
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// As a MADS `MonitoringAssignment` resource (protobuf JSON, snake_case field names).
    pub fn to_mads(&self) -> Value {
        json!({
            "@type": TYPE_URL,
            "mesh": self.mesh,
            "service": self.service,
            "targets": [{
                "name": self.dataplane,
                "scheme": self.scheme,
                "address": self.address,
                "metrics_path": self.metrics_path,
                "labels": self.labels_json(),
            }],
            "labels": {},
        })
    }

    /// As a Prometheus `http_sd` target group: everything under `__meta_kuma_*`, so relabelling
    /// decides what lands on series; `__scheme__` and `__metrics_path__` set the scrape itself.
    pub fn to_http_sd(&self) -> Value {
        let mut labels = Map::new();
        labels.insert("__meta_kuma_mesh".into(), self.mesh.clone().into());
        labels.insert("__meta_kuma_service".into(), self.service.clone().into());
        labels.insert(
            "__meta_kuma_dataplane".into(),
            self.dataplane.clone().into(),
        );
        for (k, v) in &self.labels {
            labels.insert(format!("__meta_kuma_label_{k}"), v.clone().into());
        }
        labels.insert("__scheme__".into(), self.scheme.into());
        labels.insert("__metrics_path__".into(), self.metrics_path.clone().into());
        json!({"targets": [self.address], "labels": labels})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_tag_names() {
        assert_eq!(sanitize("kuma.io/service"), "kuma_io_service");
        assert_eq!(sanitize("k8s.io/zone-a"), "k8s_io_zone_a");
    }
}
