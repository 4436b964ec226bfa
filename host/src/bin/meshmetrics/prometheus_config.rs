//! `meshmetrics prometheus-config`: a scrape configuration that discovers dataplanes.

use anyhow::{Result, bail};
use meshmetrics::discovery::prometheus::{DiscoveryAuth, TlsFiles, scrape_config};

#[derive(clap::Args)]
pub struct Args {
    /// Where `meshmetrics discovery` listens.
    #[arg(long, default_value = "http://127.0.0.1:5676")]
    discovery: String,
    #[arg(long, default_value = "meshmetrics")]
    job: String,
    #[arg(long, default_value = "15s")]
    interval: String,
    /// CA file Prometheus trusts for TLS targets (providedTLS's CA, or the mesh CA).
    #[arg(long)]
    tls_ca: Option<String>,
    /// Prometheus' client certificate for activeMTLSBackend (`meshmetrics ca issue`).
    #[arg(long)]
    tls_cert: Option<String>,
    #[arg(long)]
    tls_key: Option<String>,
    /// The bearer token file discovery requires (`--discovery-token-file`), as a path
    /// Prometheus reads.
    #[arg(long)]
    discovery_token_file: Option<String>,
    /// The CA Prometheus trusts for an https --discovery (the control plane's CA).
    #[arg(long)]
    discovery_ca: Option<String>,
    /// This Prometheus' MeshMetric `clientId`: discovery gives it the Prometheus backends
    /// that name it (without: the backends that name none).
    #[arg(long)]
    client_id: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        discovery,
        job,
        interval,
        tls_ca,
        tls_cert,
        tls_key,
        discovery_token_file,
        discovery_ca,
        client_id,
    } = args;
    if tls_cert.is_some() != tls_key.is_some() {
        bail!("--tls-cert and --tls-key go together");
    }
    let tls = TlsFiles {
        ca: tls_ca,
        cert: tls_cert,
        key: tls_key,
    };
    let auth = DiscoveryAuth {
        token_file: discovery_token_file,
        ca: discovery_ca,
        client_id,
    };
    print!(
        "{}",
        scrape_config(&discovery, &job, &interval, &tls, &auth)
    );
    Ok(())
}
