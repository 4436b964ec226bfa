//! One pass over one source: scan each line, decide its family once per family, and write the
//! rewritten sample into the merger's arena.
//!
//! Per line the work is a scan (no allocation), a prefix comparison against the current family,
//! and a copy. Runs of lines that need no change at all (Envoy's samples when no labels are added)
//! are not even copied line by line: they are copied as one block when the run ends.

use super::escape::write_repaired_label_value;
use super::kind::Suffix;
use super::merge::{Header, Merger};
use super::names::{is_legacy_label_name, is_legacy_metric_name, write_name};
use super::scan::{Line, Sample};
use super::value::write_timestamp;
use super::{Format, Kind, LabelSet, SourceStats};

/// Where the samples of the family being read go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Family(u32),
    /// Left out by the scrape's filter.
    Filtered,
    /// Another source exported this family with another type: keep the first, drop these.
    Conflict,
}

/// Descriptor lines (`# HELP/TYPE/UNIT`) read for a name, not yet bound to a family.
struct Pending<'a> {
    name: &'a [u8],
    help: Option<&'a [u8]>,
    declared: Option<(Kind, &'a [u8])>,
    unit: Option<&'a [u8]>,
}

struct Pass<'a, 'm> {
    merger: &'m mut Merger,
    body: &'a [u8],
    input: Format,
    labels: &'m LabelSet,
    stats: SourceStats,
    pending: Option<Pending<'a>>,
    /// The family being read: its kind, base name and target. `None` before the first one.
    cur: Option<(Kind, Target)>,
    cur_base: Vec<u8>,
    /// `cur_base` is a legacy metric name, so the scanner may trust a line starting with it.
    cur_base_legacy: bool,
    /// Body range of consecutive verbatim lines not yet copied.
    run: Option<(usize, usize)>,
    eof: bool,
    /// A converted timestamp, built before anything of its line is written.
    ts: Vec<u8>,
}

impl Merger {
    /// Reads one source's body (written in `input`), adds `labels` to each of its samples and
    /// merges its families into this scrape. Never fails: what cannot be used is dropped and
    /// counted in the returned stats.
    pub fn add_source(&mut self, body: &[u8], input: Format, labels: &LabelSet) -> SourceStats {
        let extra = if labels.is_empty() {
            0
        } else {
            // Envoy's lines average ~75 bytes; apps' are similar. A close guess grows the arena once.
            (body.len() / 48 + 1) * (labels.rendered().len() + 1)
        };
        self.reserve(body.len() + extra);
        let mut pass = Pass {
            merger: self,
            body,
            input,
            labels,
            stats: SourceStats {
                bytes: body.len() as u64,
                ..SourceStats::default()
            },
            pending: None,
            cur: None,
            cur_base: Vec::new(),
            cur_base_legacy: false,
            run: None,
            eof: false,
            ts: Vec::new(),
        };
        pass.run();
        pass.stats
    }
}

impl<'a> Pass<'a, '_> {
    fn run(&mut self) {
        let body = self.body;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', body) {
            self.line(start, strip_cr(body, start, nl));
            start = nl + 1;
        }
        if start < body.len() {
            self.line(start, strip_cr(body, start, body.len()));
        }
        if let Some(p) = self.pending.take() {
            self.resolve(p);
        }
        self.flush();
    }

    #[inline]
    fn line(&mut self, start: usize, end: usize) {
        let line = &self.body[start..end];
        if self.eof {
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                self.stats.malformed_lines += 1;
            }
            return;
        }
        let known_prefix: &[u8] = if self.cur_base_legacy {
            &self.cur_base
        } else {
            b""
        };
        match self.merger.scanner.scan(line, self.input, known_prefix) {
            Line::Sample(s) => self.sample(start, end, s),
            Line::Blank | Line::Comment => {}
            Line::Eof => self.eof = self.input == Format::OpenMetrics,
            Line::Malformed => self.stats.malformed_lines += 1,
            Line::Help { name, text } => {
                let p = self.pending_for(name);
                if p.help.is_none() {
                    p.help = Some(text);
                }
            }
            Line::Type { name, word } => match Kind::declare(name, word, self.input) {
                Some(declared) => {
                    let p = self.pending_for(name);
                    if p.declared.is_none() {
                        p.declared = Some(declared);
                    }
                }
                None => self.stats.malformed_lines += 1,
            },
            Line::Unit { name, unit } => {
                let p = self.pending_for(name);
                if p.unit.is_none() {
                    p.unit = Some(unit);
                }
            }
        }
    }

    /// The pending declaration for `name`, binding the previous one if it was for another name.
    fn pending_for(&mut self, name: &'a [u8]) -> &mut Pending<'a> {
        if self.pending.as_ref().is_some_and(|p| p.name != name)
            && let Some(p) = self.pending.take()
        {
            self.resolve(p);
        }
        self.pending.get_or_insert(Pending {
            name,
            help: None,
            declared: None,
            unit: None,
        })
    }

    /// Binds a declaration to a family: an existing one of the same type, a new one, or nothing
    /// (filtered, or a type conflict).
    fn resolve(&mut self, p: Pending<'a>) {
        self.flush();
        let (kind, base) = p.declared.unwrap_or((Kind::Unknown, p.name));
        match self.merger.lookup(base, kind) {
            Some(idx) => {
                let fam = &self.merger.families[idx as usize];
                let (fam_kind, excluded) = (fam.kind, fam.excluded);
                if fam_kind == kind || fam_kind == Kind::Unknown || kind == Kind::Unknown {
                    self.cur_base.clear();
                    self.cur_base.extend_from_slice(&fam.base);
                    self.cur_base_legacy = is_legacy_metric_name(&self.cur_base);
                    let target = if excluded {
                        Target::Filtered
                    } else {
                        Target::Family(idx)
                    };
                    self.cur = Some((fam_kind, target));
                } else {
                    self.set_cur(kind, base, Target::Conflict);
                }
            }
            None => {
                let header = Header {
                    help: p.help,
                    unit: p.unit,
                    source_format: Some(self.input),
                };
                let idx = self.merger.create(base, kind, header);
                let target = self.target_of(idx);
                self.set_cur(kind, base, target);
            }
        }
    }

    fn set_cur(&mut self, kind: Kind, base: &[u8], target: Target) {
        self.cur_base.clear();
        self.cur_base.extend_from_slice(base);
        self.cur_base_legacy = is_legacy_metric_name(base);
        self.cur = Some((kind, target));
    }

    fn target_of(&self, idx: u32) -> Target {
        if self.merger.families[idx as usize].excluded {
            Target::Filtered
        } else {
            Target::Family(idx)
        }
    }

    /// A sample that does not belong to the family being read: find the family it does belong to,
    /// or start an untyped one named after it.
    fn switch_implicit(&mut self, name: &[u8]) -> Suffix {
        self.flush();
        for candidate in Kind::candidate_bases(name) {
            let Some(idx) = self.merger.lookup_key(candidate) else {
                continue;
            };
            let fam = &self.merger.families[idx as usize];
            if let Some(suffix) = fam.kind.accepts(&fam.base, name) {
                let kind = fam.kind;
                self.cur_base.clear();
                self.cur_base.extend_from_slice(&fam.base);
                self.cur_base_legacy = is_legacy_metric_name(&self.cur_base);
                self.cur = Some((kind, self.target_of(idx)));
                return suffix;
            }
        }
        if self.merger.lookup_key(name).is_some() {
            // The name is a family of another type: a conflict.
            self.set_cur(Kind::Unknown, name, Target::Conflict);
        } else {
            let idx = self.merger.create(name, Kind::Unknown, Header::default());
            let target = self.target_of(idx);
            self.set_cur(Kind::Unknown, name, target);
        }
        Suffix::Bare
    }

    #[inline]
    fn sample(&mut self, start: usize, end: usize, s: Sample) {
        self.stats.samples_in += 1;
        let line = &self.body[start..end];
        let name = s.name.of(line);
        if let Some(p) = self.pending.take() {
            self.resolve(p);
        }
        let suffix = match self.cur {
            Some((kind, _)) => match kind.accepts(&self.cur_base, name) {
                Some(suffix) => suffix,
                None => self.switch_implicit(name),
            },
            None => self.switch_implicit(name),
        };
        let Some((kind, target)) = self.cur else {
            return;
        };
        let family = match target {
            Target::Family(idx) => idx,
            Target::Filtered => {
                self.stats.samples_filtered += 1;
                return;
            }
            Target::Conflict => {
                self.stats.type_conflicts += 1;
                return;
            }
        };
        let format = self.merger.format;
        if !kind.representable(suffix, format) {
            self.stats.unrepresentable += 1;
            return;
        }
        let exemplar = s.exemplar;
        let keep_exemplar = exemplar.is_some_and(|e| {
            format == Format::OpenMetrics && e.within_limit && kind.allows_exemplar(suffix)
        });
        let convert_ts = s.timestamp.is_some() && self.input != format;
        if convert_ts {
            self.ts.clear();
            let ts = s.timestamp.map_or(&b""[..], |t| t.of(line));
            if !write_timestamp(ts, self.input, format, &mut self.ts) {
                self.stats.unrepresentable += 1;
                return;
            }
        }
        // The family's segment must be the open one before anything of this line is written.
        self.merger.switch_to(family);
        self.stats.samples_out += 1;
        let exemplar_ok = exemplar.is_none_or(|e| !keep_exemplar || e.canonical);
        let simple = s.canonical && !convert_ts && exemplar_ok;
        let cut = if exemplar.is_some() && !keep_exemplar {
            s.value_end
        } else {
            line.len()
        };
        if self.labels.is_empty() {
            if simple && cut == line.len() {
                self.verbatim(start, end);
            } else if simple {
                self.flush();
                let out = &mut self.merger.arena;
                out.extend_from_slice(&line[..cut]);
                out.push(b'\n');
            } else {
                self.flush();
                self.rebuild(line, &s, keep_exemplar);
            }
            return;
        }
        self.flush();
        let collides = {
            let labels = self.labels;
            self.merger
                .scanner
                .labels
                .iter()
                .any(|l| labels.contains(l.name.of(line)))
        };
        if simple && !collides && !s.quoted_name {
            let has_own = !self.merger.scanner.labels.is_empty();
            let out = &mut self.merger.arena;
            out.extend_from_slice(&line[..s.name.end]);
            out.push(b'{');
            out.extend_from_slice(self.labels.rendered());
            match s.open {
                Some(open) if has_own => {
                    out.push(b',');
                    out.extend_from_slice(&line[open + 1..cut]);
                }
                Some(_) => {
                    out.push(b'}');
                    out.extend_from_slice(&line[s.head_end..cut]);
                }
                None => {
                    out.push(b'}');
                    out.extend_from_slice(&line[s.name.end..cut]);
                }
            }
            out.push(b'\n');
        } else {
            self.rebuild(line, &s, keep_exemplar);
        }
    }

    /// Writes the sample in canonical form from its parts: injected labels first, own labels
    /// renamed to `exported_<name>` where they collide, escapes repaired, timestamp converted.
    fn rebuild(&mut self, line: &[u8], s: &Sample, keep_exemplar: bool) {
        let m = &mut *self.merger;
        let out = &mut m.arena;
        let own = &m.scanner.labels;
        let injected = self.labels;
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
        if let Some(ts) = s.timestamp {
            out.push(b' ');
            if self.input == m.format {
                out.extend_from_slice(ts.of(line));
            } else {
                out.extend_from_slice(&self.ts);
            }
        }
        if let (true, Some(ex)) = (keep_exemplar, s.exemplar) {
            out.extend_from_slice(b" # {");
            for (i, l) in m.scanner.exemplar_labels.iter().enumerate() {
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

    /// Queues `body[start..end]` (a line that needs no change) for a block copy.
    #[inline]
    fn verbatim(&mut self, start: usize, end: usize) {
        let lf = end < self.body.len() && self.body[end] == b'\n';
        if lf {
            match &mut self.run {
                Some((_, run_end)) if *run_end == start => *run_end = end + 1,
                _ => {
                    self.flush();
                    self.run = Some((start, end + 1));
                }
            }
        } else {
            // A CRLF or last unterminated line: the body bytes are not the output bytes.
            self.flush();
            let out = &mut self.merger.arena;
            out.extend_from_slice(&self.body[start..end]);
            out.push(b'\n');
        }
    }

    #[inline]
    fn flush(&mut self) {
        if let Some((start, end)) = self.run.take() {
            self.merger.arena.extend_from_slice(&self.body[start..end]);
        }
    }
}

#[inline]
fn strip_cr(body: &[u8], start: usize, end: usize) -> usize {
    if end > start && body[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

fn write_label_name(name: &[u8], out: &mut Vec<u8>) {
    write_name(name, is_legacy_label_name(name), out);
}

/// `exported_<name>`, with as many `exported_` as it takes to name no other label of the sample.
fn write_exported_name(
    name: &[u8],
    line: &[u8],
    own: &[super::scan::LabelSpan],
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
