//! MeshMetric (SPEC §10) with real Envoys: the docs' cases served as Kuma documents them. The
//! Envoy families a scrape serves are checked against Envoy's own admin answer filtered by the
//! rules (a plain reading of them, here), not against a hand-made list.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use meshmetrics_e2e::controlplane::{ControlPlane, within};
use meshmetrics_e2e::{
    Backend, Proxy, Reply, app, effective_of, free_port, get, resources, temp_dir, try_get, wasm,
};
use meshmetrics_filter::exposition::{BASIC_CONTAINS, BASIC_EXACT, BASIC_PREFIXES};

/// The families (`# TYPE` names) of a text scrape whose names start with `envoy_`.
fn envoy_families(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("envoy_"))
        .map(str::to_owned)
        .collect()
}

/// One `exclude` / `include` item, as YAML writes it.
type Rule = (&'static str, &'static str);

/// Whether the rules keep the family `name`, read plainly from SPEC §10: the profile keeps it
/// and no `exclude` matches, or an `include` matches.
fn kept(profile: &str, exclude: &[Rule], include: &[Rule], name: &str) -> bool {
    let matches = |(kind, pattern): &Rule| match *kind {
        "Regex" => regex_lite::Regex::new(pattern)
            .expect("a test's regex")
            .is_match(name),
        "Prefix" => name.starts_with(pattern),
        "Exact" => name == *pattern,
        "Contains" => name.contains(pattern),
        other => panic!("no such type {other}"),
    };
    let by_profile = match profile {
        "All" => true,
        "None" => false,
        _ => {
            BASIC_CONTAINS.iter().any(|c| name.contains(c))
                || BASIC_EXACT.contains(&name)
                || BASIC_PREFIXES.iter().any(|p| name.starts_with(p))
        }
    };
    (by_profile && !exclude.iter().any(matches)) || include.iter().any(matches)
}

fn rules_yaml(list: &[Rule]) -> String {
    list.iter()
        .map(|(t, m)| format!("{{type: {t}, match: {m:?}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const DATAPLANE: &str = "---\ntype: Mesh\nname: default\n---\ntype: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18080\n    tags: {kuma.io/service: backend, version: v2}\n";

/// Envoy serves through the filter exactly the families of its own admin answer the rules
/// keep: `include_unused` decides whether that answer is `usedonly`.
fn assert_served_as_the_rules_say(
    profile: &str,
    exclude: &[Rule],
    include: &[Rule],
    include_unused: bool,
) {
    let yaml = format!(
        "type: MeshMetric\nname: m\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    sidecar:\n      includeUnused: {include_unused}\n      profiles:\n        appendProfiles: [{{name: {profile}}}]\n        exclude: [{}]\n        include: [{}]\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n{DATAPLANE}",
        rules_yaml(exclude),
        rules_yaml(include)
    );
    let proxy = Proxy::start(
        Backend::Envoy,
        effective_of(&resources(&yaml), "backend-1"),
        |_| {},
    );
    // A first scrape makes the stats the scrapes themselves move (the listener's, the admin
    // cluster's) exist, used, before the comparison.
    assert_eq!(proxy.scrape(&[]).status, 200);
    let direct = if include_unused {
        "/stats/prometheus"
    } else {
        "/stats/prometheus?usedonly"
    };
    let before = envoy_families(&proxy.admin(direct).body);
    let served = proxy.scrape(&[]);
    let after = envoy_families(&proxy.admin(direct).body);
    assert_eq!(served.status, 200);
    let served = envoy_families(&served.body);
    let want = |all: &BTreeSet<String>| -> BTreeSet<String> {
        all.iter()
            .filter(|n| kept(profile, exclude, include, n))
            .cloned()
            .collect()
    };
    // A stat can come into use between the two admin answers; the scrape sits in between.
    let (low, high) = (want(&before), want(&after));
    assert!(
        low.is_subset(&served) && served.is_subset(&high),
        "{profile}, exclude {exclude:?}, include {include:?}:\nmissing: {:?}\nextra: {:?}",
        low.difference(&served).collect::<Vec<_>>(),
        served.difference(&high).collect::<Vec<_>>()
    );
    assert!(!served.is_empty(), "the rules keep something here");
    assert!(
        served.len() < after.len() || profile == "All" && exclude.is_empty(),
        "the rules dropped nothing: {} of {}",
        served.len(),
        after.len()
    );
}

#[test]
fn basic_with_exclude_and_include_serves_what_the_rules_keep() {
    assert_served_as_the_rules_say(
        "Basic",
        &[
            ("Regex", "envoy_cluster_upstream_cx_.*"),
            ("Contains", "bytes"),
        ],
        &[
            ("Exact", "envoy_cluster_upstream_cx_total"),
            ("Prefix", "envoy_runtime_"),
        ],
        false,
    );
}

#[test]
fn none_with_include_serves_only_what_include_names() {
    assert_served_as_the_rules_say(
        "None",
        &[],
        &[("Regex", "envoy_cluster_upstream_rq_.*")],
        true,
    );
}

#[test]
fn all_with_exclude_keeps_the_rest_of_envoys_families() {
    assert_served_as_the_rules_say("All", &[("Contains", "_cx_")], &[], true);
}

/// The docs' MeshSubset example: a second policy, selecting proxies by tag, adds applications
/// to the mesh-wide one; each is merged in with its own `aggregate` label, Envoy's stats beside.
#[test]
fn a_mesh_subset_policy_adds_its_applications() {
    let api = app(Reply::text(
        "# TYPE orders_total counter\norders_total 42\n",
    ));
    let worker = app(Reply::text("# TYPE queue_depth gauge\nqueue_depth 7\n"));
    let yaml = format!(
        "type: MeshMetric\nname: mesh-wide\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n---\ntype: MeshMetric\nname: v2-apps\nmesh: default\nspec:\n  targetRef: {{kind: MeshSubset, tags: {{version: v2}}}}\n  default:\n    applications:\n    - {{name: api, port: {}, path: /metrics}}\n    - {{name: worker, port: {}, path: /metrics}}\n---\ntype: MeshMetric\nname: v1-apps\nmesh: default\nspec:\n  targetRef: {{kind: MeshSubset, tags: {{version: v1}}}}\n  default:\n    applications: [{{name: never, port: 1}}]\n{DATAPLANE}",
        api.addr.port(),
        worker.addr.port()
    );
    let proxy = Proxy::start(
        Backend::Envoy,
        effective_of(&resources(&yaml), "backend-1"),
        |_| {},
    );
    let s = proxy.scrape(&[]);
    assert_eq!(s.status, 200);
    assert!(
        s.body.contains("orders_total{mesh=\"default\",dataplane=\"backend-1\",service=\"backend\",aggregate=\"api\"} 42"),
        "{}",
        s.body
    );
    assert!(s.body.contains("aggregate=\"worker\"} 7"), "{}", s.body);
    assert!(!s.body.contains("aggregate=\"never\""));
    assert!(s.body.contains("envoy_server_live"), "Basic keeps it");
}

fn meshmetrics(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(meshmetrics_e2e::controlplane::meshmetrics_bin())
        .args(args)
        .output()
        .expect("run meshmetrics");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The docs' two Prometheus deployments: each backend names its `clientId`, and each
/// Prometheus discovers through MADS (and http_sd) only the listener made for it; the proxy
/// serves both listeners, each on its own port and path.
#[test]
fn two_prometheus_deployments_each_discover_their_own_listener() {
    let (first, second) = (free_port(), free_port());
    let yaml = format!(
        "type: MeshMetric\nname: two\nmesh: default\nspec:\n  targetRef: {{kind: MeshService, name: backend}}\n  default:\n    backends:\n    - {{type: Prometheus, prometheus: {{clientId: first-prometheus, port: {first}, path: /metrics}}}}\n    - {{type: Prometheus, prometheus: {{clientId: second-prometheus, port: {second}, path: /metrics/second}}}}\n{DATAPLANE}"
    );
    let dir = temp_dir("meshmetric-two");
    let file = dir.join("resources.yaml");
    std::fs::write(&file, &yaml).expect("write resources");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut discovery =
        std::process::Command::new(meshmetrics_e2e::controlplane::meshmetrics_bin())
            .args([
                "discovery",
                "-f",
                file.to_str().expect("UTF-8"),
                "--listen",
                &listen,
            ])
            .spawn()
            .expect("start discovery");
    let mads = |client: &str| -> Option<Vec<String>> {
        let body = format!(
            "{{\"node\": {{\"id\": \"{client}\"}}, \"type_url\": \"type.googleapis.com/kuma.observability.v1.MonitoringAssignment\"}}"
        );
        let mut r = ureq::post(&format!(
            "http://{listen}/v3/discovery:monitoringassignments"
        ))
        .send(body.as_bytes())
        .ok()?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        Some(
            v["resources"]
                .as_array()?
                .iter()
                .flat_map(|a| a["targets"].as_array().cloned().unwrap_or_default())
                .map(|t| {
                    format!(
                        "{}{}",
                        t["address"].as_str().unwrap_or(""),
                        t["metrics_path"].as_str().unwrap_or("")
                    )
                })
                .collect(),
        )
    };
    let ready = within(Duration::from_secs(10), || mads("x").is_some());
    assert!(ready.is_some(), "discovery did not start");
    assert_eq!(
        mads("first-prometheus").unwrap_or_default(),
        [format!("127.0.0.1:{first}/metrics")]
    );
    assert_eq!(
        mads("second-prometheus").unwrap_or_default(),
        [format!("127.0.0.1:{second}/metrics/second")]
    );
    assert_eq!(
        mads("").unwrap_or_default(),
        Vec::<String>::new(),
        "the default client names no backend here"
    );
    let sd = get(
        &format!("http://{listen}/sd?client_id=second-prometheus"),
        &[],
    );
    assert!(
        sd.body.contains(&format!("127.0.0.1:{second}")),
        "{}",
        sd.body
    );
    assert!(
        !sd.body.contains(&format!("127.0.0.1:{first}")),
        "{}",
        sd.body
    );
    let _ = discovery.kill();
    let _ = discovery.wait();

    // prometheus-config for the second deployment asks for its own targets.
    let (ok, config, err) = meshmetrics(&[
        "prometheus-config",
        "--discovery",
        &format!("http://{listen}"),
        "--client-id",
        "second-prometheus",
    ]);
    assert!(ok, "{err}");
    assert!(
        config.contains("/sd?client_id=second-prometheus"),
        "{config}"
    );

    // One Envoy, both listeners, on exactly the ports the policy names.
    let proxy = Proxy::start_exact(
        Backend::Envoy,
        effective_of(&resources(&yaml), "backend-1"),
        |_| {},
    );
    for url in [
        format!("http://127.0.0.1:{first}/metrics"),
        format!("http://127.0.0.1:{second}/metrics/second"),
    ] {
        let s = get(&url, &[]);
        assert_eq!(s.status, 200, "{url}");
        assert!(s.body.contains("envoy_server_live"), "{url}: {}", s.body);
    }
    assert_eq!(
        get(&format!("http://127.0.0.1:{first}/metrics/second"), &[]).status,
        404
    );
    drop(proxy);
}

/// A change to a MeshMetric reaches, live, only the proxies it selects: the same Envoys, no
/// failed scrape on either.
#[test]
fn a_profile_change_reaches_only_the_proxies_it_selects_live() {
    let (port_a, port_b) = (free_port(), free_port());
    let dir = temp_dir("meshmetric-live");
    let write = |narrow_a: bool| {
        let narrow = if narrow_a {
            "---\ntype: MeshMetric\nname: narrow\nmesh: default\nspec:\n  targetRef: {kind: MeshService, name: svc-a}\n  default:\n    sidecar:\n      profiles:\n        appendProfiles: [{name: None}]\n        include: [{type: Prefix, match: envoy_server_}]\n"
        } else {
            ""
        };
        let yaml = format!(
            "type: Mesh\nname: default\n---\ntype: MeshMetric\nname: base\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    sidecar:\n      profiles:\n        appendProfiles: [{{name: None}}]\n        include: [{{type: Prefix, match: envoy_}}]\n---\ntype: MeshMetric\nname: a\nmesh: default\nspec:\n  targetRef: {{kind: Dataplane, name: web-a}}\n  default:\n    backends: [{{type: Prometheus, prometheus: {{port: {port_a}}}}}]\n---\ntype: MeshMetric\nname: b\nmesh: default\nspec:\n  targetRef: {{kind: Dataplane, name: web-b}}\n  default:\n    backends: [{{type: Prometheus, prometheus: {{port: {port_b}}}}}]\n---\ntype: Dataplane\nmesh: default\nname: web-a\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18001, tags: {{kuma.io/service: svc-a}}}}]\n---\ntype: Dataplane\nmesh: default\nname: web-b\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 18002, tags: {{kuma.io/service: svc-b}}}}]\n{narrow}"
        );
        let tmp = dir.join(".resources.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write");
        std::fs::rename(&tmp, dir.join("resources.yaml")).expect("rename");
    };
    write(false);
    let cp = ControlPlane::start(&dir, &["--wasm", wasm().to_str().expect("UTF-8 path")]);
    let (envoy_a, envoy_b) = (cp.envoy("web-a", port_a), cp.envoy("web-b", port_b));
    let (pid_a, pid_b) = (envoy_a.pid(), envoy_b.pid());
    let url = |port: u16| format!("http://127.0.0.1:{port}/metrics");
    let only_server = |body: &str| {
        let f = envoy_families(body);
        !f.is_empty() && f.iter().all(|n| n.starts_with("envoy_server_"))
    };
    let body = |port: u16| {
        try_get(&url(port))
            .filter(|s| s.status == 200)
            .map(|s| s.body)
            .unwrap_or_default()
    };
    assert!(!only_server(&body(port_a)) && !body(port_a).is_empty());

    // Both scraped all along.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = [port_a, port_b]
        .into_iter()
        .map(|port| {
            let (stop, failed, scrapes) = (stop.clone(), failed.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if try_get(&url(port)).is_none_or(|s| s.status != 200) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    write(true);
    let took = within(Duration::from_secs(3), || only_server(&body(port_a)));
    assert!(
        took.is_some(),
        "web-a: {:?}\n{}",
        envoy_families(&body(port_a)),
        cp.log()
    );
    // web-b is not selected by the new policy: it keeps every envoy_ family.
    std::thread::sleep(Duration::from_secs(1));
    let b = envoy_families(&body(port_b));
    assert!(b.iter().any(|n| !n.starts_with("envoy_server_")), "{b:?}");
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.join();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} scrapes",
        scrapes.load(Ordering::Relaxed)
    );
    assert_eq!((envoy_a.pid(), envoy_b.pid()), (pid_a, pid_b), "no restart");

    // A broken policy keeps the last good configuration.
    std::fs::write(
        dir.join("resources.yaml"),
        std::fs::read_to_string(dir.join("resources.yaml"))
            .expect("read")
            .replace("appendProfiles: [{name: None}]\n        include: [{type: Prefix, match: envoy_server_}]", "appendProfiles: [{name: Most}]"),
    )
    .expect("write");
    assert!(
        within(Duration::from_secs(3), || cp
            .log()
            .contains("unrecognized profile name"))
        .is_some(),
        "{}",
        cp.log()
    );
    assert!(
        only_server(&body(port_a)),
        "the last good configuration is kept"
    );
}
