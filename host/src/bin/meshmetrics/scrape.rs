//! `meshmetrics scrape`: one scrape through the filter under wasmtime, printed.

use anyhow::{Result, bail};

use crate::args::EndpointArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// The scraper's Accept header.
    #[arg(long)]
    accept: Option<String>,
    /// Path and query to ask for (default: the configured metrics path).
    #[arg(long)]
    path: Option<String>,
}

pub fn run(
    Args {
        endpoint,
        accept,
        path,
    }: Args,
) -> Result<()> {
    let (e, endpoint) = endpoint.load()?;
    let mut headers = vec![(":authority".to_owned(), "localhost".to_owned())];
    if let Some(a) = accept {
        headers.push(("accept".to_owned(), a));
    }
    let req = meshmetrics::runtime::Request {
        method: "GET".into(),
        path: path.unwrap_or(e.path),
        headers,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let answer = rt.block_on(endpoint.handle(req));
    std::io::Write::write_all(&mut std::io::stdout(), &answer.body)?;
    if answer.status != 200 {
        bail!("the filter answered HTTP {}", answer.status);
    }
    Ok(())
}
