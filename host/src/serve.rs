//! `meshmetrics serve` / `scrape`: the metrics endpoint without Envoy. The same `.wasm` runs under
//! wasmtime ([`crate::runtime`]) with the configuration `bootstrap` would give Envoy; Envoy's
//! stats come from a running Envoy's admin (`--admin`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};

use crate::bootstrap::{ADMIN_CLUSTER, Options, app_cluster, filter_config};
use crate::effective::Effective;
use crate::runtime::{Instance, Limits, Outcome, Request, Runtime};

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The filter on wasmtime, with a pool of instances (one per request in flight, reused).
pub struct Endpoint {
    runtime: Runtime,
    pool: Mutex<Vec<Instance>>,
}

fn stderr_log() -> crate::runtime::LogSinkFn {
    Arc::new(|level: &str, msg: &str| eprintln!("[filter {level}] {msg}"))
}

impl Endpoint {
    /// Loads `wasm` configured for `e`, with Envoy's admin at `admin` (`host:port`).
    pub fn new(
        wasm: &[u8],
        e: &Effective,
        o: &Options,
        admin: &str,
        limits: Limits,
    ) -> Result<Endpoint> {
        Endpoint::with_log(wasm, e, o, admin, limits, stderr_log())
    }

    pub fn with_log(
        wasm: &[u8],
        e: &Effective,
        o: &Options,
        admin: &str,
        limits: Limits,
        log: crate::runtime::LogSinkFn,
    ) -> Result<Endpoint> {
        let mut clusters = HashMap::new();
        clusters.insert(ADMIN_CLUSTER.to_owned(), admin.to_owned());
        for a in &e.apps {
            clusters.insert(app_cluster(&a.name), format!("{}:{}", a.address, a.port));
        }
        // No router here to send the scrape on to Envoy's admin: its stats are a dispatched call.
        let mut config = filter_config(e, o);
        config.stream_envoy = false;
        // This host calls no `on_tick`, and each scrape may run in its own instance: an answer
        // left waiting for the budget would never be handed over. One process, few scrapers: no
        // budget here.
        config.max_answering_bytes = 0;
        config.leases_end_on_close = false;
        let config = config.to_json();
        let runtime = Runtime::load(wasm, config, clusters, limits, log)?;
        // Start one instance now: a configuration the filter refuses fails here, not at the first scrape.
        let first = runtime.instance()?;
        Ok(Endpoint {
            runtime,
            pool: Mutex::new(vec![first]),
        })
    }

    /// Serves one request. A trap answers 500 and the trapped instance is discarded.
    pub async fn handle(&self, req: Request) -> Answer {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let mut instance = match pooled {
            Some(i) => i,
            None => match self.runtime.instance() {
                Ok(i) => i,
                Err(e) => return error_answer(&e),
            },
        };
        match instance.handle(req).await {
            Ok(outcome) => {
                if let Ok(mut p) = self.pool.lock() {
                    p.push(instance);
                }
                match outcome {
                    Outcome::Local(r) => Answer {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    },
                    Outcome::PassedThrough => Answer {
                        status: 404,
                        headers: vec![("content-type".into(), "text/plain".into())],
                        body: b"not found\n".to_vec(),
                    },
                }
            }
            Err(e) => error_answer(&e),
        }
    }
}

fn error_answer(e: &anyhow::Error) -> Answer {
    eprintln!("meshmetrics: {e:#}");
    Answer {
        status: 500,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: format!("filter error: {e:#}\n").into_bytes(),
    }
}

/// Serves `endpoint` on `listen` until the process ends.
pub async fn serve(endpoint: Arc<Endpoint>, listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("meshmetrics: serving on http://{}", listener.local_addr()?);
    serve_on(endpoint, listener, std::future::pending()).await
}

/// Serves `endpoint` on `listener` until `shutdown` completes.
pub async fn serve_on(
    endpoint: Arc<Endpoint>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let endpoint = Arc::clone(&endpoint);
        crate::http::spawn_connection(stream, move |req: hyper::Request<Incoming>| {
            let endpoint = Arc::clone(&endpoint);
            async move {
                let head = req.method() == hyper::Method::HEAD;
                let mut headers = crate::http::headers(&req);
                if let Some(h) = req.headers().get("host") {
                    headers.push((
                        ":authority".to_owned(),
                        String::from_utf8_lossy(h.as_bytes()).into_owned(),
                    ));
                }
                let request = Request {
                    method: req.method().as_str().to_owned(),
                    path: crate::http::path_and_query(&req),
                    headers,
                };
                let answer = endpoint.handle(request).await;
                let mut resp = hyper::Response::new(Full::new(if head {
                    Bytes::new()
                } else {
                    Bytes::from(answer.body)
                }));
                *resp.status_mut() = hyper::StatusCode::from_u16(answer.status)
                    .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                for (k, v) in answer.headers {
                    if let (Ok(k), Ok(v)) = (
                        hyper::header::HeaderName::from_bytes(k.as_bytes()),
                        v.parse(),
                    ) {
                        resp.headers_mut().insert(k, v);
                    }
                }
                resp
            }
        });
    }
}
