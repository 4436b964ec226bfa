//! A small metrics application: it answers every request with what its handler says (metrics,
//! an error status, or nothing at all). The `meshmetrics-demo-app` binary serves the demo's
//! applications with it; the end-to-end tests (`meshmetrics-e2e`) use it for healthy, hanging,
//! failing and garbage-serving apps.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;

/// How long a client may take to send a request's headers, or the connection is closed (a
/// half-sent request is never held).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the app answers.
#[derive(Clone, Debug)]
pub enum Reply {
    Metrics {
        content_type: String,
        body: Vec<u8>,
    },
    Status(u16),
    /// Never answers (until the server stops).
    Hang,
}

impl Reply {
    pub fn text(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Metrics {
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            body: body.into(),
        }
    }
    pub fn openmetrics(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Metrics {
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
            body: body.into(),
        }
    }
}

/// A request the app received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A running app; stops when dropped.
pub struct AppServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AppServer {
    /// Serves `handler` on `listen` (port 0 picks a free one).
    pub fn start(listen: SocketAddr, handler: Handler) -> std::io::Result<AppServer> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let seen2 = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let stream = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok((s, _)) => s,
                            Err(_) => continue,
                        },
                    };
                    let handler = Arc::clone(&handler);
                    let seen = Arc::clone(&seen2);
                    tokio::spawn(serve_connection(stream, handler, seen));
                }
            });
        });
        Ok(AppServer {
            addr,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Serves HTTP/1 on one connection, each request answered by `handler`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        let seen = Arc::clone(&seen);
        async move { Ok::<_, Infallible>(answer(&handler, &seen, &req).await) }
    });
    // A client that goes away mid-request is its own business, not the server's.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let s = Seen {
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        // Names lowercase, values read lossily as UTF-8.
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let reply = handler(&s);
    if let Ok(mut v) = seen.lock() {
        v.push(s);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    match reply {
        Reply::Metrics { content_type, body } => {
            if let Ok(ct) = content_type.parse() {
                resp.headers_mut().insert("content-type", ct);
            }
            *resp.body_mut() = Full::new(Bytes::from(body));
        }
        Reply::Status(code) => {
            *resp.status_mut() = hyper::StatusCode::from_u16(code)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            *resp.body_mut() = Full::new(Bytes::from_static(b"internal error\n"));
        }
        Reply::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
    resp
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The demo's application: an HTTP service's request counter and latency histogram, moving with
/// each scrape; in OpenMetrics (with an exemplar) or text.
pub fn demo_handler(name: &str, openmetrics: bool) -> Handler {
    let count = Arc::new(AtomicU64::new(0));
    let name = name.replace('-', "_");
    Arc::new(move |_seen| {
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        let ok = n * 7;
        let body = if openmetrics {
            format!(
                "# TYPE {name}_http_requests counter\n# HELP {name}_http_requests Requests served.\n\
                 {name}_http_requests_total{{code=\"200\"}} {ok} # {{trace_id=\"{n:016x}\"}} 1\n\
                 {name}_http_requests_total{{code=\"500\"}} {n}\n\
                 # TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n\
                 # HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
                 process_cpu_seconds_total {}.25\n# EOF\n",
                n / 4
            )
        } else {
            format!(
                "# HELP {name}_http_requests_total Requests served.\n# TYPE {name}_http_requests_total counter\n\
                 {name}_http_requests_total{{code=\"200\"}} {ok}\n{name}_http_requests_total{{code=\"500\"}} {n}\n\
                 # HELP {name}_request_duration_seconds Time to serve a request.\n\
                 # TYPE {name}_request_duration_seconds histogram\n\
                 {name}_request_duration_seconds_bucket{{le=\"0.1\"}} {ok}\n\
                 {name}_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 {name}_request_duration_seconds_sum {}.5\n{name}_request_duration_seconds_count {}\n\
                 # HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}.75\n",
                ok + n,
                n,
                ok + n,
                n / 3
            )
        };
        if openmetrics {
            Reply::openmetrics(body)
        } else {
            Reply::text(body)
        }
    })
}
