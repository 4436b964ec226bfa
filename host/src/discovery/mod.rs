//! Discovery for Prometheus (SPEC §6): `meshmetrics discovery` reads resources (files or
//! directories), serves one monitoring assignment per dataplane, and picks up changes without a
//! restart.
//!
//! - `POST /v3/discovery:monitoringassignments[?fetch-timeout=30s]` — MADS, long-polled: a client
//!   that already has the current version waits for the next one, or gets 304 at the deadline.
//! - `GET /sd[?mesh=<name>][&client_id=<id>]` — Prometheus `http_sd_configs`, labels under
//!   `__meta_kuma_*`.
//!
//! A MeshMetric Prometheus backend with a `clientId` is given only to that client (MADS: the
//! request's `node.id`, which is Prometheus' `kuma_sd_configs.client_id`; http_sd: `client_id`);
//! one without, only to the default client (no id). The legacy form's endpoints go to every
//! client.

pub mod assignments;
pub mod mads;
pub mod prometheus;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::http::BodyError;

/// Connections discovery keeps open at once (long polls included); more wait in the backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// The largest MADS request body read (a DiscoveryRequest is a few hundred bytes); larger: 413.
pub const MAX_REQUEST_BODY: usize = 1 << 20;

pub use assignments::Assignment;

/// What discovery serves at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    pub assignments: Vec<Assignment>,
}

/// Reads the resources and computes assignments; resources with any error are refused whole (the
/// caller keeps its last good snapshot).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Assignment>> {
    let res = crate::read_resources(paths)?;
    let (assignments, diags) = assignments::compute(&res);
    for w in diags.warnings() {
        eprintln!("meshmetrics discovery: {w}");
    }
    if diags.has_errors() {
        bail!(crate::Invalid(diags));
    }
    Ok(assignments)
}

/// A fingerprint of the files under `paths`: names, sizes and modification times.
pub(crate) fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    for p in paths {
        let entries: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        for f in entries {
            let meta = std::fs::metadata(&f).ok();
            files.push((
                f,
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            ));
        }
    }
    files.sort();
    files
}

/// Watches `paths` (polling every `every`) and publishes a new snapshot when the assignments
/// change. A change that does not load keeps the last good snapshot, and says why.
pub async fn watch_files(paths: Vec<PathBuf>, every: Duration, tx: watch::Sender<Arc<Snapshot>>) {
    let mut seen = fingerprint(&paths);
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&paths);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&paths) {
            Ok(assignments) => {
                let current = tx.borrow().clone();
                if current.assignments != assignments {
                    let version = current.version + 1;
                    eprintln!(
                        "meshmetrics discovery: version {version}, {} dataplanes",
                        assignments.len()
                    );
                    let _ = tx.send(Arc::new(Snapshot {
                        version,
                        assignments,
                    }));
                }
            }
            Err(e) => eprintln!(
                "meshmetrics discovery: keeping version {}: {e:#}",
                tx.borrow().version
            ),
        }
    }
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(ct) = content_type.parse() {
        r.headers_mut().insert("content-type", ct);
    }
    r
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Answers one request, if it carries `token` (when one is required): else 401.
pub async fn answer_authorized(
    req: Request<Incoming>,
    rx: watch::Receiver<Arc<Snapshot>>,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    if let Some(t) = token
        && !crate::http::bearer_ok(&req, t)
    {
        let mut r = respond(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "discovery needs `Authorization: Bearer <token>` (--discovery-token-file)\n",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    answer(req, rx).await
}

/// Answers one request.
pub async fn answer(
    req: Request<Incoming>,
    mut rx: watch::Receiver<Arc<Snapshot>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/sd") => {
            let mesh = query_param(&req, "mesh");
            let client = query_param(&req, "client_id").unwrap_or_default();
            let snap = rx.borrow().clone();
            let groups: Vec<_> = snap
                .assignments
                .iter()
                .filter(|a| a.for_client(&client))
                .filter(|a| mesh.as_ref().is_none_or(|m| *m == a.mesh))
                .map(Assignment::to_http_sd)
                .collect();
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&groups).unwrap_or_default(),
            )
        }
        (&Method::POST, "/v3/discovery:monitoringassignments") => {
            let timeout = match query_param(&req, "fetch-timeout").map(|t| mads::parse_duration(&t))
            {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("fetch-timeout: {e}\n"),
                    );
                }
            };
            let body = match crate::http::read_body(req.into_body(), MAX_REQUEST_BODY).await {
                Ok(b) => b,
                Err(BodyError::TooLarge) => {
                    return respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "text/plain",
                        format!("the request body is over {MAX_REQUEST_BODY} bytes\n"),
                    );
                }
                Err(BodyError::TooSlow) => {
                    return respond(
                        StatusCode::REQUEST_TIMEOUT,
                        "text/plain",
                        "the request body was not sent in time\n",
                    );
                }
                Err(BodyError::Broken(e)) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("cannot read the body: {e}\n"),
                    );
                }
            };
            let request = match mads::DiscoveryRequest::parse(&body) {
                Ok(r) => r,
                Err(e) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            };
            let current = rx.borrow_and_update().version.to_string();
            if request.version_info == current {
                // The client is up to date: hold the request until something changes.
                let Some(timeout) = timeout else {
                    return respond(StatusCode::NOT_MODIFIED, "text/plain", "");
                };
                match tokio::time::timeout(timeout, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return respond(StatusCode::NOT_MODIFIED, "text/plain", ""),
                }
            }
            let snap = rx.borrow().clone();
            let body = mads::response(
                &snap.version.to_string(),
                &snap.assignments,
                &request.resource_names,
                &request.node_id,
            );
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try POST /v3/discovery:monitoringassignments or GET /sd\n",
        ),
    }
}

/// Serves discovery on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    rx: watch::Receiver<Arc<Snapshot>>,
    token: Option<Arc<str>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    // A full fd table pauses accepting; it never ends the server (see crate::accept).
    let mut listener = crate::accept::Acceptor::new(listener, MAX_CONNECTIONS, "discovery");
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (rx, token) = (rx.clone(), token.clone());
        crate::http::spawn_connection(stream, move |req| {
            let (rx, token) = (rx.clone(), token.clone());
            async move { answer_authorized(req, rx, token.as_deref()).await }
        });
    }
}

/// Loads `paths`, then serves discovery on `listener` and watches the files, until `shutdown`.
pub async fn run(
    paths: Vec<PathBuf>,
    listener: tokio::net::TcpListener,
    poll: Duration,
    token: Option<Arc<str>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let assignments = load(&paths)?;
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        version: 1,
        assignments,
    }));
    let watcher = tokio::spawn(watch_files(paths, poll, tx));
    let served = serve(listener, rx, token, shutdown).await;
    watcher.abort();
    served
}
