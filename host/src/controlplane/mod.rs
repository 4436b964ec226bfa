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
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::google::protobuf::value;

use crate::bootstrap::{NODE_ADMIN_PORT, NODE_DATAPLANE, NODE_MESH};
use crate::effective::Effective;
use crate::generator::{self, Code, Delivery, Options};
use crate::resources::Resources;
use crate::xds::{Snapshot, ads::Ads, stats::Stats};

/// The cluster through which proxies fetch the filter's module from the control plane.
pub const HTTP_CLUSTER: &str = "meshmetrics_control_plane_http";

/// The resources as last loaded without an error.
pub struct World {
    /// Counts the loads that changed something.
    pub generation: u64,
    pub resources: Arc<Resources>,
}

/// What every proxy stream shares.
pub struct State {
    pub world: tokio::sync::watch::Sender<Arc<World>>,
    pub stats: Arc<Stats>,
    options: Options,
    /// Clusters every proxy gets besides its own: the control plane's HTTP endpoint.
    extra: Vec<Cluster>,
}

/// The name a proxy is looked up by: `<mesh>/<dataplane>` from its node metadata (what
/// `meshmetrics bootstrap --control-plane` writes), else its node id.
pub fn selector(node: &Node) -> String {
    let field = |key: &str| {
        node.metadata
            .as_ref()
            .and_then(|m| m.fields.get(key))
            .and_then(|v| match &v.kind {
                Some(value::Kind::StringValue(s)) => Some(s.clone()),
                Some(value::Kind::NumberValue(n)) => Some(n.to_string()),
                _ => None,
            })
    };
    match (field(NODE_MESH), field(NODE_DATAPLANE)) {
        (Some(mesh), Some(dp)) => format!("{mesh}/{dp}"),
        (None, Some(dp)) => dp,
        _ => node.id.clone(),
    }
}

fn admin_port(node: &Node) -> Option<u16> {
    let v = node.metadata.as_ref()?.fields.get(NODE_ADMIN_PORT)?;
    match &v.kind {
        Some(value::Kind::NumberValue(n)) if (1.0..=65535.0).contains(n) => Some(*n as u16),
        Some(value::Kind::StringValue(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|n| (1.0..=65535.0).contains(n) && n.fract() == 0.0)
            .map(|n| n as u16),
        _ => None,
    }
}

impl State {
    /// This proxy's effective configuration under `world`.
    pub fn effective(&self, world: &World, node: &Node) -> Result<Effective> {
        let selector = selector(node);
        crate::effective(&world.resources, &selector)
            .map(|(e, _)| e)
            .map_err(|crate::Invalid(d)| anyhow!("{d}"))
    }

    /// This proxy's snapshot for `e`.
    pub fn snapshot(&self, e: &Effective, node: &Node) -> Result<Arc<Snapshot>> {
        let mut o = self.options.clone();
        if let Some(port) = admin_port(node) {
            o.admin_port = port;
        }
        let r = generator::generate(e, &o)?;
        for w in &r.warnings {
            eprintln!("meshmetrics control-plane: warning: {w}");
        }
        Ok(Arc::new(Snapshot::new(&r, &self.extra)))
    }

    /// When `dataplane`'s pushed certificate is due to be re-issued.
    pub fn renewal(&self, dataplane: &str) -> Option<Instant> {
        self.options.certs.as_ref()?.renewal(dataplane)
    }
}

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
}

/// Runs the control plane until `shutdown`.
pub async fn run(c: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let xds = tokio::net::TcpListener::bind(c.xds)
        .await
        .with_context(|| format!("--xds {}: cannot listen", c.xds))?;
    let http = tokio::net::TcpListener::bind(c.http)
        .await
        .with_context(|| format!("--http {}: cannot listen", c.http))?;
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
    options.delivery = Delivery::Ads;
    options.mesh_ca = c.mesh_ca.clone();
    options.provided_tls = c.provided_tls.clone();
    options.validity = Some(c.cert_lifetime);
    options.certs = Some(Arc::new(crate::tls::IssuedCerts::default()));
    let mut extra = Vec::new();
    if let Some(m) = &module {
        options.code = Code::Remote {
            uri: format!("http://{advertise}{}", m.path()),
            cluster: HTTP_CLUSTER.into(),
            sha256: m.sha256.clone(),
        };
        extra.push(generator::cluster::single(
            HTTP_CLUSTER,
            &advertise.ip().to_string(),
            advertise.port(),
        ));
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
    let state = Arc::new(State {
        world,
        stats: stats.clone(),
        options,
        extra,
    });
    eprintln!(
        "meshmetrics control-plane: ADS on {}, HTTP on http://{http_addr} (proxies fetch the filter from http://{advertise})",
        xds.local_addr()?
    );
    let watcher = tokio::spawn(watch::watch(c.files.clone(), c.poll, state.clone(), sd_tx));
    let http_server = tokio::spawn(http::serve(http_listener, sd_rx, module, stats));
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(
            AggregatedDiscoveryServiceServer::new(Ads::new(state))
                // A request is a node and a few names: anything near this is not Envoy.
                .max_decoding_message_size(4 << 20),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(xds),
            shutdown,
        )
        .await;
    watcher.abort();
    http_server.abort();
    grpc.context("serving ADS")
}
