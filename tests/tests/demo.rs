//! The demo a newcomer runs, and its docker-compose twin.
//!
//! `scripts/demo --once --check-dashboard` is run as the README has users run it (on loopback,
//! real Envoy, real Prometheus): the printed scrape must hold Envoy's and both apps' series with
//! identity labels, and every Grafana panel's PromQL must return data from the demo's Prometheus.
//! The compose stack cannot run here (no docker engine): it is validated with `docker-compose
//! config`, and its generated pieces (bootstrap, Prometheus config) are checked against the code.

use std::process::{Command, Stdio};

use meshmetrics::bootstrap::{self, Options};
use meshmetrics::resources::yaml::parse;
use meshmetrics_e2e::controlplane::{demo_app_bin, meshmetrics_bin};
use meshmetrics_e2e::{effective_of, envoy_validate, temp_dir, wasm, workspace_root};

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn demo_prints_a_labelled_scrape_and_every_dashboard_panel_has_data() {
    let root = workspace_root();
    let out = Command::new(root.join("scripts/demo"))
        .args(["--once", "--check-dashboard"])
        .env("MESHMETRICS_WASM", wasm())
        .env("MESHMETRICS_BIN", meshmetrics_bin())
        .env("MESHMETRICS_DEMO_APP_BIN", demo_app_bin())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/demo failed:\n{stdout}\n{stderr}"
    );

    // The scrape: Envoy's own stats and both apps, the apps' samples with identity labels.
    assert!(stdout.contains("\nenvoy_"), "{stdout}");
    for app in ["orders", "payments"] {
        let labelled = format!(
            "{app}_http_requests_total{{mesh=\"default\",dataplane=\"backend-1\",service=\"backend\",aggregate=\"{app}\",code=\"200\"}}"
        );
        assert!(
            stdout.contains(&labelled),
            "missing {labelled} in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("meshmetrics_source_up{source=\"payments\"} 1"),
        "{stdout}"
    );
    // Prometheus' view: Envoy's series got the same identity from discovery.
    assert!(
        stdout.contains("envoy_server_live{dataplane=\"backend-1\", instance=\"127.0.0.1:15670\", job=\"meshmetrics\", mesh=\"default\", service=\"backend\"} 1"),
        "{stdout}"
    );
    // Every panel of the dashboard answered with data.
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("envoy/demo/grafana/dashboards/meshmetrics.json"))
            .expect("read dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 3);
    for p in panels {
        let title = p["title"].as_str().expect("title");
        assert!(
            stdout.contains(&format!("panel ok: {title} (")),
            "{title}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("panel EMPTY"), "{stdout}");
    // The push: a real OTLP receiver got the apps' series, each under its scope, and Envoy's.
    for scope in ["scope orders:", "scope payments:", "scope envoy:"] {
        assert!(
            stdout.contains(scope),
            "{scope} not pushed:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        stdout.contains("orders_http_requests (sum, monotonic)"),
        "{stdout}"
    );
    // The live change: a new profile served by the same Envoy process.
    assert!(
        stdout.contains("by the same Envoy (pid") && stdout.contains("alive: yes"),
        "{stdout}\n{stderr}"
    );
    // Nothing left behind.
    for port in [15670, 18081, 18082, 15676, 15678, 19090, 14317] {
        assert!(
            !listening(port),
            "something still listens on {port} after the demo"
        );
    }
}

#[test]
fn compose_stack_is_valid() {
    let demo = workspace_root().join("envoy/demo");
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yaml", "config"])
        .current_dir(&demo)
        .output()
        .expect("docker-compose is missing: run scripts/install-deps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for service in [
        "bootstrap:",
        "envoy:",
        "orders:",
        "payments:",
        "control-plane:",
        "prometheus:",
        "grafana:",
        "otel-collector:",
    ] {
        assert!(text.contains(service), "service {service} missing:\n{text}");
    }
    // Envoy from the official image, the same minor as the tests' Envoy (envoy-server 1.40).
    assert!(text.contains("image: envoyproxy/envoy:v1.40"), "{text}");
}

#[test]
fn compose_configs_match_the_code() {
    let demo = workspace_root().join("envoy/demo");
    let file = demo.join("compose/resources.yaml");
    let yaml = std::fs::read_to_string(&file).expect("read compose resources");
    let res = meshmetrics::Resources::read(&parse(&yaml, &file).expect("YAML"));
    let e = effective_of(&res, "backend-1");
    assert_eq!(e.address, "172.28.0.10");
    let generated = bootstrap::bootstrap(&e, &Options::new(wasm())).expect("bootstrap");
    let (ok, log) = envoy_validate(&generated.config);
    assert!(ok, "envoy --mode validate:\n{log}");
    // The bootstrap the compose stack runs: the control plane's, as its `bootstrap` service
    // writes it (Envoy checks the files it names exist: here they stand in a temp directory for
    // the `secrets` volume).
    let secrets = temp_dir("compose-secrets");
    std::fs::write(secrets.join("backend-1.token"), "t").expect("token");
    meshmetrics::tls::init_ca(&secrets.join("cp-ca"), "control-plane").expect("CA");
    let cp = bootstrap::control_plane(&bootstrap::ControlPlane {
        host: "172.28.0.20".into(),
        port: 5678,
        dataplane: "backend-1".into(),
        mesh: Some("default".into()),
        admin_port: 9901,
        max_body_bytes: meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES,
        token_file: Some(secrets.join("backend-1.token")),
        ca_cert: Some(secrets.join("cp-ca/ca.pem")),
    })
    .expect("control-plane bootstrap");
    let (ok, log) = envoy_validate(&cp.config);
    assert!(
        ok,
        "envoy --mode validate (control-plane bootstrap):\n{log}"
    );
    let compose = std::fs::read_to_string(demo.join("docker-compose.yaml")).expect("read");
    for flag in [
        "--control-plane=172.28.0.20:5678",
        "--xds=0.0.0.0:5678",
        "--advertise-http=172.28.0.20:5676",
        "--token-file=/secrets/backend-1.token",
        "--ca-cert=/secrets/cp-ca/ca.pem",
        "--keys=/secrets/keys",
        "--xds-cert=/secrets/cp.pem",
        "--discovery-token-file=/secrets/discovery.token",
    ] {
        assert!(compose.contains(flag), "docker-compose.yaml lost {flag}");
    }

    // The committed prometheus.yml is exactly what `meshmetrics prometheus-config` prints.
    let printed = Command::new(meshmetrics_bin())
        .args([
            "prometheus-config",
            "--discovery",
            "https://172.28.0.20:5676",
            "--interval",
            "5s",
            "--discovery-token-file",
            "/secrets/discovery.token",
            "--discovery-ca",
            "/secrets/cp-ca/ca.pem",
        ])
        .output()
        .expect("run meshmetrics prometheus-config");
    let committed = std::fs::read_to_string(demo.join("compose/prometheus.yml")).expect("read");
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        committed,
        "regenerate envoy/demo/compose/prometheus.yml with meshmetrics prometheus-config"
    );
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(demo.join("compose/prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
