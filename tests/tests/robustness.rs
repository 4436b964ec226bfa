//! The metrics endpoint survives any app and any load, against a real Envoy with the filter:
//! an app whose output explodes with the mesh's labels, a VM that dies anyway, an app writing
//! under the filter's own names. Each time the endpoint keeps answering 200 with Envoy's stats
//! and the healthy apps, and the next scrape works.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::Options;
use meshmetrics_e2e::*;

/// An app answering 8.9 MB of one counter family (a ~17 MB merged answer).
fn big_app() -> AppServer {
    let line = "app_requests_total{path=\"/api/v1/orders/items\",code=\"200\",i=\"";
    let body: String = (0..120_000)
        .map(|i| format!("{line}{i:06}\"}} {i}\n"))
        .collect();
    assert!(body.len() > 8_000_000, "{}", body.len());
    app(Reply::text(body))
}

/// A scrape by a scraper that waits up to 30 s, and says so.
fn patient_scrape(url: &str) -> Scrape {
    request("GET", url, &[("x-prometheus-scrape-timeout-seconds", "30")])
}

/// A real Envoy with the filter for a mesh aggregating `apps`, its options tuned by `tune`.
fn envoy_with(apps: &[(&str, &AppServer)], tune: impl FnOnce(&mut Options)) -> Proxy {
    let ports: Vec<(&str, u16)> = apps.iter().map(|(n, a)| (*n, a.addr.port())).collect();
    let yaml = mesh_yaml(&ports, "", "");
    Proxy::start(
        Backend::Envoy,
        effective_of(&resources(&yaml), "backend-1"),
        tune,
    )
}

const HEALTHY: &str = "# TYPE orders_total counter\norders_total 42\n";

fn assert_serves_envoy_and_healthy(s: &Scrape, log: &str) {
    assert_eq!(s.status, 200, "{log}");
    assert!(
        !samples(&s.body, "envoy_server_live").is_empty(),
        "Envoy's stats are missing"
    );
    assert!(
        s.body.contains("orders_total{"),
        "the healthy app is missing"
    );
    assert_eq!(
        self_metric(&s.body, "meshmetrics_source_up", "healthy"),
        Some(1.0)
    );
}

#[test]
fn label_amplification_is_cut_at_the_sources_share_not_fatal() {
    // 30 MB of the shortest sample there is, well under the 64 MiB body cap: ~20x once the
    // mesh's four labels are added. Before the output budget the VM failed to allocate, trapped,
    // and answered 503 until Envoy restarted.
    let amplifier = app(Reply::text("a 1\n".repeat(7_500_000)));
    let healthy = app(Reply::text(HEALTHY));
    let proxy = envoy_with(&[("amplifier", &amplifier), ("healthy", &healthy)], |o| {
        o.timeout_ms = 20_000
    });
    for round in 0..2 {
        let s = proxy.scrape(&[("x-prometheus-scrape-timeout-seconds", "25")]);
        assert_serves_envoy_and_healthy(&s, &proxy.log());
        assert_eq!(
            self_metric(&s.body, "meshmetrics_source_up", "amplifier"),
            Some(0.0),
            "round {round}"
        );
        assert!(
            s.body.contains(
                "meshmetrics_source_error{source=\"amplifier\",reason=\"output_limit\"} 1\n"
            ),
            "round {round}"
        );
        let limit = meshmetrics_filter::config::DEFAULT_MAX_SOURCE_BYTES as usize;
        assert!(
            s.body.len() < limit + (1 << 20),
            "round {round}: {} bytes",
            s.body.len()
        );
        let memory = wasm_memory(&s.body).expect("the VM's memory is reported");
        assert!(
            memory < 4.0 * limit as f64,
            "round {round}: wasm memory {memory}"
        );
    }
}

#[test]
fn five_large_apps_hold_the_vm_at_about_their_output() {
    // Five apps of ~1 MB each, families of their own: ~2 MB each once labelled. Their output
    // waits in the VM until Envoy's families have passed. Kept in one growing buffer, each app
    // copied the ones before it and left blocks too small for the next: the VM grew to 2.4x
    // their output, for good (its memory never shrinks). One chunk per app holds them as
    // written.
    let apps: Vec<AppServer> = (0..5)
        .map(|i| {
            let body: String = (0..14_000)
                .map(|n| {
                    format!(
                        "app{i}_requests_total{{route=\"/api/v1/items/{}\",code=\"200\"}} {n}\n",
                        n % 97
                    )
                })
                .collect();
            app(Reply::text(body))
        })
        .collect();
    let names: Vec<String> = (0..5).map(|i| format!("app-{i}")).collect();
    let pairs: Vec<(&str, &AppServer)> = names.iter().map(String::as_str).zip(&apps).collect();
    let proxy = envoy_with(&pairs, |_| {});
    for round in 0..3 {
        let s = proxy.scrape(&[]);
        assert_eq!(s.status, 200, "{}", proxy.log());
        let apps_output: usize = s
            .body
            .lines()
            .filter(|l| l.starts_with("app"))
            .map(|l| l.len() + 1)
            .sum();
        assert!(
            apps_output > 9_000_000,
            "round {round}: {apps_output} bytes"
        );
        for name in &names {
            assert_eq!(
                self_metric(&s.body, "meshmetrics_source_up", name),
                Some(1.0),
                "round {round}: {name}"
            );
        }
        let memory = wasm_memory(&s.body).expect("the VM's memory is reported");
        assert!(
            memory < 2.0 * apps_output as f64,
            "round {round}: wasm memory {memory} bytes for {apps_output} bytes of the apps' output"
        );
    }
}

/// The filter built with `--features fault-injection` (a header that makes the VM trap).
fn fault_injection_wasm() -> PathBuf {
    let root = workspace_root();
    let target = root.join("target/fault-injection");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "meshmetrics-filter",
            "--target",
            "wasm32-wasip1",
            "--release",
            "--features",
            "fault-injection",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building the fault-injection filter failed"
    );
    target.join("wasm32-wasip1/release/meshmetrics_filter.wasm")
}

#[test]
fn a_vm_that_dies_is_reloaded_without_restarting_envoy() {
    let wasm = fault_injection_wasm();
    let healthy = app(Reply::text(HEALTHY));
    let proxy = envoy_with(&[("healthy", &healthy)], |o| o.wasm = wasm);
    let pid = proxy.envoy_pid();
    assert_serves_envoy_and_healthy(&proxy.scrape(&[]), &proxy.log());
    // The VM traps: that scrape fails, whatever it gets.
    let _ = try_request(
        "GET",
        &proxy.url(&proxy.path),
        &[("x-meshmetrics-fault", "abort")],
    );
    // With FAIL_RELOAD the VM comes back after its backoff (0.1 s first); without it, every
    // later scrape is 503 until Envoy restarts.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let last = match try_request("GET", &proxy.url(&proxy.path), &[]) {
            Ok(s) if s.status == 200 => {
                assert_serves_envoy_and_healthy(&s, &proxy.log());
                break;
            }
            other => format!("{other:?}"),
        };
        assert!(
            Instant::now() < deadline,
            "no working scrape within 15 s after the VM died; last: {last}\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        assert_serves_envoy_and_healthy(&proxy.scrape(&[]), &proxy.log());
    }
    assert_eq!(proxy.envoy_pid(), pid, "Envoy was not restarted");
}

#[test]
fn an_app_cannot_write_into_or_hide_the_filters_own_metrics() {
    let healthy = app(Reply::text(HEALTHY));
    let impostor = app(Reply::text(
        "# TYPE meshmetrics_source_up counter\nmeshmetrics_source_up_total{source=\"healthy\"} 9\n\
         meshmetrics_source_up{source=\"envoy\"} 0\n\
         # TYPE meshmetrics_wasm_memory_bytes counter\nmeshmetrics_wasm_memory_bytes_total 1\n\
         # TYPE impostor_up gauge\nimpostor_up 1\n",
    ));
    let proxy = envoy_with(&[("healthy", &healthy), ("impostor", &impostor)], |_| {});
    for accept in ["text/plain", "application/openmetrics-text;version=1.0.0"] {
        let s = proxy.scrape(&[("accept", accept)]);
        assert_serves_envoy_and_healthy(&s, &proxy.log());
        let ours: Vec<&str> = s
            .body
            .lines()
            .filter(|l| l.contains("meshmetrics_source_up") || l.contains("wasm_memory"))
            .collect();
        assert!(
            s.body.contains(
                "# TYPE meshmetrics_source_up gauge\nmeshmetrics_source_up{source=\"envoy\"} 1\n"
            ),
            "{}",
            ours.join("\n")
        );
        assert!(
            s.body
                .contains("# TYPE meshmetrics_wasm_memory_bytes gauge\n")
        );
        // None of the impostor's samples in our families is served: the filter labels every
        // app sample with `aggregate`, its own series never. (Named exactly: Envoy's counters,
        // such as `downstream_rq_total{…} 9`, may end the way the forged lines do.)
        let forged: Vec<&str> = s
            .body
            .lines()
            .filter(|l| {
                l.starts_with("meshmetrics_")
                    && (l.contains("aggregate=\"impostor\"")
                        || l.contains("_total{source=\"healthy\"} 9"))
            })
            .chain(
                s.body
                    .lines()
                    .filter(|l| l.starts_with("meshmetrics_wasm_memory_bytes_total")),
            )
            .collect();
        assert!(forged.is_empty(), "forged samples served: {forged:?}");
        assert_eq!(
            self_metric(&s.body, "meshmetrics_source_up", "impostor"),
            Some(1.0),
            "the impostor's own samples are served"
        );
        assert!(s.body.contains("impostor_up{"));
        assert!(
            self_metric(
                &s.body,
                "meshmetrics_source_samples_dropped_total",
                "impostor"
            )
            .is_some_and(|n| n >= 3.0)
        );
        python_parse(&s.body, accept.starts_with("application/openmetrics"));
    }
}

/// Lines that made a whole scrape unparseable for Prometheus or the strict parsers.
const HOSTILE: &str = "x{__name__=\"y\"} 1\n{\"my.metric\"} 1\nok{\"my.label\"=\"v\"} 1\n\
# TYPE badle histogram\nbadle_bucket{le=\"abc\"} 1\nbadle_bucket{le=\"+Inf\"} 1\nbadle_count 1\nbadle_sum 1\n\
# TYPE badq summary\nbadq{quantile=\"abc\"} 1\nbadq_count 1\nbadq_sum 1\n\
# TYPE noinf histogram\nnoinf_bucket{le=\"1\"} 1\nnoinf_count 1\nnoinf_sum 1\n\
# TYPE neg_total counter\nneg_total -1\n\
# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_count 1\nlat_sum 1\n\
# TYPE lat_count gauge\nlat_count 5\n# TYPE fine gauge\nfine 1\n";

#[test]
fn no_app_line_makes_the_scrape_unparseable() {
    let healthy = app(Reply::text(HEALTHY));
    let hostile = app(Reply::text(HOSTILE));
    let proxy = envoy_with(&[("healthy", &healthy), ("hostile", &hostile)], |_| {});
    for openmetrics in [false, true] {
        let accept = if openmetrics {
            "application/openmetrics-text;version=1.0.0"
        } else {
            "text/plain;version=0.0.4"
        };
        let s = proxy.scrape(&[("accept", accept)]);
        assert_serves_envoy_and_healthy(&s, &proxy.log());
        assert!(
            s.body.contains("fine{"),
            "the hostile app's good lines stay"
        );
        python_parse(&s.body, openmetrics);
        if !openmetrics {
            promtool_check(&s.body);
        }
    }
    // Prometheus itself scrapes it (OpenMetrics, its default) and stores Envoy's series.
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n- job_name: mesh\n  honor_labels: true\n  static_configs: [{{targets: ['{}']}}]\n",
        proxy.metrics
    );
    let prom = Prometheus::start(&config);
    prom.wait_until("scraping the proxy", |p| {
        p.query("up{job=\"mesh\"} == 1").len() == 1
            && !p.query("envoy_server_live").is_empty()
            && !p.query("fine").is_empty()
    });
}

#[test]
fn concurrent_scrapes_share_one_fetch() {
    // One 8 MB app. Before sharing, each in-flight scrape held its own output: 80 at once took
    // the VM past its memory and it never answered again.
    let big = big_app();
    let proxy = envoy_with(&[("big", &big)], |o| o.timeout_ms = 30_000);
    let one = proxy.scrape(&[]);
    assert_eq!(one.status, 200);
    let before = big.requests().len();
    let url = proxy.url(&proxy.path);
    let answers: Vec<(u16, usize, f64, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..80)
            .map(|_| {
                s.spawn(|| {
                    let r = patient_scrape(&url);
                    let ok = r.body.contains("app_requests_total{")
                        && r.body.contains("envoy_server_live");
                    // A body without the VM's memory is incomplete: counted below, with its
                    // status and size, not a panic in a scraper thread.
                    let memory = wasm_memory(&r.body);
                    (
                        r.status,
                        r.body.len(),
                        memory.unwrap_or(0.0),
                        ok && memory.is_some(),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scraper"))
            .collect()
    });
    let fetched = big.requests().len() - before;
    let memory = answers.iter().map(|a| a.2).fold(0.0, f64::max);
    println!(
        "80 scrapes: the app was fetched {fetched} times; wasm memory at most {memory} bytes for a {}-byte output",
        one.body.len()
    );
    let incomplete: Vec<(u16, usize)> = answers
        .iter()
        .filter(|a| a.0 != 200 || !a.3)
        .map(|a| (a.0, a.1))
        .collect();
    assert!(
        incomplete.is_empty(),
        "every scrape is answered in full; (status, bytes) of those that were not: {incomplete:?}"
    );
    assert!(
        fetched <= 20,
        "80 concurrent scrapes fetched the app {fetched} times"
    );
    // Per kind of scrape at most two fetches are in flight: a streamed one (Envoy's answer
    // passing through; it holds the apps' output once) and the dispatched one the scrapes that
    // came meanwhile wait for (the apps' output twice: its side arena and its body). Here the
    // app is the output, and a third merger may sit grown in the pool: under 6 ×, not 80 ×.
    assert!(
        memory < 6.0 * one.body.len() as f64,
        "wasm memory {memory} for a {}-byte output",
        one.body.len()
    );
    assert_eq!(proxy.scrape(&[]).status, 200, "the next scrape works");
}

/// How fresh a shared answer is (the module docs of `filter/src/proxy/inflight.rs`): a scrape
/// that joins a fetch in flight gets that fetch's values, fetched before it arrived; a scrape
/// that arrives after the fetch was answered never gets them, it fetches anew.
#[test]
fn a_joined_scrape_shares_the_fetch_in_flight_and_a_later_one_fetches_anew() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    // Each answer says which fetch it is, and takes 700 ms (the app serves one at a time).
    let slow = AppServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(move |_: &meshmetrics_demo_app::Seen| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(700));
            Reply::text(format!("# TYPE app_fetch gauge\napp_fetch {n}\n"))
        }),
    )
    .expect("app");
    let proxy = envoy_with(&[("slow", &slow)], |o| o.timeout_ms = 10_000);
    let url = proxy.url(&proxy.path);
    let fetch_of = |body: &str| -> u64 {
        samples(body, "app_fetch")
            .first()
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no app_fetch in:\n{body}"))
    };
    let before = calls.load(Ordering::SeqCst);
    let (a, b, c) = std::thread::scope(|s| {
        // A streams alone; B, arriving while A is in flight, leads a shared fetch; C joins B's.
        let a = s.spawn(|| request("GET", &url, &[]));
        std::thread::sleep(Duration::from_millis(200));
        let b = s.spawn(|| request("GET", &url, &[]));
        std::thread::sleep(Duration::from_millis(200));
        let c_sent = Instant::now();
        let c = s.spawn(|| request("GET", &url, &[]));
        let (a, b, c) = (
            a.join().expect("a"),
            b.join().expect("b"),
            c.join().expect("c"),
        );
        assert!(c_sent.elapsed() > Duration::from_millis(300));
        (a, b, c)
    });
    for s in [&a, &b, &c] {
        assert_eq!(s.status, 200, "{}", s.body);
    }
    let (fa, fb, fc) = (fetch_of(&a.body), fetch_of(&b.body), fetch_of(&c.body));
    assert_ne!(fa, fb, "B arrived while A streamed: its own fetch");
    assert_eq!(
        fb, fc,
        "C joined B's fetch in flight, begun before C arrived"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst) - before,
        2,
        "two fetches for three scrapes"
    );
    // After both were answered: a new fetch, never B's bytes again.
    let d = proxy.scrape(&[]);
    assert!(fetch_of(&d.body) > fb.max(fa));
}

/// A client that reads slowly holds its answer's share of the answering budget until it has
/// read it and gone: the budget counts what Envoy really holds for its clients, not an assumed
/// reading rate. Two readers that stop reading hold the two answers always admitted; a third
/// scrape waits and is refused with `Retry-After`; once they go, scrapes are served again.
#[test]
fn slow_readers_hold_the_budget_until_they_have_read_and_gone() {
    use std::io::{Read, Write};
    let big = big_app();
    // The smallest budget: the two answers always admitted, and nothing more.
    let proxy = envoy_with(&[("big", &big)], |o| {
        o.timeout_ms = 30_000;
        o.max_answering_bytes = 1;
    });
    assert_eq!(proxy.scrape(&[]).status, 200);
    let stalled: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(proxy.metrics).expect("connect");
            write!(
                c,
                "GET {} HTTP/1.1\r\nhost: x\r\nx-prometheus-scrape-timeout-seconds: 30\r\n\r\n",
                proxy.path
            )
            .expect("send");
            // The answer's first 64 KiB, then no more reading: Envoy holds the rest.
            let mut first = vec![0u8; 64 << 10];
            c.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            c.read_exact(&mut first).expect("the answer starts");
            assert!(first.starts_with(b"HTTP/1.1 200"));
            c
        })
        .collect();
    // Read at an assumed 64 MB/s, their ~17 MB would have been read long ago.
    std::thread::sleep(Duration::from_secs(2));
    let refused = request(
        "GET",
        &proxy.url(&proxy.path),
        &[("x-prometheus-scrape-timeout-seconds", "2")],
    );
    assert_eq!(
        (refused.status, refused.retry_after.is_some()),
        (503, true),
        "while two readers hold their answers: {}",
        refused.body
    );
    drop(stalled);
    let served = patient_scrape(&proxy.url(&proxy.path));
    assert_eq!(served.status, 200, "once they have gone: {}", served.body);
}

/// A flood of scrapes cannot balloon the sidecar: 100 concurrent scrapes of a ~14 MB answer.
/// Before the answering budget, every one was handed to Envoy at once and Envoy held each until
/// its client read it: 2.9 GB here. Now answers are handed as the budget allows and the rest
/// wait (each within its scraper's timeout), so Envoy's memory stays within a few answers, and
/// a scrape arriving mid-flood is served. (The figures against the goal are in `scripts/bench`;
/// this holds a loose bound.)
#[test]
fn a_flood_of_scrapes_keeps_envoy_within_a_few_answers() {
    let big = big_app();
    let proxy = envoy_with(&[("big", &big)], |o| o.timeout_ms = 30_000);
    let one = proxy.scrape(&[]);
    assert_eq!(one.status, 200);
    let answer = one.body.len() as f64 / (1 << 20) as f64;
    let pid = proxy.envoy_pid();
    let idle = meshmetrics_e2e::perf::rss_mb(pid).0;
    let url = proxy.url(&proxy.path);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answers, normal, peak) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut peak: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(meshmetrics_e2e::perf::rss_mb(pid).0);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let flood: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    let r = patient_scrape(&url);
                    (r.status, r.body.len(), r.retry_after.is_some())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let normal = request(
            "GET",
            &url,
            &[("x-prometheus-scrape-timeout-seconds", "30")],
        );
        let answers: Vec<_> = flood
            .into_iter()
            .map(|h| h.join().expect("scraper"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (answers, normal, watcher.join().expect("watcher"))
    });
    println!(
        "100 concurrent scrapes of a {answer:.1} MB answer: Envoy RSS idle {idle:.0} MB, peak {peak:.0} MB (+{:.1} answers); statuses {:?}",
        (peak - idle) / answer,
        answers
            .iter()
            .fold(std::collections::BTreeMap::new(), |mut m, a| {
                *m.entry(a.0).or_insert(0) += 1;
                m
            })
    );
    for (status, bytes, retry_after) in &answers {
        assert!(
            (*status == 200 && *bytes > 1_000_000) || (*status == 503 && *retry_after),
            "a scrape got {status} ({bytes} bytes): only 200 or the admission's 503 with Retry-After"
        );
    }
    assert_eq!(normal.status, 200, "a scrape during the flood is served");
    assert!(normal.body.contains("app_requests_total{"));
    assert!(
        peak - idle < 30.0 * answer,
        "Envoy grew {:.0} MB for {answer:.1} MB answers",
        peak - idle
    );
    // Envoy and the VM are alive, and counted what they refused.
    let after = proxy.scrape(&[]);
    assert_eq!(after.status, 200);
    println!(
        "after: Envoy RSS {:.0} MB; this worker's VM {:.0} MB",
        meshmetrics_e2e::perf::rss_mb(pid).0,
        wasm_memory(&after.body).unwrap_or(0.0) / (1 << 20) as f64
    );
    assert!(
        after
            .body
            .contains("meshmetrics_scrapes_refused_total{reason=\"budget\"}"),
        "{}",
        &after.body[after.body.len().saturating_sub(2000)..]
    );
}
