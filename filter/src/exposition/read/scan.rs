//! Zero-copy scanning of exposition lines, both formats.
//!
//! The scanner never allocates: it answers with byte offsets into the line, and label positions go
//! into a vector owned by the [`Scanner`] and reused line after line. Input is read leniently (the
//! blanks and trailing commas text 0.0.4 parsers accept); the result says whether the line is
//! already in canonical form, so the writer can copy it instead of rebuilding it.

use crate::exposition::read::Format;
use crate::exposition::read::names::{is_label_cont, label_name_len, metric_name_len};
use crate::exposition::read::value::{is_float, is_timestamp};

/// A byte range within the line being scanned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    #[inline]
    pub fn of<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        &line[self.start..self.end]
    }
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One `name="value"` pair; both spans exclude the quotes, the value is still escaped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LabelSpan {
    pub name: Span,
    pub value: Span,
    /// The value holds an escape other than `\\`, `\"`, `\n`.
    pub repair: bool,
    /// A quoted name that is not a legacy label name (`"my.label"`): neither text 0.0.4 nor
    /// OpenMetrics 1.0 can carry it.
    pub utf8: bool,
}

/// An OpenMetrics exemplar: ` # {labels} value [timestamp]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exemplar {
    pub value: Span,
    pub timestamp: Option<Span>,
    pub canonical: bool,
    /// Within OpenMetrics' limit of 128 characters of label names and values.
    pub within_limit: bool,
}

/// A sample line, scanned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// The metric name, without quotes (still escaped when it was quoted).
    pub name: Span,
    /// Written as `{"name", ...}`; such a name is kept quoted unless it is a legacy name.
    pub quoted_name: bool,
    /// Index of `{` of the label set, when the name is outside the braces and there are braces.
    pub open: Option<usize>,
    /// Index just past the name, or past the closing `}` when there are braces.
    pub head_end: usize,
    pub value: Span,
    pub timestamp: Option<Span>,
    pub exemplar: Option<Exemplar>,
    /// Where the value (and timestamp) end: the line without its exemplar is `line[..value_end]`.
    pub value_end: usize,
    /// The line is exactly `name{a="b",...} value[ timestamp][ # {..} v[ ts]]` with single spaces,
    /// no quoted legacy names and no label value needing repair.
    pub canonical: bool,
}

/// What one line is.
#[derive(Debug)]
pub(crate) enum Line<'a> {
    Blank,
    /// A comment that is not a descriptor; text 0.0.4 allows any.
    Comment,
    Help {
        name: &'a [u8],
        text: &'a [u8],
    },
    Type {
        name: &'a [u8],
        word: &'a [u8],
    },
    Unit {
        name: &'a [u8],
        unit: &'a [u8],
    },
    Eof,
    /// The sample's label spans are in [`Scanner::labels`] and [`Scanner::exemplar_labels`].
    Sample(Sample),
    Malformed,
}

/// Scans lines; owns the reusable label buffers.
#[derive(Default)]
pub(crate) struct Scanner {
    pub labels: Vec<LabelSpan>,
    pub exemplar_labels: Vec<LabelSpan>,
    dup_scratch: Vec<Span>,
    names: NameCache,
    exemplar_names: NameCache,
    /// Whether the label names of [`NameCache::key`] repeat a name: the answer for the next line
    /// with the same names, which is most lines.
    duplicate: Option<(NamesKey, bool)>,
}

/// Identifies a list of label names: equal keys, equal names in the same order (see
/// [`Scanner::names_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NamesKey {
    generation: u64,
    count: usize,
}

/// The label names of the previous sample, by position. Envoy and most apps repeat the same names
/// line after line, and comparing a name already known valid word by word is cheaper than
/// classifying each of its bytes again (profiled in wasm: label names were the scanner's top cost).
#[derive(Default)]
struct NameCache {
    slots: Vec<Vec<u8>>,
    /// Bumped whenever a slot changes: while it stays the same, every name scanned through the
    /// slots equals the slot of its position.
    generation: u64,
    /// The line being scanned has a quoted label name, which bypasses the slots.
    quoted: bool,
}

impl NameCache {
    /// When the line at `i` is the name remembered for position `slot` followed by `="`, the
    /// name's span (its `="` follows at `end`).
    #[inline(always)]
    fn matching(&self, slot: usize, line: &[u8], i: usize) -> Option<Span> {
        let prev = self.slots.get(slot)?;
        let end = i + prev.len();
        if prev.is_empty()
            || line.get(end..end + 2) != Some(b"=\"")
            || !crate::exposition::read::bytes::eq(&line[i..end], prev)
        {
            return None;
        }
        Some(Span { start: i, end })
    }

    /// The length of the legacy label name at the start of `s` (0 if there is none), remembered
    /// for position `slot`.
    #[inline]
    fn label_name_len(&mut self, slot: usize, s: &[u8]) -> usize {
        if let Some(prev) = self.slots.get(slot)
            && !prev.is_empty()
            && crate::exposition::read::bytes::starts_with(s, prev)
            && !s.get(prev.len()).is_some_and(|&b| is_label_cont(b))
        {
            return prev.len();
        }
        let n = label_name_len(s);
        self.generation += 1;
        match self.slots.get_mut(slot) {
            Some(prev) => {
                prev.clear();
                prev.extend_from_slice(&s[..n]);
            }
            // Slots are filled in order, so `slot` is at most one past the end.
            None => self.slots.push(s[..n].to_vec()),
        }
        n
    }
}

#[inline]
fn skip_blanks(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    i
}

#[inline]
fn token_end(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
        i += 1;
    }
    i
}

/// Scans a quoted string whose opening quote is at `i`. Returns the content span, the index past the
/// closing quote, and whether an escape needs repair. Content must be valid UTF-8.
#[inline(always)]
fn quoted(line: &[u8], i: usize) -> Option<(Span, usize, bool)> {
    let start = i + 1;
    let mut j = start;
    let mut repair = false;
    let mut high = false;
    loop {
        let (k, high_here) = crate::exposition::read::bytes::find_quote_or_backslash(line, j)?;
        high |= high_here;
        if line[k] == b'"' {
            if high && std::str::from_utf8(&line[start..k]).is_err() {
                return None;
            }
            return Some((Span { start, end: k }, k + 1, repair));
        }
        match line.get(k + 1) {
            Some(b'\\' | b'"' | b'n') => {}
            // The byte after a backslash is skipped by the search: its UTF-8 is checked too.
            Some(&b) => {
                repair = true;
                high |= b >= 0x80;
            }
            None => return None,
        }
        j = k + 2;
    }
}

impl Scanner {
    /// Classifies and scans one line (without its line terminator), written in `format`.
    ///
    /// `known_prefix` is a legacy metric name the caller already validated (the current family's
    /// base name): when the line starts with it, those bytes are compared at memcmp speed instead
    /// of being classified one by one. Pass `b""` when there is none.
    #[inline]
    pub(crate) fn scan<'a>(
        &mut self,
        line: &'a [u8],
        format: Format,
        known_prefix: &[u8],
    ) -> Line<'a> {
        match line.first() {
            None => Line::Blank,
            Some(b'#') => descriptor(line),
            Some(b' ' | b'\t') if skip_blanks(line, 0) == line.len() => Line::Blank,
            Some(_) => match self.sample(line, format, known_prefix) {
                Some(s) => Line::Sample(s),
                None => Line::Malformed,
            },
        }
    }

    /// The label names of the sample just scanned ([`Scanner::labels`]): two samples with equal
    /// keys have the same names in the same order, so whatever depends on the names alone may be
    /// reused. `None` for a line with a quoted label name. Valid until the next line is scanned.
    #[inline]
    pub(crate) fn names_key(&self) -> Option<NamesKey> {
        (!self.names.quoted).then_some(NamesKey {
            generation: self.names.generation,
            count: self.labels.len(),
        })
    }

    fn sample(&mut self, line: &[u8], format: Format, known_prefix: &[u8]) -> Option<Sample> {
        self.names.quoted = false;
        self.labels.clear();
        self.exemplar_labels.clear();
        let mut canonical = true;
        let (name, quoted_name, open, head_end);
        if line[0] == b'{' {
            // `{"name", labels...}`: the UTF-8 form, the name is the first quoted string.
            let i = skip_blanks(line, 1);
            canonical &= i == 1;
            if line.get(i) != Some(&b'"') {
                return None;
            }
            let (span, after, repair) = quoted(line, i)?;
            if repair || span.is_empty() {
                return None;
            }
            let j = skip_blanks(line, after);
            canonical &= j == after;
            head_end = match line.get(j) {
                Some(b'}') => j + 1,
                Some(b',') => label_set(
                    line,
                    j + 1,
                    &mut self.labels,
                    &mut self.names,
                    &mut canonical,
                )?,
                _ => return None,
            };
            canonical &= !crate::exposition::read::names::is_legacy_metric_name(span.of(line));
            name = span;
            quoted_name = true;
            open = None;
        } else {
            let n = if !known_prefix.is_empty()
                && crate::exposition::read::bytes::starts_with(line, known_prefix)
            {
                known_prefix.len()
                    + crate::exposition::read::names::metric_name_cont_len(
                        &line[known_prefix.len()..],
                    )
            } else {
                metric_name_len(line)
            };
            if n == 0 {
                return None;
            }
            name = Span { start: 0, end: n };
            quoted_name = false;
            if line.get(n) == Some(&b'{') {
                open = Some(n);
                head_end = label_set(
                    line,
                    n + 1,
                    &mut self.labels,
                    &mut self.names,
                    &mut canonical,
                )?;
            } else {
                open = None;
                head_end = n;
            }
        }
        if self.labels.iter().any(|l| l.repair) {
            canonical = false;
        }
        if self.labels.len() > 1 {
            let key = self.names_key();
            let duplicate = match (self.duplicate, key) {
                (Some((cached, answer)), Some(key)) if cached == key => answer,
                _ => {
                    let answer = has_duplicate(line, &self.labels, &mut self.dup_scratch);
                    self.duplicate = key.map(|k| (k, answer));
                    answer
                }
            };
            if duplicate {
                return None;
            }
        }

        // The common case first: ` <digits>` ending the line, a canonical value and nothing after.
        if line.get(head_end) == Some(&b' ') {
            let start = head_end + 1;
            let digits = line[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits > 0 && start + digits == line.len() {
                let value = Span {
                    start,
                    end: line.len(),
                };
                return Some(Sample {
                    name,
                    quoted_name,
                    open,
                    head_end,
                    value,
                    timestamp: None,
                    exemplar: None,
                    value_end: value.end,
                    canonical,
                });
            }
        }

        // ` value [timestamp] [# exemplar]`
        let i = skip_blanks(line, head_end);
        if i == head_end {
            return None;
        }
        canonical &= i == head_end + 1 && line[head_end] == b' ';
        let value = Span {
            start: i,
            end: token_end(line, i),
        };
        if !is_float(value.of(line)) {
            return None;
        }
        let mut value_end = value.end;
        let mut timestamp = None;
        let mut exemplar = None;
        let mut i = skip_blanks(line, value.end);
        if i < line.len() && line[i] != b'#' {
            canonical &= i == value.end + 1 && line[value.end] == b' ';
            let ts = Span {
                start: i,
                end: token_end(line, i),
            };
            if !is_timestamp(ts.of(line), format) {
                return None;
            }
            timestamp = Some(ts);
            value_end = ts.end;
            i = skip_blanks(line, ts.end);
        }
        if i < line.len() {
            // Only an exemplar may follow.
            let ex = self.exemplar(line, value_end, i)?;
            exemplar = Some(ex);
        } else {
            canonical &= i == value_end;
        }
        Some(Sample {
            name,
            quoted_name,
            open,
            head_end,
            value,
            timestamp,
            exemplar,
            value_end,
            canonical,
        })
    }

    /// ` # {labels} value [timestamp]`, with `hash` the index of `#` and `from` where the sample
    /// part ended.
    fn exemplar(&mut self, line: &[u8], from: usize, hash: usize) -> Option<Exemplar> {
        if line[hash] != b'#' {
            return None;
        }
        let mut canonical = hash == from + 1 && line[from] == b' ';
        let i = skip_blanks(line, hash + 1);
        canonical &= i == hash + 2 && line[hash + 1] == b' ';
        if line.get(i) != Some(&b'{') {
            return None;
        }
        let after = label_set(
            line,
            i + 1,
            &mut self.exemplar_labels,
            &mut self.exemplar_names,
            &mut canonical,
        )?;
        canonical &= !self.exemplar_labels.iter().any(|l| l.repair);
        let j = skip_blanks(line, after);
        canonical &= j == after + 1;
        if j == after {
            return None;
        }
        let value = Span {
            start: j,
            end: token_end(line, j),
        };
        if !is_float(value.of(line)) {
            return None;
        }
        let mut end = value.end;
        let mut timestamp = None;
        let k = skip_blanks(line, value.end);
        if k < line.len() {
            canonical &= k == value.end + 1;
            let ts = Span {
                start: k,
                end: token_end(line, k),
            };
            if !is_timestamp(ts.of(line), Format::OpenMetrics) {
                return None;
            }
            timestamp = Some(ts);
            end = ts.end;
        }
        let rest = skip_blanks(line, end);
        if rest != line.len() {
            return None;
        }
        canonical &= end == line.len();
        let chars: usize = self
            .exemplar_labels
            .iter()
            .map(|l| utf8_chars(l.name.of(line)) + utf8_chars(l.value.of(line)))
            .sum();
        Some(Exemplar {
            value,
            timestamp,
            canonical,
            within_limit: chars <= 128,
        })
    }
}

fn utf8_chars(s: &[u8]) -> usize {
    s.iter().filter(|&&b| (b & 0xC0) != 0x80).count()
}

/// Scans labels after a `{` at `i - 1`, up to and including the `}`; returns the index past it.
/// Clears `canonical` on blanks, a trailing comma, or a quoted legacy label name.
#[inline]
fn label_set(
    line: &[u8],
    mut i: usize,
    out: &mut Vec<LabelSpan>,
    names: &mut NameCache,
    canonical: &mut bool,
) -> Option<usize> {
    let mut after_comma = false;
    loop {
        // The common case first: `name="value"` with the name of the previous line's label at this
        // position, followed by `,` or `}`. The `=` right after the remembered name ends it, so no
        // byte of the name is classified again.
        if let Some(name) = names.matching(out.len(), line, i) {
            let (value, after, repair) = quoted(line, name.end + 1)?;
            out.push(LabelSpan {
                name,
                value,
                repair,
                utf8: false,
            });
            match line.get(after) {
                Some(b',') => {
                    i = after + 1;
                    after_comma = true;
                    continue;
                }
                Some(b'}') => return Some(after + 1),
                // Blanks or worse after the value: read on below.
                _ => i = after,
            }
        } else {
            let j = skip_blanks(line, i);
            *canonical &= j == i;
            i = j;
            match line.get(i)? {
                b'}' => {
                    *canonical &= !after_comma;
                    return Some(i + 1);
                }
                b'"' => {
                    let (name, after, repair) = quoted(line, i)?;
                    if repair || name.is_empty() {
                        return None;
                    }
                    let legacy =
                        crate::exposition::read::names::is_legacy_label_name(name.of(line));
                    *canonical &= !legacy;
                    // Not in the slots: this line's names have no key.
                    names.quoted = true;
                    i = after;
                    i = label_value(line, i, name, out, canonical)?;
                    if let Some(l) = out.last_mut() {
                        l.utf8 = !legacy;
                    }
                }
                _ => {
                    let n = names.label_name_len(out.len(), &line[i..]);
                    if n == 0 {
                        return None;
                    }
                    let name = Span {
                        start: i,
                        end: i + n,
                    };
                    i = label_value(line, i + n, name, out, canonical)?;
                }
            }
        }
        let j = skip_blanks(line, i);
        *canonical &= j == i;
        i = j;
        match line.get(i)? {
            b',' => {
                i += 1;
                after_comma = true;
            }
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// `="value"` after a label name ending at `i`.
#[inline]
fn label_value(
    line: &[u8],
    i: usize,
    name: Span,
    out: &mut Vec<LabelSpan>,
    canonical: &mut bool,
) -> Option<usize> {
    let j = skip_blanks(line, i);
    if line.get(j) != Some(&b'=') {
        return None;
    }
    let k = skip_blanks(line, j + 1);
    *canonical &= j == i && k == j + 1;
    if line.get(k) != Some(&b'"') {
        return None;
    }
    let (value, after, repair) = quoted(line, k)?;
    out.push(LabelSpan {
        name,
        value,
        repair,
        utf8: false,
    });
    Some(after)
}

/// Whether two labels share a name (a sample Prometheus would reject, failing the whole scrape).
fn has_duplicate(line: &[u8], labels: &[LabelSpan], scratch: &mut Vec<Span>) -> bool {
    if labels.len() <= 16 {
        return labels.iter().enumerate().any(|(i, a)| {
            labels[i + 1..]
                .iter()
                .any(|b| crate::exposition::read::bytes::eq(a.name.of(line), b.name.of(line)))
        });
    }
    scratch.clear();
    scratch.extend(labels.iter().map(|l| l.name));
    scratch.sort_unstable_by(|a, b| a.of(line).cmp(b.of(line)));
    scratch.windows(2).any(|w| w[0].of(line) == w[1].of(line))
}

/// `# HELP`, `# TYPE`, `# UNIT`, `# EOF`, or another comment.
fn descriptor(line: &[u8]) -> Line<'_> {
    let i = skip_blanks(line, 1);
    let kw_end = token_end(line, i);
    let keyword = &line[i..kw_end];
    let which = match keyword {
        b"HELP" => 0,
        b"TYPE" => 1,
        b"UNIT" => 2,
        b"EOF" => {
            return if skip_blanks(line, kw_end) == line.len() {
                Line::Eof
            } else {
                Line::Comment
            };
        }
        _ => return Line::Comment,
    };
    let i = skip_blanks(line, kw_end);
    if i == kw_end {
        return Line::Malformed;
    }
    let (name, after) = if line.get(i) == Some(&b'"') {
        match quoted(line, i) {
            Some((span, after, false)) if !span.is_empty() => (span.of(line), after),
            _ => return Line::Malformed,
        }
    } else {
        let n = metric_name_len(&line[i..]);
        if n == 0 {
            return Line::Malformed;
        }
        (&line[i..i + n], i + n)
    };
    let rest_start = skip_blanks(line, after);
    if rest_start == after && after != line.len() {
        return Line::Malformed;
    }
    let rest = &line[rest_start..];
    match which {
        0 => {
            if !rest.is_ascii() && std::str::from_utf8(rest).is_err() {
                return Line::Malformed;
            }
            Line::Help { name, text: rest }
        }
        1 => {
            let word = &rest[..token_end(rest, 0)];
            if skip_blanks(rest, word.len()) != rest.len() {
                return Line::Malformed;
            }
            Line::Type { name, word }
        }
        _ => {
            let unit = &rest[..token_end(rest, 0)];
            if skip_blanks(rest, unit.len()) != rest.len()
                || !unit
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            {
                return Line::Malformed;
            }
            Line::Unit { name, unit }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> Option<(Sample, Vec<(String, String)>)> {
        let mut s = Scanner::default();
        match s.scan(line.as_bytes(), Format::OpenMetrics, b"") {
            Line::Sample(smp) => {
                let labels = s
                    .labels
                    .iter()
                    .map(|l| {
                        (
                            String::from_utf8(l.name.of(line.as_bytes()).to_vec()).unwrap(),
                            String::from_utf8(l.value.of(line.as_bytes()).to_vec()).unwrap(),
                        )
                    })
                    .collect();
                Some((smp, labels))
            }
            _ => None,
        }
    }

    #[test]
    fn plain_and_labelled_samples() {
        let (s, l) = sample("up 1").unwrap();
        assert!(s.canonical && l.is_empty() && s.open.is_none());
        let (s, l) = sample(r#"rq_total{code="200",path="/a\"b"} 3 1700000000.5"#).unwrap();
        assert!(s.canonical);
        assert_eq!(l[1], ("path".into(), r#"/a\"b"#.into()));
        assert!(s.timestamp.is_some());
        let (s, l) = sample("x{} 1").unwrap();
        assert!(s.canonical && l.is_empty() && s.open == Some(1));
    }

    #[test]
    fn lenient_text_is_not_canonical() {
        for line in [
            r#"x{a="b",} 1"#,
            r#"x{ a = "b" } 1"#,
            "x  1",
            "x 1 ",
            r#"x{a="\t"} 1"#,
            r#"{"legacy_name"} 1"#,
            r#"x{"le"="1"} 1"#,
        ] {
            let (s, _) = sample(line).unwrap_or_else(|| panic!("{line}"));
            assert!(!s.canonical, "{line}");
        }
    }

    #[test]
    fn utf8_names() {
        let (s, l) = sample(r#"{"my.metric", "my.label"="v"} 1"#).unwrap();
        assert!(s.quoted_name && !s.canonical);
        assert_eq!(l[0].0, "my.label");
        let (s, _) = sample(r#"{"my.metric","my.label"="v"} 1"#).unwrap();
        assert!(s.canonical);
    }

    #[test]
    fn exemplars() {
        let (s, _) = sample(r#"rq_total 3 # {trace_id="abc"} 1.0 1700000000.1"#).unwrap();
        let ex = s.exemplar.unwrap();
        assert!(s.canonical && ex.canonical && ex.within_limit);
        assert_eq!(s.value_end, "rq_total 3".len());
        let long = format!(r#"rq_total 3 # {{trace_id="{}"}} 1"#, "a".repeat(130));
        assert!(!sample(&long).unwrap().0.exemplar.unwrap().within_limit);
    }

    #[test]
    fn malformed_samples() {
        for line in [
            "1x 1",
            "x",
            "x abc",
            r#"x{a="b"} "#,
            r#"x{a="b" 1"#,
            r#"x{a=b} 1"#,
            r#"x{a="b",a="c"} 1"#,
            "x 1 2 3",
            "x 1 # nope",
            r#"x{a="unterminated} 1"#,
            r#"{"", a="b"} 1"#,
        ] {
            assert!(sample(line).is_none(), "{line}");
        }
    }

    /// What a scan says of a line, to compare two scanners.
    fn said(s: &mut Scanner, line: &[u8]) -> String {
        let what = format!("{:?}", s.scan(line, Format::OpenMetrics, b""));
        let labels: Vec<_> = s
            .labels
            .iter()
            .chain(&s.exemplar_labels)
            .map(|l| (l.name, l.value, l.repair, l.utf8))
            .collect();
        format!("{what} {labels:?} {}", s.names_key().is_some())
    }

    #[test]
    fn remembered_names_give_the_answer_of_a_fresh_scanner() {
        // Label sets cut from the pieces the general path tells apart, each scanned after lines
        // whose names the scanner then remembers (the fast path) and by a fresh scanner.
        let names = ["a", "ab", "b", "\"a\"", "_"];
        let eqs = ["=", " =", "= "];
        let values = ["\"x\"", "\"\"", "\"x\\\"y\"", "\"\\t\"", "\"x", "y"];
        let ends = [",", "}", " ,", " }", ",}", "", "x"];
        let mut sets = Vec::new();
        for n in names {
            for e in eqs {
                for v in values {
                    for end in ends {
                        sets.push(format!("{n}{e}{v}{end}"));
                    }
                }
            }
        }
        let lines: Vec<String> = sets
            .iter()
            .flat_map(|one| {
                [
                    format!("m{{{one}"),
                    format!("m{{a=\"1\",{one} 1"),
                    format!("m{{{one}b=\"2\"}} 1"),
                    format!("m{{{one}}} 1 # {{{one}}} 1"),
                ]
            })
            .collect();
        let primers = [
            "m{a=\"1\",b=\"2\"} 1",
            "m{ab=\"1\"} 1",
            "m{b=\"1\",a=\"2\"} 1 # {a=\"t\"} 1",
        ];
        for primer in primers {
            let mut warm = Scanner::default();
            for line in &lines {
                said(&mut warm, primer.as_bytes());
                let mut fresh = Scanner::default();
                let want = said(&mut fresh, line.as_bytes());
                assert_eq!(
                    said(&mut warm, line.as_bytes()),
                    want,
                    "{line} after {primer}"
                );
            }
        }
    }

    #[test]
    fn known_prefix_gives_the_same_answer() {
        let mut s = Scanner::default();
        for prefix in [&b""[..], b"rq", b"rq_total", b"zz", b"rq_total_more"] {
            match s.scan(b"rq_total{a=\"b\"} 1", Format::Text, prefix) {
                Line::Sample(smp) => assert_eq!(smp.name, Span { start: 0, end: 8 }),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                s.scan(b"rq.x 1", Format::Text, prefix),
                Line::Malformed
            ));
        }
    }

    #[test]
    fn timestamps_follow_the_format() {
        let mut s = Scanner::default();
        assert!(matches!(
            s.scan(b"x 1 1.5e9", Format::Text, b""),
            Line::Malformed
        ));
        assert!(matches!(
            s.scan(b"x 1 1500", Format::Text, b""),
            Line::Sample(_)
        ));
        assert!(matches!(
            s.scan(b"x 1 1.5e9", Format::OpenMetrics, b""),
            Line::Sample(_)
        ));
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let mut s = Scanner::default();
        assert!(matches!(
            s.scan(b"x{a=\"\xff\"} 1", Format::Text, b""),
            Line::Malformed
        ));
        assert!(matches!(
            s.scan(b"# HELP x bad \xff", Format::Text, b""),
            Line::Malformed
        ));
    }

    #[test]
    fn descriptors() {
        let mut s = Scanner::default();
        assert!(matches!(
            s.scan(b"# HELP x Some help.", Format::Text, b""),
            Line::Help {
                name: b"x",
                text: b"Some help."
            }
        ));
        assert!(matches!(
            s.scan(b"# TYPE x counter", Format::Text, b""),
            Line::Type {
                name: b"x",
                word: b"counter"
            }
        ));
        assert!(matches!(
            s.scan(b"# TYPE \"my.x\" gauge", Format::Text, b""),
            Line::Type { name: b"my.x", .. }
        ));
        assert!(matches!(
            s.scan(b"# UNIT x_seconds seconds", Format::OpenMetrics, b""),
            Line::Unit {
                unit: b"seconds",
                ..
            }
        ));
        assert!(matches!(
            s.scan(b"# EOF", Format::OpenMetrics, b""),
            Line::Eof
        ));
        assert!(matches!(
            s.scan(b"# just a comment", Format::Text, b""),
            Line::Comment
        ));
        assert!(matches!(
            s.scan(b"# TYPE x", Format::Text, b""),
            Line::Type { word: b"", .. }
        ));
        assert!(matches!(
            s.scan(b"# TYPE", Format::Text, b""),
            Line::Malformed
        ));
        assert!(matches!(s.scan(b"   ", Format::Text, b""), Line::Blank));
    }
}
