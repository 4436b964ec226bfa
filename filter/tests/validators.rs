//! Every output the engine produces must be read by Prometheus' own tools: `promtool check
//! metrics` (the Go text parser plus its lint) for text 0.0.4, and Python `prometheus_client`'s
//! text and OpenMetrics parsers. These are the real tools, installed by `scripts/install-deps`.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Merger, SourceReport};
use support::{cases, promtool_lint, python_parses, run_case};

#[test]
fn golden_outputs_pass_promtool_and_python() {
    for case in cases() {
        let body = run_case(&case, Format::Text);
        for finding in promtool_lint(&body) {
            // We never invent HELP a source did not give; and Envoy names counters without
            // `_total`: neither is ours to fix. Any other finding is.
            let allowed = finding.ends_with(" no help text") || finding.starts_with("envoy_");
            assert!(
                allowed,
                "{}: lint on a family we wrote: {finding}",
                case.display()
            );
        }
        let families = python_parses(&body, Format::Text);
        assert!(!families.is_empty(), "{}: no families", case.display());

        let body = run_case(&case, Format::OpenMetrics);
        python_parses(&body, Format::OpenMetrics);
    }
}

#[test]
fn self_metrics_are_lint_clean() {
    let mut m = Merger::new();
    m.begin(Format::Text, None);
    let reports = [
        SourceReport {
            name: "envoy",
            up: true,
            duration_seconds: 0.012,
            merge_seconds: 0.02,
            bytes: 1000,
            dropped_total: 0,
            error: None,
        },
        SourceReport {
            name: "app",
            up: false,
            duration_seconds: 3.0,
            merge_seconds: 0.0,
            bytes: 0,
            dropped_total: 2,
            error: Some("http_status"),
        },
    ];
    m.add_self_metrics(&reports, &LabelSet::default());
    let body = String::from_utf8(m.finish().to_vec()).unwrap();
    assert_eq!(promtool_lint(&body), Vec::<String>::new());
    let families = python_parses(&body, Format::Text);
    assert!(
        families.contains("meshmetrics_source_samples_dropped counter 2"),
        "{families}"
    );
    m.begin(Format::OpenMetrics, None);
    m.add_self_metrics(&reports, &LabelSet::default());
    let body = String::from_utf8(m.finish().to_vec()).unwrap();
    let families = python_parses(&body, Format::OpenMetrics);
    assert!(
        families.contains("meshmetrics_source_up gauge 2"),
        "{families}"
    );
}

#[test]
fn real_envoy_output_converts_to_valid_openmetrics() {
    let envoy = include_bytes!("fixtures/envoy-1.40-two-clusters.prom");
    let labels = LabelSet::new([("mesh", "default"), ("dataplane", "dp-1")]).unwrap();
    for format in [Format::Text, Format::OpenMetrics] {
        let mut m = Merger::new();
        m.begin(format, None);
        let stats = m.add_source(envoy, Format::Text, &labels);
        assert_eq!(stats.dropped(), 0);
        let body = String::from_utf8(m.finish().to_vec()).unwrap();
        if format == Format::Text {
            promtool_lint(&body);
        }
        let families = python_parses(&body, format);
        assert!(families.lines().count() > 250, "{families}");
    }
}
