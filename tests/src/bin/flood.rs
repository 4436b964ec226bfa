//! `scripts/bench --flood`: what a flood of the metrics port costs Envoy, on loopback only.
//!
//! A real Envoy with the filter and one app answering ~8.9 MB (a ~9 MB merged answer, Envoy's
//! stats included), as in the robustness tests. After four warm-up scrapes (a sidecar that has
//! been scraped: its VMs have grown to one answer), Envoy's RSS is the baseline; then, one after
//! another, each with its own peak:
//!
//! 1. `--scrapers` (100) concurrent scrapes by patient scrapers (30 s timeout): statuses, the
//!    peak RSS against the baseline, in answers (goal: ≤ 4);
//! 2. `--idle` (1,000) connections that send nothing, re-opened as Envoy closes them, for 6 s,
//!    with a normal scrape in the middle (goal: ≤ 50 MB, the scrape 200);
//! 3. `--slow` (20) scrapers reading 16 KiB every 100 ms for 10 s, with a normal scrape in the
//!    middle: what slow readers hold (reported; their bound is the connection limit).
//!
//! Prints Markdown and writes `target/bench/flood.json`. Measurements, never assertions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use meshmetrics_e2e::perf::{numeric_flags, rss_mb};
use meshmetrics_e2e::{
    Backend, Proxy, Reply, app, effective_of, mesh_yaml, request, resources, wasm_memory,
};
use serde_json::json;

struct Args {
    scrapers: usize,
    idle: usize,
    slow: usize,
}

fn args() -> Result<Args> {
    let [scrapers, idle, slow] = numeric_flags([("scrapers", 100), ("idle", 1000), ("slow", 20)])?;
    Ok(Args {
        scrapers: scrapers as usize,
        idle: idle as usize,
        slow: slow as usize,
    })
}

/// Samples `pid`'s RSS every 10 ms while `work` runs: (what `work` returned, the peak in MB).
fn peak_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, f64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut peak: f64 = 0.0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_mb(pid).0);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let out = work();
        stop.store(true, Ordering::Relaxed);
        (out, watcher.join().unwrap_or(0.0))
    })
}

const PATIENT: (&str, &str) = ("x-prometheus-scrape-timeout-seconds", "30");

/// A raw HTTP/1.1 scrape read `chunk` bytes every `every`, for at most `for_`: the bytes read.
fn slow_read(addr: SocketAddr, path: &str, chunk: usize, every: Duration, for_: Duration) -> usize {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\n{}: {}\r\nconnection: close\r\n\r\n",
        PATIENT.0, PATIENT.1
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let (mut buf, mut total, started) = (vec![0u8; chunk], 0, Instant::now());
    while started.elapsed() < for_ {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(_) => {}
        }
        std::thread::sleep(every);
    }
    total
}

fn main() -> Result<()> {
    let a = args()?;
    let line = "app_requests_total{path=\"/api/v1/orders/items\",code=\"200\",i=\"";
    let body: String = (0..120_000)
        .map(|i| format!("{line}{i:06}\"}} {i}\n"))
        .collect();
    let big = app(Reply::text(body));
    let yaml = mesh_yaml(&[("big", big.addr.port())], "", "");
    let proxy = Proxy::start(
        Backend::Envoy,
        effective_of(&resources(&yaml), "backend-1"),
        |o| o.timeout_ms = 30_000,
    );
    let url = proxy.url(&proxy.path);
    let pid = proxy.envoy_pid();
    std::thread::sleep(Duration::from_secs(1));
    let fresh = rss_mb(pid).0;
    let (mut answer, mut vm_idle) = (0.0, 0.0);
    for _ in 0..4 {
        let s = request("GET", &url, &[PATIENT]);
        if s.status != 200 {
            bail!("warm-up scrape: {}", s.status);
        }
        answer = s.body.len() as f64 / (1 << 20) as f64;
        vm_idle = wasm_memory(&s.body).unwrap_or(0.0) / (1 << 20) as f64;
    }
    // And as an HA pair scrapes: two at the same moment, a few times (each worker's VM then
    // holds what two identical scrapes at once need).
    for _ in 0..4 {
        std::thread::scope(|s| {
            let pair: Vec<_> = (0..2)
                .map(|_| s.spawn(|| request("GET", &url, &[PATIENT]).status))
                .collect();
            for h in pair {
                let _ = h.join();
            }
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mb(pid).0;
    let mut rows = Vec::new();
    let mut report = json!({
        "answer_mb": answer, "fresh_rss_mb": fresh, "idle_rss_mb": idle, "idle_vm_mb": vm_idle,
    });

    // 1. The flood.
    let started = Instant::now();
    let ((statuses, normal), peak) = peak_during(pid, || {
        std::thread::scope(|s| {
            let flood: Vec<_> = (0..a.scrapers)
                .map(|_| s.spawn(|| request("GET", &url, &[PATIENT]).status))
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let normal = request("GET", &url, &[PATIENT]).status;
            let statuses: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap_or(0)).collect();
            (statuses, normal)
        })
    });
    let took = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let other = statuses.len() - ok - refused;
    let after = request("GET", &url, &[PATIENT]);
    let vm = wasm_memory(&after.body).unwrap_or(0.0) / (1 << 20) as f64;
    let grew = peak - idle;
    rows.push(format!(
        "| {} concurrent scrapes of a {answer:.1} MB answer | +{grew:.0} MB ({:.1} answers; goal ≤ 4); +{:.0} MB ({:.1} answers) over Envoy before any scrape | {ok} × 200, {refused} × 503 + Retry-After, {other} other, in {took:.1} s; a scrape mid-flood: {normal}; after: {} (a worker's VM {vm:.0} MB) |",
        a.scrapers,
        grew / answer,
        peak - fresh,
        (peak - fresh) / answer,
        after.status
    ));
    report["flood"] = json!({
        "scrapers": a.scrapers, "peak_rss_mb": peak, "grew_mb": grew, "answers": grew / answer,
        "ok": ok, "refused": refused, "other": other, "normal": normal, "after": after.status,
        "vm_mb": vm, "seconds": took,
    });
    std::thread::sleep(Duration::from_secs(3));

    // 2. Idle connections, held open (re-opened as Envoy closes them).
    let base = rss_mb(pid).0;
    let addr = proxy.metrics;
    let ((held, normal), peak) = peak_during(pid, || {
        let mut conns: Vec<TcpStream> = (0..a.idle)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        let held = conns.len();
        let started = Instant::now();
        let mut normal = 0;
        while started.elapsed() < Duration::from_secs(6) {
            if normal == 0 && started.elapsed() > Duration::from_secs(3) {
                normal = request("GET", &url, &[PATIENT]).status;
            }
            for c in &mut conns {
                let _ = c.set_nonblocking(true);
                let mut b = [0u8; 1];
                if matches!(c.read(&mut b), Ok(0))
                    && let Ok(n) = TcpStream::connect(addr)
                {
                    *c = n;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (held, normal)
    });
    let grew = peak - base;
    rows.push(format!(
        "| {held} idle connections held open for 6 s | +{grew:.1} MB (goal ≤ 50 MB) | a scrape meanwhile: {normal} |"
    ));
    report["idle"] = json!({ "connections": held, "grew_mb": grew, "normal": normal });
    std::thread::sleep(Duration::from_secs(3));

    // 3. Slow readers.
    let base = rss_mb(pid).0;
    let path = proxy.path.clone();
    let ((read, normal), peak) = peak_during(pid, || {
        std::thread::scope(|s| {
            let slow: Vec<_> = (0..a.slow)
                .map(|_| {
                    s.spawn(|| {
                        slow_read(
                            addr,
                            &path,
                            16 << 10,
                            Duration::from_millis(100),
                            Duration::from_secs(10),
                        )
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs(3));
            let normal = request("GET", &url, &[PATIENT]).status;
            let read: usize = slow.into_iter().map(|h| h.join().unwrap_or(0)).sum();
            (read, normal)
        })
    });
    let grew = peak - base;
    rows.push(format!(
        "| {} slow readers (16 KiB / 100 ms) for 10 s | +{grew:.0} MB ({:.1} answers) | they read {:.1} MB in all; a scrape meanwhile: {normal} |",
        a.slow,
        grew / answer,
        read as f64 / (1 << 20) as f64
    ));
    report["slow"] =
        json!({ "readers": a.slow, "grew_mb": grew, "read_bytes": read, "normal": normal });
    let alive = request("GET", &url, &[PATIENT]).status;
    report["alive_after"] = json!(alive);

    println!(
        "Envoy before any scrape: {fresh:.0} MB; idle after 4 scrapes and 4 HA pairs' scrapes: {idle:.0} MB (a worker's VM {vm_idle:.0} MB); one answer: {answer:.1} MB; a scrape at the end: {alive}\n"
    );
    println!("| what | Envoy's RSS | answers |\n|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    let dir = meshmetrics_e2e::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("flood.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}
