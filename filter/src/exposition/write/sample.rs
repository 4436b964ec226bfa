//! One sample written in canonical form from its scanned parts: the added labels first, its own
//! renamed `exported_<name>` where they collide, escapes repaired, the timestamp given, the
//! exemplar kept or left out. The slow path of the pass: most lines are copied or only get the
//! added labels spliced in (`merge/pass.rs`).

use crate::exposition::read::escape::write_repaired_label_value;
use crate::exposition::read::names::{is_legacy_label_name, is_legacy_metric_name, write_name};
use crate::exposition::read::scan::{LabelSpan, Sample};
use crate::exposition::write::labels::LabelSet;

/// A scanned sample and what to write of it.
pub(crate) struct SampleParts<'a> {
    /// The line the spans point into.
    pub line: &'a [u8],
    pub sample: &'a Sample,
    /// Its own labels, in order.
    pub own: &'a [LabelSpan],
    /// Its exemplar's labels when the exemplar is kept (`None`: left out).
    pub exemplar_labels: Option<&'a [LabelSpan]>,
    /// Its timestamp as the output format writes it (`None`: it has none).
    pub timestamp: Option<&'a [u8]>,
}

/// Writes `parts` with `injected` added, and a newline.
pub(crate) fn write_canonical(parts: &SampleParts<'_>, injected: &LabelSet, out: &mut Vec<u8>) {
    let (line, s, own) = (parts.line, parts.sample, parts.own);
    let name = s.name.of(line);
    let legacy = is_legacy_metric_name(name);
    let any_labels = !injected.is_empty() || !own.is_empty();
    if legacy {
        out.extend_from_slice(name);
        if any_labels {
            out.push(b'{');
        }
    } else {
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(name);
        out.push(b'"');
        if any_labels {
            out.push(b',');
        }
    }
    out.extend_from_slice(injected.rendered());
    let mut first = injected.is_empty();
    for l in own {
        if !first {
            out.push(b',');
        }
        first = false;
        let label = l.name.of(line);
        if injected.contains(label) {
            write_exported_name(label, line, own, injected, out);
        } else {
            write_label_name(label, out);
        }
        out.extend_from_slice(b"=\"");
        if l.repair {
            write_repaired_label_value(l.value.of(line), out);
        } else {
            out.extend_from_slice(l.value.of(line));
        }
        out.push(b'"');
    }
    if !legacy || any_labels {
        out.push(b'}');
    }
    out.push(b' ');
    out.extend_from_slice(s.value.of(line));
    if let Some(ts) = parts.timestamp {
        out.push(b' ');
        out.extend_from_slice(ts);
    }
    if let (Some(labels), Some(ex)) = (parts.exemplar_labels, s.exemplar) {
        out.extend_from_slice(b" # {");
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_label_name(l.name.of(line), out);
            out.extend_from_slice(b"=\"");
            write_repaired_label_value(l.value.of(line), out);
            out.push(b'"');
        }
        out.extend_from_slice(b"} ");
        out.extend_from_slice(ex.value.of(line));
        if let Some(ts) = ex.timestamp {
            out.push(b' ');
            out.extend_from_slice(ts.of(line));
        }
    }
    out.push(b'\n');
}

fn write_label_name(name: &[u8], out: &mut Vec<u8>) {
    write_name(name, is_legacy_label_name(name), out);
}

/// `exported_<name>`, with as many `exported_` as it takes to name no other label of the sample.
fn write_exported_name(
    name: &[u8],
    line: &[u8],
    own: &[LabelSpan],
    injected: &LabelSet,
    out: &mut Vec<u8>,
) {
    const PREFIX: &[u8] = b"exported_";
    let mut depth = 1;
    loop {
        let taken = |candidate: &[u8]| {
            injected.contains(candidate) || own.iter().any(|l| l.name.of(line) == candidate)
        };
        let mut candidate = PREFIX.repeat(depth);
        candidate.extend_from_slice(name);
        if !taken(&candidate) {
            write_label_name(&candidate, out);
            return;
        }
        depth += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::read::Format;
    use crate::exposition::read::scan::{Line, Scanner};

    fn canonical(line: &str, injected: &LabelSet, keep_exemplar: bool) -> String {
        let mut scanner = Scanner::default();
        let line = line.as_bytes();
        let Line::Sample(s) = scanner.scan(line, Format::OpenMetrics, b"") else {
            panic!("a sample");
        };
        let parts = SampleParts {
            line,
            sample: &s,
            own: &scanner.labels,
            exemplar_labels: keep_exemplar.then_some(&scanner.exemplar_labels[..]),
            timestamp: s.timestamp.map(|t| t.of(line)),
        };
        let mut out = Vec::new();
        write_canonical(&parts, injected, &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn added_labels_come_first_and_a_colliding_own_label_is_exported() {
        let added = LabelSet::new([("mesh", "m"), ("service", "web")]).expect("valid labels");
        assert_eq!(
            canonical(
                "rq_total{service=\"x\",exported_service=\"y\",code=\"200\"}  3 17",
                &added,
                false
            ),
            "rq_total{mesh=\"m\",service=\"web\",exported_exported_service=\"x\",exported_service=\"y\",code=\"200\"} 3 17\n"
        );
    }

    #[test]
    fn a_quoted_name_stays_quoted_and_an_exemplar_is_kept_only_when_asked() {
        let none = LabelSet::new(Vec::<(&str, &str)>::new()).expect("no labels");
        let line = "{\"my.metric_total\",a=\"b\"} 1 # {trace_id=\"t\"} 1.5";
        assert_eq!(
            canonical(line, &none, true),
            "{\"my.metric_total\",a=\"b\"} 1 # {trace_id=\"t\"} 1.5\n"
        );
        assert_eq!(
            canonical(line, &none, false),
            "{\"my.metric_total\",a=\"b\"} 1\n"
        );
    }
}
