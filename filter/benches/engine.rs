//! Throughput of the engine on real-shaped inputs: `cargo bench -p meshmetrics-filter`.
//! Criterion reports the rate in input bytes per second; the target is ≥ 1 GB/s on one core for
//! relabel + merge.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshmetrics_filter::exposition::otlp::{OtlpWriter, REQUEST_BYTES, StartTimes};
use meshmetrics_filter::exposition::{Format, LabelSet, Merger};

mod inputs;

fn identity() -> LabelSet {
    LabelSet::new([
        ("mesh", "default"),
        ("dataplane", "backend-5c7d8f9b6d-x2x4q.kuma-demo"),
        ("service", "backend_kuma-demo_svc_3001"),
    ])
    .expect("valid labels")
}

fn app_labels(name: &str) -> LabelSet {
    LabelSet::new([
        ("mesh", "default"),
        ("dataplane", "backend-5c7d8f9b6d-x2x4q.kuma-demo"),
        ("service", "backend_kuma-demo_svc_3001"),
        ("aggregate", name),
    ])
    .expect("valid labels")
}

/// One push as `proxy/otel.rs` writes it, fed by `feed`: its requests cut at the push's size,
/// each handed over as sent (Envoy's gRPC client copies it). The bytes sent.
fn push(
    resource: &[(String, String)],
    starts: &mut StartTimes,
    feed: impl FnOnce(&mut OtlpWriter<'_>),
) -> usize {
    let mut sent = 0;
    let mut send = |r: &[u8]| {
        sent += black_box(r).len();
        true
    };
    let mut w = OtlpWriter::new(
        resource,
        &["mesh", "dataplane", "service"],
        1,
        usize::MAX,
        starts,
        &mut send,
    );
    w.split(REQUEST_BYTES);
    feed(&mut w);
    let _ = w.finish();
    sent
}

fn bench(c: &mut Criterion) {
    let envoy = inputs::envoy(2000);
    let app = inputs::app(1 << 20);
    let lines = envoy.iter().filter(|&&b| b == b'\n').count();
    eprintln!(
        "envoy input: {} bytes, {lines} lines; app input: {} bytes",
        envoy.len(),
        app.len()
    );
    let none = LabelSet::default();
    let identity = identity();
    let mut merger = Merger::new();
    // As the filter does when Envoy is the first source (see `Merger::trust_lead`).
    merger.trust_lead(true);

    let mut g = c.benchmark_group("engine");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(envoy.len() as u64));
    let cases: [(&str, Format, &LabelSet); 3] = [
        ("envoy_2000_clusters/text/no_labels", Format::Text, &none),
        (
            "envoy_2000_clusters/openmetrics/no_labels",
            Format::OpenMetrics,
            &none,
        ),
        ("envoy_2000_clusters/text/3_labels", Format::Text, &identity),
    ];
    for (name, out, labels) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                merger.begin(out, None);
                merger.add_source(&envoy, Format::Text, labels);
                merger.finish().len()
            })
        });
    }

    // The OTLP push's engine work: Envoy's answer merged into OpenMetrics, handed piece by
    // piece to the OTLP writer (as `proxy/otel.rs` does).
    let resource = [("mesh".to_owned(), "default".to_owned())];
    let mut starts = StartTimes::default();
    g.bench_function("envoy_2000_clusters/otlp/3_labels", |b| {
        b.iter(|| {
            push(&resource, &mut starts, |w| {
                merger.begin(Format::OpenMetrics, None);
                merger.add_source(&envoy, Format::Text, &identity);
                merger.finish_into(&mut |piece| w.feed(piece));
            })
        })
    });

    // The push's own path for Envoy's answer: its text, passed untouched by the merger, read a
    // window at a time by the writer (`proxy/otel.rs` `envoy_into`), its requests cut as sent.
    g.bench_function("envoy_2000_clusters/otlp/envoy_text", |b| {
        b.iter(|| {
            push(&resource, &mut starts, |w| {
                w.input(Format::Text);
                for piece in envoy.chunks(64 << 10) {
                    w.feed(piece);
                }
            })
        })
    });

    g.throughput(Throughput::Bytes(app.len() as u64));
    let labels = app_labels("app");
    // An app is never trusted, even alone.
    merger.trust_lead(false);
    g.bench_function("app_1mb/text/4_labels", |b| {
        b.iter(|| {
            merger.begin(Format::Text, None);
            merger.add_source(&app, Format::Text, &labels);
            merger.finish().len()
        })
    });

    // A whole scrape: Envoy plus five 1 MB apps exporting the same families (the worst case for
    // merging: every app family is shared and must be moved next to the first app's).
    let apps: Vec<LabelSet> = (0..5).map(|i| app_labels(&format!("app{i}"))).collect();
    g.throughput(Throughput::Bytes((envoy.len() + 5 * app.len()) as u64));
    merger.trust_lead(true);
    g.bench_function("scrape/envoy_2000+5_apps_1mb/openmetrics", |b| {
        b.iter(|| {
            merger.begin(Format::OpenMetrics, None);
            merger.add_source(&envoy, Format::Text, &none);
            for labels in &apps {
                merger.add_source(&app, Format::Text, labels);
            }
            merger.finish().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
