//! A real Prometheus (Debian's `prometheus`, started here on loopback with its own data
//! directory) discovers dataplanes through `meshmetrics discovery`'s `http_sd` endpoint, scrapes
//! each through the filter in a real Envoy, and stores series with exactly one `mesh`,
//! `dataplane` and `service` and no `exported_*` labels. A dataplane added later is discovered
//! without any restart.

use std::path::Path;
use std::time::Duration;

use meshmetrics_e2e::*;

/// A dataplane's resource file and a running proxy + app for it.
fn dataplane(dir: &Path, name: &str) -> (Proxy, AppServer) {
    let app = app(Reply::text(format!(
        "# HELP orders_total Orders.\n# TYPE orders_total counter\norders_total{{code=\"200\"}} 5\n# HELP app_info_up Up.\n# TYPE app_info_up gauge\napp_info_up{{pod=\"{name}\"}} 1\n"
    )));
    let port = free_port();
    let yaml = format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {}\n    tags: {{kuma.io/service: {name}-svc, version: v1}}\nmetrics:\n  type: prometheus\n  conf:\n    port: {port}\n    aggregate:\n    - {{name: orders, port: {}}}\n",
        free_port(),
        app.addr.port()
    );
    let file = dir.join(format!("{name}.yaml"));
    // Written under another name first, so discovery never reads half a file.
    std::fs::write(dir.join(format!(".{name}.tmp")), &yaml).unwrap();
    let res = meshmetrics::read_resources(&[dir.to_path_buf()]).unwrap();
    let mut all = res;
    let docs = meshmetrics::resources::yaml::parse(&yaml, Path::new("dp.yaml")).unwrap();
    let one = meshmetrics::Resources::read(&docs);
    all.dataplanes.extend(one.dataplanes);
    let proxy = Proxy::start_exact(Backend::Envoy, effective_of(&all, name), |_| {});
    std::fs::rename(dir.join(format!(".{name}.tmp")), &file).unwrap();
    (proxy, app)
}

#[test]
fn prometheus_discovers_scrapes_and_stores_coherent_series() {
    let dir = temp_dir("resources");
    std::fs::write(
        dir.join("mesh.yaml"),
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf: {skipMTLS: true}\n",
    )
    .unwrap();
    let dp1 = dataplane(&dir, "dp-1");
    let dp2 = dataplane(&dir, "dp-2");

    // Our discovery server, watching the directory.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let discovery = format!("http://{}", listener.local_addr().unwrap());
    let paths = vec![dir.clone()];
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            meshmetrics::discovery::run(
                paths,
                listener,
                Duration::from_millis(200),
                None,
                std::future::pending(),
            )
            .await
        })
    });

    let config = meshmetrics::discovery::prometheus::scrape_config(
        &discovery,
        "meshmetrics",
        "1s",
        &Default::default(),
        &Default::default(),
    );
    let prom = Prometheus::start(&format!("global:\n  evaluation_interval: 1s\n{config}"));
    prom.wait_until("scraping both dataplanes", |p| {
        let mut up = p.targets_up();
        up.sort();
        up == ["dp-1", "dp-2"]
    });
    prom.wait_until("holding series", |p| {
        p.query("envoy_server_live").len() == 2 && p.query("orders_total").len() == 2
    });

    // Envoy's series: the three identity labels come from discovery (target labels).
    let mut seen = Vec::new();
    for s in prom.query("envoy_server_live") {
        let m = &s["metric"];
        assert_eq!(m["mesh"], "default", "{s}");
        seen.push((
            m["dataplane"].as_str().unwrap().to_owned(),
            m["service"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("dp-1".to_owned(), "dp-1-svc".to_owned()),
            ("dp-2".to_owned(), "dp-2-svc".to_owned())
        ]
    );
    // The apps' series: labelled by the filter, kept by honor_labels, equal to the target's.
    for s in prom.query("orders_total") {
        let m = &s["metric"];
        assert_eq!(m["aggregate"], "orders", "{s}");
        assert_eq!(m["code"], "200");
        assert_eq!(
            format!("{}-svc", m["dataplane"].as_str().unwrap()),
            m["service"].as_str().unwrap()
        );
    }
    // No series of this job anywhere has an exported_* label.
    let series = prom.api("/api/v1/series?match%5B%5D=%7Bjob%3D%22meshmetrics%22%7D");
    let series = series.as_array().unwrap();
    assert!(series.len() > 100, "{} series", series.len());
    for s in series {
        let names: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert!(!names.iter().any(|n| n.starts_with("exported_")), "{s}");
        for l in ["mesh", "dataplane", "service"] {
            assert!(s.get(l).is_some(), "{l} missing from {s}");
        }
    }
    // The filter's own health reports every source up.
    let up = prom.query("meshmetrics_source_up == 0");
    assert!(up.is_empty(), "failed sources: {up:?}");

    // A third dataplane file: discovered and scraped without restarting anything.
    let dp3 = dataplane(&dir, "dp-3");
    prom.wait_until("scraping the new dataplane", |p| p.targets_up().len() == 3);
    prom.wait_until("holding its series", |p| {
        p.query("envoy_server_live{dataplane=\"dp-3\",service=\"dp-3-svc\",mesh=\"default\"}")
            .len()
            == 1
    });
    drop((dp1, dp2, dp3));
}

/// Prometheus discovers through a secured control plane: https with the control plane's CA and
/// the bearer token discovery requires, both written by `meshmetrics prometheus-config`. With
/// the wrong token it discovers nothing.
#[test]
fn prometheus_discovers_through_a_control_plane_over_tls_with_a_bearer_token() {
    use meshmetrics_e2e::controlplane::{ControlPlane, meshmetrics_bin};
    let dir = temp_dir("sd-secured");
    let files = dir.join("resources");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("r.yaml"),
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf: {skipMTLS: true}\n---\ntype: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18000\n    tags: {kuma.io/service: dp-1-svc}\n",
    )
    .unwrap();
    meshmetrics::auth::keys::generate(&dir.join("keys"), "default").unwrap();
    let ca = dir.join("ca");
    meshmetrics::tls::init_ca(&ca, "control-plane").unwrap();
    let id = meshmetrics::tls::Identity {
        spiffe: None,
        dns: vec![],
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let (cert, key) =
        meshmetrics::tls::issue(&ca, &id, &dir.join("cp"), Duration::from_secs(86_400)).unwrap();
    let token = dir.join("sd.token");
    std::fs::write(&token, "the-sd-token\n").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let cp = ControlPlane::start_with_ca(
        &files,
        &[
            "--wasm",
            &s(&wasm()),
            "--keys",
            &s(&dir.join("keys")),
            "--xds-cert",
            &s(&cert),
            "--xds-key",
            &s(&key),
            "--discovery-token-file",
            &s(&token),
        ],
        Some(&ca.join("ca.pem")),
    );
    let config = |token_file: &Path| {
        let out = std::process::Command::new(meshmetrics_bin())
            .args(["prometheus-config", "--interval", "1s", "--discovery"])
            .arg(cp.url(""))
            .arg("--discovery-token-file")
            .arg(token_file)
            .arg("--discovery-ca")
            .arg(ca.join("ca.pem"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let targets = |p: &Prometheus| {
        p.api("/api/v1/targets")["activeTargets"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let wrong = dir.join("wrong.token");
    std::fs::write(&wrong, "not-it").unwrap();
    let refused = Prometheus::start(&format!(
        "global:\n  evaluation_interval: 1s\n{}",
        config(&wrong)
    ));
    let good = Prometheus::start(&format!(
        "global:\n  evaluation_interval: 1s\n{}",
        config(&token)
    ));
    good.wait_until("discovering dp-1 over TLS with the token", |p| {
        p.api("/api/v1/targets")["activeTargets"]
            .as_array()
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t["labels"]["dataplane"] == "dp-1" && t["labels"]["mesh"] == "default")
            })
    });
    assert_eq!(targets(&refused), 0, "discovered with the wrong token");
}
