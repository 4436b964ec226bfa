//! Real exporters nobody here wrote, behind a real Envoy with the filter: Debian's
//! node_exporter, pushgateway, alertmanager, Prometheus' own `/metrics`, and a
//! prometheus_client app serving text, OpenMetrics and negotiated output. For each of the three
//! `Accept` headers Prometheus sends, every sample of each source's direct answer must be in the
//! merged scrape with its name, labels and value (lost = 0, changed = 0), the scrape must pass
//! the strict parsers, and a real Prometheus (default, and with native histograms) must store
//! every app series with `mesh` / `dataplane` / `service`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshmetrics_e2e::*;
use serde_json::Value;

/// What Prometheus 2.x / 3.x sends by default, with text only, and with native histograms.
const ACCEPTS: [(&str, &str); 3] = [
    (
        "default",
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ),
    ("text", "text/plain;version=0.0.4"),
    (
        "native-histograms",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ),
];

/// A process killed when dropped.
struct Exporter {
    name: &'static str,
    child: Child,
    port: u16,
    path: &'static str,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &'static str, path: &'static str, program: &Path, args: &[String]) -> Exporter {
    let port: u16 = args
        .iter()
        .find_map(|a| a.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no port in {args:?}"));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{name}: cannot run {}: {e} (scripts/install-deps installs it)",
                program.display()
            )
        });
    let e = Exporter {
        name,
        child,
        port,
        path,
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_get(&url).is_none_or(|r| r.status != 200) {
        assert!(Instant::now() < deadline, "{name} did not answer on {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
    e
}

fn exporters(dir: &Path) -> Vec<Exporter> {
    let listen = |flag: &str| format!("{flag}=127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route: {receiver: none}\nreceivers: [{name: none}]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global: {scrape_interval: 1h}\n",
    )
    .unwrap();
    let py = workspace_root().join(".venv/bin/python");
    let pyapp = workspace_root().join("tests/exporters/pyapp.py");
    let py_port = free_port();
    let python = spawn(
        "py-text",
        "/text",
        &py,
        &[pyapp.display().to_string(), format!("127.0.0.1:{py_port}")],
    );
    let mut all = vec![
        spawn(
            "node-exporter",
            "/metrics",
            Path::new("/usr/bin/prometheus-node-exporter"),
            &[listen("--web.listen-address")],
        ),
        spawn(
            "pushgateway",
            "/metrics",
            Path::new("/usr/bin/prometheus-pushgateway"),
            &[listen("--web.listen-address")],
        ),
        spawn(
            "alertmanager",
            "/metrics",
            Path::new("/usr/bin/prometheus-alertmanager"),
            &[
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("am").display()),
                "--cluster.listen-address=".into(),
                listen("--web.listen-address"),
            ],
        ),
        spawn(
            "prometheus",
            "/metrics",
            Path::new("/usr/bin/prometheus"),
            &[
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                listen("--web.listen-address"),
            ],
        ),
    ];
    // The same prometheus_client process serves three aggregates: text, OpenMetrics, negotiated.
    for (name, path) in [("py-om", "/om"), ("py-negotiated", "/negotiated")] {
        all.push(Exporter {
            name,
            child: Command::new("true").spawn().expect("spawn true"),
            port: py_port,
            path,
        });
    }
    all.push(python);
    all
}

fn mesh_yaml(apps: &[&Exporter]) -> String {
    let mut aggregate = String::new();
    for a in apps {
        aggregate.push_str(&format!(
            "      - {{name: {}, port: {}, path: {}}}\n",
            a.name, a.port, a.path
        ));
    }
    format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      skipMTLS: true\n      aggregate:\n{aggregate}---\ntype: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18080\n    tags: {{kuma.io/service: backend}}\n"
    )
}

fn save(dir: &Path, name: &str, s: &Scrape) {
    assert_eq!(s.status, 200, "{name}: {}", s.body);
    std::fs::write(dir.join(format!("{name}.body")), &s.body).unwrap();
    std::fs::write(dir.join(format!("{name}.ctype")), &s.content_type).unwrap();
}

/// The Accept the filter sends apps for a scrape answered in the format `accept` negotiates.
fn filter_accept(openmetrics: bool) -> &'static str {
    if openmetrics {
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    } else {
        "text/plain;version=0.0.4,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"
    }
}

fn sample_lines(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Checks every source of `proxy` (Envoy and `apps`) against the merged scrape, per `Accept`.
fn compare_sources(
    dir: &Path,
    proxy: &Proxy,
    apps: &[&Exporter],
    table: &mut Vec<String>,
    failures: &mut Vec<String>,
) {
    let compare = workspace_root().join("tests/exporters/compare.py");
    let python = workspace_root().join(".venv/bin/python");
    for (accept_name, accept) in ACCEPTS {
        let merged_probe = proxy.scrape(&[("accept", accept)]);
        let openmetrics = merged_probe
            .content_type
            .starts_with("application/openmetrics-text");
        assert_eq!(openmetrics, accept_name != "text", "{accept_name}");
        let direct = |a: &Exporter| {
            get(
                &format!("http://127.0.0.1:{}{}", a.port, a.path),
                &[("accept", filter_accept(openmetrics))],
            )
        };
        let before: Vec<Scrape> = apps.iter().copied().map(direct).collect();
        let envoy_before = proxy.admin("/stats/prometheus");
        let merged = proxy.scrape(&[("accept", accept)]);
        let after: Vec<Scrape> = apps.iter().copied().map(direct).collect();
        let envoy_after = proxy.admin("/stats/prometheus");

        // Strict parsers on the merged scrape.
        python_parse(&merged.body, openmetrics);
        if !openmetrics {
            promtool_check(&merged.body);
        }
        for a in apps.iter() {
            assert_eq!(
                self_metric(&merged.body, "meshmetrics_source_up", a.name),
                Some(1.0),
                "{accept_name}: {} is not up:\n{}",
                a.name,
                proxy.log()
            );
        }
        let sources = std::iter::once(("envoy", &envoy_before, &envoy_after)).chain(
            apps.iter()
                .copied()
                .zip(before.iter().zip(&after))
                .map(|(a, (b, af))| (a.name, b, af)),
        );
        for (name, b, af) in sources {
            let case = dir.join(format!("{}-{accept_name}-{name}", proxy.metrics.port()));
            std::fs::create_dir_all(&case).unwrap();
            save(&case, "before", b);
            save(&case, "after", af);
            save(&case, "merged", &merged);
            let out = Command::new(&python)
                .arg(&compare)
                .arg(&case)
                .arg(name)
                .output()
                .expect("run compare.py");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "compare.py {}: {e}\n{}",
                    case.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            table.push(format!(
                "{accept_name:<18} {name:<18} {:>6} {:>6} {:>5} {:>8} {:>6}",
                report["in"], report["out"], report["lost"], report["changed"], report["drift"]
            ));
            if report["in"].as_u64().unwrap_or(0) == 0
                || report["lost"] != 0
                || report["changed"] != 0
            {
                failures.push(format!("{accept_name} {name}: {report}"));
            }
        }
    }
}

#[test]
fn real_exporters_lose_no_sample_in_any_format() {
    let dir = temp_dir("exporters");
    let all = exporters(&dir);
    // The prometheus_client app's text answer and its OpenMetrics answers go to two proxies: in
    // one OpenMetrics scrape, its text gauge `app_build_info` and its OpenMetrics info
    // `app_build` are a true conflict (same sample name, two types), and one would be dropped.
    let (om_apps, text_apps): (Vec<&Exporter>, Vec<&Exporter>) = all
        .iter()
        .partition(|a| a.name == "py-om" || a.name == "py-negotiated");
    let mut table = vec![format!(
        "{:<18} {:<18} {:>6} {:>6} {:>5} {:>8} {:>6}",
        "accept", "source", "in", "out", "lost", "changed", "drift"
    )];
    let mut failures = Vec::new();
    let mut proxies = Vec::new();
    for apps in [&text_apps, &om_apps] {
        let proxy = Proxy::start(
            Backend::Envoy,
            effective_of(&resources(&mesh_yaml(apps)), "backend-1"),
            |_| {},
        );
        compare_sources(&dir, &proxy, apps, &mut table, &mut failures);
        proxies.push(proxy);
    }
    // scripts/test prints this file after the tests (cargo hides a passing test's output).
    let report = workspace_root().join("target/test-reports/exporters-matrix.txt");
    let _ = std::fs::create_dir_all(report.parent().expect("has a parent"));
    let _ = std::fs::write(&report, table.join("\n") + "\n");
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A real Prometheus, default and with native histograms, scraping the proxy of the
    // real exporters.
    let (proxy, apps) = (&proxies[0], &text_apps);
    for flags in [&[][..], &["--enable-feature=native-histograms"][..]] {
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n- job_name: mesh\n  honor_labels: true\n  static_configs: [{{targets: ['{}']}}]\n",
            proxy.metrics
        );
        let prom = Prometheus::start_with(&config, flags);
        prom.wait_until("scraping the proxy", |p| {
            p.query("up{job=\"mesh\"} == 1").len() == 1
                && !p.query("scrape_samples_scraped{job=\"mesh\"}").is_empty()
        });
        let scraped: f64 = prom.query("scrape_samples_scraped{job=\"mesh\"}")[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("scrape_samples_scraped");
        let body = proxy.scrape(&[("accept", ACCEPTS[if flags.is_empty() { 0 } else { 2 }].1)]);
        let lines = sample_lines(&body.body) as f64;
        println!(
            "Prometheus {flags:?}: scrape_samples_scraped {scraped}, a scrape's samples {lines}"
        );
        // Exporters' series come and go a little between two scrapes (Go runtime, handlers).
        assert!(
            (scraped - lines).abs() <= lines * 0.02,
            "{flags:?}: Prometheus stored {scraped} samples of a {lines}-sample scrape"
        );
        for a in apps.iter() {
            let all = prom.query(&format!("count({{aggregate=\"{}\"}})", a.name));
            let labelled = prom.query(&format!(
                "count({{aggregate=\"{}\",mesh=\"default\",dataplane=\"backend-1\",service=\"backend\"}})",
                a.name
            ));
            assert!(!all.is_empty(), "{flags:?}: no series of {}", a.name);
            assert_eq!(
                all[0]["value"][1], labelled[0]["value"][1],
                "{flags:?}: {} series without mesh/dataplane/service",
                a.name
            );
        }
    }
}
