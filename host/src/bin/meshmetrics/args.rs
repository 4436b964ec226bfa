//! What several commands share: flag groups (flattened into their `Args`) and small helpers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use meshmetrics::bootstrap::Options;
use meshmetrics::{Diagnostics, effective, read_resources, resources};

/// What every proxy's metrics listener and push get, in a static bootstrap or over xDS.
#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Bytes of answers the proxy hands to Envoy at once before more wait (then 503 with
    /// Retry-After); two answers always pass. 0: no budget.
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_MAX_ANSWERING_BYTES)]
    pub max_answering_bytes: u64,
    /// Connections the metrics listener holds open at once; more are closed as they come.
    #[arg(long, default_value_t = meshmetrics::generator::listener::DEFAULT_MAX_CONNECTIONS)]
    pub max_metrics_connections: u64,
    /// The CA of the OpenTelemetry collector's certificate, as a path on the proxies: the
    /// push then goes over TLS and checks the collector's name (default: plaintext).
    #[arg(long)]
    pub otel_ca: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct TlsArgs {
    /// providedTLS certificate (default: $KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH).
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH")]
    pub metrics_cert: Option<PathBuf>,
    /// providedTLS key (default: $KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH).
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH")]
    pub metrics_key: Option<PathBuf>,
    /// providedTLS without a usable certificate serves plaintext (with a warning) instead of failing.
    #[arg(long)]
    pub allow_plaintext_fallback: bool,
    /// activeMTLSBackend: the mesh CA directory (`meshmetrics ca init`).
    #[arg(long)]
    pub mesh_ca: Option<PathBuf>,
    /// Where files the bootstrap refers to are written: the SDS file of the listener's
    /// certificate and the dataplane's issued certificate (default: the directory of -o, or .).
    #[arg(long)]
    pub certs_dir: Option<PathBuf>,
    /// Lifetime of the dataplane certificate issued with --mesh-ca (`90d` unless given).
    #[arg(long, value_parser = meshmetrics::tls::parse_validity)]
    pub validity: Option<std::time::Duration>,
}

/// One dataplane's metrics endpoint under wasmtime (`serve`, `scrape`).
#[derive(clap::Args)]
pub struct EndpointArgs {
    #[arg(long)]
    dataplane: String,
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    #[arg(long)]
    wasm: PathBuf,
    /// A running Envoy's admin address, for Envoy's own stats.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: String,
    #[arg(long, default_value_t = meshmetrics_filter::config::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
    /// Label Envoy's own samples with mesh/dataplane/service too.
    #[arg(long)]
    envoy_labels: bool,
}

impl EndpointArgs {
    pub fn load(&self) -> Result<(meshmetrics::Effective, meshmetrics::serve::Endpoint)> {
        let res = read_resources(&self.files)?;
        let (e, diags) = effective(&res, &self.dataplane)?;
        print_warnings(&diags);
        let wasm = std::fs::read(&self.wasm).with_context(|| {
            format!(
                "--wasm {}: cannot read (build it with scripts/build-filter)",
                self.wasm.display()
            )
        })?;
        let mut o = Options::new(&self.wasm);
        o.timeout_ms = self.timeout_ms;
        o.envoy_labels = self.envoy_labels;
        let endpoint = meshmetrics::serve::Endpoint::new(
            &wasm,
            &e,
            &o,
            &self.admin,
            meshmetrics::runtime::Limits::default(),
        )?;
        Ok((e, endpoint))
    }
}

/// `--metrics-cert` and `--metrics-key`, which go together.
pub fn cert_pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => bail!("--metrics-cert and --metrics-key go together"),
    }
}

/// Writes a bootstrap as YAML to `output`, or to standard output.
pub fn write_output(output: Option<&Path>, config: &serde_json::Value) -> Result<()> {
    let text = resources::yaml::to_yaml_text(config);
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// A secret shared through a file (a token): its content without surrounding blanks.
pub fn read_token_file(path: &Path) -> Result<String> {
    let t = meshmetrics::auth::read_bounded(path, 8192, "token file")?;
    let t = t.trim();
    if t.is_empty() || t.len() > 8192 {
        bail!("{}: a token is 1 to 8192 characters", path.display());
    }
    Ok(t.to_owned())
}

/// Envoy resolves a bootstrap's file names against its own working directory; ours are the
/// user's, so they are written absolute.
pub fn absolute(p: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&p).with_context(|| format!("{}: not a usable path", p.display()))
}

pub fn print_warnings(d: &Diagnostics) {
    for w in d.warnings() {
        eprintln!("{w}");
    }
}
