//! The generated Envoy configuration, reviewed as YAML: each case's output is compared with
//! `host/testdata/<case>.yaml`. A change to a generator shows up here as a diff to read; when it
//! is meant, regenerate with `UPDATE_GOLDEN=1 cargo test -p meshmetrics --test golden`.

use std::path::{Path, PathBuf};

use meshmetrics::bootstrap::{self, Code, Delivery, Options};
use meshmetrics::generator::{generate, json, proto};
use meshmetrics::resources::yaml::{parse, to_yaml_text};
use meshmetrics::{Resources, effective};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(format!("{name}.yaml"))
}

fn check(name: &str, value: &serde_json::Value) {
    let text = to_yaml_text(value);
    let file = testdata(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&file)
        .unwrap_or_else(|_| panic!("{} is missing: UPDATE_GOLDEN=1 writes it", file.display()));
    assert!(
        want == text,
        "{name}: the generated configuration changed; review the diff and rerun with UPDATE_GOLDEN=1 if it is meant.\n--- {}\n{want}\n--- generated\n{text}",
        file.display()
    );
}

const MESH: &str = "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: 5670\n      tls: {mode: TLS}\n      envoy: {filterRegex: \"^cluster\\\\.\", usedOnly: true}\n      aggregate:\n      - {name: orders, port: 8081}\n      - {name: search, address: search.local, port: 9090, path: /stats}\n---\ntype: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 10.0.0.7\n  inbound: [{port: 8080, tags: {kuma.io/service: backend}}]\n";

fn resources(tls: &str) -> Resources {
    let yaml = MESH.replace("TLS", tls);
    Resources::read(&parse(&yaml, Path::new("golden.yaml")).expect("YAML"))
}

fn options() -> Options {
    let mut o = Options::new("/opt/meshmetrics/meshmetrics_filter.wasm");
    o.code = Code::Local("/opt/meshmetrics/meshmetrics_filter.wasm".into());
    o
}

#[test]
fn static_bootstrap_plaintext_with_aggregates() {
    let (e, _) = effective(&resources("disabled"), "backend-1").expect("effective");
    let b = bootstrap::bootstrap(&e, &options()).expect("bootstrap");
    check("static-plaintext", &b.config);
}

/// The control-plane bootstrap of backend-1, with a token file and a CA when given.
fn control_plane(token_file: Option<&str>, ca_cert: Option<&str>) -> serde_json::Value {
    bootstrap::control_plane(&bootstrap::ControlPlane {
        host: "meshmetrics-cp.mesh.svc".into(),
        port: 5678,
        dataplane: "backend-1".into(),
        mesh: Some("default".into()),
        admin_port: 9901,
        max_body_bytes: meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES,
        token_file: token_file.map(Into::into),
        ca_cert: ca_cert.map(Into::into),
    })
    .expect("bootstrap")
    .config
}

#[test]
fn control_plane_bootstrap() {
    check("control-plane-bootstrap", &control_plane(None, None));
}

/// The secured form: ADS over Envoy's Google gRPC client, TLS verified against the CA for the
/// host dialed, the token read from its file for every stream.
#[test]
fn control_plane_bootstrap_with_token_and_tls() {
    let b = control_plane(
        Some("/var/run/meshmetrics/token"),
        Some("/var/run/meshmetrics/ca.pem"),
    );
    check("control-plane-bootstrap-secured", &b);
}

#[test]
fn pushed_listener_provided_tls_and_remote_module() {
    let (e, _) = effective(&resources("providedTLS"), "backend-1").expect("effective");
    let mut o = options();
    o.delivery = Delivery::Ads;
    o.provided_tls = Some(("/etc/metrics/tls.crt".into(), "/etc/metrics/tls.key".into()));
    o.code = Code::Remote {
        uri: "http://10.0.0.2:5676/wasm/0123abcd.wasm".into(),
        cluster: "meshmetrics_control_plane_http".into(),
        sha256: "0123abcd".into(),
    };
    let r = generate(&e, &o).expect("generate");
    let mut all: Vec<_> = r
        .listeners
        .iter()
        .map(|l| json::to_json(&proto::any(l)).expect("listener"))
        .collect();
    all.extend(
        r.secrets
            .iter()
            .map(|s| json::to_json(&proto::any(s)).expect("secret")),
    );
    all.extend(
        r.clusters
            .iter()
            .map(|c| json::to_json(&proto::any(c)).expect("cluster")),
    );
    check("pushed-provided-tls", &serde_json::Value::Array(all));
}
