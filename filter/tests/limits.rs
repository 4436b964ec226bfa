//! The output budget: whatever a source sends, a scrape writes no more than its limits, a
//! source over its share stops at a line boundary and says so, and the others are served.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Limits, Merger};
use support::{assert_well_formed, python_parses};

const MB: usize = 1 << 20;

fn labels() -> LabelSet {
    LabelSet::new([
        ("mesh", "default-mesh-of-the-cluster"),
        ("dataplane", "backend-1-7f9c8d6b5-x2x4z"),
        ("service", "backend_default_svc_8080"),
        ("aggregate", "amplifier"),
    ])
    .unwrap()
}

#[test]
fn label_amplification_stops_at_the_sources_share() {
    // 4 bytes per line, ~120 once labelled: 30x.
    let amplifier = "a 1\n".repeat(500_000);
    let envoy = "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n";
    let app = "# TYPE app_up gauge\napp_up 1\n";
    for format in [Format::Text, Format::OpenMetrics] {
        let mut m = Merger::new();
        m.set_limits(Limits {
            scrape_bytes: 8 * MB,
            source_bytes: 4 * MB,
        });
        m.begin(format, None);
        let e = m.add_source_at(0, envoy.as_bytes(), Format::Text, &LabelSet::default());
        let a = m.add_source_at(1, amplifier.as_bytes(), Format::Text, &labels());
        let ok = m.add_source_at(2, app.as_bytes(), Format::Text, &labels());
        let out = String::from_utf8(m.finish().to_vec()).unwrap();
        assert!(!e.output_limit && !ok.output_limit);
        assert!(a.output_limit, "the amplifier is stopped");
        assert!(a.cut_lines > 0 && a.dropped() >= a.cut_lines);
        assert_eq!(
            a.samples_out + a.cut_lines,
            500_000,
            "every line is written or counted"
        );
        assert!(out.len() <= 4 * MB + 4096, "{} bytes", out.len());
        assert!(out.len() > 3 * MB, "the share is used, {} bytes", out.len());
        assert!(out.contains("envoy_server_live 1\n"));
        assert!(out.contains("app_up{"), "the next source is still served");
        assert_well_formed(&out, format);
    }
}

#[test]
fn the_scrape_budget_goes_in_priority_order_whatever_the_arrival() {
    let big = "# TYPE x gauge\n".to_owned() + &"x{i=\"0123456789\"} 1\n".repeat(11_000);
    let small = "# TYPE y gauge\n".to_owned() + &"y{i=\"0123456789\"} 1\n".repeat(2_000);
    let limits = Limits {
        scrape_bytes: 3 * MB,
        source_bytes: 2 * MB,
    };
    let mut outputs = Vec::new();
    for order in [[1u16, 2, 3], [3, 2, 1], [2, 3, 1]] {
        let mut m = Merger::new();
        m.set_limits(limits);
        m.begin(Format::Text, None);
        for p in order {
            let body = if p == 3 { &small } else { &big };
            let stats = m.add_source_at(p, body.as_bytes(), Format::Text, &labels());
            assert!(!stats.output_limit, "each fits its own share");
        }
        m.resolve();
        // 1 and 2 write ~1.6 MB each, 3 about 0.3 MB: the first fits, the second would pass
        // 3 MB, the third fits after the first.
        assert!(!m.over_budget(1) && m.over_budget(2) && !m.over_budget(3));
        let out = m.finish().to_vec();
        assert!(out.len() <= 3 * MB + 1024, "{} bytes", out.len());
        outputs.push(out);
    }
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "the arrival order changed the output"
    );
}

#[test]
fn a_million_families_cost_their_bookkeeping() {
    // Every line its own family: the families' records are memory too.
    let body: String = (0..200_000).map(|i| format!("f{i} 1\n")).collect();
    let mut m = Merger::new();
    m.set_limits(Limits {
        scrape_bytes: MB,
        source_bytes: MB,
    });
    m.begin(Format::OpenMetrics, None);
    let stats = m.add_source_at(1, body.as_bytes(), Format::Text, &LabelSet::default());
    let out = String::from_utf8(m.finish().to_vec()).unwrap();
    assert!(stats.output_limit);
    assert!(
        stats.samples_out < 10_000,
        "{} families kept",
        stats.samples_out
    );
    assert!(out.len() < MB);
    python_parses(&out, Format::OpenMetrics);
}

#[test]
fn a_line_longer_than_the_share_is_never_held() {
    let mut m = Merger::new();
    m.set_limits(Limits {
        scrape_bytes: MB,
        source_bytes: MB,
    });
    m.begin(Format::Text, None);
    let none = LabelSet::default();
    let mut r = m.source_at(1, Format::Text, &none, 0);
    r.feed(b"ok 1\nhuge{v=\"");
    for _ in 0..64 {
        r.feed(&[b'x'; 64 * 1024]);
    }
    r.feed(b"\"} 1\nlater 1\n");
    let stats = r.finish();
    assert!(stats.output_limit);
    assert_eq!(stats.samples_out, 1);
    assert_eq!(m.finish(), b"# TYPE ok untyped\nok 1\n");
}
