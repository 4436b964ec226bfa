//! Arbitrary bodies from several sources, cut in arbitrary pieces, merged in both output
//! formats with or without limits. Invariants: no panic; the output stays within the scrape's
//! budget; the engine's own strict reading accepts it (every line scans, nothing dropped, a
//! fixpoint); it is well formed (each family's HELP / TYPE once, `# EOF` once and last in
//! OpenMetrics); the arrival order does not change it.
//!
//! Input layout: byte 0 picks the output format and the limits, byte 1 the sources' formats
//! and the cut size; the rest is split at 0xFF into at most four bodies.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use meshmetrics_filter::exposition::{Format, LabelSet, Limits, Merger};

fn merge(
    m: &mut Merger,
    out: Format,
    limits: Limits,
    sources: &[(&[u8], Format)],
    cut: usize,
    reverse: bool,
) -> Vec<u8> {
    let labels = LabelSet::new([("mesh", "m"), ("service", "s\"x")]).expect("valid labels");
    m.set_limits(limits);
    m.begin(out, None);
    let mut order: Vec<usize> = (0..sources.len()).collect();
    if reverse {
        order.reverse();
    }
    for i in order {
        let (body, input) = sources[i];
        let mut reader = m.source_at(i as u16, input, &labels, body.len());
        for piece in body.chunks(cut.max(1)) {
            reader.feed(piece);
        }
        reader.finish();
    }
    m.finish().to_vec()
}

fn well_formed(body: &[u8], format: Format) {
    let text = std::str::from_utf8(body).expect("output is UTF-8");
    let mut lines: Vec<&str> = text.split_terminator('\n').collect();
    assert!(body.is_empty() || body.ends_with(b"\n"));
    if format == Format::OpenMetrics {
        assert_eq!(lines.pop(), Some("# EOF"), "OpenMetrics ends with # EOF");
    }
    let (mut helps, mut types) = (HashSet::new(), HashSet::new());
    for line in lines {
        assert!(!line.is_empty(), "blank line");
        assert_ne!(line, "# EOF", "# EOF before the end");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helps.insert(name.to_owned()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(types.insert(name.to_owned()), "second TYPE for {name}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let out = if data[0] & 1 == 0 { Format::Text } else { Format::OpenMetrics };
    let limits = match (data[0] >> 1) & 3 {
        0 => Limits::UNLIMITED,
        n => Limits {
            scrape_bytes: 512 * n as usize,
            source_bytes: 384 * n as usize,
        },
    };
    let cut = 1 + (data[1] >> 2) as usize * 7;
    let sources: Vec<(&[u8], Format)> = data[2..]
        .split(|&b| b == 0xFF)
        .take(4)
        .enumerate()
        .map(|(i, body)| {
            let input = if data[1] >> i & 1 == 0 { Format::Text } else { Format::OpenMetrics };
            (body, input)
        })
        .collect();
    let mut m = Merger::new();
    let first = merge(&mut m, out, limits, &sources, cut, false);
    assert!(
        first.len() <= limits.scrape_bytes.saturating_add(6),
        "{} bytes over a budget of {}",
        first.len(),
        limits.scrape_bytes
    );
    well_formed(&first, out);
    let reversed = merge(&mut m, out, limits, &sources, cut, true);
    assert_eq!(first, reversed, "the arrival order changed the output");
    // The engine's own strict reading: every line scans, nothing is dropped, a fixpoint.
    m.set_limits(Limits::UNLIMITED);
    m.begin(out, None);
    let stats = m.add_source(&first, out, &LabelSet::default());
    assert_eq!(stats.malformed_lines, 0, "output lines that do not scan");
    assert_eq!(stats.samples_in, stats.samples_out, "output samples dropped on re-reading");
    let second = m.finish().to_vec();
    m.begin(out, None);
    m.add_source(&second, out, &LabelSet::default());
    assert_eq!(m.finish(), &second[..], "not a fixpoint");
});
