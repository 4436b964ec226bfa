//! `meshmetrics serve`: the metrics endpoint without Envoy, the filter under wasmtime.

use anyhow::{Context, Result};

use crate::args::EndpointArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Where to listen (default: the dataplane's metrics address and port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub fn run(Args { endpoint, listen }: Args) -> Result<()> {
    let (e, endpoint) = endpoint.load()?;
    if e.tls != meshmetrics::resources::metrics::TlsMode::Disabled {
        eprintln!(
            "warning: tls.mode {} is Envoy's job; `serve` answers plaintext (for trying a configuration locally)",
            e.tls.as_str()
        );
    }
    let listen = match listen {
        Some(l) => l,
        None => format!("{}:{}", e.address, e.port)
            .parse()
            .context("the dataplane's address is not an IP")?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(meshmetrics::serve::serve(
        std::sync::Arc::new(endpoint),
        listen,
    ))
}
