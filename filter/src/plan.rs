//! The decisions of one scrape that need no host: which requests are scrapes, what the scraper
//! asked for, how long each source may take, and whether a source's answer is usable. Kept apart
//! from the proxy-wasm glue so they are unit-tested natively.

use std::time::Duration;

use crate::exposition::Format;

/// What to do with a request that reached the metrics listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A scrape: fetch, merge, answer. `filter` is the scraper's own `filter` query parameter.
    Scrape { head: bool, filter: Option<String> },
    /// Not the metrics path: let Envoy's router answer (404).
    PassThrough,
    /// The metrics path with a method other than GET or HEAD.
    MethodNotAllowed,
}

/// Routes a request by method and `:path` (with query).
pub fn route(metrics_path: &str, method: &str, path: &str) -> Route {
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    if path_only != metrics_path {
        return Route::PassThrough;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let filter = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    Route::Scrape { head, filter }
}

/// How long a source may take: its configured timeout, shortened to the scraper's
/// `X-Prometheus-Scrape-Timeout-Seconds` minus `margin`, and never zero (Envoy reads a zero
/// timeout as "no timeout").
pub fn deadline(
    source_timeout: Duration,
    scraper_timeout: Option<&str>,
    margin: Duration,
) -> Duration {
    let scraper = scraper_timeout
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)).saturating_sub(margin));
    let d = match scraper {
        Some(s) => source_timeout.min(s),
        None => source_timeout,
    };
    d.max(Duration::from_millis(10))
}

/// Why a source contributed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No response: connection refused, reset, or the deadline passed.
    NoResponse,
    /// An HTTP status other than 200.
    Status(u16),
    /// The body is larger than the configured cap.
    TooLarge { size: usize, cap: u64 },
    /// The dispatch itself was refused by the proxy (unknown cluster, bad headers).
    NotDispatched(String),
    /// The body is in a format the filter does not read (protobuf, JSON, HTML).
    ContentType(String),
    /// The body could not be read from the host after the answer came.
    BodyRead,
    /// The source's output reached its share of the scrape (stopped at a line boundary), or
    /// the sources before it spent the scrape's budget (left out).
    OutputLimit,
}

impl Failure {
    /// The `reason` label of `meshmetrics_source_error`: a short word, one per kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NoResponse => "no_response",
            Failure::Status(_) => "http_status",
            Failure::TooLarge { .. } => "body_too_large",
            Failure::NotDispatched(_) => "not_dispatched",
            Failure::ContentType(_) => "content_type",
            Failure::BodyRead => "body_read",
            Failure::OutputLimit => "output_limit",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoResponse => write!(f, "no response (connection failed or timed out)"),
            Failure::Status(s) => write!(f, "answered HTTP {s}"),
            Failure::TooLarge { size, cap } => {
                write!(f, "body of {size} bytes is over the cap of {cap}")
            }
            Failure::NotDispatched(why) => write!(f, "could not be dispatched: {why}"),
            Failure::ContentType(ct) => write!(
                f,
                "answered in {ct:?}, which the filter does not read (it asks for OpenMetrics or \
                 Prometheus text)"
            ),
            Failure::BodyRead => write!(f, "its body could not be read from the proxy"),
            Failure::OutputLimit => write!(
                f,
                "reached the output limit (max_source_bytes / max_scrape_bytes): it is cut short"
            ),
        }
    }
}

/// Judges a source's response from its `:status`, `content-type` and body size; on success
/// returns the format the body is in.
pub fn judge(
    status: Option<&str>,
    content_type: Option<&str>,
    body_size: usize,
    cap: u64,
) -> Result<Format, Failure> {
    let status = status.ok_or(Failure::NoResponse)?;
    match status.parse::<u16>() {
        Ok(200) => {}
        Ok(code) => return Err(Failure::Status(code)),
        Err(_) => return Err(Failure::NoResponse),
    }
    if body_size as u64 > cap {
        return Err(Failure::TooLarge {
            size: body_size,
            cap,
        });
    }
    let content_type = content_type.unwrap_or("");
    Format::from_content_type(content_type)
        .ok_or_else(|| Failure::ContentType(content_type.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/metrics", "GET", "/metrics"),
            Route::Scrape {
                head: false,
                filter: None
            }
        );
        assert_eq!(
            route("/metrics", "HEAD", "/metrics?filter=%5Eenvoy_(a%7Cb)&x=1"),
            Route::Scrape {
                head: true,
                filter: Some("^envoy_(a|b)".into())
            }
        );
        assert_eq!(
            route("/metrics", "GET", "/metrics?filter=a+b"),
            Route::Scrape {
                head: false,
                filter: Some("a b".into())
            }
        );
        assert_eq!(route("/metrics", "GET", "/metrics/x"), Route::PassThrough);
        assert_eq!(route("/metrics", "GET", "/"), Route::PassThrough);
        assert_eq!(
            route("/metrics", "POST", "/metrics"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn deadlines() {
        let ten = Duration::from_secs(10);
        let margin = Duration::from_millis(500);
        assert_eq!(deadline(ten, None, margin), ten);
        assert_eq!(
            deadline(ten, Some("3"), margin),
            Duration::from_millis(2500)
        );
        assert_eq!(deadline(ten, Some("30"), margin), ten);
        assert_eq!(
            deadline(ten, Some("0.2"), margin),
            Duration::from_millis(10)
        );
        assert_eq!(deadline(ten, Some("bogus"), margin), ten);
        assert_eq!(deadline(ten, Some("-1"), margin), ten);
    }

    #[test]
    fn judging() {
        assert_eq!(
            judge(Some("200"), Some("text/plain"), 10, 100),
            Ok(Format::Text)
        );
        assert_eq!(
            judge(
                Some("200"),
                Some("application/openmetrics-text; version=1.0.0"),
                10,
                100
            ),
            Ok(Format::OpenMetrics)
        );
        assert_eq!(judge(None, None, 0, 100), Err(Failure::NoResponse));
        let protobuf = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
        assert_eq!(
            judge(Some("200"), Some(protobuf), 10, 100),
            Err(Failure::ContentType(protobuf.into()))
        );
        assert_eq!(
            Failure::ContentType(protobuf.into()).reason(),
            "content_type"
        );
        assert_eq!(judge(Some("503"), None, 0, 100), Err(Failure::Status(503)));
        assert_eq!(
            judge(Some("200"), None, 101, 100),
            Err(Failure::TooLarge {
                size: 101,
                cap: 100
            })
        );
    }
}
