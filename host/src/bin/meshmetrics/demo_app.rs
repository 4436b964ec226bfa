//! `meshmetrics demo-app`: a sample application's metrics, for the demo.

use anyhow::Result;
use meshmetrics::sampleapp;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Metric name prefix.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Answer in OpenMetrics instead of text 0.0.4.
    #[arg(long)]
    openmetrics: bool,
}

pub fn run(
    Args {
        listen,
        name,
        openmetrics,
    }: Args,
) -> Result<()> {
    let app = sampleapp::AppServer::start(listen, sampleapp::demo_handler(&name, openmetrics))?;
    eprintln!(
        "demo app {name:?} serving metrics on http://{}/metrics",
        app.addr
    );
    loop {
        std::thread::park();
    }
}
