//! `meshmetrics bootstrap`: one dataplane's Envoy bootstrap, static (from -f and --wasm) or
//! minimal with --control-plane.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use meshmetrics::bootstrap::{self, Options};
use meshmetrics::{effective, read_resources};

use crate::args::{ProxyArgs, TlsArgs, absolute, cert_pair, print_warnings, write_output};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    dataplane: String,
    #[arg(short = 'f', long = "file", num_args = 1.., required_unless_present = "control_plane")]
    files: Vec<PathBuf>,
    /// The filter (`scripts/build-filter` prints its path).
    #[arg(long, required_unless_present = "control_plane")]
    wasm: Option<PathBuf>,
    /// The control plane's xDS address (`host:port`): write the minimal bootstrap.
    #[arg(long, conflicts_with_all = ["files", "wasm"])]
    control_plane: Option<String>,
    /// The dataplane's mesh (with --control-plane; needed when the name is not unique, and
    /// with a token).
    #[arg(long, requires = "control_plane")]
    mesh: Option<String>,
    /// The dataplane token (`generate dataplane-token`): Envoy reads it from this file for
    /// every ADS stream, so a rotated file is picked up without a restart.
    #[arg(long, requires_all = ["control_plane", "mesh", "ca_cert"])]
    token_file: Option<PathBuf>,
    /// The CA that issued the control plane's certificate: Envoy verifies the control
    /// plane's certificate against it, for the host of --control-plane.
    #[arg(long, requires = "control_plane")]
    ca_cert: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Port of Envoy's admin endpoint, bound to 127.0.0.1.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Per-source timeout, in milliseconds.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Largest body read from one source, in bytes.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u64,
    /// Largest output of one source in a scrape, in bytes (labels added); a source past it
    /// is stopped at a line boundary and reported.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_SOURCE_BYTES)]
    max_source_bytes: u64,
    /// Largest output of one scrape, in bytes; sources past it, in priority order, are left
    /// out and reported.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_SCRAPE_BYTES)]
    max_scrape_bytes: u64,
    /// Label Envoy's own samples with mesh/dataplane/service too (costs ~70% more bytes).
    #[arg(long)]
    envoy_labels: bool,
    /// Encode answers with gzip when the scraper accepts it (`gzip`), or never (`none`).
    #[arg(long, default_value = "gzip")]
    compression: meshmetrics::generator::compression::Compression,
    /// How Envoy's own stats reach the filter: through it, rewritten as they pass
    /// (`stream`), or fetched whole by a dispatched call (`dispatch`).
    #[arg(long, default_value = "stream")]
    envoy_body: meshmetrics::generator::EnvoyBody,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

pub fn run(mut args: Args) -> Result<()> {
    match args.control_plane.take() {
        Some(cp) => minimal(&cp, args),
        None => static_bootstrap(args),
    }
}

/// With --control-plane: the node's identity, admin and ADS; everything else is pushed over xDS.
fn minimal(cp: &str, args: Args) -> Result<()> {
    let Args {
        dataplane,
        mesh,
        token_file,
        ca_cert,
        output,
        admin_port,
        max_body_bytes,
        ..
    } = args;
    let (host, port) = cp
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
        .with_context(|| format!("--control-plane {cp:?}: not host:port"))?;
    let generated = bootstrap::control_plane(&bootstrap::ControlPlane {
        host,
        port,
        dataplane,
        mesh,
        admin_port,
        max_body_bytes,
        token_file: token_file.map(absolute).transpose()?,
        ca_cert: ca_cert.map(absolute).transpose()?,
    })?;
    write_output(output.as_deref(), &generated.config)
}

/// Without --control-plane: the generator's listener, clusters and secrets, inline.
fn static_bootstrap(args: Args) -> Result<()> {
    let Args {
        dataplane,
        files,
        wasm,
        output,
        admin_port,
        timeout_ms,
        max_body_bytes,
        max_source_bytes,
        max_scrape_bytes,
        envoy_labels,
        compression,
        envoy_body,
        proxy,
        tls,
        control_plane: _,
        mesh: _,
        token_file: _,
        ca_cert: _,
    } = args;
    let res = read_resources(&files)?;
    let (e, diags) = effective(&res, &dataplane)?;
    print_warnings(&diags);
    let wasm = wasm.context("--wasm is required without --control-plane")?;
    let wasm = std::fs::canonicalize(&wasm).with_context(|| {
        format!(
            "--wasm {}: no such file (build it with scripts/build-filter)",
            wasm.display()
        )
    })?;
    let provided_tls = cert_pair(tls.metrics_cert, tls.metrics_key)?;
    let opts = Options {
        code: bootstrap::Code::Local(wasm.clone()),
        wasm,
        delivery: bootstrap::Delivery::Files,
        certs: None,
        admin_port,
        timeout_ms,
        max_body_bytes,
        max_source_bytes,
        max_scrape_bytes,
        envoy_labels,
        compression,
        envoy_body,
        max_answering_bytes: proxy.max_answering_bytes,
        max_connections: proxy.max_metrics_connections,
        otel_ca: proxy.otel_ca,
        provided_tls,
        allow_plaintext_fallback: tls.allow_plaintext_fallback,
        mesh_ca: tls.mesh_ca,
        validity: tls.validity,
        certs_dir: tls.certs_dir.unwrap_or_else(|| {
            output
                .as_deref()
                .and_then(|o| o.parent())
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        }),
    };
    let generated = bootstrap::bootstrap(&e, &opts)?;
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    write_output(output.as_deref(), &generated.config)
}
