//! The wasmtime host's guarantees, with small hand-written modules (WAT) standing in for a
//! broken filter: there is no real broken filter to load, so these are the one place a stand-in
//! is used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::Options;
use meshmetrics::runtime::{Limits, Request, Runtime};
use meshmetrics::serve::Endpoint;

fn effective() -> meshmetrics::Effective {
    let yaml = "type: Mesh\nname: m\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {skipMTLS: true}}]}\n---\ntype: Dataplane\nmesh: m\nname: d\nnetworking: {address: 127.0.0.1, inbound: [{port: 80}]}\n";
    let docs = meshmetrics::resources::yaml::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
    meshmetrics::effective(&meshmetrics::Resources::read(&docs), "d")
        .unwrap()
        .0
}

/// A module with the exports a proxy-wasm host calls, `body` as its request-headers callback.
fn module(request_headers_body: &str) -> String {
    format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
          (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {request_headers_body})
          (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
          (func (export "proxy_on_log") (param i32))
          (func (export "proxy_on_delete") (param i32)))"#
    )
}

fn endpoint(wat: &str, limits: Limits) -> anyhow::Result<Endpoint> {
    let log: meshmetrics::runtime::LogSinkFn = Arc::new(|_: &str, _: &str| {});
    Endpoint::with_log(
        wat.as_bytes(),
        &effective(),
        &Options::new("x.wasm"),
        "127.0.0.1:1",
        limits,
        log,
    )
}

fn scrape(e: &Endpoint) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(e.handle(Request {
        method: "GET".into(),
        path: "/metrics".into(),
        headers: vec![],
    }));
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

#[test]
fn a_missing_import_is_refused_at_load_by_name() {
    let wat = r#"(module
        (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
        (import "env" "proxy_teleport" (func (param i32) (result i32)))
        (import "wasi_snapshot_preview1" "path_open" (func (param i32) (result i32)))
        (memory (export "memory") 1))"#;
    let log: meshmetrics::runtime::LogSinkFn = Arc::new(|_: &str, _: &str| {});
    let err = Runtime::load(
        wat.as_bytes(),
        "{}".into(),
        Default::default(),
        Limits::default(),
        log,
    )
    .err()
    .expect("refused");
    assert_eq!(
        err.to_string(),
        "the module imports env.proxy_teleport, wasi_snapshot_preview1.path_open, which this proxy-wasm host does not provide"
    );
}

#[test]
fn a_module_that_is_not_a_filter_is_refused() {
    let log: meshmetrics::runtime::LogSinkFn = Arc::new(|_: &str, _: &str| {});
    let err = Runtime::load(
        b"(module (memory (export \"memory\") 1))",
        "{}".into(),
        Default::default(),
        Limits::default(),
        log,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("not a proxy-wasm filter"), "{err}");
}

#[test]
fn a_filter_that_loops_forever_is_stopped() {
    let limits = Limits {
        callback_time: Duration::from_millis(200),
        ..Limits::default()
    };
    let e = endpoint(&module("(loop $forever (br $forever)) i32.const 0"), limits).unwrap();
    let started = Instant::now();
    let (status, body) = scrape(&e);
    assert_eq!(status, 500);
    assert!(
        body.contains(
            "filter callback proxy_on_request_headers ran past its time limit and was stopped"
        ),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The host is fine: the next request is served (and stopped) the same way.
    assert_eq!(scrape(&e).0, 500);
}

#[test]
fn a_trap_is_a_500_with_its_reason() {
    let e = endpoint(&module("unreachable"), Limits::default()).unwrap();
    let (status, body) = scrape(&e);
    assert_eq!(status, 500);
    assert!(body.contains("filter callback proxy_on_request_headers trapped: wasm `unreachable` instruction executed"), "{body}");
}

#[test]
fn memory_is_capped() {
    // Asks for 128 MiB more; under a 64 MiB cap the grow fails and the module traps on it.
    let grow = "(if (i32.eq (memory.grow (i32.const 2048)) (i32.const -1)) (then unreachable)) i32.const 0";
    let capped = endpoint(
        &module(grow),
        Limits {
            memory_bytes: 64 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(scrape(&capped).0, 500);
    let roomy = endpoint(
        &module(grow),
        Limits {
            memory_bytes: 256 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        scrape(&roomy).0,
        404,
        "grown fine, then passed through (no local response)"
    );
}

#[test]
fn a_filter_refusing_its_configuration_fails_at_start() {
    let wat = module("i32.const 0").replace(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)"#,
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 0)"#,
    );
    let err = endpoint(&wat, Limits::default()).err().expect("refused");
    assert!(
        err.to_string().contains("refused its configuration"),
        "{err}"
    );
}
