//! No sample is lost to a format, and the merge is deterministic: the cases real exporters hit
//! (Envoy, client_golang, prometheus_client), each checked by Prometheus' own parsers.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Merger, SourceReport};
use support::{assert_well_formed, merge, om, promtool_lint, python_parses, text};

/// Checks `body` with the strict parsers of its format.
fn parses(body: &str, format: Format) {
    assert_well_formed(body, format);
    python_parses(body, format);
    if format == Format::Text {
        promtool_lint(body);
    }
}

/// Envoy 1.40 writes a counter without `_total` *and* one with it, next to each other.
const ENVOY: &str = "# TYPE envoy_cluster_upstream_rq counter\n\
envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 7\n\
# TYPE envoy_cluster_upstream_rq_active gauge\n\
envoy_cluster_upstream_rq_active{envoy_cluster_name=\"backend\"} 0\n\
# TYPE envoy_cluster_upstream_rq_total counter\n\
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 7\n";

#[test]
fn envoy_bare_and_total_counters_both_survive_openmetrics() {
    let (out, stats) = merge(Format::OpenMetrics, None, &[text(ENVOY, &[])]);
    assert_eq!(
        out,
        "# TYPE envoy_cluster_upstream_rq unknown\n\
         envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 7\n\
         # TYPE envoy_cluster_upstream_rq_active gauge\n\
         envoy_cluster_upstream_rq_active{envoy_cluster_name=\"backend\"} 0\n\
         # TYPE envoy_cluster_upstream_rq_total unknown\n\
         envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 7\n# EOF\n"
    );
    assert_eq!(stats[0].dropped(), 0);
    parses(&out, Format::OpenMetrics);
    // The other order of the same two families keeps both too.
    let reversed = "# TYPE x_total counter\nx_total 1\n# TYPE x counter\nx{code=\"200\"} 1\n";
    let (out, stats) = merge(Format::OpenMetrics, None, &[text(reversed, &[])]);
    assert_eq!(
        out,
        "# TYPE x_total unknown\nx_total 1\n# TYPE x unknown\nx{code=\"200\"} 1\n# EOF\n"
    );
    assert_eq!(stats[0].dropped(), 0);
    parses(&out, Format::OpenMetrics);
}

#[test]
fn client_golang_gauge_and_total_counter_both_survive() {
    let text_body = "# HELP go_memstats_alloc_bytes Bytes allocated and still in use.\n\
        # TYPE go_memstats_alloc_bytes gauge\ngo_memstats_alloc_bytes 1.2e+06\n\
        # HELP go_memstats_alloc_bytes_total Total bytes allocated.\n\
        # TYPE go_memstats_alloc_bytes_total counter\ngo_memstats_alloc_bytes_total 9.9e+06\n";
    // client_golang's own OpenMetrics: two families of the same name, both typed.
    let om_body = "# HELP go_memstats_alloc_bytes Bytes allocated and still in use.\n\
        # TYPE go_memstats_alloc_bytes gauge\ngo_memstats_alloc_bytes 1.2e+06\n\
        # HELP go_memstats_alloc_bytes Total bytes allocated.\n\
        # TYPE go_memstats_alloc_bytes counter\ngo_memstats_alloc_bytes_total 9.9e+06\n# EOF\n";
    let app = &[("aggregate", "app")][..];
    for source in [text(text_body, app), om(om_body, app)] {
        for format in [Format::Text, Format::OpenMetrics] {
            let (out, stats) = merge(format, None, std::slice::from_ref(&source));
            assert!(
                out.contains("go_memstats_alloc_bytes{aggregate=\"app\"} 1.2e+06\n"),
                "{out}"
            );
            assert!(
                out.contains("go_memstats_alloc_bytes_total{aggregate=\"app\"} 9.9e+06\n"),
                "{out}"
            );
            assert_eq!(stats[0].dropped(), 0, "{out}");
            parses(&out, format);
        }
    }
}

#[test]
fn prometheus_client_created_folds_into_its_family_in_openmetrics() {
    // `generate_latest`: `_created` as gauge families of their own, after the family.
    let body = "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\n\
        app_requests_total{path=\"/a\"} 3.0\napp_requests_total{path=\"/b\"} 1.0\n\
        # HELP app_requests_created Requests.\n# TYPE app_requests_created gauge\n\
        app_requests_created{path=\"/a\"} 1.7e+09\napp_requests_created{path=\"/b\"} 1.7e+09\n\
        # HELP app_latency_seconds Latency.\n# TYPE app_latency_seconds histogram\n\
        app_latency_seconds_bucket{le=\"0.1\"} 1.0\napp_latency_seconds_bucket{le=\"+Inf\"} 2.0\n\
        app_latency_seconds_count 2.0\napp_latency_seconds_sum 0.3\n\
        # HELP app_latency_seconds_created Latency.\n# TYPE app_latency_seconds_created gauge\n\
        app_latency_seconds_created 1.7e+09\n\
        # HELP app_size Size.\n# TYPE app_size summary\napp_size_count 1.0\napp_size_sum 5.0\n\
        # HELP app_size_created Size.\n# TYPE app_size_created gauge\napp_size_created 1.7e+09\n";
    let (out, stats) = merge(Format::OpenMetrics, None, &[text(body, &[])]);
    assert_eq!(
        out,
        "# HELP app_requests Requests.\n# TYPE app_requests counter\n\
         app_requests_total{path=\"/a\"} 3.0\napp_requests_created{path=\"/a\"} 1.7e+09\n\
         app_requests_total{path=\"/b\"} 1.0\napp_requests_created{path=\"/b\"} 1.7e+09\n\
         # HELP app_latency_seconds Latency.\n# TYPE app_latency_seconds histogram\n\
         app_latency_seconds_bucket{le=\"0.1\"} 1.0\napp_latency_seconds_bucket{le=\"+Inf\"} 2.0\n\
         app_latency_seconds_count 2.0\napp_latency_seconds_sum 0.3\napp_latency_seconds_created 1.7e+09\n\
         # HELP app_size Size.\n# TYPE app_size summary\napp_size_count 1.0\napp_size_sum 5.0\n\
         app_size_created 1.7e+09\n# EOF\n"
    );
    assert_eq!(stats[0].dropped(), 0);
    parses(&out, Format::OpenMetrics);
    // Written as text, the input stays as it was.
    let (out, _) = merge(Format::Text, None, &[text(body, &[])]);
    assert!(out.contains("# TYPE app_requests_created gauge\n"));
    parses(&out, Format::Text);
}

#[test]
fn conflicts_are_judged_on_the_output_names() {
    let info = "# TYPE app_build info\napp_build_info{version=\"1\"} 1\n# EOF\n";
    let gauge = "# TYPE app_build_info gauge\napp_build_info{version=\"2\"} 1\n";
    let sources = [om(info, &[("a", "1")]), text(gauge, &[("a", "2")])];
    // Text: both are gauges named `app_build_info`: one family, nothing dropped.
    let (out, stats) = merge(Format::Text, None, &sources);
    assert_eq!(
        out,
        "# TYPE app_build_info gauge\napp_build_info{a=\"1\",version=\"1\"} 1\napp_build_info{a=\"2\",version=\"2\"} 1\n"
    );
    assert_eq!(stats[1].dropped(), 0);
    parses(&out, Format::Text);
    // OpenMetrics: the same sample name as an info and as a gauge: a true conflict, the
    // source of lower priority loses and it is counted.
    let (out, stats) = merge(Format::OpenMetrics, None, &sources);
    assert_eq!(
        out,
        "# TYPE app_build info\napp_build_info{a=\"1\",version=\"1\"} 1\n# EOF\n"
    );
    assert_eq!(stats[1].type_conflicts, 1);
    parses(&out, Format::OpenMetrics);
}

/// A gauge histogram is written `histogram` in text, and a text reader gives `x_sum` and
/// `x_count` to a histogram `x`, so another app's `x_sum` cannot sit beside it as a family of
/// its own: the gauge histogram becomes `untyped` too and every sample stays.
#[test]
fn a_text_gauge_histogram_keeps_the_names_its_type_word_claims() {
    let gh =
        "# TYPE lat gaugehistogram\nlat_bucket{le=\"+Inf\"} 2\nlat_gcount 2\nlat_gsum 3\n# EOF\n";
    let sum = "lat_sum 1\n";
    let (out, stats) = merge(Format::Text, None, &[om(gh, &[]), text(sum, &[])]);
    assert_eq!(
        out,
        "# TYPE lat_bucket untyped\nlat_bucket{le=\"+Inf\"} 2\n\
         # TYPE lat_gcount gauge\nlat_gcount 2\n\
         # TYPE lat_gsum gauge\nlat_gsum 3\n\
         # TYPE lat_sum untyped\nlat_sum 1\n"
    );
    assert!(stats.iter().all(|s| s.dropped() == 0), "{stats:?}");
    parses(&out, Format::Text);
    // OpenMetrics has a word for it: nothing to give up.
    let (out, stats) = merge(Format::OpenMetrics, None, &[om(gh, &[]), text(sum, &[])]);
    assert!(out.starts_with("# TYPE lat gaugehistogram\n"), "{out}");
    assert!(stats.iter().all(|s| s.dropped() == 0), "{stats:?}");
    parses(&out, Format::OpenMetrics);
}

/// Merges `bodies` (each with its priority) read in the order given.
fn merged_in_order(format: Format, bodies: &[(u16, &str, Format)]) -> Vec<u8> {
    let mut m = Merger::new();
    m.begin(format, None);
    for &(priority, body, input) in bodies {
        let labels = LabelSet::new([("aggregate", priority.to_string())]).unwrap();
        m.add_source_at(priority, body.as_bytes(), input, &labels);
    }
    m.finish().to_vec()
}

#[test]
fn same_bodies_give_the_same_bytes_whatever_order_they_arrive_in() {
    let envoy = (0, ENVOY, Format::Text);
    let app1 = (
        1,
        "# TYPE shared gauge\nshared 1\n# TYPE clash gauge\nclash 1\n# TYPE envoy_cluster_upstream_rq_active counter\nenvoy_cluster_upstream_rq_active_total 3\n",
        Format::Text,
    );
    let app2 = (
        2,
        "# TYPE clash summary\nclash_sum 1\nclash_count 1\nclash{quantile=\"0.5\"} 1\n# TYPE shared gauge\nshared 2\n# TYPE only2 counter\nonly2_total 1\n# EOF\n",
        Format::OpenMetrics,
    );
    for format in [Format::Text, Format::OpenMetrics] {
        let want = merged_in_order(format, &[envoy, app1, app2]);
        let body = String::from_utf8(want.clone()).unwrap();
        parses(&body, format);
        // Envoy's families first, then app 1's, then app 2's.
        let envoy_at = body.find("envoy_cluster_upstream_rq{").unwrap();
        let shared_at = body.find("shared{aggregate=\"1\"}").unwrap();
        let only2_at = body.find("only2_total").unwrap();
        assert!(envoy_at < shared_at && shared_at < only2_at, "{body}");
        for order in [
            [envoy, app2, app1],
            [app1, envoy, app2],
            [app1, app2, envoy],
            [app2, app1, envoy],
            [app2, envoy, app1],
        ] {
            assert_eq!(
                String::from_utf8(merged_in_order(format, &order)).unwrap(),
                body,
                "{format:?}, arrival order {:?}",
                order.map(|o| o.0)
            );
        }
    }
}

#[test]
fn no_source_writes_into_the_filters_own_families() {
    let mut m = Merger::new();
    m.begin(Format::OpenMetrics, None);
    let app = "# TYPE meshmetrics_source_up counter\nmeshmetrics_source_up_total{source=\"envoy\"} 5\nmeshmetrics_wasm_memory_bytes 1\n# TYPE app_up gauge\napp_up 1\n";
    let stats = m.add_source_at(1, app.as_bytes(), Format::Text, &LabelSet::default());
    assert_eq!(stats.type_conflicts, 2);
    let report = SourceReport {
        name: "envoy",
        up: true,
        duration_seconds: 0.1,
        merge_seconds: 0.01,
        bytes: 10,
        dropped_total: 2,
        error: None,
    };
    m.add_self_metrics(&[report], &LabelSet::default());
    m.add_vm_memory(65536, &LabelSet::default());
    let out = String::from_utf8(m.finish().to_vec()).unwrap();
    assert!(
        out.contains(
            "# TYPE meshmetrics_source_up gauge\nmeshmetrics_source_up{source=\"envoy\"} 1\n# "
        ),
        "{out}"
    );
    assert!(
        out.contains("\nmeshmetrics_wasm_memory_bytes 65536\n"),
        "{out}"
    );
    assert!(!out.contains(" 5\n"), "{out}");
    assert!(out.contains("app_up 1\n"));
    parses(&out, Format::OpenMetrics);
}

/// Lines real apps send that would make Prometheus or the strict parsers refuse the whole
/// scrape if copied: each is dropped and counted, the rest of the scrape stays.
const HOSTILE: &str = "x{__name__=\"y\"} 1\n\
{\"my.metric\"} 1\n\
ok{\"my.label\"=\"v\"} 1\n\
# TYPE badle histogram\nbadle_bucket{le=\"abc\"} 1\nbadle_bucket{le=\"+Inf\"} 1\nbadle_count 1\nbadle_sum 1\n\
# TYPE badq summary\nbadq{quantile=\"abc\"} 1\nbadq_count 1\nbadq_sum 1\n\
# TYPE noinf histogram\nnoinf_bucket{le=\"1\"} 1\nnoinf_count 1\nnoinf_sum 1\n\
# TYPE neg_total counter\nneg_total -1\n\
# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_count 1\nlat_sum 1\n\
# TYPE lat_count gauge\nlat_count 5\n\
# TYPE fine gauge\nfine 1\n";

#[test]
fn no_app_line_can_make_the_output_unparseable() {
    let envoy = include_str!("fixtures/envoy-1.40-two-clusters.prom");
    for format in [Format::Text, Format::OpenMetrics] {
        let (out, stats) = merge(
            format,
            None,
            &[text(envoy, &[]), text(HOSTILE, &[("aggregate", "hostile")])],
        );
        parses(&out, format);
        assert!(out.contains("fine{aggregate=\"hostile\"} 1\n"), "{out}");
        assert!(out.contains("lat_bucket{aggregate=\"hostile\",le=\"+Inf\"} 1\n"));
        assert!(!out.contains("__name__") && !out.contains("my."), "{out}");
        assert!(!out.contains("\"abc\"") && !out.contains("lat_count{aggregate=\"hostile\"} 5"));
        assert!(stats[1].dropped() >= 6, "{:?}", stats[1]);
        if format == Format::OpenMetrics {
            assert!(
                !out.contains("neg_total") && !out.contains("noinf_"),
                "{out}"
            );
        }
    }
}
