//! `meshmetrics`: validate resources, generate a proxy's Envoy bootstrap, serve the control plane.
//!
//! This file only parses the arguments: each command's flags and what it does are in the module
//! of its name; what several commands share is in `args.rs`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod bootstrap;
mod ca;
mod control_plane;
mod discovery;
mod generate;
mod prometheus_config;
mod scrape;
mod serve;
mod validate;

#[derive(Parser)]
#[command(
    name = "meshmetrics",
    version,
    about = "One Prometheus endpoint per mesh proxy: Envoy's stats and its apps', merged by a wasm filter."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check resources; print each dataplane's effective metrics configuration (JSON) or every error.
    Validate(validate::Args),
    /// Write the Envoy bootstrap that serves one dataplane's metrics endpoint: static (from
    /// -f and --wasm), or minimal with --control-plane (everything else is pushed over xDS).
    Bootstrap(bootstrap::Args),
    /// The mesh CA: create it, and issue SPIFFE certificates (`spiffe://<mesh>/<service>`).
    Ca(ca::Args),
    /// Serve the metrics endpoint without Envoy: the filter's .wasm under wasmtime.
    Serve(serve::Args),
    /// Do one scrape through the filter under wasmtime and print it.
    Scrape(scrape::Args),
    /// Serve every proxy over xDS (ADS: listener, clusters, certificates), with discovery for
    /// Prometheus, the filter's module and its own metrics on --http; the files are watched and
    /// each change is pushed live.
    ControlPlane(control_plane::Args),
    /// Serve discovery for Prometheus (MADS and http_sd) from resource files, reloaded on change
    /// (the control plane serves the same on its --http; this runs it alone).
    Discovery(discovery::Args),
    /// Print a Prometheus scrape configuration that discovers dataplanes through `discovery`.
    PrometheusConfig(prometheus_config::Args),
    /// Signing keys and dataplane tokens: who may talk to the control plane.
    Generate(generate::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Bootstrap(a) => bootstrap::run(a),
        Command::Ca(a) => ca::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Scrape(a) => scrape::run(a),
        Command::ControlPlane(a) => control_plane::run(a),
        Command::Discovery(a) => discovery::run(a),
        Command::PrometheusConfig(a) => prometheus_config::run(a),
        Command::Generate(a) => generate::run(a),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshmetrics: {e:#}");
            ExitCode::FAILURE
        }
    }
}
