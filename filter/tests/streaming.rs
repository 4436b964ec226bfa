//! A streamed lead: Envoy's answer passing through the filter piece by piece, after the apps were
//! read. What is final leaves at once; what an app shares waits; nothing differs from the
//! buffered scrape.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Merger};
use support::assert_well_formed;

const ENVOY: &str = "\
# TYPE envoy_a counter
envoy_a{envoy_cluster_name=\"x\"} 1
envoy_a{envoy_cluster_name=\"y\"} 2
# TYPE envoy_b gauge
envoy_b 3
# TYPE envoy_c gauge
envoy_c 4
";

/// Streams `lead` in `pieces` after `apps`; returns what was ready after each piece, and the
/// rest the end of the scrape writes.
fn stream(lead: &[&str], apps: &[&str], out: Format) -> (Vec<String>, String, u64) {
    let none = LabelSet::default();
    let app_labels = LabelSet::new([("service", "web")]).unwrap();
    let mut m = Merger::new();
    m.begin(out, None);
    for (i, app) in apps.iter().enumerate() {
        m.add_source_at(i as u16 + 1, app.as_bytes(), Format::Text, &app_labels);
    }
    let mut s = m.stream_lead(Format::Text, &none);
    let mut ready = Vec::new();
    for piece in lead {
        m.feed_lead(&mut s, piece.as_bytes());
        ready.push(String::from_utf8(m.ready().to_vec()).unwrap());
        m.consume_ready();
    }
    m.end_lead(s);
    let rest = String::from_utf8(m.finish().to_vec()).unwrap();
    (ready, rest, m.stream_refused())
}

fn buffered(lead: &str, apps: &[&str], out: Format) -> String {
    let none = LabelSet::default();
    let app_labels = LabelSet::new([("service", "web")]).unwrap();
    let mut m = Merger::new();
    m.begin(out, None);
    m.add_source_at(0, lead.as_bytes(), Format::Text, &none);
    for (i, app) in apps.iter().enumerate() {
        m.add_source_at(i as u16 + 1, app.as_bytes(), Format::Text, &app_labels);
    }
    String::from_utf8(m.finish().to_vec()).unwrap()
}

#[test]
fn envoys_lines_leave_as_they_come_when_no_app_shares_a_family() {
    let cut = ENVOY.find("y\"} 2").unwrap();
    let (ready, rest, refused) = stream(
        &[&ENVOY[..cut], &ENVOY[cut..]],
        &["app_up 1\n"],
        Format::Text,
    );
    // The first piece ends inside a line: every complete line before it has left.
    assert_eq!(
        ready[0],
        "# TYPE envoy_a counter\nenvoy_a{envoy_cluster_name=\"x\"} 1\n"
    );
    assert_eq!(ready[1], ENVOY[ready[0].len()..]);
    // The apps' families come after Envoy's last one.
    assert_eq!(rest, "# TYPE app_up untyped\napp_up{service=\"web\"} 1\n");
    assert_eq!(refused, 0);
    assert_eq!(
        ready.concat() + &rest,
        buffered(ENVOY, &["app_up 1\n"], Format::Text)
    );
}

#[test]
fn a_family_an_app_shares_holds_the_rest_of_envoy_until_the_end() {
    let app = "# TYPE envoy_b gauge\nenvoy_b 30\n";
    let cut = ENVOY.find("# TYPE envoy_c").unwrap();
    let (ready, rest, refused) = stream(&[&ENVOY[..cut], &ENVOY[cut..]], &[app], Format::Text);
    assert_eq!(
        ready.concat(),
        "# TYPE envoy_a counter\nenvoy_a{envoy_cluster_name=\"x\"} 1\nenvoy_a{envoy_cluster_name=\"y\"} 2\n"
    );
    // The app's sample joins Envoy's family, right after Envoy's own.
    assert!(rest.starts_with("# TYPE envoy_b gauge\nenvoy_b 3\nenvoy_b{service=\"web\"} 30\n"));
    assert_eq!(refused, 0);
    assert_eq!(
        ready.concat() + &rest,
        buffered(ENVOY, &[app], Format::Text)
    );
}

#[test]
fn openmetrics_out_streams_and_ends_once() {
    let (ready, rest, _) = stream(&[ENVOY], &[], Format::OpenMetrics);
    let body = ready.concat() + &rest;
    assert_eq!(body, buffered(ENVOY, &[], Format::OpenMetrics));
    // A counter without `_total` is `unknown` in OpenMetrics (Envoy's `envoy_cluster_upstream_rq`).
    assert!(
        ready[0].starts_with("# TYPE envoy_a unknown\n"),
        "{}",
        ready[0]
    );
    assert_eq!(rest, "# EOF\n");
    assert_well_formed(&body, Format::OpenMetrics);
}

#[test]
fn a_family_that_comes_back_after_it_was_sent_is_refused_and_counted() {
    // Envoy never does this: a family's samples after another family started.
    let lead = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\na{x=\"late\"} 3\n";
    let (ready, rest, refused) = stream(&[lead], &[], Format::Text);
    let body = ready.concat() + &rest;
    assert_eq!(body, "# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n");
    assert_eq!(refused, 1);
    assert_well_formed(&body, Format::Text);
}

#[test]
fn the_body_in_pieces_is_the_body() {
    let app = "# TYPE envoy_b gauge\nenvoy_b 30\n# TYPE app_c counter\napp_c_total 1\n";
    for out in [Format::Text, Format::OpenMetrics] {
        let whole = buffered(ENVOY, &[app], out);
        let none = LabelSet::default();
        let labels = LabelSet::new([("service", "web")]).unwrap();
        let mut m = Merger::new();
        m.begin(out, None);
        m.add_source_at(1, app.as_bytes(), Format::Text, &labels);
        m.add_source_at(0, ENVOY.as_bytes(), Format::Text, &none);
        let mut pieces = Vec::new();
        m.finish_into(&mut |p| pieces.extend_from_slice(p));
        assert_eq!(String::from_utf8(pieces).unwrap(), whole);
        assert!(m.finish().is_empty(), "spent until the next scrape");
    }
}
