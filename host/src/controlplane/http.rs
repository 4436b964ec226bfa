//! The control plane's HTTP port: Prometheus discovery (`/sd`, MADS), the filter's module for
//! proxies to fetch (`/wasm/<sha256>.wasm`), and its own metrics (`/metrics`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::discovery::{Snapshot as Discovery, respond};
use crate::xds::stats::Stats;

/// The filter's module, served by its digest (a URL that names its content can be cached
/// forever, and a proxy given an old URL gets a 404, not another module).
#[derive(Clone)]
pub struct Module {
    pub sha256: String,
    pub bytes: Bytes,
}

impl Module {
    pub fn read(path: &Path) -> Result<Module> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "--wasm {}: cannot read (build it with scripts/build-filter)",
                path.display()
            )
        })?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Module {
            sha256,
            bytes: bytes.into(),
        })
    }

    pub fn path(&self) -> String {
        format!("/wasm/{}.wasm", self.sha256)
    }
}

async fn answer(
    req: Request<Incoming>,
    discovery: tokio::sync::watch::Receiver<Arc<Discovery>>,
    module: Option<Module>,
    stats: Arc<Stats>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            stats.render(),
        ),
        (&Method::GET, p) if p.starts_with("/wasm/") => match module {
            Some(m) if p == m.path() => respond(StatusCode::OK, "application/wasm", m.bytes),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "no such module\n"),
        },
        _ => crate::discovery::answer(req, discovery).await,
    }
}

/// Serves the HTTP port until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    discovery: tokio::sync::watch::Receiver<Arc<Discovery>>,
    module: Option<Module>,
    stats: Arc<Stats>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (discovery, module, stats) = (discovery.clone(), module.clone(), stats.clone());
        crate::http::spawn_connection(stream, move |req| {
            answer(req, discovery.clone(), module.clone(), stats.clone())
        });
    }
}
