//! `scripts/soak`: a real Envoy with the filter under sustained load, on loopback only.
//!
//! Envoy with `--clusters` clusters (250), three apps beside it — one text, one OpenMetrics, one
//! flapping through up / down (not listening) / hanging / HTTP 500 every `--phase-seconds` —
//! and `--scrapers` concurrent scrapers (100) looping for `--seconds` (60), with Prometheus'
//! default `Accept` and a 2 s scrape timeout. Reports scrapes/s, non-200 answers, p50 / p99,
//! Envoy's RSS and the filter's wasm memory at start, middle and end, next to one scrape's
//! output. Prints Markdown and writes `target/soak/results.json`. Measurements, never
//! assertions: the closing checks are printed as PASS / FAIL lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshmetrics_demo_app::Handler;
use meshmetrics_e2e::perf::{rss_mb, start};
use meshmetrics_e2e::{AppServer, Reply, try_request, wasm_memory};
use serde_json::json;

const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Args {
    clusters: usize,
    scrapers: usize,
    seconds: u64,
    phase_seconds: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        clusters: 250,
        scrapers: 100,
        seconds: 60,
        phase_seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v: u64 = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag}: a number"))?;
        match flag.as_str() {
            "--clusters" => a.clusters = v as usize,
            "--scrapers" => a.scrapers = v as usize,
            "--seconds" => a.seconds = v,
            "--phase-seconds" => a.phase_seconds = v.max(1),
            other => bail!(
                "unknown argument {other:?} (--clusters 250 --scrapers 100 --seconds 60 --phase-seconds 5)"
            ),
        }
    }
    if a.scrapers == 0 || a.seconds == 0 {
        bail!("--scrapers and --seconds must be positive");
    }
    Ok(a)
}

fn app_body(lines: usize, openmetrics: bool) -> String {
    let mut b = String::from("# HELP soak_requests Requests.\n");
    b.push_str(if openmetrics {
        "# TYPE soak_requests counter\n"
    } else {
        "# TYPE soak_requests_total counter\n"
    });
    for i in 0..lines {
        b.push_str(&format!(
            "soak_requests_total{{path=\"/api/{i}\",code=\"200\"}} {i}\n"
        ));
    }
    if openmetrics {
        b.push_str("# EOF\n");
    }
    b
}

/// The flapping app's phases, in order.
const PHASES: [&str; 4] = ["up", "down", "hanging", "http 500"];

/// Serves the flapping app: its handler follows `phase`; in the `down` phase the server is
/// stopped (connection refused), then started again on the same port.
fn flapping(port: u16, phase: Arc<AtomicU8>, stop: Arc<AtomicBool>, every: Duration) {
    let body = app_body(200, false);
    let handler: Handler = {
        let phase = Arc::clone(&phase);
        Arc::new(move |_| match phase.load(Ordering::Relaxed) {
            2 => Reply::Hang,
            3 => Reply::Status(500),
            _ => Reply::text(body.clone()),
        })
    };
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = AppServer::start(listen, Arc::clone(&handler)).ok();
    let mut since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if since.elapsed() < every {
            continue;
        }
        since = Instant::now();
        let next = (phase.load(Ordering::Relaxed) + 1) % PHASES.len() as u8;
        phase.store(next, Ordering::Relaxed);
        if next == 1 {
            server = None;
        } else if server.is_none() {
            server = AppServer::start(listen, Arc::clone(&handler)).ok();
        }
    }
    drop(server);
}

fn main() -> Result<()> {
    let a = args()?;
    let text = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new({
            let b = app_body(300, false);
            move |_| Reply::text(b.clone())
        }),
    )?;
    let om = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new({
            let b = app_body(300, true);
            move |_| Reply::openmetrics(b.clone())
        }),
    )?;
    let flap_port = meshmetrics_e2e::free_port();
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (phase, stop) = (Arc::clone(&phase), Arc::clone(&stop));
        let every = Duration::from_secs(a.phase_seconds);
        std::thread::spawn(move || flapping(flap_port, phase, stop, every))
    };
    let flap_addr: SocketAddr = ([127, 0, 0, 1], flap_port).into();
    let bench = start(a.clusters, &[text.addr, om.addr, flap_addr], true);
    let pid = bench.envoy.pid();
    let url = bench.metrics.clone();
    let headers = [
        ("accept", ACCEPT),
        ("x-prometheus-scrape-timeout-seconds", "2"),
    ];
    let first = try_request("GET", &url, &headers).context("first scrape")?;
    let output = first.body.len();

    let samples: Arc<Mutex<Vec<(u16, Duration)>>> = Arc::default();
    let memory: Arc<Mutex<Vec<(String, f64, f64)>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    std::thread::scope(|s| {
        for _ in 0..a.scrapers {
            let (samples, url) = (Arc::clone(&samples), url.clone());
            s.spawn(move || {
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let status = try_request("GET", &url, &headers).map_or(0, |r| r.status);
                    if let Ok(mut v) = samples.lock() {
                        v.push((status, t.elapsed()));
                    }
                }
            });
        }
        // Readings at start, middle and end (a scrape of its own gives the wasm memory).
        let memory = Arc::clone(&memory);
        let url = url.clone();
        s.spawn(move || {
            for (name, at) in [
                ("start", 1),
                ("middle", a.seconds / 2),
                ("end", a.seconds - 1),
            ] {
                let when = started + Duration::from_secs(at.max(1));
                while Instant::now() < when {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let wasm = try_request("GET", &url, &headers)
                    .map_or(0.0, |r| wasm_memory(&r.body).unwrap_or(0.0));
                let (rss, _) = rss_mb(pid);
                if let Ok(mut m) = memory.lock() {
                    m.push((name.to_owned(), rss, wasm / 1e6));
                }
            }
        });
    });
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = flapper.join();

    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let non_200 = samples.iter().filter(|(s, _)| *s != 200).count();
    let mut times: Vec<Duration> = samples.iter().map(|(_, d)| *d).collect();
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let memory = memory.lock().map(|m| m.clone()).unwrap_or_default();
    let max_wasm = memory.iter().map(|m| m.2).fold(0.0, f64::max);
    let out_mb = output as f64 / 1e6;
    println!(
        "Soak: Envoy with {} clusters, 3 apps (one flapping {} every {} s), {} scrapers for {:.0} s, Accept as Prometheus, 2 s scrape timeout.\n",
        a.clusters,
        PHASES.join(" / "),
        a.phase_seconds,
        a.scrapers,
        elapsed
    );
    println!("| scrapes | scrapes/s | non-200 | p50 | p99 | one scrape's output |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {} | {:.1} ms | {:.1} ms | {:.2} MB |\n",
        samples.len(),
        samples.len() as f64 / elapsed,
        non_200,
        at(0.5),
        at(0.99),
        out_mb
    );
    println!("| when | Envoy RSS | wasm memory | wasm memory / output |");
    println!("|---|---|---|---|");
    for (name, rss, wasm) in &memory {
        println!(
            "| {name} | {rss:.0} MB | {wasm:.1} MB | {:.2} × |",
            wasm / out_mb
        );
    }
    let rss_mid = memory.get(1).map_or(0.0, |m| m.1);
    let rss_end = memory.get(2).map_or(0.0, |m| m.1);
    println!();
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!("{} 0 non-200 ({non_200})", verdict(non_200 == 0));
    println!(
        "{} wasm memory ≤ 1.5 × one scrape's output ({:.2} ×)",
        verdict(max_wasm <= 1.5 * out_mb),
        max_wasm / out_mb
    );
    println!(
        "{} Envoy RSS flat in the second half ({rss_mid:.0} → {rss_end:.0} MB)",
        verdict(rss_end <= rss_mid * 1.05 + 5.0)
    );
    std::fs::create_dir_all("target/soak")?;
    std::fs::write(
        "target/soak/results.json",
        serde_json::to_string_pretty(&json!({
            "clusters": a.clusters, "scrapers": a.scrapers, "seconds": elapsed,
            "scrapes": samples.len(), "non_200": non_200,
            "p50_ms": at(0.5), "p99_ms": at(0.99), "output_bytes": output,
            "memory": memory.iter().map(|(n, r, w)| json!({"when": n, "envoy_rss_mb": r, "wasm_mb": w})).collect::<Vec<_>>(),
        }))?,
    )?;
    Ok(())
}
