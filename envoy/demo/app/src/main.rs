//! `meshmetrics-demo-app`: one of the demo's applications, serving its metrics until stopped.

use std::process::ExitCode;

use clap::Parser;
use meshmetrics_demo_app::{AppServer, demo_handler};

/// Serve a sample application's metrics (for the demo).
#[derive(Parser)]
#[command(name = "meshmetrics-demo-app")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Metric name prefix.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Answer in OpenMetrics instead of text 0.0.4.
    #[arg(long)]
    openmetrics: bool,
}

fn main() -> ExitCode {
    let Args {
        listen,
        name,
        openmetrics,
    } = Args::parse();
    let app = match AppServer::start(listen, demo_handler(&name, openmetrics)) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("meshmetrics-demo-app: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "demo app {name:?} serving metrics on http://{}/metrics",
        app.addr
    );
    loop {
        std::thread::park();
    }
}
