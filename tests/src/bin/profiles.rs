//! `scripts/bench --profiles`: what MeshMetric's profiles cost a scrape, on loopback.
//!
//! One real Envoy with `--clusters` (2,000) clusters and every stat rendered (`includeUnused:
//! true`), and one metrics listener per set of rules, all in the same Envoy, scraped in turn
//! (`--rounds` rounds, interleaved). Each is set against Envoy's own render of the same stats:
//! its admin's `/stats/prometheus?filter=` with the regex the rules give Envoy (what no filter
//! can beat: Envoy still walks every stat). Envoy's CPU per scrape from its threads'
//! `schedstat`. Prints Markdown and writes `target/bench/profiles.json`. Measurements, never
//! assertions.

use std::time::Duration;

use anyhow::{Result, bail};
use meshmetrics::bootstrap::{self, Options};
use meshmetrics_e2e::perf::{add_clusters, numeric_flags, spread, thread_cpu_seconds};
use meshmetrics_e2e::{Envoy, effective_of, free_port, get, resources, wasm};
use meshmetrics_filter::config::{FamilyRules, MatchKind, Matcher, Profile, Source, SourceKind};
use serde_json::{Value, json};

struct Args {
    clusters: usize,
    rounds: usize,
}

fn args() -> Result<Args> {
    let [clusters, rounds] = numeric_flags([("clusters", 2000), ("rounds", 20)])?;
    Ok(Args {
        clusters: clusters as usize,
        rounds: rounds.max(1) as usize,
    })
}

fn m(kind: MatchKind, pattern: &str) -> Matcher {
    Matcher {
        kind,
        pattern: pattern.into(),
    }
}

/// The rules measured: (name, rules; `None` is today's scrape, the legacy form).
fn cases() -> Vec<(&'static str, Option<FamilyRules>)> {
    let rules = |profile, exclude, include| {
        Some(FamilyRules {
            profile,
            exclude,
            include,
        })
    };
    vec![
        ("today (Mesh.metrics, no rules)", None),
        ("All", rules(Profile::All, vec![], vec![])),
        ("Basic", rules(Profile::Basic, vec![], vec![])),
        (
            "None + include Regex envoy_cluster_upstream_rq_.*",
            rules(
                Profile::None,
                vec![],
                vec![m(MatchKind::Regex, "envoy_cluster_upstream_rq_.*")],
            ),
        ),
        (
            "Basic + exclude Regex envoy_cluster_upstream_cx_.* + include Exact envoy_cluster_upstream_cx_total",
            rules(
                Profile::Basic,
                vec![m(MatchKind::Regex, "envoy_cluster_upstream_cx_.*")],
                vec![m(MatchKind::Exact, "envoy_cluster_upstream_cx_total")],
            ),
        ),
        (
            "All + exclude 20 Contains",
            rules(
                Profile::All,
                (0..20)
                    .map(|i| m(MatchKind::Contains, &format!("no_such_family_{i}")))
                    .chain([m(MatchKind::Contains, "bytes_buffered")])
                    .collect(),
                vec![],
            ),
        ),
    ]
}

struct Measured {
    times: Vec<Duration>,
    cpu: Vec<Duration>,
    bytes: usize,
}

fn main() -> Result<()> {
    let a = args()?;
    let yaml = "type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n      skipMTLS: true\n---\ntype: Dataplane\nmesh: default\nname: bench\nnetworking: {address: 127.0.0.1, inbound: [{port: 80}]}\n";
    let base = effective_of(&resources(yaml), "bench");
    let mut opts = Options::new(wasm());
    opts.admin_port = free_port();
    opts.timeout_ms = 60_000;
    let mut config = bootstrap::bootstrap(&base, &opts)?.config;
    let cases = cases();
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for (i, (_, rules)) in cases.iter().enumerate() {
        let mut e = base.clone();
        e.port = free_port();
        e.families = rules.clone();
        let c = bootstrap::bootstrap(&e, &opts)?.config;
        let mut l = c["static_resources"]["listeners"][0].clone();
        l["name"] = json!(format!("profile-{i}"));
        listeners.push(l);
        let admin_filter = rules
            .as_ref()
            .and_then(meshmetrics_filter::exposition::envoy_filter);
        urls.push((
            format!("http://127.0.0.1:{}{}", e.port, e.path),
            admin_filter,
        ));
    }
    let metrics: std::net::SocketAddr = urls[0]
        .0
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()?;
    config["static_resources"]["listeners"] = Value::Array(listeners);
    add_clusters(&mut config, a.clusters);
    let envoy = Envoy::start_config("profiles", &config, opts.admin_port, metrics, true);
    let pid = envoy.pid();
    // Envoy's admin asked as the filter asks it (the same query encoding).
    let admin = |filter: &Option<String>| {
        let source = Source {
            name: "envoy".into(),
            kind: SourceKind::EnvoyAdmin,
            cluster: String::new(),
            authority: String::new(),
            path: "/stats/prometheus".into(),
            timeout_ms: 60_000,
            labels: Vec::new(),
            used_only: false,
            filter_regex: filter.clone(),
            families: None,
        };
        format!(
            "http://127.0.0.1:{}{}",
            opts.admin_port,
            source.request_path()
        )
    };
    // Every scrape in turn, each round: ours, then Envoy's own render of the same stats.
    let mut targets: Vec<String> = Vec::new();
    for (url, filter) in &urls {
        targets.push(url.clone());
        targets.push(admin(filter));
    }
    for t in &targets {
        let s = get(t, &[("accept", "text/plain")]);
        if s.status != 200 {
            bail!("{t}: {}", s.status);
        }
    }
    let mut out: Vec<Measured> = targets
        .iter()
        .map(|_| Measured {
            times: Vec::new(),
            cpu: Vec::new(),
            bytes: 0,
        })
        .collect();
    for _ in 0..a.rounds {
        for (t, o) in targets.iter().zip(&mut out) {
            let cpu = thread_cpu_seconds(pid);
            let s = get(t, &[("accept", "text/plain")]);
            std::thread::sleep(Duration::from_millis(3));
            o.cpu.push(Duration::from_secs_f64(
                (thread_cpu_seconds(pid) - cpu).max(0.0),
            ));
            o.times.push(s.elapsed);
            o.bytes = s.body.len();
        }
    }
    let median = |v: &[Duration]| spread(v.to_vec()).0;
    let all_ours = median(&out[2].times);
    let today = median(&out[0].times);
    let mut rows = Vec::new();
    let mut report = Vec::new();
    for (i, (name, _)) in cases.iter().enumerate() {
        let (ours, theirs) = (&out[2 * i], &out[2 * i + 1]);
        let (t, e) = (median(&ours.times), median(&theirs.times));
        let (tc, ec) = (median(&ours.cpu), median(&theirs.cpu));
        rows.push(format!(
            "| {name} | {:.1} MB | {t:.1} ms | {e:.1} ms ({:.1} MB) | {:.2} | {:.2} | {:.2} | {:.2} |",
            ours.bytes as f64 / 1e6,
            theirs.bytes as f64 / 1e6,
            t / e,
            tc / ec.max(1e-9),
            t / all_ours,
            t / today,
        ));
        report.push(json!({
            "case": name, "bytes": ours.bytes, "median_ms": t, "envoy_own_ms": e,
            "envoy_own_bytes": theirs.bytes, "cpu_ms": tc, "envoy_own_cpu_ms": ec,
            "admin_filter": urls[i].1,
        }));
    }
    println!(
        "N = {} clusters, every stat (includeUnused: true), {} rounds interleaved; Envoy's own: its admin with the filter the rules give it (none for today / All).\n",
        a.clusters, a.rounds
    );
    println!(
        "| rules | served | median | Envoy's own render of the same stats | time ours / Envoy's own | CPU ours / Envoy's own | / All | / today |\n|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        println!("{r}");
    }
    let dir = meshmetrics_e2e::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("profiles.json"),
        serde_json::to_string_pretty(
            &json!({"clusters": a.clusters, "rounds": a.rounds, "cases": report}),
        )?,
    )?;
    drop(envoy);
    Ok(())
}
