//! The OTLP push (SPEC §11) from a real Envoy to a real OTLP/gRPC receiver: grpcio serving the
//! OpenTelemetry project's own MetricsService (`tests/otlp_receiver.py`; no collector binary
//! runs here, this one speaks the same protocol). Exports arrive every interval, one per
//! Envoy (not one per worker); each kind is converted with its exact values; the profile
//! applies; a collector down, refusing, slow or answering garbage leaves scrapes untouched, is
//! counted, and pushes resume.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshmetrics_e2e::controlplane::within;
use meshmetrics_e2e::{
    Backend, Proxy, Reply, app, effective_of, free_port, resources, temp_dir, workspace_root,
};
use serde_json::Value;

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    mode: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        Receiver::start_tls(dir, None)
    }

    /// With `tls` (a certificate and its key), over TLS.
    fn start_tls(dir: &Path, tls: Option<(&Path, &Path)>) -> Receiver {
        std::fs::create_dir_all(dir).expect("receiver's directory");
        let port = free_port();
        let (out, mode) = (dir.join("exports.jsonl"), dir.join("mode"));
        std::fs::write(&mode, "ok").expect("mode");
        let mut child = Command::new(workspace_root().join(".venv/bin/python"))
            .arg(workspace_root().join("tests/otlp_receiver.py"))
            .args([
                &port.to_string(),
                out.to_str().expect("UTF-8"),
                mode.to_str().expect("UTF-8"),
            ])
            .args(tls.into_iter().flat_map(|(c, k)| [c, k]))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver (.venv: grpcio, opentelemetry-proto)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("receiver output");
        assert_eq!(line.trim(), "listening");
        Receiver {
            child,
            port,
            out,
            mode,
        }
    }

    fn set(&self, mode: &str) {
        std::fs::write(&self.mode, mode).expect("mode");
    }

    fn exports(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const APP: &str = "# TYPE queue_depth gauge\nqueue_depth 7\n\
# TYPE orders_total counter\norders_total{code=\"200\"} 42\n\
# TYPE latency_seconds histogram\nlatency_seconds_bucket{le=\"0.1\"} 2\nlatency_seconds_bucket{le=\"1\"} 5\nlatency_seconds_bucket{le=\"+Inf\"} 6\nlatency_seconds_sum 3.5\nlatency_seconds_count 6\n\
# TYPE rpc_seconds summary\nrpc_seconds{quantile=\"0.5\"} 0.2\nrpc_seconds{quantile=\"0.9\"} 0.7\nrpc_seconds_sum 3\nrpc_seconds_count 10\n\
legacy_untyped 4\n";

fn proxy(receiver: &Receiver, app_port: u16) -> Proxy {
    // Two workers, two VMs: one of them pushes.
    meshmetrics_e2e::ENVOY_WORKERS.store(2, std::sync::atomic::Ordering::Relaxed);
    let yaml = format!(
        "type: MeshMetric\nname: otel\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    sidecar:\n      profiles:\n        appendProfiles: [{{name: None}}]\n        include: [{{type: Prefix, match: envoy_server_}}]\n    applications: [{{name: shop, port: {app_port}}}]\n    backends:\n    - {{type: Prometheus, prometheus: {{port: 5670}}}}\n    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{}', refreshInterval: 1s}}}}\n---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18080, tags: {{kuma.io/service: web}}}}]\n",
        receiver.port
    );
    Proxy::start(
        Backend::Envoy,
        effective_of(&resources(&yaml), "web-1"),
        |_| {},
    )
}

/// The metrics of one scope of an export, by name.
fn scope<'a>(export: &'a Value, name: &str) -> Vec<&'a Value> {
    export["resource_metrics"][0]["scope_metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["scope"]["name"] == name)
        .flat_map(|s| s["metrics"].as_array().into_iter().flatten())
        .collect()
}

fn metric<'a>(export: &'a Value, scope_name: &str, name: &str) -> &'a Value {
    scope(export, scope_name)
        .into_iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{scope_name}/{name} not in {export:#}"))
}

#[test]
fn exports_arrive_every_interval_with_each_kind_converted() {
    let dir = temp_dir("otel-kinds");
    let receiver = Receiver::start(&dir);
    let shop = app(Reply::text(APP));
    let proxy = proxy(&receiver, shop.addr.port());
    assert!(
        within(Duration::from_secs(15), || receiver.exports().len() >= 3).is_some(),
        "{}",
        proxy.log()
    );
    let exports = receiver.exports();
    let e = &exports[exports.len() - 1];

    // The proxy's identity is the resource's.
    let resource: Vec<(String, String)> = e["resource_metrics"][0]["resource"]["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap_or("").to_owned(),
                a["value"]["string_value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        resource.contains(&("mesh".into(), "default".into())),
        "{resource:?}"
    );
    assert!(resource.contains(&("dataplane".into(), "web-1".into())));
    assert!(resource.contains(&("service".into(), "web".into())));

    // Each kind, exactly (the application's scope is its name).
    let gauge = metric(e, "shop", "queue_depth");
    assert_eq!(gauge["gauge"]["data_points"][0]["as_double"], 7.0);
    assert!(
        gauge["gauge"]["data_points"][0].get("attributes").is_none(),
        "identity labels are the resource's: {gauge}"
    );
    let sum = &metric(e, "shop", "orders")["sum"];
    assert_eq!(sum["is_monotonic"], true);
    assert_eq!(
        sum["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let point = &sum["data_points"][0];
    assert_eq!(point["as_double"], 42.0);
    assert_eq!(point["attributes"][0]["key"], "code");
    let start: u64 = point["start_time_unix_nano"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let time: u64 = point["time_unix_nano"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(
        start > 0 && start < time,
        "a start before its time: {point}"
    );
    // The start stays across pushes (a cumulative series).
    let first_start =
        metric(&exports[0], "shop", "orders")["sum"]["data_points"][0]["start_time_unix_nano"]
            .clone();
    assert_eq!(point["start_time_unix_nano"], first_start);
    let h = &metric(e, "shop", "latency_seconds")["histogram"]["data_points"][0];
    assert_eq!(
        h["explicit_bounds"],
        serde_json::json!([0.1, 1.0]),
        "+Inf dropped"
    );
    assert_eq!(
        h["bucket_counts"],
        serde_json::json!(["2", "3", "1"]),
        "de-cumulated"
    );
    assert_eq!(
        (h["count"].as_str(), h["sum"].as_f64()),
        (Some("6"), Some(3.5))
    );
    let s = &metric(e, "shop", "rpc_seconds")["summary"]["data_points"][0];
    assert_eq!(
        (s["count"].as_str(), s["sum"].as_f64()),
        (Some("10"), Some(3.0))
    );
    assert_eq!(s["quantile_values"].as_array().map(Vec::len), Some(2));
    let untyped = metric(e, "shop", "legacy_untyped");
    assert_eq!(
        untyped["gauge"]["data_points"][0]["as_double"], 4.0,
        "untyped is a gauge"
    );

    // The profile applies to Envoy's scope: only what `include` names.
    let envoy: Vec<&str> = scope(e, "envoy")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(!envoy.is_empty());
    assert!(
        envoy.iter().all(|n| n.starts_with("envoy_server_")),
        "{envoy:?}"
    );
    // Envoy's counters are monotonic Sums, as Envoy types them in its scrape: those without
    // `_total` too, which OpenMetrics can only call `unknown`.
    let scrape = proxy.scrape(&[]);
    let counters: Vec<&str> = scrape
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE envoy_server_"))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    assert!(
        counters.iter().any(|c| !c.ends_with("_total")),
        "Envoy has counters without _total: {counters:?}"
    );
    for c in counters {
        let name = format!("envoy_server_{}", c.strip_suffix("_total").unwrap_or(c));
        let sums: Vec<&Value> = scope(e, "envoy")
            .into_iter()
            .filter(|m| m["name"] == name.as_str())
            .collect();
        assert!(
            !sums.is_empty() && sums.iter().all(|m| m["sum"]["is_monotonic"] == true),
            "{name}: {sums:?}"
        );
    }

    // One VM pushes, not one per worker: about one export per second.
    let before = receiver.exports().len();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let n = receiver.exports().len() - before;
    let secs = t.elapsed().as_secs_f64();
    assert!(
        (n as f64) <= secs + 2.0 && n >= 2,
        "{n} exports in {secs:.1} s with a 1 s interval"
    );
    // Scrapes show the push.
    let scrape = proxy.scrape(&[]);
    assert!(
        self_count(&scrape.body, "meshmetrics_otel_pushes_total ") >= 3.0,
        "{}",
        scrape.body
    );
    // And the pushing VM's memory, whichever worker answers: at least the wasm module's pages.
    assert!(
        self_count(&scrape.body, "meshmetrics_otel_vm_memory_bytes ") >= 65_536.0,
        "{}",
        scrape.body
    );
}

fn self_count(body: &str, prefix: &str) -> f64 {
    meshmetrics_e2e::sample_value(body, prefix).unwrap_or(0.0)
}

/// A collector down, refusing, slow, or answering garbage: the push is dropped and counted by
/// reason, every scrape still answers, and pushes resume when it is back.
#[test]
fn a_failing_collector_never_touches_scrapes_and_pushes_resume() {
    let dir = temp_dir("otel-faults");
    let receiver = Receiver::start(&dir);
    let shop = app(Reply::text(APP));
    let proxy = proxy(&receiver, shop.addr.port());
    assert!(within(Duration::from_secs(15), || !receiver.exports().is_empty()).is_some());
    for (mode, reason) in [
        ("unavailable", "unavailable"),
        ("exhausted", "resource_exhausted"),
        ("garbage", "bad_response"),
        ("slow", "timeout"),
    ] {
        receiver.set(mode);
        let series = format!("meshmetrics_otel_failures_total{{reason=\"{reason}\"}} ");
        // Generous: CI runs this beside every other test on two cores.
        let counted = within(Duration::from_secs(40), || {
            let s = proxy.scrape(&[]);
            assert_eq!(s.status, 200, "{mode}: a scrape failed");
            assert!(
                s.body.contains("queue_depth{"),
                "{mode}: the app left the scrape"
            );
            self_count(&s.body, &series) >= 1.0
        });
        assert!(
            counted.is_some(),
            "{mode}: not counted as {reason}\n{}",
            proxy.log()
        );
        receiver.set("ok");
        // Back: pushes resume.
        let pushes = self_count(&proxy.scrape(&[]).body, "meshmetrics_otel_pushes_total ");
        assert!(
            within(Duration::from_secs(40), || self_count(
                &proxy.scrape(&[]).body,
                "meshmetrics_otel_pushes_total "
            ) > pushes)
            .is_some(),
            "{mode}: pushes did not resume"
        );
    }
}

/// A push larger than a collector takes in one message (gRPC's default 4 MiB, the OpenTelemetry
/// Collector's too): it arrives whole, in several requests the receiver takes, and is counted
/// as one push without failures. Sent as one request, the receiver would refuse it
/// (RESOURCE_EXHAUSTED).
#[test]
fn a_push_larger_than_a_collector_takes_arrives_in_requests_it_takes() {
    let dir = temp_dir("otel-large");
    let receiver = Receiver::start(&dir);
    // Counts only: 120,000 points as JSON would make the receiver the slow part.
    receiver.set("quiet");
    const SERIES: usize = 120_000;
    let mut big = String::from("# TYPE wide_gauge gauge\n");
    for i in 0..SERIES {
        big.push_str(&format!(
            "wide_gauge{{shard=\"{i}\",zone=\"zone-{}\"}} {i}\n",
            i % 7
        ));
    }
    let shop = app(Reply::text(big));
    let proxy = proxy(&receiver, shop.addr.port());
    // One whole push: its requests (their points all written at the push's time) carry every
    // series: (the push's time, points, the largest request's bytes, requests).
    let whole = || {
        let points = |e: &Value| e["points"]["wide_gauge"].as_u64().unwrap_or(0);
        let mut by_push: Vec<(u64, u64, u64, usize)> = Vec::new();
        for e in &receiver.exports() {
            let time = e["time"].as_u64().unwrap_or(0);
            let bytes = e["bytes"].as_u64().unwrap_or(0);
            match by_push.iter_mut().find(|p| p.0 == time) {
                Some(p) => {
                    p.1 += points(e);
                    p.2 = p.2.max(bytes);
                    p.3 += 1;
                }
                None => by_push.push((time, points(e), bytes, 1)),
            }
        }
        by_push.into_iter().find(|p| p.1 == SERIES as u64)
    };
    within(Duration::from_secs(60), || whole().is_some());
    let body = proxy.scrape(&[]).body;
    let Some((_, _, largest, requests)) = whole() else {
        panic!(
            "no push carried all {SERIES} series: {:?}\n{body}\n{}",
            receiver
                .exports()
                .iter()
                .map(|e| (e["bytes"].clone(), e["points"]["wide_gauge"].clone()))
                .collect::<Vec<_>>(),
            proxy.log()
        )
    };
    assert!(requests > 1, "one request of {largest} bytes");
    assert!(largest < 4 << 20, "a request of {largest} bytes");
    assert!(
        self_count(&body, "meshmetrics_otel_pushes_total ") >= 1.0,
        "{body}"
    );
    for line in body.lines() {
        if line.starts_with("meshmetrics_otel_failures_total{") {
            assert!(line.ends_with(" 0"), "{line}");
        }
    }
    assert!(
        self_count(&body, "meshmetrics_otel_sent_bytes_total ") > (4 << 20) as f64,
        "{body}"
    );
}

/// A MeshMetric with an OpenTelemetry backend alone: nothing to scrape, still pushed (its
/// listener on loopback, on a port Envoy picks), and discovery leaves the proxy out.
#[test]
fn a_proxy_that_only_pushes_still_pushes() {
    let dir = temp_dir("otel-push-only");
    let receiver = Receiver::start(&dir);
    let shop = app(Reply::text(APP));
    let yaml = format!(
        "type: MeshMetric\nname: push\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    applications: [{{name: shop, port: {}}}]\n    backends:\n    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{}', refreshInterval: 1s}}}}\n---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18080, tags: {{kuma.io/service: web}}}}]\n",
        shop.addr.port(),
        receiver.port
    );
    let res = resources(&yaml);
    let e = effective_of(&res, "web-1");
    assert_eq!((e.address.as_str(), e.port), ("127.0.0.1", 0));
    let (assignments, _) = meshmetrics::discovery::assignments::compute(&res);
    assert!(assignments.is_empty(), "nothing to scrape: {assignments:?}");
    let mut opts = meshmetrics::bootstrap::Options::new(meshmetrics_e2e::wasm());
    opts.admin_port = free_port();
    let b = meshmetrics::bootstrap::bootstrap(&e, &opts)
        .expect("bootstrap")
        .config;
    let envoy = meshmetrics_e2e::Envoy::start_config(
        "push-only",
        &b,
        opts.admin_port,
        ([127, 0, 0, 1], 0).into(),
        false,
    );
    assert!(
        within(Duration::from_secs(15), || !receiver.exports().is_empty()).is_some(),
        "{}",
        envoy.log()
    );
    let e = &receiver.exports()[0];
    assert_eq!(
        metric(e, "shop", "queue_depth")["gauge"]["data_points"][0]["as_double"],
        7.0
    );
}

/// Over the control plane, adding the backend, moving it to another collector and removing it
/// each reach the same Envoy live: exports start, move, stop.
#[test]
fn the_backend_changes_live_over_the_control_plane() {
    use meshmetrics_e2e::controlplane::ControlPlane;
    meshmetrics_e2e::ENVOY_WORKERS.store(2, std::sync::atomic::Ordering::Relaxed);
    let dir = temp_dir("otel-live");
    let (a, b) = (
        Receiver::start(&dir.join("a")),
        Receiver::start(&dir.join("b")),
    );
    let port = free_port();
    let write = |otel: Option<u16>| {
        let backend = otel
            .map(|p| {
                format!(
                    "    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{p}', refreshInterval: 1s}}}}\n"
                )
            })
            .unwrap_or_default();
        let yaml = format!(
            "type: Mesh\nname: default\n---\ntype: MeshMetric\nname: m\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    backends:\n    - {{type: Prometheus, prometheus: {{port: {port}}}}}\n{backend}---\ntype: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18080, tags: {{kuma.io/service: web}}}}]\n"
        );
        let tmp = dir.join(".resources.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write");
        std::fs::rename(&tmp, dir.join("resources.yaml")).expect("rename");
    };
    write(None);
    let cp = ControlPlane::start(
        &dir,
        &["--wasm", meshmetrics_e2e::wasm().to_str().expect("UTF-8")],
    );
    let envoy = cp.envoy("web-1", port);
    let pid = envoy.pid();
    std::thread::sleep(Duration::from_secs(2));
    assert!(a.exports().is_empty() && b.exports().is_empty());

    write(Some(a.port));
    assert!(
        within(Duration::from_secs(15), || a.exports().len() >= 2).is_some(),
        "added: {}\n{}",
        cp.log(),
        envoy.log()
    );
    write(Some(b.port));
    assert!(
        within(Duration::from_secs(15), || b.exports().len() >= 2).is_some(),
        "moved: {}",
        envoy.log()
    );
    // Settled on b: a gets nothing more.
    std::thread::sleep(Duration::from_secs(2));
    let at_a = a.exports().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.exports().len(),
        at_a,
        "the old collector still gets pushes"
    );

    write(None);
    std::thread::sleep(Duration::from_secs(3));
    let at_b = b.exports().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.exports().len(), at_b, "removed, yet pushed");
    assert_eq!(envoy.pid(), pid, "no restart");
    assert_eq!(
        meshmetrics_e2e::get(&format!("http://127.0.0.1:{port}/metrics"), &[]).status,
        200
    );
}

/// With `--otel-ca`, the push goes over TLS and checks the collector's certificate: a collector
/// with a certificate of that CA for its address gets the exports; one with another CA's gets
/// nothing, and the push counts it.
#[test]
fn the_push_goes_over_tls_to_a_collector_it_verifies() {
    let dir = temp_dir("otel-tls");
    let mm = meshmetrics_e2e::controlplane::meshmetrics_bin();
    let issue = |ca: &str| {
        let run = |args: &[&str]| {
            let out = Command::new(&mm)
                .args(args)
                .output()
                .expect("meshmetrics ca");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca_dir = dir.join(ca);
        let d = ca_dir.to_str().expect("UTF-8");
        run(&["ca", "init", "--dir", d, "--mesh", "otel"]);
        let out = ca_dir.join("collector");
        run(&[
            "ca",
            "issue",
            "--dir",
            d,
            "--mesh",
            "otel",
            "--service",
            "collector",
            "--ip",
            "127.0.0.1",
            "-o",
            out.to_str().expect("UTF-8"),
        ]);
        (
            ca_dir.join("ca.pem"),
            out.with_extension("pem"),
            out.with_extension("key"),
        )
    };
    let (ca, cert, key) = issue("trusted");
    let (_, other_cert, other_key) = issue("other");
    meshmetrics_e2e::ENVOY_WORKERS.store(2, std::sync::atomic::Ordering::Relaxed);
    let shop = app(Reply::text(APP));
    for (trusted, (cert, key)) in [(true, (&cert, &key)), (false, (&other_cert, &other_key))] {
        let receiver = Receiver::start_tls(
            &dir.join(if trusted { "a" } else { "b" }),
            Some((cert.as_path(), key.as_path())),
        );
        let yaml = format!(
            "type: MeshMetric\nname: otel\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    applications: [{{name: shop, port: {}}}]\n    backends:\n    - {{type: Prometheus, prometheus: {{port: 5670}}}}\n    - {{type: OpenTelemetry, openTelemetry: {{endpoint: '127.0.0.1:{}', refreshInterval: 1s}}}}\n---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18080, tags: {{kuma.io/service: web}}}}]\n",
            shop.addr.port(),
            receiver.port
        );
        let proxy = Proxy::start(
            Backend::Envoy,
            effective_of(&resources(&yaml), "web-1"),
            |o| {
                o.otel_ca = Some(ca.clone());
            },
        );
        if trusted {
            assert!(
                within(Duration::from_secs(20), || !receiver.exports().is_empty()).is_some(),
                "nothing over TLS: {}",
                proxy.log()
            );
            let e = &receiver.exports()[0];
            assert_eq!(
                metric(e, "shop", "queue_depth")["gauge"]["data_points"][0]["as_double"],
                7.0
            );
        } else {
            let counted = within(Duration::from_secs(20), || {
                self_count(
                    &proxy.scrape(&[]).body,
                    "meshmetrics_otel_failures_total{reason=\"unavailable\"} ",
                ) >= 2.0
            });
            assert!(counted.is_some(), "{}", proxy.log());
            assert!(
                receiver.exports().is_empty(),
                "pushed to a collector it cannot verify"
            );
        }
    }
}
