//! `meshmetrics discovery`: MADS and http_sd for Prometheus from resource files, alone.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::args::read_token_file;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:5676")]
    listen: std::net::SocketAddr,
    /// How often the files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Requests must carry `Authorization: Bearer <this file's content>`.
    #[arg(long)]
    discovery_token_file: Option<PathBuf>,
}

pub fn run(
    Args {
        files,
        listen,
        poll_ms,
        discovery_token_file,
    }: Args,
) -> Result<()> {
    let token = discovery_token_file
        .as_deref()
        .map(read_token_file)
        .transpose()?
        .map(std::sync::Arc::<str>::from);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!(
            "meshmetrics discovery: serving on http://{listen} (POST /v3/discovery:monitoringassignments, GET /sd)"
        );
        meshmetrics::discovery::run(
            files,
            listener,
            std::time::Duration::from_millis(poll_ms),
            token,
            std::future::pending(),
        )
        .await
    })
}
