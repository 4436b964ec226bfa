//! `meshmetrics control-plane`: every proxy over xDS, discovery, the filter's module, its own
//! metrics; the files watched.

use std::path::PathBuf;

use anyhow::Result;

use crate::args::{ProxyArgs, cert_pair, read_token_file};

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Where Envoys connect for ADS (gRPC).
    #[arg(long, default_value = "127.0.0.1:5678")]
    xds: std::net::SocketAddr,
    /// Discovery (/sd, MADS), the filter's module (/wasm/<sha256>.wasm), /metrics.
    #[arg(long, default_value = "127.0.0.1:5676")]
    http: std::net::SocketAddr,
    /// The address proxies use to reach --http (default: --http; 127.0.0.1 if unspecified).
    #[arg(long)]
    advertise_http: Option<std::net::SocketAddr>,
    /// The filter's module, served to proxies (Envoy fetches it and checks its sha256).
    #[arg(long, required_unless_present = "local_wasm")]
    wasm: Option<PathBuf>,
    /// Instead of --wasm: the module's path on every proxy's machine.
    #[arg(long, conflicts_with = "wasm")]
    local_wasm: Option<PathBuf>,
    /// activeMTLSBackend: the mesh CA directory (`meshmetrics ca init`).
    #[arg(long)]
    mesh_ca: Option<PathBuf>,
    /// Lifetime of the certificates pushed under activeMTLSBackend (re-issued with a
    /// third left).
    #[arg(long, default_value = "24h", value_parser = meshmetrics::tls::parse_validity)]
    cert_lifetime: std::time::Duration,
    /// providedTLS: the certificate and key, as paths on the proxies' machines.
    #[arg(long)]
    metrics_cert: Option<PathBuf>,
    #[arg(long)]
    metrics_key: Option<PathBuf>,
    /// How often the files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
    /// Per-source timeout of the filter, in milliseconds.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Encode answers with gzip when the scraper accepts it (`gzip`), or never (`none`).
    #[arg(long, default_value = "gzip")]
    compression: meshmetrics::generator::compression::Compression,
    /// How Envoy's own stats reach the filter: through it, rewritten as they pass
    /// (`stream`), or fetched whole by a dispatched call (`dispatch`).
    #[arg(long, default_value = "stream")]
    envoy_body: meshmetrics::generator::EnvoyBody,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Signing keys of dataplane tokens (`generate signing-key`); watched: every ADS
    /// stream must present a token of its dataplane.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Revoked token ids (`jti`), one per line; watched: a revoked proxy's stream is closed.
    #[arg(long, requires = "keys")]
    revocations: Option<PathBuf>,
    /// The control plane's certificate (PEM chain) for ADS and HTTP over TLS.
    #[arg(long, requires = "xds_key")]
    xds_cert: Option<PathBuf>,
    #[arg(long, requires = "xds_cert")]
    xds_key: Option<PathBuf>,
    /// Discovery (/sd, MADS) requires `Authorization: Bearer <this file's content>`.
    #[arg(long)]
    discovery_token_file: Option<PathBuf>,
    /// Serve without --keys or TLS: loopback only.
    #[arg(long)]
    insecure: bool,
    /// ADS connections open at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// ADS streams on one connection (Envoy opens one).
    #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_STREAMS_PER_CONNECTION)]
    max_streams_per_connection: u32,
    /// Connections to --http open at once (MADS long polls included).
    #[arg(long, default_value_t = meshmetrics::controlplane::DEFAULT_MAX_HTTP_CONNECTIONS)]
    max_http_connections: usize,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        files,
        xds,
        http,
        advertise_http,
        wasm,
        local_wasm,
        mesh_ca,
        cert_lifetime,
        metrics_cert,
        metrics_key,
        poll_ms,
        timeout_ms,
        compression,
        envoy_body,
        proxy,
        keys,
        revocations,
        xds_cert,
        xds_key,
        discovery_token_file,
        insecure,
        max_connections,
        max_streams_per_connection,
        max_http_connections,
    } = args;
    let provided_tls = cert_pair(metrics_cert, metrics_key)?;
    let tls = match (xds_cert, xds_key) {
        (Some(c), Some(k)) => Some(meshmetrics::auth::server_tls::ServerIdentity::read(&c, &k)?),
        _ => None,
    };
    let config = meshmetrics::controlplane::Config {
        files,
        xds,
        http,
        advertise_http,
        wasm,
        local_wasm,
        mesh_ca,
        provided_tls,
        cert_lifetime,
        poll: std::time::Duration::from_millis(poll_ms),
        timeout_ms,
        compression,
        envoy_body,
        max_answering_bytes: proxy.max_answering_bytes,
        max_metrics_connections: proxy.max_metrics_connections,
        otel_ca: proxy.otel_ca,
        auth: keys.map(|keys| meshmetrics::auth::Sources { keys, revocations }),
        tls,
        discovery_token: discovery_token_file
            .as_deref()
            .map(read_token_file)
            .transpose()?,
        insecure,
        max_connections,
        max_streams_per_connection,
        max_http_connections,
    };
    config.check_security()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(meshmetrics::controlplane::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    }))
}
