//! The engine inside wasmtime beside the engine native, on the same real-shaped Envoy body:
//! `cargo bench -p meshmetrics --bench engine_wasmtime` (needs `scripts/build-filter`).
//!
//! Under wasmtime the time measured is `proxy_on_http_call_response`: the engine plus the copies
//! across the wasm boundary (the body into the module, the merged answer out), which is what a
//! proxy pays. Native is `Merger::add_source` + `finish` on the same bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::{ADMIN_CLUSTER, Options, filter_config};
use meshmetrics::runtime::{Limits, Outcome, Request, Runtime};
use meshmetrics_demo_app::{AppServer, Reply};
use meshmetrics_filter::exposition::{Format, LabelSet, Merger};

// Only `envoy` is used here; `app` serves the engine benchmark.
#[allow(dead_code)]
#[path = "../../filter/benches/inputs.rs"]
mod inputs;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds = 15;
    let body = inputs::envoy(2000);
    let mb = body.len() as f64 / 1e6;

    let none = LabelSet::default();
    let mut merger = Merger::new();
    let native = median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                merger.begin(Format::Text, None);
                merger.add_source(&body, Format::Text, &none);
                std::hint::black_box(merger.finish().len());
                t.elapsed()
            })
            .collect(),
    );

    let wasm_path = std::env::var("MESHMETRICS_WASM").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/wasm32-wasip1/release/meshmetrics_filter.wasm"
        )
        .into()
    });
    let wasm = std::fs::read(&wasm_path).expect("the filter .wasm (run scripts/build-filter)");
    let app = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new({
            let body = body.clone();
            move |_: &meshmetrics_demo_app::Seen| Reply::text(body.clone())
        }),
    )
    .expect("serve the body");
    let yaml = "type: Mesh\nname: m\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {skipMTLS: true}}]}\n---\ntype: Dataplane\nmesh: m\nname: d\nnetworking: {address: 127.0.0.1, inbound: [{port: 80}]}\n";
    let docs = meshmetrics::resources::yaml::parse(yaml, std::path::Path::new("bench.yaml"))
        .expect("yaml");
    let e = meshmetrics::effective(&meshmetrics::Resources::read(&docs), "d")
        .expect("effective")
        .0;
    let config = filter_config(&e, &Options::new(&wasm_path)).to_json();
    let clusters = HashMap::from([(ADMIN_CLUSTER.to_owned(), app.addr.to_string())]);
    let runtime = Runtime::load(
        &wasm,
        config,
        clusters,
        Limits::default(),
        Arc::new(|_: &str, _: &str| {}),
    )
    .expect("load");
    let mut instance = runtime.instance().expect("instance");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let mut times = Vec::new();
    let mut out_len = 0;
    for _ in 0..rounds {
        let req = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            headers: vec![],
        };
        match rt.block_on(instance.handle(req)).expect("scrape") {
            Outcome::Local(r) => out_len = r.body.len(),
            Outcome::PassedThrough => panic!("not answered"),
        }
        times.push(instance.response_time());
    }
    let wasmtime = median(times);
    let memory = instance.memory_size();

    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "input: Envoy 1.40 shape, 2,000 clusters, {mb:.1} MB; output {:.1} MB",
        out_len as f64 / 1e6
    );
    println!(
        "native engine:        {:>7.1} ms  {:>7.0} MB/s",
        native.as_secs_f64() * 1e3,
        rate(native)
    );
    println!(
        "wasmtime (+ copies):  {:>7.1} ms  {:>7.0} MB/s",
        wasmtime.as_secs_f64() * 1e3,
        rate(wasmtime)
    );
    println!(
        "ratio wasmtime/native: {:.2}x slower",
        wasmtime.as_secs_f64() / native.as_secs_f64()
    );
    println!(
        "wasm linear memory after {rounds} scrapes: {:.1} MB",
        memory as f64 / 1e6
    );
}
