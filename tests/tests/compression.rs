//! Compression on the wire: a scraper that accepts gzip (Prometheus does) gets the filter's
//! answer gzip-encoded by Envoy's compressor, and it decodes to the same exposition;
//! `--compression none` leaves it out. Checked with curl, a real HTTP client, against a real
//! Envoy.

use std::process::Command;

use meshmetrics::generator::compression::Compression;
use meshmetrics_e2e::{Backend, Proxy, Reply, app, effective_of, mesh_yaml, resources};

/// (headers, body bytes on the wire, body decoded) of one scrape with `Accept-Encoding: gzip`.
fn scrape_gzip(url: &str) -> (String, usize, String) {
    let raw = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-w", "%{size_download}"])
        .args(["-H", "Accept-Encoding: gzip", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&raw.stdout).into_owned();
    let (headers, size) = text.rsplit_once("\r\n\r\n").unwrap_or((&text, "0"));
    let decoded = Command::new("curl")
        .args(["-s", "--compressed", url])
        .output()
        .expect("curl --compressed");
    (
        headers.to_ascii_lowercase(),
        size.trim().parse().unwrap_or(0),
        String::from_utf8_lossy(&decoded.stdout).into_owned(),
    )
}

fn app_samples(body: &str) -> Vec<&str> {
    let mut v: Vec<&str> = body.lines().filter(|l| l.starts_with("app_")).collect();
    v.sort_unstable();
    v
}

#[test]
fn a_scraper_that_accepts_gzip_gets_gzip_and_the_same_exposition() {
    let body = (0..2000)
        .map(|i| format!("app_requests_total{{path=\"/p{i}\"}} {i}\n"))
        .collect::<String>();
    let a = app(Reply::text(body));
    let res = resources(&mesh_yaml(&[("a", a.addr.port())], "", ""));
    for compression in [Compression::Gzip, Compression::None] {
        let p = Proxy::start(Backend::Envoy, effective_of(&res, "backend-1"), |o| {
            o.compression = compression;
        });
        let url = p.url("/metrics");
        let plain = p.scrape(&[]);
        assert_eq!(plain.status, 200);
        let (headers, wire, decoded) = scrape_gzip(&url);
        match compression {
            Compression::Gzip => {
                assert!(headers.contains("content-encoding: gzip"), "{headers}");
                assert!(
                    wire * 4 < plain.body.len(),
                    "{wire} bytes gzip-encoded for {} plain",
                    plain.body.len()
                );
            }
            Compression::None => {
                assert!(!headers.contains("content-encoding"), "{headers}");
            }
        }
        assert_eq!(app_samples(&decoded), app_samples(&plain.body));
        assert_eq!(app_samples(&plain.body).len(), 2000);
    }
}
