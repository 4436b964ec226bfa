//! Property tests: whatever a source sends, the engine neither panics nor writes an exposition
//! that does not re-parse. Inputs are arbitrary bytes and random line soup drawn from the grammar
//! (valid, nearly valid and broken lines mixed), through every input/output format pair.

mod support;

use meshmetrics_filter::exposition::{Format, LabelSet, Limits, Merger};
use proptest::prelude::*;
use support::assert_well_formed;

const FORMATS: [Format; 2] = [Format::Text, Format::OpenMetrics];

/// Merges `sources` into `out` within `limits`, then checks the result stays within them,
/// re-reads cleanly, is a fixpoint, and does not depend on the arrival order.
fn check(sources: &[(Vec<u8>, Format)], out: Format, limits: Limits) {
    let labels = LabelSet::new([("mesh", "m"), ("service", "s\"x")]).unwrap();
    let mut m = Merger::new();
    m.set_limits(limits);
    m.begin(out, None);
    for (body, input) in sources {
        m.add_source(body, *input, &labels);
    }
    let first = m.finish().to_vec();
    let text = std::str::from_utf8(&first).expect("output is UTF-8");
    assert_well_formed(text, out);
    assert!(
        first.len() <= limits.scrape_bytes.saturating_add(6),
        "{} bytes over a budget of {}",
        first.len(),
        limits.scrape_bytes
    );

    // The same bodies arriving in the opposite order give the same bytes.
    m.begin(out, None);
    for (priority, (body, input)) in sources.iter().enumerate().rev() {
        m.add_source_at(priority as u16, body, *input, &labels);
    }
    assert_eq!(
        std::str::from_utf8(m.finish()).expect("output is UTF-8"),
        text,
        "the arrival order changed the output"
    );

    // Read back in its own format with nothing added: every line must scan, nothing is lost.
    let none = LabelSet::default();
    m.set_limits(Limits::UNLIMITED);
    m.begin(out, None);
    let stats = m.add_source(&first, out, &none);
    assert_eq!(
        stats.malformed_lines, 0,
        "output has lines that do not scan:\n{text}"
    );
    assert_eq!(stats.unrepresentable, 0, "{text}");
    assert_eq!(stats.samples_in, stats.samples_out, "{text}");
    let second = m.finish().to_vec();
    m.begin(out, None);
    m.add_source(&second, out, &none);
    assert_eq!(m.finish(), &second[..], "not a fixpoint:\n{text}");
}

/// No limits, or small ones that the soup reaches.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::UNLIMITED),
        (0usize..3000, 0usize..6000).prop_map(|(source_bytes, scrape_bytes)| Limits {
            scrape_bytes,
            source_bytes,
        }),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("rq".to_owned()),
        Just("rq_total".to_owned()),
        Just("lat".to_owned()),
        Just("lat_bucket".to_owned()),
        Just("lat_sum".to_owned()),
        Just("lat_count".to_owned()),
        Just("lat_created".to_owned()),
        Just("b_info".to_owned()),
        Just("g".to_owned()),
        Just("\"my.name\"".to_owned()),
        "[a-z_:][a-z0-9_:]{0,6}",
    ]
}

fn label() -> impl Strategy<Value = String> {
    let lname = prop_oneof![
        Just("mesh"),
        Just("service"),
        Just("exported_service"),
        Just("le"),
        Just("quantile"),
        Just("a"),
        Just("\"x.y\""),
        Just("1bad"),
    ];
    let lvalue = prop_oneof![
        Just("v".to_owned()),
        Just("+Inf".to_owned()),
        Just("0.5".to_owned()),
        Just(r#"a\"b\\c\nd"#.to_owned()),
        Just(r"\t".to_owned()),
        Just("é".to_owned()),
        "[ -~]{0,5}",
    ];
    (lname, lvalue, prop_oneof![Just("="), Just(" = ")])
        .prop_map(|(n, v, eq)| format!("{n}{eq}\"{v}\""))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("-0.5e3".to_owned()),
        Just("NaN".to_owned()),
        Just("+Inf".to_owned()),
        Just("x".to_owned()),
        "[0-9.e+-]{1,6}",
    ]
}

fn sample_line() -> impl Strategy<Value = String> {
    (
        name(),
        prop::option::of(prop::collection::vec(label(), 0..4)),
        value(),
        prop::option::of(prop_oneof![
            Just("1700000000000"),
            Just("1700000000.5"),
            Just("-1")
        ]),
        prop::option::of(prop_oneof![
            Just(" # {trace_id=\"t\"} 1"),
            Just(" # {a=\"b\"} 2 1700000000.1"),
            Just(" # {} x"),
        ]),
        prop_oneof![Just(" "), Just("  "), Just("\t")],
        any::<bool>(),
    )
        .prop_map(|(name, labels, value, ts, ex, sep, trailing_comma)| {
            let mut line = String::new();
            let quoted = name.starts_with('"');
            if quoted {
                line.push('{');
                line.push_str(&name);
            } else {
                line.push_str(&name);
            }
            match (labels, quoted) {
                (Some(ls), false) => {
                    line.push('{');
                    line.push_str(&ls.join(","));
                    if trailing_comma {
                        line.push(',');
                    }
                    line.push('}');
                }
                (Some(ls), true) => {
                    for l in ls {
                        line.push(',');
                        line.push_str(&l);
                    }
                    line.push('}');
                }
                (None, true) => line.push('}'),
                (None, false) => {}
            }
            line.push_str(sep);
            line.push_str(&value);
            if let Some(ts) = ts {
                line.push(' ');
                line.push_str(ts);
            }
            if let Some(ex) = ex {
                line.push_str(ex);
            }
            line
        })
}

fn line() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("counter"),
        Just("gauge"),
        Just("histogram"),
        Just("summary"),
        Just("untyped"),
        Just("unknown"),
        Just("info"),
        Just("stateset"),
        Just("gaugehistogram"),
        Just("bogus"),
    ];
    prop_oneof![
        6 => sample_line(),
        2 => (name(), kind).prop_map(|(n, k)| format!("# TYPE {n} {k}")),
        1 => (name(), "[ -~]{0,12}").prop_map(|(n, h)| format!("# HELP {n} {h}")),
        1 => name().prop_map(|n| format!("# UNIT {n} seconds")),
        1 => Just("# EOF".to_owned()),
        1 => Just(String::new()),
        1 => "[ -~]{0,20}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line(), 0..40),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, final_newline)| {
            let sep = if crlf { "\r\n" } else { "\n" };
            let mut body = lines.join(sep);
            if final_newline {
                body.push_str(sep);
            }
            body.into_bytes()
        })
}

fn format() -> impl Strategy<Value = Format> {
    prop::sample::select(FORMATS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_break_the_output(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        input in format(),
        out in format(),
    ) {
        check(&[(bytes, input)], out, Limits::UNLIMITED);
    }

    #[test]
    fn grammar_shaped_soup_never_breaks_the_output(
        sources in prop::collection::vec((body(), format()), 1..4),
        out in format(),
        limits in limits(),
    ) {
        check(&sources, out, limits);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The filter reads a body from the host in pieces, cut anywhere (inside a line, between
    /// `\r` and `\n`, between a `# HELP` and its `# TYPE`): the output and the counts must be
    /// exactly what the whole body gives.
    #[test]
    fn a_body_read_in_pieces_merges_like_the_whole(
        sources in prop::collection::vec((body(), format()), 1..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        out in format(),
    ) {
        let labels = LabelSet::new([("mesh", "m"), ("service", "s")]).unwrap();
        let mut whole = Merger::new();
        let mut pieces = Merger::new();
        whole.begin(out, None);
        pieces.begin(out, None);
        for (body, input) in &sources {
            let expected = whole.add_source(body, *input, &labels);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
            at.push(0);
            at.push(body.len());
            at.sort_unstable();
            let mut reader = pieces.source(*input, &labels, 0);
            for w in at.windows(2) {
                reader.feed(&body[w[0]..w[1]]);
            }
            let got = reader.finish();
            prop_assert_eq!(got, expected);
        }
        let (a, b) = (whole.finish().to_vec(), pieces.finish().to_vec());
        prop_assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(&a));
    }
}

/// Merges `apps` and then streams `lead` cut at `cuts`, taking what is ready after every
/// piece, as the filter does when Envoy's answer passes through it. Returns the bytes sent and
/// what streaming had to refuse.
fn streamed(
    lead: &(Vec<u8>, Format),
    apps: &[(Vec<u8>, Format)],
    cuts: &[prop::sample::Index],
    out: Format,
    labels: &LabelSet,
) -> (Vec<u8>, u64) {
    let mut m = Merger::new();
    m.begin(out, None);
    for (i, (body, input)) in apps.iter().enumerate() {
        m.add_source_at(i as u16 + 1, body, *input, labels);
    }
    let (body, input) = lead;
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    let mut sent = Vec::new();
    let mut stream = m.stream_lead(*input, labels);
    for w in at.windows(2) {
        m.feed_lead(&mut stream, &body[w[0]..w[1]]);
        sent.extend_from_slice(m.ready());
        m.consume_ready();
    }
    m.end_lead(stream);
    m.finish_into(&mut |piece| sent.extend_from_slice(piece));
    (sent, m.stream_refused())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A streamed lead (Envoy's answer passing through the filter) sends, piece by piece, the
    /// very bytes the buffered scrape writes, whatever the apps share with it; and what is sent
    /// is a valid exposition even when the lead breaks the rule streaming relies on (each family
    /// once, contiguous), which Envoy never does.
    #[test]
    fn a_streamed_lead_sends_what_the_buffered_scrape_writes(
        lead in (body(), format()),
        apps in prop::collection::vec((body(), format()), 0..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        out in format(),
    ) {
        let labels = LabelSet::new([("mesh", "m"), ("service", "s")]).unwrap();
        let mut whole = Merger::new();
        whole.begin(out, None);
        whole.add_source_at(0, &lead.0, lead.1, &labels);
        for (i, (body, input)) in apps.iter().enumerate() {
            whole.add_source_at(i as u16 + 1, body, *input, &labels);
        }
        let expected = whole.finish().to_vec();
        let (sent, refused) = streamed(&lead, &apps, &cuts, out, &labels);
        let text = std::str::from_utf8(&sent).expect("output is UTF-8");
        assert_well_formed(text, out);
        if refused == 0 {
            prop_assert_eq!(text, String::from_utf8_lossy(&expected));
        }
    }
}
