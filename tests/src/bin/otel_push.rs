//! `scripts/bench --otel`: what one OTLP push costs Envoy, against one scrape of the same data.
//!
//! One real Envoy with `--clusters` (2,000) clusters, every stat rendered, the Basic profile, and
//! an OpenTelemetry backend pushing every `--interval` seconds (5) to a real OTLP receiver
//! (`tests/otlp_receiver.py`). Envoy's CPU is read (its threads' `schedstat`) between one push's
//! arrival (all its requests) and the next: one push, plus what an idle Envoy does in an
//! interval (its stats flush). In each interval, once the push is in, the same Envoy is scraped
//! on the same rules' Prometheus listener, once in text and once in OpenMetrics, each read around
//! itself and taken out of the interval: push and scrape are measured side by side, so the
//! machine's drift over minutes moves both. The pushing VM's memory
//! (`meshmetrics_otel_vm_memory_bytes`, which it sets after each push), against the largest VM
//! that answers scrapes (`meshmetrics_wasm_memory_bytes`) on an Envoy where none pushes.
//!
//! Then an idle Envoy of the same clusters (no push, no sink) for the CPU of an interval with
//! nothing to send: the push's cost is what goes beyond it, and so is the sink's.
//!
//! Beside it, the anchor SPEC §11 names: Envoy's own OpenTelemetry stat sink
//! (`envoy.stat_sinks.open_telemetry`), set in a bootstrap with the same clusters, flushing every
//! interval to a second receiver: Envoy's CPU from one of its exports to the next, measured the
//! same way. It pushes every stat of Envoy's (no profile, no apps) straight from the stats store.
//! Prints Markdown, writes `target/bench/otel.json`. Measurements, never assertions.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshmetrics::bootstrap::{self, Options};
use meshmetrics::effective::effective;
use meshmetrics_e2e::perf::{add_clusters, numeric_flags, spread, thread_cpu_seconds};
use meshmetrics_e2e::{
    Envoy, free_port, get, resources, sample_value, temp_dir, wasm, wasm_memory, workspace_root,
};
use serde_json::json;

fn main() -> Result<()> {
    let [clusters, interval, pushes, scrapes] = numeric_flags([
        ("clusters", 2000),
        ("interval", 5),
        ("pushes", 8),
        ("scrapes", 10),
    ])?;
    let (clusters, interval) = (clusters as usize, interval.max(1));
    let (pushes, scrapes) = (pushes.max(2) as usize, scrapes.max(1) as usize);
    let dir = temp_dir("otel-bench");
    let port = free_port();
    let out = dir.join("exports.jsonl");
    let mode = dir.join("mode");
    std::fs::write(&mode, "quiet")?;
    let receive = |port: u16, out: &std::path::Path| -> Result<std::process::Child> {
        Command::new(workspace_root().join(".venv/bin/python"))
            .arg(workspace_root().join("tests/otlp_receiver.py"))
            .args([
                &port.to_string(),
                out.to_str().context("UTF-8")?,
                mode.to_str().context("UTF-8")?,
            ])
            .stdout(Stdio::null())
            .spawn()
            .context("start the OTLP receiver")
    };
    let mut receiver = receive(port, &out)?;
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
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    // Two scrapes of the same data in each interval, once the push is in: in text (Envoy's
    // families pass untouched) and in OpenMetrics, which Prometheus asks for first by default
    // (every line read and written).
    const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";
    let (mut per_scrape, mut per_scrape_om) = (Vec::new(), Vec::new());
    let mut scrape_both = || -> Result<Duration> {
        let mut own = Duration::ZERO;
        for (accept, per) in [
            ("text/plain", &mut per_scrape),
            (OPENMETRICS, &mut per_scrape_om),
        ] {
            let c = thread_cpu_seconds(pid);
            let s = get(&url, &[("accept", accept)]);
            std::thread::sleep(Duration::from_millis(3));
            let took = Duration::from_secs_f64((thread_cpu_seconds(pid) - c).max(0.0));
            per.push(took);
            own += took;
            if s.status != 200 {
                bail!("scrape ({accept}): {}", s.status);
            }
        }
        Ok(own)
    };
    let per_push = per_export(&envoy, &out, interval, pushes, &mut scrape_both)?;
    let (whole, requests) = whole_pushes(&out);
    let requests_per_push = requests as f64 / whole.max(1) as f64;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let last = get(&url, &[("accept", "text/plain")]);
    // The pushing VM, as it reports itself in shared data: whichever worker answers.
    let vm_pushing = self_value(&last.body, "meshmetrics_otel_vm_memory_bytes ");
    let sent = self_value(&last.body, "meshmetrics_otel_sent_bytes_total ");
    let pushed = self_value(&last.body, "meshmetrics_otel_pushes_total ");
    let _ = receiver.kill();
    let _ = receiver.wait();
    drop(envoy);
    let (push_ms, _) = spread(per_push);

    // The anchor: Envoy's own OpenTelemetry stat sink, every stat, same clusters and interval.
    let sink_port = free_port();
    let sink_out = dir.join("sink-exports.jsonl");
    let mut sink_receiver = receive(sink_port, &sink_out)?;
    let plain = yaml.replace(
        &format!("    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{port}', refreshInterval: {interval}s}}}}\n"),
        "",
    );
    let (e, _) = effective(&resources(&plain), "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut opts = Options::new(wasm());
    opts.admin_port = free_port();
    let mut config = bootstrap::bootstrap(&e, &opts)?.config;
    add_clusters(&mut config, clusters);
    with_stat_sink(&mut config, sink_port, interval);
    let sink = Envoy::start_config(
        "otel-bench-sink",
        &config,
        opts.admin_port,
        ([127, 0, 0, 1], free_port()).into(),
        false,
    );
    let per_sink = per_export(&sink, &sink_out, interval, pushes, &mut || {
        Ok(Duration::ZERO)
    })?;
    // The scraping VMs, on this Envoy where no VM pushes: the largest any scrape reports, in
    // text (Envoy's families passed through) and in OpenMetrics (every line merged).
    let sink_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let mut vm_text: f64 = 0.0;
    let mut vm_om: f64 = 0.0;
    for _ in 0..scrapes {
        let t = get(&sink_url, &[("accept", "text/plain")]);
        vm_text = vm_text.max(wasm_memory(&t.body).unwrap_or(0.0));
        let o = get(
            &sink_url,
            &[("accept", "application/openmetrics-text; version=1.0.0")],
        );
        vm_om = vm_om.max(wasm_memory(&o.body).unwrap_or(0.0));
    }
    let sink_request = std::fs::read_to_string(&sink_out)
        .ok()
        .and_then(|s| {
            let sizes: Vec<f64> = s
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["bytes"].as_f64())
                .collect();
            (!sizes.is_empty()).then(|| sizes.iter().sum::<f64>() / sizes.len() as f64)
        })
        .unwrap_or(0.0);
    let _ = sink_receiver.kill();
    let _ = sink_receiver.wait();
    drop(sink);
    let (sink_ms, _) = spread(per_sink);

    // What an idle Envoy of the same clusters spends in an interval (its stats flush, timers):
    // in both figures above, and the push's or the sink's cost is what goes beyond it.
    let mut config = bootstrap::bootstrap(&e, &opts)?.config;
    add_clusters(&mut config, clusters);
    config["stats_flush_interval"] = json!(format!("{interval}s"));
    let idle = Envoy::start_config(
        "otel-bench-idle",
        &config,
        opts.admin_port,
        ([127, 0, 0, 1], free_port()).into(),
        false,
    );
    std::thread::sleep(Duration::from_secs(interval));
    let mut per_idle = Vec::new();
    for _ in 0..pushes {
        let c = thread_cpu_seconds(idle.pid());
        std::thread::sleep(Duration::from_secs(interval));
        per_idle.push(Duration::from_secs_f64(
            (thread_cpu_seconds(idle.pid()) - c).max(0.0),
        ));
    }
    drop(idle);
    let (idle_ms, _) = spread(per_idle);
    let push_net = (push_ms - idle_ms).max(0.0);
    let sink_net = (sink_ms - idle_ms).max(0.0);
    let (scrape_ms, _) = spread(per_scrape);
    let (scrape_om_ms, _) = spread(per_scrape_om);
    let request = if pushed > 0.0 { sent / pushed } else { 0.0 };
    println!(
        "N = {clusters} clusters, every stat, the Basic profile; a push every {interval} s to a real OTLP receiver; {pushes} pushes, each interval's two scrapes (text, OpenMetrics) beside its push on the same Envoy; medians.\n"
    );
    println!(
        "| Envoy CPU per push interval / an idle Envoy's / the push (the difference) | per scrape of the same rules, text / OpenMetrics | push / scrape, text / OpenMetrics | OTLP push, in requests | scrape body | VM: the pushing one / the largest scraping one, text / OpenMetrics | Envoy's own OTel stat sink (every stat): CPU per interval / beyond idle / its request |\n|---|---|---|---|---|---|---|"
    );
    println!(
        "| {push_ms:.1} / {idle_ms:.1} / **{push_net:.1} ms** | {scrape_ms:.1} / {scrape_om_ms:.1} ms | **{:.2}** / **{:.2}** | {:.1} MB in {requests_per_push:.0} | {:.1} MB | {:.1} MB / {:.1} MB, {:.1} MB | {sink_ms:.1} / {sink_net:.1} ms / {} |",
        push_net / scrape_ms.max(1e-9),
        push_net / scrape_om_ms.max(1e-9),
        request / 1e6,
        last.body.len() as f64 / 1e6,
        vm_pushing / (1 << 20) as f64,
        vm_text / (1 << 20) as f64,
        vm_om / (1 << 20) as f64,
        if sink_request > 0.0 {
            format!("{:.1} MB", sink_request / 1e6)
        } else {
            "size not recorded".to_owned()
        },
    );
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("otel.json"),
        serde_json::to_string_pretty(&json!({
            "clusters": clusters, "interval_s": interval, "push_cpu_ms": push_ms,
            "scrape_cpu_ms": scrape_ms, "scrape_openmetrics_cpu_ms": scrape_om_ms, "push_bytes": request, "requests_per_push": requests_per_push, "received_bytes_json": bytes,
            "vm_pushing": vm_pushing, "vm_scraping_text": vm_text, "vm_scraping_openmetrics": vm_om,
            "envoy_stat_sink_cpu_ms": sink_ms, "envoy_stat_sink_request_bytes": sink_request,
            "idle_cpu_ms_per_interval": idle_ms, "push_net_cpu_ms": push_net,
        }))?,
    )?;
    Ok(())
}

/// A self-metric's value in a scrape (0 when absent).
fn self_value(body: &str, prefix: &str) -> f64 {
    sample_value(body, prefix).unwrap_or(0.0)
}

/// The pushes the receiver has had whole, and the requests they came in: a push is requests
/// received less than a second apart, whole once its last is a second old.
fn whole_pushes(out: &std::path::Path) -> (usize, usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let at: Vec<f64> = std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["received_at"].as_f64())
        .collect();
    let Some(last) = at.last() else {
        return (0, 0);
    };
    let starts = 1 + at.windows(2).filter(|w| w[1] - w[0] >= 1.0).count();
    let whole = if now - last >= 1.0 {
        starts
    } else {
        starts - 1
    };
    (whole, at.len())
}

/// Envoy's CPU from one push's arrival at the receiver (its requests, lines of `out`) to the
/// next, for `n` pushes: one push, plus what an idle Envoy does in an interval.
///
/// `between` runs once each push is in, before the next: what it returns (the CPU of its own
/// work, measured around it) is taken out of the interval.
fn per_export(
    envoy: &Envoy,
    out: &std::path::Path,
    interval: u64,
    n: usize,
    between: &mut dyn FnMut() -> Result<Duration>,
) -> Result<Vec<Duration>> {
    let exports = || whole_pushes(out).0;
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
    let pid = envoy.pid();
    let mut per = Vec::new();
    let mut cpu = thread_cpu_seconds(pid);
    let mut seen = exports();
    for _ in 0..n {
        if !wait_for(seen + 1) {
            bail!("an export did not arrive; {}", envoy.log());
        }
        seen = exports();
        let own = between()?;
        let now = thread_cpu_seconds(pid);
        per.push(Duration::from_secs_f64((now - cpu).max(0.0)).saturating_sub(own));
        cpu = now;
    }
    Ok(per)
}

/// Envoy's own OpenTelemetry stat sink, flushing every `interval` seconds over gRPC to the
/// receiver on `port` (an HTTP/2 cluster of its own).
fn with_stat_sink(config: &mut serde_json::Value, port: u16, interval: u64) {
    config["stats_flush_interval"] = json!(format!("{interval}s"));
    config["stats_sinks"] = json!([{
        "name": "envoy.stat_sinks.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otel_stat_sink"}}
        }
    }]);
    if let Some(list) = config["static_resources"]["clusters"].as_array_mut() {
        list.push(json!({
            "name": "otel_stat_sink", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }},
            "load_assignment": {"cluster_name": "otel_stat_sink", "endpoints": [{"lb_endpoints": [{"endpoint":
                {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        }));
    }
}
