//! What the CLI's HTTP servers (the proxy-wasm host, discovery, the control plane's) share:
//! serving one connection, and reading a request's path and headers as plain strings.
//!
//! Bounds: a client has [`HEADER_READ_TIMEOUT`] to send a request's headers, or the connection is
//! closed (a half-sent request is never held); a request body is read up to a caller's limit
//! within [`BODY_READ_TIMEOUT`] ([`read_body`]).

use std::convert::Infallible;
use std::future::Future;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the limit (413).
    TooLarge,
    /// Not sent in time (408).
    TooSlow,
    /// The connection failed while it was read (400).
    Broken(String),
}

/// Reads a request body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Err(_) => Err(BodyError::TooSlow),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Serves HTTP/1 on `stream` in a task of its own, each request answered by `answer`.
pub(crate) fn spawn_connection<S, F, Fut>(stream: S, answer: F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(serve_connection(stream, answer));
}

/// [`spawn_connection`] over TLS: the handshake has [`HEADER_READ_TIMEOUT`] too, and a client
/// that fails it (plaintext to the TLS port, an untrusted name) gets nothing.
pub(crate) fn spawn_tls_connection<S, F, Fut>(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: S,
    answer: F,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Ok(Ok(tls)) =
            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await
        {
            serve_connection(tls, answer).await;
        }
    });
}

async fn serve_connection<S, F, Fut>(stream: S, answer: F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let answer = answer(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    // A client that goes away mid-request is its own business, not the server's.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Whether `req` carries `Authorization: Bearer <token>`. Compared by digest, so the time taken
/// says nothing about how much of a guess was right.
pub(crate) fn bearer_ok<B>(req: &Request<B>, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let sent = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(sent.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

/// The request's path and query (`/` when it has none).
pub(crate) fn path_and_query<B>(req: &Request<B>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string())
}

/// The request's headers, names lowercase, values read lossily as UTF-8.
pub(crate) fn headers<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
