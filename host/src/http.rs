//! What the CLI's three HTTP servers (the proxy-wasm host, discovery, the sample app) share:
//! serving one connection, and reading a request's path and headers as plain strings.

use std::convert::Infallible;
use std::future::Future;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Serves HTTP/1 on `stream` in a task of its own, each request answered by `answer`.
pub(crate) fn spawn_connection<F, Fut>(stream: tokio::net::TcpStream, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let answer = answer(req);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        // A client that goes away mid-request is its own business, not the server's.
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
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
