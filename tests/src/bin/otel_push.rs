//! `scripts/bench --otel`: what one OTLP push costs Envoy, against one scrape of the same data.
//!
//! One real Envoy with `--clusters` (2,000) clusters, every stat rendered, the Basic profile, and
//! an OpenTelemetry backend pushing every `--interval` seconds (5) to a real OTLP receiver
//! (`tests/otlp_receiver.py`). Envoy's CPU is read (its threads' `schedstat`) between one export's
//! arrival and the next: one push, plus what an idle Envoy does in an interval (its stats
//! flush: small, and left in, so the ratio is if anything too high). Then `--scrapes` scrapes of the same rules' Prometheus listener, each
//! read around itself. The VM's memory (`meshmetrics_wasm_memory_bytes`) after the pushes, before
//! any scrape, and after the scrapes. Prints Markdown, writes `target/bench/otel.json`.
//! Measurements, never assertions.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshmetrics::bootstrap::{self, Options};
use meshmetrics::effective::effective;
use meshmetrics_e2e::perf::{add_clusters, numeric_flags, spread, thread_cpu_seconds};
use meshmetrics_e2e::{
    Envoy, free_port, get, resources, temp_dir, wasm, wasm_memory, workspace_root,
};
use serde_json::json;

fn main() -> Result<()> {
    let [clusters, interval, pushes, scrapes] = numeric_flags([
        ("clusters", 2000),
        ("interval", 5),
        ("pushes", 6),
        ("scrapes", 10),
    ])?;
    let (clusters, interval) = (clusters as usize, interval.max(1));
    let (pushes, scrapes) = (pushes.max(2) as usize, scrapes.max(1) as usize);
    let dir = temp_dir("otel-bench");
    let port = free_port();
    let out = dir.join("exports.jsonl");
    let mode = dir.join("mode");
    std::fs::write(&mode, "quiet")?;
    let mut receiver = Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("tests/otlp_receiver.py"))
        .args([
            &port.to_string(),
            out.to_str().context("UTF-8")?,
            mode.to_str().context("UTF-8")?,
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("start the OTLP receiver")?;
    let metrics_port = free_port();
    let yaml = format!(
        "type: MeshMetric\nname: m\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    sidecar:\n      includeUnused: true\n      profiles:\n        appendProfiles: [{{name: Basic}}]\n    backends:\n    - {{type: Prometheus, prometheus: {{port: {metrics_port}}}}}\n    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{port}', refreshInterval: {interval}s}}}}\n---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: bench\nnetworking: {{address: 127.0.0.1, inbound: [{{port: 80, tags: {{kuma.io/service: bench}}}}]}}\n"
    );
    let (e, _) = effective(&resources(&yaml), "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut opts = Options::new(wasm());
    opts.admin_port = free_port();
    opts.timeout_ms = 60_000;
    let mut config = bootstrap::bootstrap(&e, &opts)?.config;
    add_clusters(&mut config, clusters);
    let envoy = Envoy::start_config(
        "otel-bench",
        &config,
        opts.admin_port,
        ([127, 0, 0, 1], metrics_port).into(),
        true,
    );
    let pid = envoy.pid();
    let exports = || {
        std::fs::read_to_string(&out)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let wait_for = |n: usize| {
        let until = Instant::now() + Duration::from_secs(interval * 4 + 30);
        while exports() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        exports() >= n
    };
    if !wait_for(2) {
        bail!("no exports arrived; {}", envoy.log());
    }
    // Per push: Envoy's CPU from one export's arrival to the next.
    let mut per_push = Vec::new();
    let mut cpu = thread_cpu_seconds(pid);
    let mut at = Instant::now();
    let mut n = exports();
    for _ in 0..pushes {
        if !wait_for(n + 1) {
            bail!("an export did not arrive");
        }
        n = exports();
        let now = thread_cpu_seconds(pid);
        per_push.push((now - cpu, at.elapsed()));
        cpu = now;
        at = Instant::now();
    }
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    // The VM before any scrape: the first scrape reports it, with its own growth on top.
    let first = get(&url, &[("accept", "text/plain")]);
    let vm_after_pushes = wasm_memory(&first.body).unwrap_or(0.0);
    let mut per_scrape = Vec::new();
    for _ in 0..scrapes {
        let c = thread_cpu_seconds(pid);
        let s = get(&url, &[("accept", "text/plain")]);
        std::thread::sleep(Duration::from_millis(3));
        per_scrape.push(Duration::from_secs_f64(
            (thread_cpu_seconds(pid) - c).max(0.0),
        ));
        if s.status != 200 {
            bail!("scrape: {}", s.status);
        }
    }
    let last = get(&url, &[("accept", "text/plain")]);
    let vm_after_scrapes = wasm_memory(&last.body).unwrap_or(0.0);
    let sent = last
        .body
        .lines()
        .find_map(|l| l.strip_prefix("meshmetrics_otel_sent_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let pushed = last
        .body
        .lines()
        .find_map(|l| l.strip_prefix("meshmetrics_otel_pushes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let _ = receiver.kill();
    let _ = receiver.wait();
    let push_cpu: Vec<Duration> = per_push
        .iter()
        .map(|(c, _)| Duration::from_secs_f64(*c))
        .collect();
    let (push_ms, _) = spread(push_cpu);
    let (scrape_ms, _) = spread(per_scrape);
    let request = if pushed > 0.0 { sent / pushed } else { 0.0 };
    println!(
        "N = {clusters} clusters, every stat, the Basic profile; a push every {interval} s to a real OTLP receiver; {pushes} pushes, {scrapes} scrapes.\n"
    );
    println!(
        "| Envoy CPU per push (median, idle interval included) | per scrape of the same rules | push / scrape | OTLP request | scrape body | VM after pushes / after scrapes |\n|---|---|---|---|---|---|"
    );
    println!(
        "| {push_ms:.1} ms | {scrape_ms:.1} ms | {:.2} | {:.1} MB | {:.1} MB | {:.0} MB / {:.0} MB |",
        push_ms / scrape_ms.max(1e-9),
        request / 1e6,
        last.body.len() as f64 / 1e6,
        vm_after_pushes / (1 << 20) as f64,
        vm_after_scrapes / (1 << 20) as f64,
    );
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("otel.json"),
        serde_json::to_string_pretty(&json!({
            "clusters": clusters, "interval_s": interval, "push_cpu_ms": push_ms,
            "scrape_cpu_ms": scrape_ms, "request_bytes": request, "received_bytes_json": bytes,
            "vm_after_pushes": vm_after_pushes, "vm_after_scrapes": vm_after_scrapes,
        }))?,
    )?;
    drop(envoy);
    Ok(())
}
