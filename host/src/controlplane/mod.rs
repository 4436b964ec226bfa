//! `meshmetrics control-plane`: watches the resource files and serves every proxy over xDS,
//! plus, on its HTTP port, Prometheus discovery, the filter's `.wasm` and its own metrics.
//!
//! ```text
//!  resource files ──(poll, load, keep last good)──▶ World (generation n)
//!        │                                            │ watch
//!        ▼                                            ▼
//!  discovery (/sd, MADS)                 one ADS stream per Envoy: Effective → generate →
//!                                        Snapshot (hash-versioned) → push what changed
//! ```

pub mod http;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;

use crate::auth::server_tls::ServerIdentity;
use crate::generator::{self, Code, Delivery, Options};
use crate::xds::state::HttpEndpoint;
pub use crate::xds::state::{HTTP_CLUSTER, State, World, node_dataplane, selector};
use crate::xds::{ads::Ads, stats::Stats};

/// The `control-plane` command's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub files: Vec<PathBuf>,
    pub xds: SocketAddr,
    pub http: SocketAddr,
    /// How proxies reach `http` (default: `http`, with 127.0.0.1 for an unspecified address).
    pub advertise_http: Option<SocketAddr>,
    /// The module to serve to proxies (fetched over HTTP, checked by sha256).
    pub wasm: Option<PathBuf>,
    /// Instead: a path every proxy has locally.
    pub local_wasm: Option<PathBuf>,
    pub mesh_ca: Option<PathBuf>,
    pub provided_tls: Option<(PathBuf, PathBuf)>,
    /// Lifetime of the certificates pushed under `activeMTLSBackend`.
    pub cert_lifetime: Duration,
    pub poll: Duration,
    pub timeout_ms: u64,
    pub compression: generator::compression::Compression,
    pub envoy_body: generator::EnvoyBody,
    /// The proxies' answering budget (see `Options::max_answering_bytes`).
    pub max_answering_bytes: u64,
    /// The proxies' metrics listeners' connection limit (see `Options::max_connections`).
    pub max_metrics_connections: u64,
    /// The OpenTelemetry collector's CA on the proxies (see `Options::otel_ca`).
    pub otel_ca: Option<PathBuf>,
    /// Dataplane tokens: the signing keys and the revocation list (watched).
    pub auth: Option<crate::auth::Sources>,
    /// The control plane's TLS identity for ADS and its HTTP side.
    pub tls: Option<ServerIdentity>,
    /// Bearer token discovery requires (`/sd`, MADS).
    pub discovery_token: Option<String>,
    /// Serve without tokens or TLS (loopback only).
    pub insecure: bool,
    /// Open ADS connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// ADS streams on one connection (Envoy opens one).
    pub max_streams_per_connection: u32,
    /// Open connections to the HTTP side at once (MADS long polls included).
    pub max_http_connections: usize,
}

/// Defaults of the limits above: room for 16,384 proxies, each with its one stream.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 4;
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 1024;

impl Config {
    /// Secure by default: without tokens and TLS the control plane serves only on loopback,
    /// and only when told `--insecure`.
    pub fn check_security(&self) -> Result<()> {
        if self.auth.is_some() && self.tls.is_some() {
            return Ok(());
        }
        let missing = match (&self.auth, &self.tls) {
            (None, None) => "--keys and --xds-cert/--xds-key",
            (None, _) => "--keys",
            _ => "--xds-cert/--xds-key",
        };
        if !self.insecure {
            anyhow::bail!(
                "no {missing}: proxies could not prove who they are, or could not trust this \
                 control plane. Give them (see README, 'Who may talk to the control plane'), or \
                 --insecure to serve on loopback only"
            );
        }
        for (flag, addr) in [("--xds", self.xds), ("--http", self.http)] {
            if !addr.ip().is_loopback() {
                anyhow::bail!("{flag} {addr}: --insecure serves on loopback only (no {missing})");
            }
        }
        Ok(())
    }
}

/// Runs the control plane until `shutdown`.
pub async fn run(c: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    c.check_security()?;
    let xds =
        crate::accept::bind(c.xds).with_context(|| format!("--xds {}: cannot listen", c.xds))?;
    let http =
        crate::accept::bind(c.http).with_context(|| format!("--http {}: cannot listen", c.http))?;
    serve(c, xds, http, shutdown).await
}

/// Serves on listeners already bound (tests bind port 0).
pub async fn serve(
    c: Config,
    xds: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let http_addr = http_listener.local_addr()?;
    let xds_addr = xds.local_addr()?;
    let advertise = c.advertise_http.unwrap_or_else(|| {
        let ip = if http_addr.ip().is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            http_addr.ip()
        };
        SocketAddr::new(ip, http_addr.port())
    });
    let module = match (&c.wasm, &c.local_wasm) {
        (Some(path), _) => Some(http::Module::read(path)?),
        (None, Some(_)) => None,
        (None, None) => anyhow::bail!(
            "give --wasm <file> (served to proxies) or --local-wasm <path on every proxy>"
        ),
    };
    let mut options = Options::new(c.local_wasm.clone().unwrap_or_default());
    options.timeout_ms = c.timeout_ms;
    options.compression = c.compression;
    options.envoy_body = c.envoy_body;
    options.max_answering_bytes = c.max_answering_bytes;
    options.max_connections = c.max_metrics_connections;
    options.otel_ca = c.otel_ca.clone();
    options.delivery = Delivery::Ads;
    options.mesh_ca = c.mesh_ca.clone();
    options.provided_tls = c.provided_tls.clone();
    options.validity = Some(c.cert_lifetime);
    options.certs = Some(Arc::new(crate::tls::IssuedCerts::default()));
    let mut http_endpoint = None;
    if let Some(m) = &module {
        let scheme = if c.tls.is_some() { "https" } else { "http" };
        options.code = Code::Remote {
            uri: format!("{scheme}://{advertise}{}", m.path()),
            cluster: HTTP_CLUSTER.into(),
            sha256: m.sha256.clone(),
        };
        http_endpoint = Some(HttpEndpoint {
            host: advertise.ip().to_string(),
            port: advertise.port(),
            tls: c.tls.is_some(),
        });
    }
    let stats = Arc::new(Stats::default());
    let (resources, assignments) = watch::load(&c.files)?;
    stats.set_generation(1);
    let (world, _) = tokio::sync::watch::channel(Arc::new(World {
        generation: 1,
        resources: Arc::new(resources),
    }));
    let (sd_tx, sd_rx) = tokio::sync::watch::channel(Arc::new(crate::discovery::Snapshot {
        version: 1,
        assignments,
    }));
    let authority = match &c.auth {
        Some(sources) => {
            let a = sources.load()?;
            if a.keys.is_empty() {
                eprintln!(
                    "meshmetrics control-plane: warning: --keys {} has no signing key: every proxy is refused (meshmetrics generate signing-key)",
                    sources.keys.display()
                );
            }
            Some(tokio::sync::watch::channel(Arc::new(a)).0)
        }
        None => None,
    };
    if c.auth.is_none() || c.tls.is_none() {
        eprintln!(
            "meshmetrics control-plane: INSECURE: {} (--insecure): serving on loopback only",
            match (&c.auth, &c.tls) {
                (None, None) =>
                    "no dataplane tokens and no TLS: any local client gets any proxy's resources",
                (None, _) => "no dataplane tokens: any local client gets any proxy's resources",
                _ => "no TLS: tokens and pushed keys cross loopback in the clear",
            }
        );
    }
    let state = Arc::new(State {
        world,
        stats: stats.clone(),
        options,
        http_endpoint,
        auth: authority,
    });
    eprintln!(
        "meshmetrics control-plane: ADS on {}{}, HTTP on {scheme}://{http_addr} (proxies fetch the filter from {scheme}://{advertise}){}",
        xds_addr,
        if c.tls.is_some() { " (TLS)" } else { "" },
        if c.auth.is_some() {
            "; every stream needs its dataplane's token"
        } else {
            ""
        },
        scheme = if c.tls.is_some() { "https" } else { "http" },
    );
    let watcher = tokio::spawn(watch::watch(c.files.clone(), c.poll, state.clone(), sd_tx));
    let auth_watcher = c
        .auth
        .clone()
        .map(|sources| tokio::spawn(watch::watch_authority(sources, c.poll, state.clone())));
    let http_tls = c.tls.as_ref().map(|t| t.rustls()).transpose()?;
    let http_server = tokio::spawn(http::serve(
        crate::accept::Acceptor::new(http_listener, c.max_http_connections, "control-plane HTTP"),
        http::Serving {
            discovery: sd_rx,
            module,
            stats,
            tls: http_tls,
            discovery_token: c.discovery_token.clone(),
        },
    ));
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &c.tls {
        builder = builder.tls_config(t.tonic()).context("--xds-cert")?;
    }
    let incoming = crate::accept::Acceptor::new(xds, c.max_connections, "ADS").into_stream();
    let grpc = builder
        .max_concurrent_streams(c.max_streams_per_connection)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(
            AggregatedDiscoveryServiceServer::new(Ads::new(state))
                // A request is a node and a few names: anything near this is not Envoy.
                .max_decoding_message_size(4 << 20),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    watcher.abort();
    if let Some(w) = auth_watcher {
        w.abort();
    }
    http_server.abort();
    grpc.context("serving ADS")
}
