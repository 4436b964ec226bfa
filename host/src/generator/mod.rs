//! Envoy's resources for one proxy's metrics endpoint, typed against Envoy's own API
//! (`envoy-types`), one generator per kind, in the manner of Kuma's `pkg/xds/generator`:
//!
//! | module | builds |
//! |---|---|
//! | `filter` | the filter's configuration and the wasm HTTP filter that loads it |
//! | `listener` | the metrics listener: HTTP connection manager, filter chains, TLS inspector |
//! | `cluster` | Envoy's admin endpoint and each aggregated app |
//! | `tls` | the listener's TLS context and the certificate's SDS secret |
//! | `rbac` | the TrafficPermissions as Envoy's RBAC filter |
//! | `compression` | Envoy's gzip compressor in front of the filter |
//!
//! [`generate`] puts them together; the static bootstrap (`crate::bootstrap`) and the control
//! plane's snapshots (`crate::xds`) both take what it returns, so the two modes cannot drift.
//! `json` renders any of them as Envoy's JSON for files.

pub mod cluster;
pub mod compression;
pub mod filter;
pub mod json;
pub mod listener;
pub mod proto;
pub mod rbac;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

use crate::effective::Effective;
use crate::resources::metrics::TlsMode;

pub use filter::{EnvoyBody, filter_config};

/// Environment variables naming the `providedTLS` certificate and key (as in Kuma).
pub const CERT_ENV: &str = "KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH";
pub const KEY_ENV: &str = "KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH";

pub const ADMIN_CLUSTER: &str = "meshmetrics_envoy_admin";
pub use crate::effective::LISTENER;
/// The cluster of the OpenTelemetry collector (MeshMetric's OpenTelemetry backend).
pub const OTEL_CLUSTER: &str = "meshmetrics_otel_collector";

pub fn app_cluster(name: &str) -> String {
    format!("meshmetrics_app_{name}")
}

/// Where Envoy finds the filter's module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// A file on the proxy's machine.
    Local(PathBuf),
    /// Fetched over HTTP through `cluster`, and refused unless its digest is `sha256`.
    Remote {
        uri: String,
        cluster: String,
        sha256: String,
    },
}

/// How the listener's certificate reaches Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// SDS files written next to the bootstrap (`Options::certs_dir`).
    Files,
    /// Secrets pushed over ADS by the control plane.
    Ads,
}

/// Choices that are not in the resources.
#[derive(Clone)]
pub struct Options {
    /// Absolute path of the filter's `.wasm` (what `code` names by default).
    pub wasm: PathBuf,
    /// Where Envoy loads the module from.
    pub code: Code,
    /// Port of Envoy's admin endpoint (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Per-source timeout.
    pub timeout_ms: u64,
    /// Largest body read from one source.
    pub max_body_bytes: u64,
    /// Largest output of one source in one scrape.
    pub max_source_bytes: u64,
    /// Largest output of one scrape.
    pub max_scrape_bytes: u64,
    /// Also label Envoy's own samples with mesh/dataplane/service. Off by default: Envoy's samples
    /// are the many (a 26 MB scrape grows to 45 MB), and Prometheus adds the same labels from
    /// discovery as target labels.
    pub envoy_labels: bool,
    /// `providedTLS`: the certificate and key files (flags, or the `KUMA_…_PATH` variables).
    pub provided_tls: Option<(PathBuf, PathBuf)>,
    /// `providedTLS` without a usable certificate: serve plaintext (Kuma's silent behaviour, here
    /// with a warning) instead of refusing.
    pub allow_plaintext_fallback: bool,
    /// `activeMTLSBackend`: the mesh CA directory (`meshmetrics ca init`).
    pub mesh_ca: Option<PathBuf>,
    /// How certificates reach Envoy.
    pub delivery: Delivery,
    /// Where the files the static bootstrap refers to are written: the SDS file naming the
    /// listener's certificate (so Envoy reloads it on rotation) and, under mTLS, the issued
    /// certificate.
    pub certs_dir: PathBuf,
    /// Lifetime of the dataplane certificate issued under mTLS (`tls::DATAPLANE_VALIDITY` in a
    /// file, `tls::PUSHED_VALIDITY` over SDS).
    pub validity: Option<std::time::Duration>,
    /// The certificates the control plane issued (under [`Delivery::Ads`]).
    pub certs: Option<Arc<crate::tls::IssuedCerts>>,
    /// How answers are encoded when the scraper accepts it.
    pub compression: compression::Compression,
    /// How Envoy's own stats reach the filter.
    pub envoy_body: filter::EnvoyBody,
    /// The proxy's answering budget (see `filter/src/proxy/admission.rs`); 0: none.
    pub max_answering_bytes: u64,
    /// Connections the metrics listener holds open at once (see
    /// [`listener::DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: u64,
    /// The CA of the OpenTelemetry collector's certificate (a path on the proxy): the push then
    /// goes over TLS, the collector's name (or IP) checked. `None`: plaintext.
    pub otel_ca: Option<PathBuf>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("code", &self.code)
            .field("admin_port", &self.admin_port)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Options {
    pub fn new(wasm: impl AsRef<Path>) -> Options {
        Options {
            wasm: wasm.as_ref().to_path_buf(),
            code: Code::Local(wasm.as_ref().to_path_buf()),
            admin_port: 9901,
            timeout_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MS,
            max_body_bytes: meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES,
            max_source_bytes: meshmetrics_filter::config::DEFAULT_MAX_SOURCE_BYTES,
            max_scrape_bytes: meshmetrics_filter::config::DEFAULT_MAX_SCRAPE_BYTES,
            envoy_labels: false,
            provided_tls: None,
            allow_plaintext_fallback: false,
            mesh_ca: None,
            delivery: Delivery::Files,
            certs_dir: PathBuf::from("."),
            validity: None,
            certs: None,
            compression: compression::Compression::default(),
            envoy_body: filter::EnvoyBody::default(),
            max_answering_bytes: meshmetrics_filter::config::DEFAULT_MAX_ANSWERING_BYTES,
            max_connections: listener::DEFAULT_MAX_CONNECTIONS,
            otel_ca: None,
        }
    }
}

/// One proxy's metrics resources.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyResources {
    /// One per Prometheus backend, the first named [`LISTENER`].
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// Pushed over SDS (empty when certificates come from files).
    pub secrets: Vec<Secret>,
    pub warnings: Vec<String>,
}

/// Builds one proxy's listeners, clusters and secrets.
pub fn generate(e: &Effective, o: &Options) -> Result<ProxyResources> {
    // Files are named after the dataplane (its certificate, its SDS file): never from a name
    // that could leave the directory, whatever built this `Effective`.
    if let Some(problem) = crate::resources::names::name_problem(&e.dataplane) {
        anyhow::bail!("dataplane name {problem}: no file is named after it");
    }
    let mut warnings = Vec::new();
    let mut listeners = Vec::new();
    let mut secrets: Vec<Secret> = Vec::new();
    for (name, endpoint) in e.endpoints() {
        let (mut listener, more) = metrics_listener(&endpoint, o, &mut warnings)?;
        listener.name = name;
        listeners.push(listener);
        for s in more {
            if !secrets.iter().any(|x| x.name == s.name) {
                secrets.push(s);
            }
        }
    }
    let mut clusters = vec![cluster::single(ADMIN_CLUSTER, "127.0.0.1", o.admin_port)];
    clusters.extend(
        e.apps
            .iter()
            .map(|a| cluster::single(&app_cluster(&a.name), &a.address, a.port)),
    );
    if let Some(b) = e.otel.first() {
        // Checked `host:port` when the MeshMetric was read.
        if let Some((host, port)) = b.endpoint.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let mut collector = cluster::grpc(OTEL_CLUSTER, host, port);
            if let Some(ca) = &o.otel_ca {
                collector.transport_socket =
                    Some(tls::upstream_alpn(&ca.display().to_string(), host, &["h2"]));
            }
            clusters.push(collector);
        }
        if e.otel.len() > 1 {
            warnings.push(format!(
                "{} OpenTelemetry backends: only the first ({}) is pushed to",
                e.otel.len(),
                b.endpoint
            ));
        }
    }
    Ok(ProxyResources {
        listeners,
        clusters,
        secrets,
        warnings,
    })
}

/// The listener of one Prometheus endpoint, and the secrets it refers to.
fn metrics_listener(
    e: &Effective,
    o: &Options,
    warnings: &mut Vec<String>,
) -> Result<(Listener, Vec<Secret>)> {
    let tls = tls::downstream(e, o, warnings)?;
    let config = filter_config(e, o);
    let wasm = filter::http_filter(&config, o);
    let mtls = e.tls == TlsMode::ActiveMtlsBackend && tls.is_some();
    let (socket, secrets) = match tls {
        Some(t) => (Some(t.socket), t.secrets),
        None => (None, Vec::new()),
    };
    let filters = compression::http_filter(o.compression)
        .into_iter()
        .chain([wasm])
        .collect();
    // Streamed, the scrape itself goes on to Envoy's admin: the listener routes it there.
    let admin_route = config
        .stream_envoy
        .then(|| listener::admin_route(&config.sources[0]));
    let mut listener = listener::metrics(
        e,
        filters,
        rbac::http_filter(e),
        socket,
        mtls,
        admin_route,
        listener::Connections {
            max: o.max_connections,
            watch: filter::network_filter(o),
        },
    );
    if config.stream_envoy {
        listener.per_connection_buffer_limit_bytes =
            Some(listener::stream_buffer_limit(config.max_scrape_bytes));
    }
    Ok((listener, secrets))
}
