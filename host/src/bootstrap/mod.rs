//! The Envoy bootstrap for one proxy's metrics endpoint, and the filter configuration inside it.
//!
//! - admin on loopback only (never on the metrics port);
//! - a listener on `<address>:<port>`: HTTP connection manager → the meshmetrics wasm filter →
//!   the router, whose only route answers 404 (the filter answers the metrics path itself);
//! - a cluster for the admin endpoint and one per aggregate entry;
//! - the static runtime raising `http.async_response_buffer_limit` to the body cap, or a large
//!   Envoy's stats (26 MB at 2,000 clusters) would reach the filter as a failed call.

use std::path::Path;

use meshmetrics_filter::config::{FilterConfig, Label, Source, SourceKind};
use serde_json::{Value, json};

use crate::effective::Effective;

pub const ADMIN_CLUSTER: &str = "meshmetrics_envoy_admin";
pub const LISTENER: &str = "meshmetrics_prometheus";

/// Choices that are not in the resources.
#[derive(Clone, Debug)]
pub struct Options {
    /// Absolute path of the filter's `.wasm`.
    pub wasm: std::path::PathBuf,
    /// Port of Envoy's admin endpoint (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Per-source timeout.
    pub timeout_ms: u64,
    /// Largest body read from one source.
    pub max_body_bytes: u64,
    /// Also label Envoy's own samples with mesh/dataplane/service. Off by default: Envoy's samples
    /// are the many (a 26 MB scrape grows to 45 MB), and Prometheus adds the same labels from
    /// discovery as target labels.
    pub envoy_labels: bool,
}

impl Options {
    pub fn new(wasm: impl AsRef<Path>) -> Options {
        Options {
            wasm: wasm.as_ref().to_path_buf(),
            admin_port: 9901,
            timeout_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MS,
            max_body_bytes: meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES,
            envoy_labels: false,
        }
    }
}

pub fn app_cluster(name: &str) -> String {
    format!("meshmetrics_app_{name}")
}

fn identity(e: &Effective) -> Vec<Label> {
    vec![
        Label::new("mesh", &e.mesh),
        Label::new("dataplane", &e.dataplane),
        Label::new("service", &e.service),
    ]
}

/// The filter's configuration for this proxy.
pub fn filter_config(e: &Effective, o: &Options) -> FilterConfig {
    let mut sources = vec![Source {
        name: "envoy".into(),
        kind: SourceKind::EnvoyAdmin,
        cluster: ADMIN_CLUSTER.into(),
        authority: format!("127.0.0.1:{}", o.admin_port),
        path: "/stats/prometheus".into(),
        timeout_ms: o.timeout_ms,
        labels: if o.envoy_labels {
            identity(e)
        } else {
            Vec::new()
        },
        used_only: e.used_only,
        filter_regex: e.filter_regex.clone(),
    }];
    for app in &e.apps {
        let mut labels = identity(e);
        labels.push(Label::new("aggregate", &app.name));
        sources.push(Source {
            name: app.name.clone(),
            kind: SourceKind::App,
            cluster: app_cluster(&app.name),
            authority: format!("{}:{}", app.address, app.port),
            path: app.path.clone(),
            timeout_ms: o.timeout_ms,
            labels,
            used_only: false,
            filter_regex: None,
        });
    }
    FilterConfig {
        path: e.path.clone(),
        sources,
        self_labels: Vec::new(),
        max_body_bytes: o.max_body_bytes,
        timeout_margin_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MARGIN_MS,
    }
}

fn cluster(name: &str, address: &str, port: u16) -> Value {
    // An IP needs no resolver; a host name is resolved (and re-resolved) by Envoy.
    let kind = if address.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    json!({
        "name": name,
        "type": kind,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": address, "port_value": port
            }}}}]}]
        }
    })
}

/// The whole bootstrap, as a JSON value (written out as YAML).
pub fn bootstrap(e: &Effective, o: &Options) -> Value {
    let config = filter_config(e, o);
    let wasm = json!({
        "name": "meshmetrics",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "meshmetrics",
                "root_id": "meshmetrics",
                // Any other type reaches the filter as raw protobuf bytes.
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_json(),
                },
                "fail_open": false,
                "vm_config": {
                    "vm_id": "meshmetrics",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": o.wasm.display().to_string()}}
                }
            }
        }
    });
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "meshmetrics",
            "route_config": {
                "name": "meshmetrics",
                "virtual_hosts": [{
                    "name": "meshmetrics",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}}}]
                }]
            },
            "http_filters": [
                wasm,
                {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
            ]
        }
    });
    let mut clusters = vec![cluster(ADMIN_CLUSTER, "127.0.0.1", o.admin_port)];
    clusters.extend(
        e.apps
            .iter()
            .map(|a| cluster(&app_cluster(&a.name), &a.address, a.port)),
    );
    json!({
        "node": {"id": e.dataplane, "cluster": e.service},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": o.admin_port}}},
        "layered_runtime": {"layers": [{"name": "meshmetrics", "static_layer": {
            "http.async_response_buffer_limit": o.max_body_bytes + (1 << 20)
        }}]},
        "static_resources": {
            "listeners": [{
                "name": LISTENER,
                "address": {"socket_address": {"address": e.address, "port_value": e.port}},
                "filter_chains": [{"filters": [hcm]}]
            }],
            "clusters": clusters
        }
    })
}
