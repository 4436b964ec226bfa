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

/// What the HTTP side serves, and how.
pub struct Serving {
    pub discovery: tokio::sync::watch::Receiver<Arc<Discovery>>,
    pub module: Option<Module>,
    pub stats: Arc<Stats>,
    /// TLS (`--xds-cert`), or plaintext under `--insecure`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The bearer token discovery requires (`--discovery-token-file`).
    pub discovery_token: Option<String>,
}

async fn answer(
    req: Request<Incoming>,
    discovery: tokio::sync::watch::Receiver<Arc<Discovery>>,
    module: Option<Module>,
    stats: Arc<Stats>,
    token: Option<Arc<str>>,
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
        _ => crate::discovery::answer_authorized(req, discovery, token.as_deref()).await,
    }
}

/// Serves the HTTP port until the task is aborted.
pub async fn serve(mut listener: crate::accept::Acceptor, s: Serving) {
    let token: Option<Arc<str>> = s.discovery_token.map(Into::into);
    let acceptor = s.tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = listener.accept().await;
        let (discovery, module, stats, token) = (
            s.discovery.clone(),
            s.module.clone(),
            s.stats.clone(),
            token.clone(),
        );
        let answer = move |req| {
            answer(
                req,
                discovery.clone(),
                module.clone(),
                stats.clone(),
                token.clone(),
            )
        };
        match &acceptor {
            None => crate::http::spawn_connection(stream, answer),
            Some(acceptor) => crate::http::spawn_tls_connection(acceptor.clone(), stream, answer),
        }
    }
}
