//! The `meshmetrics` command as a user runs it.

use std::process::Command;

fn meshmetrics(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshmetrics"))
        .args(args)
        .output()
        .expect("run meshmetrics");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("meshmetrics-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn validate_lists_every_violation_and_fails() {
    let file = write(
        "bad.yaml",
        "apiVersion: kuma.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  metrics:\n    enabledBackend: prom-2\n    backends:\n    - name: prom-1\n      type: prometheus\n      conf:\n        port: 70000\n        path: metrics\n        skipMTLS: true\n        tls: {mode: providedTLS}\n        envoy: {filterRegex: \"(\", usedonly: true}\n        aggregate:\n        - {name: a, port: 8000}\n        - {name: a}\n    - name: prom-1\n      type: statsd\n",
    );
    let (ok, _, err) = meshmetrics(&["validate", "-f", &file]);
    assert!(!ok);
    for expected in [
        "warning: Mesh default: spec.metrics.backends[0].conf.envoy.usedonly: unknown field, ignored (did you mean \"usedOnly\"?)",
        "error: Mesh default: spec.metrics.backends[0].conf.port: 70000 is not a port (1-65535)",
        "error: Mesh default: spec.metrics.backends[0].conf.path: \"metrics\" does not start with '/'",
        "error: Mesh default: spec.metrics.backends[0].conf.tls.mode: providedTLS contradicts skipMTLS: true (which means disabled)",
        "error: Mesh default: spec.metrics.backends[0].conf.envoy.filterRegex: \"(\" does not compile",
        "error: Mesh default: spec.metrics.backends[0].conf.aggregate[1].name: \"a\" is used by another aggregate entry",
        "error: Mesh default: spec.metrics.backends[0].conf.aggregate[1].port: is required",
        "error: Mesh default: spec.metrics.backends[1].name: \"prom-1\" is used by another backend",
        "error: Mesh default: spec.metrics.backends[1].type: \"statsd\" is not a known backend type (prometheus)",
        "error: Mesh default: spec.metrics.enabledBackend: \"prom-2\" is not one of the backends",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn metrics_port_clashing_with_an_inbound_port_is_refused() {
    let file = write(
        "clash.yaml",
        "type: Mesh\nname: default\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {port: 8080}}]}\n---\ntype: Dataplane\nmesh: default\nname: dp\nnetworking: {address: 127.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n",
    );
    let (ok, _, err) = meshmetrics(&["validate", "-f", &file]);
    assert!(!ok);
    assert!(
        err.contains(
            "error: Dataplane dp: metrics.conf.port: 8080 is also an inbound port of the dataplane"
        ),
        "{err}"
    );
}

#[test]
fn validate_prints_the_effective_configuration() {
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../envoy/examples/dataplane-override"
    );
    let (ok, out, _) = meshmetrics(&["validate", "-f", examples]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["port"], 5671);
    assert_eq!(v[0]["path"], "/non-standard-path");
    let names: Vec<&str> = v[0]["aggregate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my-service", "batch-exporter"]);
    assert_eq!(v[0]["aggregate"][0]["path"], "/metrics/v2");
}

#[test]
fn bootstrap_names_a_missing_dataplane_and_a_missing_wasm() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/examples/short-form");
    let (ok, _, err) = meshmetrics(&[
        "bootstrap",
        "--dataplane",
        "nope",
        "-f",
        examples,
        "--wasm",
        "/x.wasm",
    ]);
    assert!(!ok);
    assert!(
        err.contains(
            "Dataplane nope: no Dataplane or Pod \"nope\" among the resources (found: [\"default/backend-1\"])"
        ),
        "{err}"
    );
    let (ok, _, err) = meshmetrics(&[
        "bootstrap",
        "--dataplane",
        "backend-1",
        "-f",
        examples,
        "--wasm",
        "/nonexistent.wasm",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--wasm /nonexistent.wasm: no such file (build it with scripts/build-filter)"),
        "{err}"
    );
}

#[test]
fn bootstrap_carries_the_filter_configuration_as_a_string_value() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/examples/long-form");
    let wasm = write("f.wasm", "");
    let (ok, out, _) = meshmetrics(&[
        "bootstrap",
        "--dataplane",
        "backend-1",
        "-f",
        examples,
        "--wasm",
        &wasm,
    ]);
    assert!(ok);
    assert!(
        out.contains("type.googleapis.com/google.protobuf.StringValue"),
        "{out}"
    );
    let docs = meshmetrics::resources::yaml::parse(&out, std::path::Path::new("out.yaml")).unwrap();
    let listener = &docs[0].value["static_resources"]["listeners"][0];
    let filters = listener["filter_chains"][0]["filters"]
        .as_array()
        .expect("a chain's filters");
    let names: Vec<_> = filters.iter().map(|f| f["name"].as_str()).collect();
    // Connections are limited and watched (the answering budget) before HTTP.
    assert_eq!(
        names,
        [
            Some("envoy.filters.network.connection_limit"),
            Some("envoy.filters.network.wasm"),
            Some("envoy.filters.network.http_connection_manager")
        ]
    );
    let wasm_filter = &filters[2]["typed_config"]["http_filters"]
        .as_array()
        .and_then(|filters| filters.iter().find(|f| f["name"] == "meshmetrics"))
        .expect("the meshmetrics filter is in the chain")["typed_config"]["config"];
    let config = meshmetrics_filter::config::FilterConfig::from_json(
        wasm_filter["configuration"]["value"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        config.sources[0].request_path(),
        "/stats/prometheus?usedonly&filter=http2_act.%2A"
    );
    assert_eq!(
        docs[0].value["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
}

/// `meshmetrics ca init` / `ca issue` and a providedTLS bootstrap from the `KUMA_…` variables,
/// as the README's "Securing metrics" section has users type them.
#[test]
fn ca_commands_and_provided_tls_from_the_environment() {
    let dir = std::env::temp_dir().join(format!("meshmetrics-cli-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.display().to_string();
    let (ok, out, err) = meshmetrics(&["ca", "init", "--dir", &d, "--mesh", "default"]);
    assert!(ok, "{err}");
    assert!(out.contains("ca.pem"), "{out}");
    let (ok, _, err) = meshmetrics(&["ca", "init", "--dir", &d]);
    assert!(!ok);
    assert!(err.contains("exists already"), "{err}");
    let server = format!("{d}/server");
    let (ok, _, err) = meshmetrics(&[
        "ca",
        "issue",
        "--dir",
        &d,
        "--service",
        "web",
        "--dns",
        "localhost",
        "-o",
        &server,
    ]);
    assert!(ok, "{err}");

    let yaml = write(
        "provided.yaml",
        "type: Mesh\nname: default\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {tls: {mode: providedTLS}}}]}\n---\ntype: Dataplane\nmesh: default\nname: dp\nnetworking: {address: 127.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n",
    );
    let wasm = write("tls.wasm", "");
    let run = |cert: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshmetrics"))
            .args([
                "bootstrap",
                "--dataplane",
                "dp",
                "-f",
                &yaml,
                "--wasm",
                &wasm,
            ])
            .args(["--certs-dir", &d])
            .env("KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH", cert)
            .env(
                "KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH",
                format!("{server}.key"),
            )
            .output()
            .expect("run meshmetrics");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&format!("{server}.pem"));
    assert!(ok, "{err}");
    assert!(out.contains("tls_certificate_sds_secret_configs"), "{out}");
    let (ok, _, err) = run("/no/such/cert.pem");
    assert!(!ok);
    assert!(
        err.contains("Dataplane dp: metrics.conf.tls.mode providedTLS: certificate /no/such/cert.pem: cannot read"),
        "{err}"
    );
}

/// An 800-byte "billion laughs": nine levels of ten aliases each.
fn alias_bomb() -> String {
    let mut y = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        y.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    y
}

#[test]
fn an_alias_bomb_is_refused_not_expanded() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 1000);
    let f = write("bomb.yaml", &format!("type: Mesh\nname: default\n{bomb}"));
    let started = std::time::Instant::now();
    let (ok, _, err) = meshmetrics(&["validate", "-f", &f]);
    assert!(!ok);
    assert!(err.contains("aliases are expanded"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn an_empty_file_is_an_error_not_an_empty_mesh() {
    let f = write("empty.yaml", "");
    let (ok, out, err) = meshmetrics(&["validate", "-f", &f]);
    assert!(!ok, "{out}");
    assert!(err.contains("no resources"), "{err}");
}

const MESH_OK: &str = "type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n      skipMTLS: true\n";

/// `validate` refuses what the bootstrap, the filter or Envoy would refuse later.
#[test]
fn validate_refuses_what_would_fail_later() {
    let dp = |name: &str, address: &str, metrics: &str| {
        format!(
            "---\ntype: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: {address}\n  inbound: [{{port: 8080, tags: {{kuma.io/service: web}}}}]\n{metrics}"
        )
    };
    let agg = |entry: &str| {
        format!("metrics:\n  type: prometheus\n  conf:\n    aggregate:\n    - {entry}\n")
    };
    let cases = [
        (dp("\"../../escaped\"", "10.0.0.1", ""), "name"),
        (dp("web-1", "backend.local", ""), "networking.address"),
        (
            dp("web-1", "10.0.0.1", &agg("{name: envoy, port: 9000}")),
            "\"envoy\" names Envoy's own stats",
        ),
        (
            dp(
                "web-1",
                "10.0.0.1",
                &agg("{name: a, port: 9000, address: \"http://x/y\"}"),
            ),
            "neither an IP address nor a host name",
        ),
        (
            dp(
                "web-1",
                "10.0.0.1",
                &agg("{name: a, port: 9000, path: \"/m\\nx\"}"),
            ),
            "a path has no blanks",
        ),
        (
            dp("web-1", "10.0.0.1", &agg("{name: self, port: 5670}")),
            "is the metrics listener itself",
        ),
        (
            format!("{}---\n{MESH_OK}", dp("web-1", "10.0.0.1", "")),
            "is used by another Mesh",
        ),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let f = write(&format!("case-{i}.yaml"), &format!("{MESH_OK}{extra}"));
        let (ok, out, err) = meshmetrics(&["validate", "-f", &f]);
        assert!(!ok, "case {i} accepted:\n{out}");
        assert!(err.contains(want), "case {i}: want {want:?} in:\n{err}");
    }
}

#[test]
fn bootstrap_never_writes_outside_the_certs_dir() {
    // Even a name validate refuses must not reach the file system (defense in depth).
    let f = write(
        "escape.yaml",
        &format!(
            "{MESH_OK}---\ntype: Dataplane\nmesh: default\nname: \"../../escaped\"\nnetworking: {{address: 10.0.0.1, inbound: [{{port: 8080}}]}}\n"
        ),
    );
    let (ok, _, err) = meshmetrics(&[
        "bootstrap",
        "--dataplane",
        "../../escaped",
        "-f",
        &f,
        "--wasm",
        &f,
        "-o",
        "/tmp/mm-escape/envoy.yaml",
    ]);
    assert!(!ok);
    assert!(!err.is_empty());
    assert!(!std::path::Path::new("/tmp/escaped.pem").exists());
    assert!(!std::path::Path::new("/tmp/escaped-metrics-sds.yaml").exists());
}

#[test]
fn dataplanes_are_told_apart_by_mesh() {
    let two = "type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - {name: p, type: prometheus, conf: {skipMTLS: true, port: 5670}}\n---\n\
type: Mesh\nname: other\nmetrics:\n  enabledBackend: p\n  backends:\n  - {name: p, type: prometheus, conf: {skipMTLS: true, port: 5671}}\n---\n\
type: Dataplane\nmesh: default\nname: web-1\nnetworking: {address: 10.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n---\n\
type: Dataplane\nmesh: other\nname: web-1\nnetworking: {address: 10.0.0.2, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n";
    let f = write("two-meshes.yaml", two);
    let (ok, out, err) = meshmetrics(&["validate", "-f", &f]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let meshes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mesh"].as_str().unwrap())
        .collect();
    assert_eq!(meshes, ["default", "other"], "each once, with its own mesh");
    let (ok, _, err) = meshmetrics(&["validate", "-f", &f, "--dataplane", "web-1"]);
    assert!(!ok);
    assert!(
        err.contains("ambiguous") && err.contains("other/web-1"),
        "{err}"
    );
    let (ok, out, err) = meshmetrics(&["validate", "-f", &f, "--dataplane", "other/web-1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("10.0.0.2") && !out.contains("10.0.0.1"),
        "{out}"
    );
}

/// A TrafficPermission source the generated RBAC could enforce only in part (its service, not
/// its other tags) is refused, not enforced loosely: failing open would admit every `prom`
/// certificate whatever its `env`.
#[test]
fn a_permission_source_rbac_cannot_enforce_exactly_is_refused() {
    let file = write(
        "rbac.yaml",
        "type: Mesh\nname: default\nmtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {tls: {mode: activeMTLSBackend}}}]}\n---\ntype: Dataplane\nmesh: default\nname: dp\nnetworking: {address: 127.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}\n---\ntype: TrafficPermission\nmesh: default\nname: prom-prod-only\nsources: [{match: {kuma.io/service: prom, env: prod}}]\ndestinations: [{match: {kuma.io/service: dataplane-metrics}}]\n",
    );
    let (ok, _, err) = meshmetrics(&["validate", "-f", &file]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("error: Dataplane dp: metrics: TrafficPermission prom-prod-only: sources[0].match: env cannot be enforced"),
        "{err}"
    );
}

/// Two pods of one name in two namespaces are two dataplanes: anything kept per dataplane (the
/// certificate the control plane issued) is kept per full identity.
#[test]
fn pods_of_one_name_in_two_namespaces_have_two_identities() {
    let pod = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: {ns}\n  labels: {{kuma.io/mesh: default}}\nstatus: {{podIP: 10.0.0.1}}\nspec:\n  containers: [{{name: app, ports: [{{containerPort: 8080}}]}}]\n"
        )
    };
    let yaml = format!(
        "type: Mesh\nname: default\nmetrics: {{enabledBackend: p, backends: [{{name: p, type: prometheus}}]}}\n---\n{}---\n{}",
        pod("a"),
        pod("b")
    );
    let res = meshmetrics::Resources::read(
        &meshmetrics::resources::yaml::parse(&yaml, std::path::Path::new("pods.yaml")).unwrap(),
    );
    let a = meshmetrics::effective(&res, "web.a");
    let b = meshmetrics::effective(&res, "web.b");
    match (a, b) {
        (Ok((a, _)), Ok((b, _))) => assert_ne!(a.id, b.id),
        (a, b) => panic!("{:?} / {:?}", a.err().map(|e| e.0), b.err().map(|e| e.0)),
    }
}
