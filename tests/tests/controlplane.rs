//! The control plane with real Envoys: what a proxy gets over xDS equals the static bootstrap,
//! changes to the resource files reach the proxies live (same Envoy process, within 2 s, with
//! no failed scrape), certificates pushed over SDS rotate, and faults (a file that does not
//! load, a NACK, the control plane down) leave every proxy serving its last good
//! configuration.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::{self, Options};
use meshmetrics_e2e::controlplane::{ControlPlane, within};
use meshmetrics_e2e::{
    Envoy, Reply, app, effective_of, free_port, get, resources, samples, temp_dir, try_get, wasm,
};
use serde_json::Value;

/// How long a change may take to be served.
const LIVE: Duration = Duration::from_secs(2);

/// The mesh's metrics backend, as the tests change it.
#[derive(Clone)]
struct Mesh {
    port: u16,
    path: String,
    filter_regex: Option<String>,
    used_only: bool,
    /// Aggregated apps: name, port, path.
    apps: Vec<(String, u16, String)>,
    tls: &'static str,
    mtls: bool,
    /// Dataplanes: name, and a metrics override (YAML under `metrics:`), if any.
    dataplanes: Vec<(String, Option<String>)>,
}

impl Mesh {
    fn new(port: u16, dataplanes: &[&str]) -> Mesh {
        Mesh {
            port,
            path: "/metrics".into(),
            filter_regex: None,
            used_only: false,
            apps: Vec::new(),
            tls: "disabled",
            mtls: false,
            dataplanes: dataplanes.iter().map(|d| (d.to_string(), None)).collect(),
        }
    }

    fn yaml(&self) -> String {
        let mut conf = format!(
            "      port: {}\n      path: {}\n      tls: {{mode: {}}}\n      envoy:\n        usedOnly: {}\n",
            self.port, self.path, self.tls, self.used_only
        );
        if let Some(r) = &self.filter_regex {
            conf.push_str(&format!("        filterRegex: {r:?}\n"));
        }
        if !self.apps.is_empty() {
            conf.push_str("      aggregate:\n");
            for (name, port, path) in &self.apps {
                conf.push_str(&format!(
                    "      - {{name: {name}, port: {port}, path: {path}}}\n"
                ));
            }
        }
        let mtls = if self.mtls {
            "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
        } else {
            ""
        };
        let mut y = format!(
            "type: Mesh\nname: default\n{mtls}metrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n{conf}"
        );
        for (i, (name, metrics)) in self.dataplanes.iter().enumerate() {
            y.push_str(&format!(
                "---\ntype: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {}\n    tags: {{kuma.io/service: svc-{i}}}\n",
                18000 + i
            ));
            if let Some(m) = metrics {
                y.push_str(&format!("metrics:\n{m}"));
            }
        }
        y
    }

    /// Writes the resources the control plane watches (renamed over, as an editor or a
    /// ConfigMap update does, so it never reads half a file).
    fn write(&self, dir: &Path) {
        let tmp = dir.join(".resources.yaml.tmp");
        std::fs::write(&tmp, self.yaml()).expect("write resources");
        std::fs::rename(&tmp, dir.join("resources.yaml")).expect("rename resources");
    }
}

fn scrape_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A scraper looping at 10 scrapes/s on a target that can be moved, reusing its connections as
/// Prometheus does (keep-alive); it records every failure with its target and time, and the last
/// body it got.
struct Scraper {
    target: Arc<Mutex<String>>,
    last: Arc<Mutex<String>>,
    failures: Arc<Mutex<Vec<(String, Instant, String)>>>,
    scrapes: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(url: String) -> Scraper {
        let target = Arc::new(Mutex::new(url));
        let last = Arc::new(Mutex::new(String::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let scrapes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, l, f, n, s) = (
            target.clone(),
            last.clone(),
            failures.clone(),
            scrapes.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            // One agent for the whole loop: its connections are kept alive and reused.
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            while !s.load(Ordering::Relaxed) {
                let url = t.lock().expect("target").clone();
                let at = Instant::now();
                let outcome = match agent.get(&url).call() {
                    Ok(mut r) if r.status() == 200 => {
                        match r.body_mut().with_config().limit(1 << 30).read_to_string() {
                            Ok(body) => {
                                *l.lock().expect("last") = body;
                                None
                            }
                            Err(e) => Some(format!("body: {e}")),
                        }
                    }
                    Ok(r) => Some(format!("HTTP {}", r.status())),
                    Err(e) => Some(e.to_string()),
                };
                n.fetch_add(1, Ordering::Relaxed);
                if let Some(why) = outcome {
                    f.lock().expect("failures").push((url, at, why));
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()));
            }
        });
        Scraper {
            target,
            last,
            failures,
            scrapes,
            stop,
            thread: Some(thread),
        }
    }

    /// The last body it got.
    fn last(&self) -> String {
        self.last.lock().expect("last").clone()
    }

    fn retarget(&self, url: String) {
        *self.target.lock().expect("target") = url;
    }

    /// Failures, except those on `excused` targets from the given instant on.
    fn failures(&self, excused: &[(String, Instant)]) -> Vec<String> {
        self.failures
            .lock()
            .expect("failures")
            .iter()
            .filter(|(url, at, _)| !excused.iter().any(|(u, from)| u == url && at >= from))
            .map(|(url, _, why)| format!("{url}: {why}"))
            .collect()
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Envoy's uptime in seconds, from its admin.
fn uptime(e: &Envoy) -> u64 {
    let info: Value = serde_json::from_str(&e.admin("/server_info").body).expect("server_info");
    info["uptime_current_epoch"]
        .as_str()
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .map_or(0, |s| s as u64)
}

fn body(url: &str) -> String {
    try_get(url)
        .filter(|s| s.status == 200)
        .map(|s| s.body)
        .unwrap_or_default()
}

#[test]
fn changes_reach_the_proxy_live_without_a_restart() {
    let dir = temp_dir("cp-live");
    let app_a = app(Reply::text("app_a_requests_total 1\n"));
    let app_b = app(Reply::text("app_b_requests_total 2\n"));
    let app_c = app(Reply::text("app_c_requests_total 3\n"));
    // One app answering by path: the aggregate's path decides what is scraped.
    let by_path = meshmetrics_e2e::AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new(|seen: &meshmetrics_e2e::Seen| {
            if seen.path.starts_with("/other") {
                Reply::text("app_path_other 1\n")
            } else {
                Reply::text("app_path_default 1\n")
            }
        }),
    )
    .expect("start app");
    let mut mesh = Mesh::new(free_port(), &["web-1"]);
    mesh.apps = vec![("a".into(), app_a.addr.port(), "/metrics".into())];
    mesh.write(&dir);
    let cp = ControlPlane::start(&dir, &["--wasm", wasm().to_str().expect("UTF-8 path")]);
    let envoy = cp.envoy("web-1", mesh.port);
    let pid = envoy.pid();
    let started_uptime = uptime(&envoy);
    let mut url = scrape_url(mesh.port, &mesh.path);
    assert!(
        body(&url).contains("app_a_requests_total{"),
        "{}",
        body(&url)
    );
    let scraper = Scraper::start(url.clone());
    let mut excused: Vec<(String, Instant)> = Vec::new();
    let mut took = Vec::new();

    // Each change, and what the scrape shows once it is served.
    let mut change = |name: &str, m: &Mesh, url: &str, served: &dyn Fn(&str) -> bool| {
        m.write(&dir);
        let t = within(LIVE, || served(&body(url))).unwrap_or_else(|| {
            panic!(
                "{name}: not served within {LIVE:?}; scrape:\n{}\ncontrol plane:\n{}",
                body(url),
                cp.log()
            )
        });
        took.push(format!("{name}: {} ms", t.as_millis()));
    };

    mesh.filter_regex = Some("server.*".into());
    change("filterRegex", &mesh, &url, &|b| {
        !samples(b, "envoy_").is_empty()
            && samples(b, "envoy_")
                .iter()
                .all(|l| l.starts_with("envoy_server"))
    });
    // The keep-alive scraper too, once its connection (2 s at most) is replaced.
    let server_only = |b: &str| {
        !samples(b, "envoy_").is_empty()
            && samples(b, "envoy_")
                .iter()
                .all(|l| l.starts_with("envoy_server"))
    };
    assert!(
        within(LIVE + Duration::from_secs(2), || server_only(
            &scraper.last()
        ))
        .is_some(),
        "the keep-alive scraper still sees the old configuration: {:?}",
        scraper
            .last()
            .lines()
            .filter(|l| l.starts_with("meshmetrics_source_") || l.starts_with("envoy_"))
            .take(12)
            .collect::<Vec<_>>()
    );
    mesh.filter_regex = None;
    mesh.used_only = true;
    change("usedOnly", &mesh, &url, &|b| {
        b.contains("envoy_server_uptime") && !b.contains("envoy_server_dropped_stat_flushes")
    });
    mesh.apps
        .push(("b".into(), app_b.addr.port(), "/metrics".into()));
    change("aggregate added", &mesh, &url, &|b| {
        b.contains("app_b_requests_total{")
    });
    mesh.apps.retain(|(n, _, _)| n != "a");
    change("aggregate removed", &mesh, &url, &|b| {
        !b.contains("app_a_requests_total")
    });
    mesh.apps[0].1 = app_c.addr.port();
    change("aggregate port", &mesh, &url, &|b| {
        b.contains("app_c_requests_total{") && !b.contains("app_b_")
    });
    mesh.apps[0].1 = by_path.addr.port();
    change("aggregate moved", &mesh, &url, &|b| {
        b.contains("app_path_default{")
    });
    mesh.apps[0].2 = "/other".into();
    change("aggregate path", &mesh, &url, &|b| {
        b.contains("app_path_other{")
    });

    // The metrics path, then its port: the old endpoint may fail from the change on, the new
    // one never.
    for what in ["metrics path", "metrics port"] {
        if what == "metrics path" {
            mesh.path = "/stats-now".into();
        } else {
            mesh.port = free_port();
        }
        let new_url = scrape_url(mesh.port, &mesh.path);
        excused.push((url.clone(), Instant::now()));
        change(what, &mesh, &new_url, &|b| b.contains("app_path_other{"));
        url = new_url;
        // A keep-alive connection made before the change serves the old endpoint until it is
        // replaced (2 s at most): the scraper moves once that has passed, as Prometheus does
        // when discovery tells it (its refresh is slower than that).
        std::thread::sleep(Duration::from_secs(2));
        scraper.retarget(url.clone());
        std::thread::sleep(Duration::from_millis(500));
    }

    // The TLS mode's live change is `tls_mode_changes_live_and_pushed_certificates_rotate`.
    let failures = scraper.failures(&excused);
    let scrapes = scraper.scrapes.load(Ordering::Relaxed);
    drop(scraper);
    assert_eq!(envoy.pid(), pid, "Envoy was restarted");
    assert!(uptime(&envoy) >= started_uptime, "Envoy's uptime went back");
    assert!(
        failures.is_empty(),
        "{} of {scrapes} scrapes failed: {failures:#?}",
        failures.len()
    );
    eprintln!("served after: {took:?}; {scrapes} scrapes, none failed");
    assert!(
        cp.metric("meshmetrics_cp_nacks_total{type=\"lds\"}") == 0.0,
        "{}",
        cp.log()
    );
}

#[test]
fn tls_mode_changes_live_and_pushed_certificates_rotate() {
    let dir = temp_dir("cp-tls");
    let ca = dir.join("ca");
    meshmetrics::tls::init_ca(&ca, "default").expect("mesh CA");
    let files = dir.join("resources");
    std::fs::create_dir_all(&files).expect("mkdir");
    let mut mesh = Mesh::new(free_port(), &["web-1"]);
    mesh.mtls = true;
    mesh.write(&files);
    let cp = ControlPlane::start(
        &files,
        &[
            "--wasm",
            wasm().to_str().expect("UTF-8 path"),
            "--mesh-ca",
            ca.to_str().expect("UTF-8 path"),
            "--cert-lifetime",
            "6s",
        ],
    );
    let envoy = cp.envoy("web-1", mesh.port);
    let pid = envoy.pid();
    let addr = format!("127.0.0.1:{}", mesh.port);
    assert!(
        served_certificate(&addr).is_none(),
        "plaintext serves no certificate"
    );
    // A scraper on the dataplane itself (plaintext stays allowed there) through the change.
    let scraper = Scraper::start(scrape_url(mesh.port, "/metrics"));
    mesh.tls = "activeMTLSBackend";
    mesh.write(&files);
    let first = within(LIVE, || served_certificate(&addr).is_some())
        .and_then(|_| served_certificate(&addr))
        .unwrap_or_else(|| panic!("no certificate within {LIVE:?}:\n{}", cp.log()));
    assert!(first.contains("spiffe://default/svc-0"), "{first}");
    // Plaintext from the dataplane itself is still served (Kuma's rule).
    assert_eq!(get(&scrape_url(mesh.port, "/metrics"), &[]).status, 200);
    // Issued for 6 s, re-issued with 2 s left: another certificate within a few seconds.
    let rotated = within(Duration::from_secs(10), || {
        served_certificate(&addr).is_some_and(|c| c != first)
    });
    assert!(
        rotated.is_some(),
        "the certificate did not rotate:\n{}",
        cp.log()
    );
    assert!(cp.metric("meshmetrics_cp_pushes_total{type=\"sds\"}") >= 2.0);
    let failures = scraper.failures(&[]);
    assert!(
        failures.is_empty(),
        "scrapes failed through the TLS change: {failures:#?}"
    );
    assert_eq!(envoy.pid(), pid, "Envoy was restarted");
}

/// The certificate the listener at `addr` presents (its text form), if it speaks TLS.
fn served_certificate(addr: &str) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", addr, "-showcerts"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start + 25;
    let mut x509 = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-ext", "subjectAltName"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    x509.stdin
        .take()?
        .write_all(text[start..end].as_bytes())
        .ok()?;
    let out = x509.wait_with_output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn faults_leave_every_proxy_its_last_good_configuration() {
    let dir = temp_dir("cp-faults");
    let names = ["web-1", "web-2", "web-3"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut mesh = Mesh::new(ports[0], &names);
    for (i, p) in ports.iter().enumerate().skip(1) {
        mesh.dataplanes[i].1 = Some(format!("  type: prometheus\n  conf: {{port: {p}}}\n"));
    }
    mesh.filter_regex = Some("server.*".into());
    mesh.write(&dir);
    let mut cp = ControlPlane::start(&dir, &["--wasm", wasm().to_str().expect("UTF-8 path")]);
    let envoys: Vec<Envoy> = names
        .iter()
        .zip(&ports)
        .map(|(n, p)| cp.envoy(n, *p))
        .collect();
    let pids: Vec<u32> = envoys.iter().map(Envoy::pid).collect();
    let only = |prefix: &'static str| {
        move |b: &str| {
            !samples(b, "envoy_").is_empty()
                && samples(b, "envoy_").iter().all(|l| l.starts_with(prefix))
        }
    };
    let all_serve = |check: &dyn Fn(&str) -> bool| {
        ports
            .iter()
            .all(|p| check(&body(&scrape_url(*p, "/metrics"))))
    };
    assert!(all_serve(&only("envoy_server")));

    // 1. A file that does not load: logged, counted, the last good configuration stays.
    let good = std::fs::read_to_string(dir.join("resources.yaml")).expect("read");
    std::fs::write(
        dir.join("resources.yaml"),
        good.replace(&format!("port: {}", ports[0]), "port: 70000"),
    )
    .expect("write");
    assert!(
        within(Duration::from_secs(5), || cp
            .metric("meshmetrics_cp_resource_load_errors_total")
            >= 1.0)
        .is_some(),
        "the bad file was not counted:\n{}",
        cp.log()
    );
    assert!(
        cp.log().contains("70000"),
        "the log does not say what is wrong:\n{}",
        cp.log()
    );
    assert!(
        all_serve(&only("envoy_server")),
        "a proxy lost its configuration"
    );

    // 2. A NACK: web-3's new port is taken, so its Envoy refuses the listener. It is logged
    // with Envoy's reason and counted; web-3 keeps its old listener, and the others still get
    // the next change.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let lds_pushes = cp.metric("meshmetrics_cp_pushes_total{type=\"lds\"}");
    mesh.dataplanes[2].1 = Some(format!(
        "  type: prometheus\n  conf: {{port: {taken_port}}}\n"
    ));
    mesh.write(&dir);
    assert!(
        within(Duration::from_secs(5), || cp
            .metric("meshmetrics_cp_nacks_total{type=\"lds\"}")
            >= 1.0)
        .is_some(),
        "no NACK counted:\n{}",
        cp.log()
    );
    // Only the proxy the change concerns was pushed a listener (and, refused, not pushed again).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cp.metric("meshmetrics_cp_pushes_total{type=\"lds\"}"),
        lds_pushes + 1.0,
        "a change to web-3 was pushed to other proxies too:\n{}",
        cp.log()
    );
    assert!(cp.log().contains("rejected lds"), "{}", cp.log());
    assert!(
        !body(&scrape_url(ports[2], "/metrics")).is_empty(),
        "web-3 lost its listener"
    );
    mesh.filter_regex = Some("^cluster_manager.*".into());
    mesh.write(&dir);
    for p in &ports[..2] {
        assert!(
            within(LIVE, || only("envoy_cluster_manager")(&body(&scrape_url(
                *p, "/metrics"
            ))))
            .is_some(),
            "a proxy was held up by another's NACK:\n{}\nscrape:\n{}",
            cp.log(),
            samples(&body(&scrape_url(*p, "/metrics")), "envoy_")
                .into_iter()
                .filter(|l| !l.starts_with("envoy_cluster_manager"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    drop(taken);

    // 3. The control plane down: every Envoy keeps serving; a change made meanwhile is served
    // once it is back and the Envoys have reconnected.
    cp.stop();
    std::thread::sleep(Duration::from_millis(500));
    // web-3 refused the last listener: it serves the one before.
    for (p, prefix) in ports.iter().zip([
        "envoy_cluster_manager",
        "envoy_cluster_manager",
        "envoy_server",
    ]) {
        assert!(
            only(prefix)(&body(&scrape_url(*p, "/metrics"))),
            "the proxy on {p} stopped serving its last configuration without its control plane"
        );
    }
    mesh.dataplanes[2].1 = Some(format!(
        "  type: prometheus\n  conf: {{port: {}}}\n",
        ports[2]
    ));
    mesh.filter_regex = Some("server.*".into());
    mesh.write(&dir);
    cp.restart();
    assert!(
        within(Duration::from_secs(40), || all_serve(&only("envoy_server"))).is_some(),
        "the Envoys did not get the current configuration after the control plane came back:\n{}",
        cp.log()
    );
    // web-3's configuration is the one it kept, so only the count shows it back (Envoy retries
    // its ADS stream with a backoff of its own).
    assert!(
        within(Duration::from_secs(40), || cp
            .metric("meshmetrics_cp_connected_proxies")
            >= 3.0)
        .is_some(),
        "not every Envoy reconnected:\n{}",
        cp.log()
    );
    let now: Vec<u32> = envoys.iter().map(Envoy::pid).collect();
    assert_eq!(now, pids, "an Envoy was restarted");
}

#[test]
fn the_listener_over_xds_equals_the_static_one() {
    let dir = temp_dir("cp-same");
    let a = app(Reply::text("app_requests_total 1\n"));
    let mut mesh = Mesh::new(free_port(), &["web-1"]);
    mesh.apps = vec![("a".into(), a.addr.port(), "/metrics".into())];
    mesh.filter_regex = Some("server.*".into());
    mesh.write(&dir);
    let admin = free_port();
    let dump = |e: &Envoy, what: &str| -> Vec<Value> {
        let v: Value =
            serde_json::from_str(&e.admin(&format!("/config_dump?resource={what}")).body)
                .expect("config_dump");
        v["configs"].as_array().cloned().unwrap_or_default()
    };
    // Static: the bootstrap `meshmetrics bootstrap` writes.
    let res = resources(&mesh.yaml());
    let e = effective_of(&res, "web-1");
    let mut o = Options::new(wasm());
    o.admin_port = admin;
    o.certs_dir = dir.clone();
    let b = bootstrap::bootstrap(&e, &o).expect("bootstrap").config;
    let (static_listener, static_clusters) = {
        let envoy = Envoy::start_config(
            "static",
            &b,
            admin,
            ([127, 0, 0, 1], mesh.port).into(),
            true,
        );
        (
            dump(&envoy, "static_listeners")[0]["listener"].clone(),
            dump(&envoy, "static_clusters")
                .iter()
                .map(|c| c["cluster"].clone())
                .collect::<Vec<_>>(),
        )
    };
    // Over xDS, with the module from the same local path.
    let cp = ControlPlane::start(
        &dir,
        &["--local-wasm", wasm().to_str().expect("UTF-8 path")],
    );
    let b = cp.bootstrap("web-1", admin);
    let envoy = Envoy::start_config("xds", &b, admin, ([127, 0, 0, 1], mesh.port).into(), true);
    let xds_listener = dump(&envoy, "dynamic_listeners")[0]["active_state"]["listener"].clone();
    let xds_clusters: Vec<Value> = dump(&envoy, "dynamic_active_clusters")
        .iter()
        .map(|c| c["cluster"].clone())
        .collect();
    assert!(!static_listener.is_null());
    assert_eq!(
        xds_listener, static_listener,
        "the listener differs between the two modes"
    );
    assert_eq!(
        xds_clusters, static_clusters,
        "the clusters differ between the two modes"
    );
}
