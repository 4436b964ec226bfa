//! The exposition engine's rules, one test per rule, asserting the exact bytes a scraper gets.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Merger, SourceReport};
use support::{assert_well_formed, merge, om, text};

const IDENTITY: &[(&str, &str)] = &[("mesh", "default"), ("service", "web")];

#[test]
fn text_passes_through_unchanged_without_labels() {
    let input = "# HELP rq_total Requests.\n# TYPE rq_total counter\nrq_total{code=\"200\",path=\"/a\\\"b\\\\c\\nd\"} 3 1700000000000\nrq_total 4\n# TYPE up gauge\nup{} 1\n";
    let (out, stats) = merge(Format::Text, None, &[text(input, &[])]);
    assert_eq!(out, input);
    assert_eq!(stats[0].samples_in, 3);
    assert_eq!(stats[0].samples_out, 3);
    assert_eq!(stats[0].dropped(), 0);
}

#[test]
fn crlf_blank_lines_comments_and_missing_final_newline() {
    let input = "# a comment\r\n\r\n# TYPE up gauge\r\n   \r\nup{a=\"b\"} 1\r\nup{a=\"c\"} 2";
    let (out, stats) = merge(Format::Text, None, &[text(input, &[])]);
    assert_eq!(out, "# TYPE up gauge\nup{a=\"b\"} 1\nup{a=\"c\"} 2\n");
    assert_eq!(stats[0].malformed_lines, 0);
}

#[test]
fn lenient_input_is_written_canonically() {
    let input = "# TYPE x gauge\nx{ a = \"1\" , b=\"2\", }   7   123\nx{\"c\"=\"3\"}\t8\n";
    let (out, _) = merge(Format::Text, None, &[text(input, &[])]);
    assert_eq!(
        out,
        "# TYPE x gauge\nx{a=\"1\",b=\"2\"} 7 123\nx{c=\"3\"} 8\n"
    );
}

#[test]
fn labels_go_first_and_collisions_become_exported() {
    let input = "# TYPE rq_total counter\nrq_total{service=\"backend\",code=\"200\"} 1\nrq_total 2\nrq_total{} 3\nrq_total{service=\"x\",exported_service=\"y\"} 4\n";
    let (out, _) = merge(Format::Text, None, &[text(input, IDENTITY)]);
    assert_eq!(
        out,
        "# TYPE rq_total counter\n\
         rq_total{mesh=\"default\",service=\"web\",exported_service=\"backend\",code=\"200\"} 1\n\
         rq_total{mesh=\"default\",service=\"web\"} 2\n\
         rq_total{mesh=\"default\",service=\"web\"} 3\n\
         rq_total{mesh=\"default\",service=\"web\",exported_exported_service=\"x\",exported_service=\"y\"} 4\n"
    );
}

#[test]
fn what_depends_on_label_names_alone_follows_each_lines_names() {
    // The scanner remembers, for a list of label names, whether it repeats a name and whether
    // it collides with the mesh's labels; consecutive lines of the same length but other names
    // (a quoted name, a repeat, a collision) must each be judged on their own.
    let input = "# TYPE x gauge\n\
                 x{a=\"1\",b=\"2\"} 1\n\
                 x{a=\"1\",a=\"2\"} 2\n\
                 x{a=\"1\",b=\"3\"} 3\n\
                 x{service=\"s\",b=\"4\"} 4\n\
                 x{a=\"1\",b=\"5\"} 5\n\
                 x{\"service\"=\"q\",b=\"6\"} 6\n\
                 x{a=\"1\",b=\"7\"} 7\n\
                 x{\"b\"=\"1\",b=\"x\"} 10\n\
                 x{b=\"1\",b=\"8\"} 8\n\
                 x{a=\"1\",b=\"9\"} 9\n";
    let (out, stats) = merge(Format::Text, None, &[text(input, IDENTITY)]);
    assert_eq!(
        out,
        "# TYPE x gauge\n\
         x{mesh=\"default\",service=\"web\",a=\"1\",b=\"2\"} 1\n\
         x{mesh=\"default\",service=\"web\",a=\"1\",b=\"3\"} 3\n\
         x{mesh=\"default\",service=\"web\",exported_service=\"s\",b=\"4\"} 4\n\
         x{mesh=\"default\",service=\"web\",a=\"1\",b=\"5\"} 5\n\
         x{mesh=\"default\",service=\"web\",exported_service=\"q\",b=\"6\"} 6\n\
         x{mesh=\"default\",service=\"web\",a=\"1\",b=\"7\"} 7\n\
         x{mesh=\"default\",service=\"web\",a=\"1\",b=\"9\"} 9\n"
    );
    assert_eq!(
        stats[0].malformed_lines, 3,
        "the three lines repeating a name"
    );
}

#[test]
fn injected_values_are_escaped() {
    let (out, _) = merge(
        Format::Text,
        None,
        &[text("up 1\n", &[("svc", "a\"b\\c\nd")])],
    );
    assert_eq!(out, "# TYPE up untyped\nup{svc=\"a\\\"b\\\\c\\nd\"} 1\n");
}

#[test]
fn exemplars_keep_their_own_labels() {
    let input = "# TYPE rq counter\nrq_total{code=\"200\"} 3 # {trace_id=\"abc\",service=\"x\"} 1.0 1700000000.5\n# EOF\n";
    let (out, _) = merge(Format::OpenMetrics, None, &[om(input, IDENTITY)]);
    assert_eq!(
        out,
        "# TYPE rq counter\nrq_total{mesh=\"default\",service=\"web\",code=\"200\"} 3 # {trace_id=\"abc\",service=\"x\"} 1.0 1700000000.5\n# EOF\n"
    );
    // Text 0.0.4 has no exemplars: the sample stays, its exemplar goes.
    let (out, _) = merge(Format::Text, None, &[om(input, IDENTITY)]);
    assert_eq!(
        out,
        "# TYPE rq_total counter\nrq_total{mesh=\"default\",service=\"web\",code=\"200\"} 3\n"
    );
}

#[test]
fn exemplars_only_where_openmetrics_allows_them() {
    let input = "# TYPE g gauge\ng 1 # {a=\"b\"} 1\n# EOF\n";
    let (out, _) = merge(Format::OpenMetrics, None, &[om(input, &[])]);
    assert_eq!(out, "# TYPE g gauge\ng 1\n# EOF\n");
}

#[test]
fn filter_is_matched_per_family_on_the_text_name() {
    let input = "# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 1\n# TYPE envoy_server_live gauge\nenvoy_server_live 1\n# TYPE envoy_cluster_upstream_rq_time histogram\nenvoy_cluster_upstream_rq_time_bucket{le=\"+Inf\"} 1\nenvoy_cluster_upstream_rq_time_sum 1\nenvoy_cluster_upstream_rq_time_count 1\n";
    for format in [Format::Text, Format::OpenMetrics] {
        let (out, stats) = merge(
            format,
            Some("upstream_rq_total$|server"),
            &[text(input, &[])],
        );
        assert!(
            out.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("envoy_server_live 1\n"));
        assert!(!out.contains("rq_time"), "{out}");
        assert_eq!(stats[0].samples_filtered, 3);
        assert_eq!(stats[0].dropped(), 0);
    }
}

#[test]
fn same_family_from_two_sources_is_written_once_and_contiguous() {
    let app1 = "# HELP process_cpu_seconds_total CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n# TYPE app1_only gauge\napp1_only 1\n";
    let app2 = "# HELP process_cpu_seconds Other help.\n# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 2.5\nprocess_cpu_seconds_created 1700000000.0\n# EOF\n";
    let (out, _) = merge(
        Format::Text,
        None,
        &[
            text(app1, &[("aggregate", "app1")]),
            om(app2, &[("aggregate", "app2")]),
        ],
    );
    assert_eq!(
        out,
        "# HELP process_cpu_seconds_total CPU time.\n# TYPE process_cpu_seconds_total counter\n\
         process_cpu_seconds_total{aggregate=\"app1\"} 1.5\n\
         process_cpu_seconds_total{aggregate=\"app2\"} 2.5\n\
         # TYPE app1_only gauge\napp1_only{aggregate=\"app1\"} 1\n\
         # HELP process_cpu_seconds_created Other help.\n# TYPE process_cpu_seconds_created gauge\n\
         process_cpu_seconds_created{aggregate=\"app2\"} 1700000000.0\n"
    );
    assert_well_formed(&out, Format::Text);
}

#[test]
fn family_order_is_first_seen() {
    let a = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n";
    let b = "# TYPE c gauge\nc 2\n# TYPE a gauge\na 2\n";
    let (out, _) = merge(
        Format::Text,
        None,
        &[text(a, &[("s", "1")]), text(b, &[("s", "2")])],
    );
    assert_eq!(
        out,
        "# TYPE a gauge\na{s=\"1\"} 1\na{s=\"2\"} 2\n# TYPE b gauge\nb{s=\"1\"} 1\n# TYPE c gauge\nc{s=\"2\"} 2\n"
    );
}

#[test]
fn shared_families_join_when_more_sources_follow() {
    // Two apps share `a`, then Envoy's own families arrive last: `a` is joined in the middle of
    // the body while `c`, `d` and `e` keep their place.
    let app1 = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n";
    let app2 = "# TYPE a gauge\na 2\n# TYPE c gauge\nc 1\n";
    let envoy = "# TYPE d counter\nd 1\n# TYPE e gauge\ne{x=\"1\"} 1\ne{x=\"2\"} 2\n";
    let (out, _) = merge(
        Format::Text,
        None,
        &[
            text(app1, &[("s", "1")]),
            text(app2, &[("s", "2")]),
            text(envoy, &[]),
        ],
    );
    assert_eq!(
        out,
        "# TYPE a gauge\na{s=\"1\"} 1\na{s=\"2\"} 2\n# TYPE b gauge\nb{s=\"1\"} 1\n\
         # TYPE c gauge\nc{s=\"2\"} 1\n# TYPE d counter\nd 1\n\
         # TYPE e gauge\ne{x=\"1\"} 1\ne{x=\"2\"} 2\n"
    );
}

#[test]
fn type_conflict_keeps_the_first_and_the_samples_that_do_not_clash() {
    // Only `x{quantile}` has the gauge's sample name: a true conflict. `x_sum` and `x_count`
    // clash with nothing, so they are kept, as untyped families.
    let a = "# TYPE x gauge\nx 1\n";
    let b = "# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 2\nx_count 3\n# TYPE y gauge\ny 1\n";
    let (out, stats) = merge(Format::Text, None, &[text(a, &[]), text(b, &[])]);
    assert_eq!(
        out,
        "# TYPE x gauge\nx 1\n# TYPE x_count untyped\nx_count 3\n# TYPE x_sum untyped\nx_sum 2\n# TYPE y gauge\ny 1\n"
    );
    assert_eq!(stats[1].type_conflicts, 1);
    assert_well_formed(&out, Format::Text);
}

#[test]
fn a_family_split_within_one_source_is_joined() {
    let input = "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 2\n";
    let (out, _) = merge(Format::Text, None, &[text(input, &[])]);
    assert_eq!(
        out,
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2\n# TYPE b gauge\nb 1\n"
    );
}

#[test]
fn untyped_samples_join_a_typed_family() {
    let a = "# TYPE rq_total counter\nrq_total 1\n";
    let b = "rq_total{s=\"b\"} 2\n";
    let (out, _) = merge(Format::Text, None, &[text(a, &[]), text(b, &[])]);
    assert_eq!(
        out,
        "# TYPE rq_total counter\nrq_total 1\nrq_total{s=\"b\"} 2\n"
    );
}

#[test]
fn openmetrics_output_from_text_input() {
    let input = "# HELP rq_total Say \"hi\".\n# TYPE rq_total counter\nrq_total 1 1700000000123\n# TYPE envoy_rq_completed counter\nenvoy_rq_completed 5\nplain 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    let (out, _) = merge(Format::OpenMetrics, None, &[text(input, &[])]);
    assert_eq!(
        out,
        "# HELP rq Say \\\"hi\\\".\n# TYPE rq counter\nrq_total 1 1700000000.123\n\
         # TYPE envoy_rq_completed unknown\nenvoy_rq_completed 5\n\
         # TYPE plain unknown\nplain 3\n\
         # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n\
         # EOF\n"
    );
}

#[test]
fn text_output_from_openmetrics_input() {
    let input = "# TYPE req_seconds histogram\n# UNIT req_seconds seconds\n# HELP req_seconds Latency.\nreq_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"t\"} 0.5\nreq_seconds_sum 1.5\nreq_seconds_count 2\nreq_seconds_created 1700000000.5\n# TYPE build info\nbuild_info{version=\"1\"} 1\n# TYPE state stateset\nstate{state=\"a\"} 1\n# TYPE gh gaugehistogram\ngh_bucket{le=\"+Inf\"} 1\ngh_gcount 1\ngh_gsum 1\n# TYPE m unknown\nm 1 1700000000.25\n# EOF\n";
    let (out, stats) = merge(Format::Text, None, &[om(input, &[])]);
    assert_eq!(
        out,
        "# HELP req_seconds Latency.\n# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"+Inf\"} 2\nreq_seconds_sum 1.5\nreq_seconds_count 2\n\
         # HELP req_seconds_created Latency.\n# TYPE req_seconds_created gauge\nreq_seconds_created 1700000000.5\n\
         # TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
         # TYPE state gauge\nstate{state=\"a\"} 1\n\
         # TYPE gh histogram\ngh_bucket{le=\"+Inf\"} 1\n\
         # TYPE gh_gcount gauge\ngh_gcount 1\n# TYPE gh_gsum gauge\ngh_gsum 1\n\
         # TYPE m untyped\nm 1 1700000000250\n"
    );
    // Nothing is lost to the format: `_created`, `_gcount` and `_gsum` are gauges of their own,
    // as prometheus_client writes them.
    assert_eq!(stats[0].dropped(), 0);
    // The same input written as OpenMetrics keeps everything, UNIT included.
    let (out, stats) = merge(Format::OpenMetrics, None, &[om(input, &[])]);
    assert!(out.starts_with("# HELP req_seconds Latency.\n# TYPE req_seconds histogram\n# UNIT req_seconds seconds\nreq_seconds_bucket{le=\"+Inf\"} 2 # {trace_id=\"t\"} 0.5\n"), "{out}");
    assert!(out.contains("req_seconds_created 1700000000.5\n# TYPE build info\n"));
    assert!(
        out.contains(
            "# TYPE gh gaugehistogram\ngh_bucket{le=\"+Inf\"} 1\ngh_gcount 1\ngh_gsum 1\n"
        )
    );
    assert!(out.ends_with("m 1 1700000000.25\n# EOF\n"));
    assert_eq!(stats[0].dropped(), 0);
}

#[test]
fn eof_is_written_once_and_ends_each_openmetrics_source() {
    let a = "# TYPE a gauge\na 1\n# EOF\nb 2\n";
    let b = "# TYPE c gauge\nc 1\n# EOF\n";
    let (out, stats) = merge(Format::OpenMetrics, None, &[om(a, &[]), om(b, &[])]);
    assert_eq!(out, "# TYPE a gauge\na 1\n# TYPE c gauge\nc 1\n# EOF\n");
    assert_eq!(stats[0].malformed_lines, 1, "the line after # EOF");
    // In a text source `# EOF` is only a comment.
    let (out, _) = merge(Format::Text, None, &[text(a, &[])]);
    assert!(out.contains("b 2\n"));
}

#[test]
fn malformed_lines_are_dropped_and_counted_never_echoed() {
    let input = "# TYPE x gauge\nx 1\nx{a=\"1\",a=\"2\"} 2\nx{a=\"unterminated} 3\n<html>oops</html>\nx 1 2 3\n# TYPE y nonsense\nx{a=\"ok\"} 4\n";
    let (out, stats) = merge(Format::Text, None, &[text(input, &[])]);
    assert_eq!(out, "# TYPE x gauge\nx 1\nx{a=\"ok\"} 4\n");
    assert_eq!(stats[0].malformed_lines, 5);
    assert_eq!(stats[0].samples_out, 2);
}

#[test]
fn invalid_escapes_are_kept_as_literal_backslashes() {
    let (out, _) = merge(Format::Text, None, &[text("x{path=\"C:\\temp\"} 1\n", &[])]);
    assert_eq!(out, "# TYPE x untyped\nx{path=\"C:\\\\temp\"} 1\n");
}

#[test]
fn utf8_names_the_output_cannot_carry_are_dropped_legacy_ones_unquoted() {
    // Text 0.0.4 and OpenMetrics 1.0 have no quoted names: Prometheus would refuse the whole
    // scrape for `{"my.metric"}` or `"my.label"=`. A quoted legacy name is just written plainly.
    let input = "# TYPE \"my.metric\" gauge\n{\"my.metric\", \"my.label\"=\"v\"} 1\n{\"legacy\"} 2\nok{\"my.label\"=\"v\"} 3\n";
    for format in [Format::Text, Format::OpenMetrics] {
        let (out, stats) = merge(format, None, &[text(input, &[("mesh", "m")])]);
        assert!(
            out.starts_with("# TYPE legacy untyped\nlegacy{mesh=\"m\"} 2\n")
                || out.starts_with("# TYPE legacy unknown\nlegacy{mesh=\"m\"} 2\n"),
            "{out}"
        );
        assert!(!out.contains("my."), "{out}");
        assert_eq!(stats[0].unrepresentable, 2);
        assert_well_formed(&out, format);
    }
}

#[test]
fn self_metrics_merge_like_a_source() {
    let mut m = Merger::new();
    m.begin(Format::OpenMetrics, None);
    m.add_source(
        b"# TYPE up gauge\nup 1\n",
        Format::Text,
        &LabelSet::default(),
    );
    let reports = [
        SourceReport {
            name: "envoy",
            up: true,
            duration_seconds: 0.25,
            merge_seconds: 0.02,
            bytes: 20,
            dropped_total: 0,
            error: None,
        },
        SourceReport {
            name: "app\"1",
            up: false,
            duration_seconds: 1.0,
            merge_seconds: 0.0,
            bytes: 0,
            dropped_total: 7,
            error: Some("http_status"),
        },
    ];
    m.add_self_metrics(&reports, &LabelSet::default());
    m.add_vm_memory(1 << 20, &LabelSet::default());
    let out = String::from_utf8(m.finish().to_vec()).unwrap();
    assert!(
        out.contains(
            "# TYPE meshmetrics_wasm_memory_bytes gauge\nmeshmetrics_wasm_memory_bytes 1048576\n"
        ),
        "{out}"
    );
    assert!(out.contains("# TYPE meshmetrics_source_up gauge\nmeshmetrics_source_up{source=\"envoy\"} 1\nmeshmetrics_source_up{source=\"app\\\"1\"} 0\n"), "{out}");
    assert!(out.contains("meshmetrics_source_duration_seconds{source=\"envoy\"} 0.25\n"));
    assert!(out.contains("meshmetrics_source_merge_seconds{source=\"envoy\"} 0.02\n"));
    assert!(
        out.contains("# TYPE meshmetrics_source_error gauge\nmeshmetrics_source_error{source=\"app\\\"1\",reason=\"http_status\"} 1\n"),
        "{out}"
    );
    assert!(out.contains("# TYPE meshmetrics_source_samples_dropped counter\nmeshmetrics_source_samples_dropped_total{source=\"envoy\"} 0\nmeshmetrics_source_samples_dropped_total{source=\"app\\\"1\"} 7\n"));
    assert_well_formed(&out, Format::OpenMetrics);
}

#[test]
fn merger_is_reusable_across_scrapes() {
    let mut m = Merger::new();
    for format in [Format::OpenMetrics, Format::Text, Format::OpenMetrics] {
        m.begin(format, None);
        m.add_source(b"# TYPE a gauge\na 1\n", Format::Text, &LabelSet::default());
        let expected: &[u8] = match format {
            Format::Text => b"# TYPE a gauge\na 1\n",
            Format::OpenMetrics => b"# TYPE a gauge\na 1\n# EOF\n",
        };
        assert_eq!(m.finish(), expected);
        assert_eq!(m.finish(), expected, "finish is idempotent");
    }
}

#[test]
fn empty_scrape_is_valid() {
    let (out, _) = merge(Format::OpenMetrics, None, &[text("", &[])]);
    assert_eq!(out, "# EOF\n");
    let (out, _) = merge(Format::Text, None, &[text("\n\n", &[])]);
    assert_eq!(out, "");
}

#[test]
fn envoys_output_stays_in_place_in_both_formats() {
    // The real capture: Envoy's families, its bare and `_total` counters side by side. Whether
    // Envoy answers before or after the apps, its bytes are never moved: only the apps' are
    // copied after them.
    let envoy = include_str!("fixtures/envoy-1.40-two-clusters.prom");
    let app = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\n";
    let labels = LabelSet::new([("aggregate", "app")]).unwrap();
    for format in [Format::Text, Format::OpenMetrics] {
        for envoy_first in [true, false] {
            let mut m = Merger::new();
            m.begin(format, None);
            if envoy_first {
                m.add_source_at(0, envoy.as_bytes(), Format::Text, &LabelSet::default());
                m.add_source_at(1, app.as_bytes(), Format::Text, &labels);
            } else {
                m.add_source_at(1, app.as_bytes(), Format::Text, &labels);
                m.add_source_at(0, envoy.as_bytes(), Format::Text, &LabelSet::default());
            }
            let out = String::from_utf8(m.finish().to_vec()).unwrap();
            assert_eq!(m.moved_bytes(), 0, "{format:?}, envoy first: {envoy_first}");
            assert!(out.contains("process_cpu_seconds_total{aggregate=\"app\"} 1\n"));
            assert_well_formed(&out, format);
        }
    }
}

#[test]
fn invalid_utf8_after_a_backslash_is_malformed() {
    // Found by the fuzzer: the byte after a backslash escaped the UTF-8 check, and the repaired
    // value carried it into the output.
    let mut body = b"x{path=\"C:\\".to_vec();
    body.extend_from_slice(&[0xE9, b'"', b'}', b' ', b'1', b'\n']);
    body.extend_from_slice("y{path=\"C:\\é\"} 2\n".as_bytes());
    let mut m = Merger::new();
    m.begin(Format::Text, None);
    let stats = m.add_source(&body, Format::Text, &LabelSet::default());
    let out = String::from_utf8(m.finish().to_vec()).expect("output is UTF-8");
    assert_eq!(stats.malformed_lines, 1);
    assert_eq!(out, "# TYPE y untyped\ny{path=\"C:\\\\é\"} 2\n");
}

/// MeshMetric's rules act on Envoy's families (the first source) only, per family: the profile
/// keeps, `exclude` drops, `include` adds back; an app's family of any name is never asked.
#[test]
fn the_lead_selection_keeps_envoys_families_by_the_rules_and_never_touches_the_apps() {
    use meshmetrics_filter::config::{FamilyRules, MatchKind, Matcher, Profile};
    use meshmetrics_filter::exposition::FamilySelection;
    let envoy = b"# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 3\n\
# TYPE envoy_cluster_version gauge\nenvoy_cluster_version{envoy_cluster_name=\"a\"} 0\n\
# TYPE envoy_server_live gauge\nenvoy_server_live 1\n\
# TYPE envoy_cluster_default_total_match_count counter\nenvoy_cluster_default_total_match_count{envoy_cluster_name=\"a\"} 2\n";
    let app = b"# TYPE envoy_cluster_version_of_app gauge\nenvoy_cluster_version_of_app 9\n";
    let rules = FamilyRules {
        profile: Profile::Basic,
        exclude: vec![Matcher {
            kind: MatchKind::Regex,
            pattern: "envoy_cluster_.*".into(),
        }],
        include: vec![Matcher {
            kind: MatchKind::Exact,
            pattern: "envoy_cluster_default_total_match_count".into(),
        }],
    };
    let selection = std::sync::Arc::new(FamilySelection::new(&rules).unwrap());
    for format in [Format::Text, Format::OpenMetrics] {
        let mut m = Merger::new();
        m.begin(format, None);
        m.select_lead(Some(selection.clone()));
        m.add_source(envoy, Format::Text, &LabelSet::default());
        m.add_source(app, Format::Text, &LabelSet::default());
        let out = String::from_utf8(m.finish().to_vec()).unwrap();
        assert!(
            !out.contains("envoy_cluster_upstream_rq"),
            "excluded: {out}"
        );
        assert!(!out.contains("envoy_cluster_version{"), "not Basic: {out}");
        assert!(out.contains("envoy_server_live 1"), "Basic: {out}");
        assert!(
            out.contains("envoy_cluster_default_total_match_count"),
            "included back: {out}"
        );
        assert!(
            out.contains("envoy_cluster_version_of_app 9"),
            "an app's: {out}"
        );
        assert_well_formed(&out, format);
    }
}
