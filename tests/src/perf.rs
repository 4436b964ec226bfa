//! What the benchmark and soak tools share: a real Envoy with N clusters and the filter, and
//! readings of a process from `/proc`.

use std::net::SocketAddr;
use std::time::Duration;

use meshmetrics::bootstrap::{self, Options};
use serde_json::json;

use crate::{Envoy, effective_of, free_port, resources, wasm};

/// Median and 95th percentile, in milliseconds.
pub fn spread(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.95))
}

/// CPU seconds (user + system) of a process so far, in clock ticks (10 ms): counts the
/// threads that exited too (a control plane's blocking pool), for windows of seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) the live threads of a process have run, to the nanosecond: for
/// one scrape.
///
/// Summed over `/proc/<pid>/task/*/schedstat` (its first field is the thread's time on a CPU,
/// in ns). [`cpu_seconds`] counts 10 ms ticks: one scrape at N = 100 is ~13 ms of CPU, so a
/// tick-based reading per scrape is 0, 10 or 20 ms, and its mean over 20 rounds moved by
/// ±30 % between runs. Envoy's threads live as long as it does, so none takes its time away.
pub fn thread_cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// (VmRSS, VmHWM) of a process, in MB.
pub fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// A proxy with N idle clusters (their stats rendered: `usedOnly` off) and these apps.
pub struct Bench {
    pub envoy: Envoy,
    pub admin: String,
    pub metrics: String,
    /// With [`start_with_hop`]: Envoy's admin reached through a listener like the metrics one
    /// with the router alone (no filter), the hop a streamed scrape takes.
    pub hop: Option<String>,
}

pub fn start(clusters: usize, apps: &[SocketAddr], with_filter: bool) -> Bench {
    start_with(clusters, apps, with_filter, |_| {})
}

/// [`start`], with the filter's options tuned (e.g. Envoy's stats streamed or dispatched,
/// `opts.envoy_body`).
pub fn start_with(
    clusters: usize,
    apps: &[SocketAddr],
    with_filter: bool,
    tune: impl FnOnce(&mut Options),
) -> Bench {
    launch(clusters, apps, with_filter, tune, false)
}

/// [`start_with`], and a second listener that is the metrics one without the filter: its route
/// takes any `GET /stats/prometheus` to Envoy's admin. What a streamed scrape costs over a
/// direct admin scrape is the router's hop (one more HTTP/1 connection, Envoy's body read and
/// written again) plus the filter; this listener measures the hop alone. It adds its own
/// listener stats (~60 lines) to Envoy's render.
pub fn start_with_hop(
    clusters: usize,
    apps: &[SocketAddr],
    tune: impl FnOnce(&mut Options),
) -> Bench {
    launch(clusters, apps, true, tune, true)
}

fn launch(
    clusters: usize,
    apps: &[SocketAddr],
    with_filter: bool,
    tune: impl FnOnce(&mut Options),
    hop: bool,
) -> Bench {
    let aggregate: String = apps
        .iter()
        .enumerate()
        .map(|(i, a)| format!("      - {{name: app-{i}, port: {}}}\n", a.port()))
        .collect();
    let aggregate = if apps.is_empty() {
        String::new()
    } else {
        format!("      aggregate:\n{aggregate}")
    };
    let yaml = format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n      skipMTLS: true\n{aggregate}---\ntype: Dataplane\nmesh: default\nname: bench\nnetworking: {{address: 127.0.0.1, inbound: [{{port: 80}}]}}\n"
    );
    let mut e = effective_of(&resources(&yaml), "bench");
    e.port = free_port();
    let mut opts = Options::new(wasm());
    opts.admin_port = free_port();
    opts.timeout_ms = 60_000;
    tune(&mut opts);
    let mut config = bootstrap::bootstrap(&e, &opts).expect("bootstrap").config;
    add_clusters(&mut config, clusters);
    if !with_filter {
        config["static_resources"]["listeners"] = json!([]);
    }
    let hop = hop.then(|| {
        let port = free_port();
        let listeners = config["static_resources"]["listeners"]
            .as_array_mut()
            .expect("listeners");
        let mut router_only = listeners[0].clone();
        router_only["name"] = json!("hop");
        router_only["address"]["socket_address"]["port_value"] = json!(port);
        keep_router_only(&mut router_only);
        listeners.push(router_only);
        format!("http://127.0.0.1:{port}/stats/prometheus")
    });
    let metrics: SocketAddr = ([127, 0, 0, 1], e.port).into();
    let envoy = Envoy::start_config("bench", &config, opts.admin_port, metrics, with_filter);
    Bench {
        admin: format!("http://127.0.0.1:{}/stats/prometheus", opts.admin_port),
        metrics: format!("http://{metrics}{}", e.path),
        envoy,
        hop,
    }
}

/// Adds `n` idle clusters to a bootstrap (`service-00000_default_svc_8080`, ...): the shape of
/// a large mesh's proxy, whose stats Envoy renders.
pub fn add_clusters(config: &mut serde_json::Value, n: usize) {
    let Some(list) = config["static_resources"]["clusters"].as_array_mut() else {
        return;
    };
    for i in 0..n {
        let name = format!("service-{i:05}_default_svc_8080");
        list.push(json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint":
                {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]}
        }));
    }
}

/// A benchmark tool's numeric flags (`--name value`), each with its default, in order: an
/// unknown flag or a value that is not a number is an error listing them.
pub fn numeric_flags<const N: usize>(defaults: [(&str, u64); N]) -> anyhow::Result<[u64; N]> {
    let mut values = defaults.map(|(_, v)| v);
    let usage = || {
        defaults
            .iter()
            .map(|(n, v)| format!("--{n} {v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(i) = defaults
            .iter()
            .position(|(n, _)| flag.strip_prefix("--") == Some(*n))
        else {
            anyhow::bail!("unknown argument {flag:?} ({})", usage());
        };
        values[i] = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a number ({})", usage()))?;
    }
    Ok(values)
}

/// In a listener's configuration: every HTTP filter but the router dropped (and the module's
/// network filter), and every route taken by any request on its path (the admin route wants
/// the filter's header).
fn keep_router_only(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(filters)) = m.get_mut("http_filters") {
                filters.retain(|f| f["name"] == "envoy.filters.http.router");
            }
            if let Some(Value::Array(filters)) = m.get_mut("filters") {
                filters.retain(|f| f["name"] != "envoy.filters.network.wasm");
            }
            if let Some(Value::Object(matcher)) = m.get_mut("match") {
                matcher.remove("headers");
            }
            m.values_mut().for_each(keep_router_only);
        }
        Value::Array(a) => a.iter_mut().for_each(keep_router_only),
        _ => {}
    }
}
