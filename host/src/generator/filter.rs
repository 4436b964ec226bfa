//! The meshmetrics wasm filter: its configuration (the sources of one proxy's scrape) and the
//! HTTP filter entry that loads the `.wasm` into Envoy's V8.

use envoy_types::pb::envoy::config::core::v3::{
    AsyncDataSource, BackoffStrategy, HttpUri, RemoteDataSource, RetryPolicy, async_data_source,
    http_uri,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::wasm::v3::Wasm as NetworkWasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    FailurePolicy, PluginConfig, ReloadConfig, VmConfig, plugin_config,
};
use envoy_types::pb::google::protobuf::{StringValue, UInt32Value};
use meshmetrics_filter::config::{
    CONNECTIONS_ROOT_ID, FilterConfig, Label, OtelPush, Source, SourceKind,
};

use super::{ADMIN_CLUSTER, Code, Options, app_cluster, proto};
use crate::effective::Effective;

fn identity(e: &Effective) -> Vec<Label> {
    vec![
        Label::new("mesh", &e.mesh),
        Label::new("dataplane", &e.dataplane),
        Label::new("service", &e.service),
    ]
}

/// How Envoy's own stats reach the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnvoyBody {
    /// The scrape goes on to Envoy's admin through the listener's router, and Envoy's answer is
    /// rewritten as it passes through the filter: no copy of it is held whole (issue 17).
    #[default]
    Stream,
    /// Fetched whole by a dispatched call, and answered as a local reply (the first design).
    Dispatch,
}

impl std::str::FromStr for EnvoyBody {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stream" => Ok(EnvoyBody::Stream),
            "dispatch" => Ok(EnvoyBody::Dispatch),
            other => Err(format!("{other:?}: stream or dispatch")),
        }
    }
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
        // MeshMetric's rules: Envoy renders only the stats whose families they could keep
        // (a superset, said as its admin's `filter`); the filter keeps exactly theirs.
        filter_regex: e.filter_regex.clone().or_else(|| {
            e.families
                .as_ref()
                .and_then(meshmetrics_filter::exposition::envoy_filter)
        }),
        families: e.families.clone(),
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
            families: None,
        });
    }
    FilterConfig {
        path: e.path.clone(),
        sources,
        self_labels: Vec::new(),
        max_body_bytes: o.max_body_bytes,
        max_source_bytes: o.max_source_bytes,
        max_scrape_bytes: o.max_scrape_bytes,
        timeout_margin_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MARGIN_MS,
        stream_envoy: o.envoy_body == EnvoyBody::Stream,
        max_answering_bytes: o.max_answering_bytes,
        // The listener runs the module's network filter too (`network_filter`).
        leases_end_on_close: true,
        otel: e.otel.first().map(|b| OtelPush {
            cluster: super::OTEL_CLUSTER.into(),
            interval_ms: b.refresh_interval.as_millis() as u64,
            // Gathering and export within the interval, and never longer than 30 s.
            timeout_ms: (b.refresh_interval.as_millis() as u64).clamp(1, 30_000),
            resource: identity(e),
        }),
    }
}

/// Where Envoy gets the module: a local file, or the control plane over HTTP, checked against
/// its sha256 (Envoy refuses a module whose digest differs, and caches a good one).
fn code(o: &Options) -> AsyncDataSource {
    let specifier = match &o.code {
        Code::Local(path) => {
            async_data_source::Specifier::Local(proto::file(path.display().to_string()))
        }
        Code::Remote {
            uri,
            cluster,
            sha256,
        } => async_data_source::Specifier::Remote(RemoteDataSource {
            http_uri: Some(HttpUri {
                uri: uri.clone(),
                timeout: Some(proto::millis(10_000)),
                http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster.clone())),
            }),
            sha256: sha256.clone(),
            retry_policy: Some(RetryPolicy {
                retry_back_off: Some(BackoffStrategy {
                    base_interval: Some(proto::millis(500)),
                    max_interval: Some(proto::millis(5_000)),
                }),
                num_retries: Some(UInt32Value { value: 10 }),
                ..Default::default()
            }),
        }),
    };
    AsyncDataSource {
        specifier: Some(specifier),
    }
}

/// The module's plugin under `root_id` with `configuration`: every plugin names the same VM
/// (one module instance per worker, whatever chain or filter runs it).
fn plugin(root_id: &str, configuration: String, o: &Options) -> PluginConfig {
    PluginConfig {
        name: root_id.into(),
        root_id: root_id.into(),
        // Any other type reaches the filter as raw protobuf bytes.
        configuration: Some(proto::any(&StringValue {
            value: configuration,
        })),
        // A VM that fails (a trap, an allocation failure) is reloaded, with a backoff,
        // instead of answering 503 until Envoy restarts. Not fail open: a scrape passed to
        // the router would get its 404.
        failure_policy: FailurePolicy::FailReload as i32,
        reload_config: Some(ReloadConfig {
            backoff: Some(BackoffStrategy {
                base_interval: Some(proto::millis(100)),
                max_interval: Some(proto::millis(5_000)),
            }),
        }),
        vm: Some(plugin_config::Vm::VmConfig(VmConfig {
            vm_id: "meshmetrics".into(),
            runtime: "envoy.wasm.runtime.v8".into(),
            code: Some(code(o)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The network filter entry: the same module, whose only work there is to hear each client
/// connection close, so an answer's lease on the proxy's answering budget ends when its client
/// has read it (see [`FilterConfig::leases_end_on_close`]).
pub fn network_filter(o: &Options) -> Filter {
    let wasm = NetworkWasm {
        config: Some(plugin(CONNECTIONS_ROOT_ID, "{}".into(), o)),
    };
    Filter {
        name: "envoy.filters.network.wasm".into(),
        config_type: Some(filter::ConfigType::TypedConfig(proto::any(&wasm))),
    }
}

/// The HTTP filter entry: the wasm filter with `config` as its plugin configuration.
pub fn http_filter(config: &FilterConfig, o: &Options) -> HttpFilter {
    let wasm = Wasm {
        config: Some(plugin("meshmetrics", config.to_json(), o)),
    };
    HttpFilter {
        name: "meshmetrics".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(proto::any(&wasm))),
        ..Default::default()
    }
}
