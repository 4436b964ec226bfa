//! Performing a dispatched call: one HTTP/1.1 request over a fresh connection, within the
//! deadline the filter gave. Any failure (connect, reset, timeout) is an answer with no headers,
//! which is how Envoy reports a failed call to a filter.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::hostcalls::{CallResponse, Dispatch};

/// Largest body read from a source; Envoy's async client has the same kind of cap.
const BODY_CAP: usize = 1 << 30;

pub async fn perform(call: &Dispatch, address: &str) -> CallResponse {
    tokio::time::timeout(call.timeout, request(call, address))
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn request(call: &Dispatch, address: &str) -> Option<CallResponse> {
    let stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let get = |name: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut req = hyper::Request::builder()
        .method(get(":method").unwrap_or("GET"))
        .uri(get(":path").unwrap_or("/"))
        .header("host", get(":authority").unwrap_or(address));
    for (k, v) in call.headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = sender
        .send_request(req.body(Empty::new()).ok()?)
        .await
        .ok()?;
    let mut headers = vec![(":status".to_owned(), resp.status().as_u16().to_string())];
    headers.extend(resp.headers().iter().map(|(k, v)| {
        (
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    }));
    let body = http_body_util::Limited::new(resp.into_body(), BODY_CAP)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(CallResponse {
        headers,
        body: body.to_vec(),
    })
}

/// The deadline of a call the filter gave no timeout: Envoy reads 0 as "none"; we do not wait
/// forever either way.
pub fn effective_timeout(t: Duration) -> Duration {
    if t.is_zero() {
        Duration::from_secs(3600)
    } else {
        t
    }
}
