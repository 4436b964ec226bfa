//! One pass over one source: scan each line, decide its family once per family, and write the
//! rewritten sample into the merger's arena.
//!
//! Per line the work is a scan (no allocation), a prefix comparison against the current family,
//! and a copy. Runs of lines that need no change at all (Envoy's samples when no labels are added)
//! are not even copied line by line: they are copied as one block when the run ends.

use super::bytes;
use super::escape::write_repaired_label_value;
use super::kind::{Companion, Suffix, accepts_masked};
use super::merge::{Header, Merger};
use super::names::{is_legacy_label_name, is_legacy_metric_name, write_name};
use super::scan::{Line, Sample};
use super::validity::{self, Invalid};
use super::value::write_timestamp;
use super::{Format, Kind, LabelSet, SourceStats};

/// What a family costs beyond its lines, charged against its source's allowance: its record,
/// index entry and claims (a few hundred bytes of bookkeeping in all).
const FAMILY_COST: usize = 256;

/// Where the samples of the family being read go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Family(u32),
    /// Left out by the scrape's filter.
    Filtered,
    /// Not ours to write: under the filter's own prefix, or a true conflict.
    Conflict,
    /// A name the output formats cannot carry.
    Unwritable,
}

/// Descriptor lines (`# HELP/TYPE/UNIT`) read for a name, not yet bound to a family. Owned: the
/// next line, which decides the family, may come in the next piece of the body.
#[derive(Default)]
struct Pending {
    /// The name, then the help and unit texts, back to back; the fields below index into it.
    text: Vec<u8>,
    name_len: usize,
    help: Option<(usize, usize)>,
    /// The declared kind and the length of its base name (a prefix of the name).
    declared: Option<(Kind, usize)>,
    unit: Option<(usize, usize)>,
}

impl Pending {
    fn name(&self) -> &[u8] {
        &self.text[..self.name_len]
    }

    /// Appends `bytes` to the text and returns its range.
    fn keep(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.text.len();
        self.text.extend_from_slice(bytes);
        (start, self.text.len())
    }

    fn range(&self, r: Option<(usize, usize)>) -> Option<&[u8]> {
        r.map(|(a, b)| &self.text[a..b])
    }
}

/// The state of one source's pass, kept between the pieces of its body.
struct Pass<'m> {
    merger: &'m mut Merger,
    /// The source's priority: 0 is the lead.
    source: u16,
    input: Format,
    labels: &'m LabelSet,
    stats: SourceStats,
    pending: Pending,
    /// `pending` holds a declaration.
    has_pending: bool,
    /// The family being read: its kind, base name and target. `None` before the first one.
    cur: Option<(Kind, Target)>,
    /// The suffixes the current family's samples may carry (`Kind::suffix_mask`).
    cur_mask: u16,
    /// The current family has samples the output format puts in a companion family.
    cur_companions: bool,
    /// The suffixes written to `seen_family` not yet stored in it.
    seen: u16,
    seen_family: u32,
    /// Where this source's output starts in the active arena.
    start: usize,
    /// What its families cost beyond their bytes in the arena (bookkeeping, later headers).
    overhead: usize,
    /// What it may write in all ([`Merger::allowance`]).
    allowance: usize,
    /// It reached its allowance: the rest of its body is skipped.
    cut: bool,
    /// Its histogram groups are checked as they are written (an app's, in OpenMetrics).
    check_histograms: bool,
    /// Its samples are checked for what would make the output unparseable (`validity.rs`):
    /// every source's but a trusted lead's ([`Merger::trust_lead`]).
    check_samples: bool,
    /// The histogram group being written.
    group: Option<super::histogram::Group>,
    cur_base: Vec<u8>,
    /// `cur_base` is a legacy metric name, so the scanner may trust a line starting with it.
    cur_base_legacy: bool,
    /// Range of consecutive verbatim lines of the current piece not yet copied.
    run: Option<(usize, usize)>,
    eof: bool,
    /// A converted timestamp, built before anything of its line is written.
    ts: Vec<u8>,
}

/// A source being merged piece by piece, as its body is read from the host: the filter never
/// holds a whole body, only the output and one piece. Lines may be split across pieces.
pub struct SourceReader<'m> {
    pass: Pass<'m>,
    /// The start of a line whose end is in a later piece.
    carry: Vec<u8>,
}

impl Merger {
    /// Reads one source's body (written in `input`), adds `labels` to each of its samples and
    /// merges its families into this scrape. Never fails: what cannot be used is dropped and
    /// counted in the returned stats.
    ///
    /// Sources get their priority from the order of the calls (the first is the lead); use
    /// [`Merger::add_source_at`] when they are read in another order than their priority.
    pub fn add_source(&mut self, body: &[u8], input: Format, labels: &LabelSet) -> SourceStats {
        let priority = self.next_priority();
        self.add_source_at(priority, body, input, labels)
    }

    /// [`Merger::add_source`] for the source of priority `priority` (0 first: Envoy, then the
    /// aggregates in configured order). Conflicts, and the order of families and samples, follow
    /// the priorities, not the order of the calls.
    pub fn add_source_at(
        &mut self,
        priority: u16,
        body: &[u8],
        input: Format,
        labels: &LabelSet,
    ) -> SourceStats {
        let mut reader = self.source_at(priority, input, labels, body.len());
        reader.feed(body);
        reader.finish()
    }

    /// Starts merging a source whose body comes in pieces ([`SourceReader::feed`]); `size` is the
    /// body's length if known (0 if not), to size the output once. Its priority is the order of
    /// the calls, as for [`Merger::add_source`].
    pub fn source<'m>(
        &'m mut self,
        input: Format,
        labels: &'m LabelSet,
        size: usize,
    ) -> SourceReader<'m> {
        let priority = self.next_priority();
        self.source_at(priority, input, labels, size)
    }

    /// [`Merger::source`] for the source of priority `priority`.
    pub fn source_at<'m>(
        &'m mut self,
        priority: u16,
        input: Format,
        labels: &'m LabelSet,
        size: usize,
    ) -> SourceReader<'m> {
        self.saw_priority(priority);
        let extra = if labels.is_empty() {
            0
        } else {
            // Envoy's lines average ~100 bytes, apps' ~75: a generous guess grows the arena once.
            (size / 48 + 1) * (labels.rendered().len() + 1)
        };
        let allowance = self.allowance(priority);
        let expected = (size + extra).min(allowance);
        if priority == 0 {
            self.use_main();
            // The apps' output is copied after the lead's when the scrape ends: room for it now
            // (the side arena's capacity is the most they wrote) spares moving the lead's 34 MB.
            let apps = self.side.capacity();
            self.reserve(expected.saturating_add(apps).min(self.limits.scrape_bytes));
        } else {
            self.use_side();
            self.reserve(expected);
        }
        let start = self.arena.len();
        let check_histograms = priority != 0 && self.format == Format::OpenMetrics;
        let check_samples = priority != 0 || !self.trusted_lead;
        SourceReader {
            pass: Pass {
                merger: self,
                source: priority,
                input,
                labels,
                stats: SourceStats::default(),
                pending: Pending::default(),
                has_pending: false,
                cur: None,
                cur_mask: 0,
                cur_companions: false,
                seen: 0,
                seen_family: 0,
                start,
                overhead: 0,
                allowance,
                cut: false,
                check_histograms,
                check_samples,
                group: None,
                cur_base: Vec::new(),
                cur_base_legacy: false,
                run: None,
                eof: false,
                ts: Vec::new(),
            },
            carry: Vec::new(),
        }
    }
}

impl SourceReader<'_> {
    /// Merges the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        self.pass.stats.bytes += piece.len() as u64;
        if self.pass.cut {
            self.pass.stats.cut_lines += memchr::memchr_iter(b'\n', piece).count() as u64;
            return;
        }
        let mut rest = piece;
        if !self.carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', piece) else {
                self.carry.extend_from_slice(piece);
                // One line longer than all the source may write: it can never be written.
                if self.carry.len() > self.pass.allowance {
                    self.carry.clear();
                    self.pass.cut_here();
                }
                return;
            };
            self.carry.extend_from_slice(&piece[..=nl]);
            self.pass.lines(&self.carry);
            self.carry.clear();
            rest = &piece[nl + 1..];
        }
        let done = self.pass.lines(rest);
        if self.pass.cut {
            self.pass.stats.cut_lines += u64::from(done < rest.len());
        } else {
            self.carry.extend_from_slice(&rest[done..]);
        }
    }

    /// Ends the source (its last line may lack a newline) and says how it went.
    ///
    /// Samples that turn out to be a true conflict with a source of higher priority are only
    /// known when the scrape ends: see [`Merger::conflicts`].
    pub fn finish(mut self) -> SourceStats {
        let pass = &mut self.pass;
        if !self.carry.is_empty() && !pass.cut {
            let line = &self.carry[..];
            pass.line(line, 0, strip_cr(line, 0, line.len()));
            pass.flush(line);
        }
        if pass.has_pending {
            pass.resolve(&[]);
        }
        std::mem::take(&mut pass.stats)
    }
}

impl Drop for SourceReader<'_> {
    fn drop(&mut self) {
        self.pass.store_seen();
        if let Some(g) = self.pass.group.take() {
            self.pass.judge_group(g);
        }
        let written = self.pass.written();
        *self
            .pass
            .merger
            .written
            .entry(self.pass.source)
            .or_default() += written;
        self.pass.merger.close_segment();
        self.pass.merger.use_main();
    }
}

impl Pass<'_> {
    /// What this source has cost so far: its output (queued lines included) and overhead.
    #[inline]
    fn written(&self) -> usize {
        let queued = self.run.map_or(0, |(s, e)| e - s);
        self.merger.arena.len() - self.start + queued + self.overhead
    }

    /// Stops the source: its allowance is spent.
    fn stop(&mut self) {
        self.cut = true;
        self.stats.output_limit = true;
    }

    /// Stops the source at a line it does not read.
    fn cut_here(&mut self) {
        self.stop();
        self.stats.cut_lines += 1;
    }

    /// Charges a new family of this source: its bookkeeping (index, claims, header written
    /// later) is memory too, and a source declaring a million families must not get it free.
    /// Charges it before it is made (a lead family's header is written at once): `false`, and
    /// the source is stopped, when it does not fit.
    fn afford_family(&mut self, name: usize, header: Header<'_>) -> bool {
        let text = header.help.map_or(0, <[u8]>::len) + header.unit.map_or(0, <[u8]>::len);
        let cost = 4 * name + 2 * text + FAMILY_COST;
        if self.cut || self.written().saturating_add(cost) > self.allowance {
            self.stop();
            return false;
        }
        self.overhead += cost;
        true
    }

    fn store_seen(&mut self) {
        if self.seen != 0 {
            self.merger.families[self.seen_family as usize].seen |= self.seen;
            self.seen = 0;
        }
    }

    /// Merges the complete lines of `body` and returns where the unterminated rest starts.
    fn lines(&mut self, body: &[u8]) -> usize {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', body) {
            self.line(body, start, strip_cr(body, start, nl));
            start = nl + 1;
        }
        self.flush(body);
        start
    }

    #[inline]
    fn line(&mut self, body: &[u8], start: usize, end: usize) {
        let line = &body[start..end];
        if self.cut {
            self.stats.cut_lines += 1;
            return;
        }
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
            Line::Sample(s) => self.sample(body, start, end, s),
            Line::Blank | Line::Comment => {}
            Line::Eof => self.eof = self.input == Format::OpenMetrics,
            Line::Malformed => self.stats.malformed_lines += 1,
            Line::Help { name, text } => {
                self.pending_for(body, name);
                if self.pending.help.is_none() {
                    self.pending.help = Some(self.pending.keep(text));
                }
            }
            Line::Type { name, word } => match Kind::declare(name, word, self.input) {
                Some((kind, base)) => {
                    self.pending_for(body, name);
                    if self.pending.declared.is_none() {
                        self.pending.declared = Some((kind, base.len()));
                    }
                }
                None => self.stats.malformed_lines += 1,
            },
            Line::Unit { name, unit } => {
                self.pending_for(body, name);
                if self.pending.unit.is_none() {
                    self.pending.unit = Some(self.pending.keep(unit));
                }
            }
        }
    }

    /// Makes `pending` the declaration for `name`, binding the previous one if it was for another
    /// name.
    fn pending_for(&mut self, body: &[u8], name: &[u8]) {
        if self.has_pending && !bytes::eq(self.pending.name(), name) {
            self.resolve(body);
        }
        if !self.has_pending {
            self.has_pending = true;
            let p = &mut self.pending;
            p.text.clear();
            p.text.extend_from_slice(name);
            p.name_len = name.len();
            p.help = None;
            p.declared = None;
            p.unit = None;
        }
    }

    /// Binds the pending declaration to a family of this source: the one it declared before
    /// with the same name and type, or a new one.
    fn resolve(&mut self, body: &[u8]) {
        self.flush(body);
        self.has_pending = false;
        // Taken out so its text can be read while the merger is written; put back for its buffer.
        let p = std::mem::take(&mut self.pending);
        let (kind, base) = match p.declared {
            Some((kind, len)) => (kind, &p.name()[..len]),
            None => (Kind::Unknown, p.name()),
        };
        let idx = match self.merger.lookup(self.source, base, kind) {
            Some(idx) => idx,
            None => {
                let header = Header {
                    help: p.range(p.help),
                    unit: p.range(p.unit),
                };
                if !self.afford_family(base.len(), header) {
                    self.set_cur(kind, base, Target::Filtered);
                    self.pending = p;
                    return;
                }
                self.merger
                    .create(self.source, self.input, base, kind, header)
            }
        };
        let target = self.target_of(idx);
        self.set_cur(kind, base, target);
        self.pending = p;
    }

    fn set_cur(&mut self, kind: Kind, base: &[u8], target: Target) {
        self.cur_base.clear();
        self.cur_base.extend_from_slice(base);
        self.cur_base_legacy = is_legacy_metric_name(base);
        self.cur = Some((kind, target));
        self.cur_mask = kind.suffix_mask(self.input);
        self.cur_companions = kind
            .sample_suffixes(self.input)
            .iter()
            .any(|&s| kind.companion(s, self.merger.format).is_some());
    }

    fn target_of(&self, idx: u32) -> Target {
        let f = &self.merger.families[idx as usize];
        if f.blocked {
            Target::Conflict
        } else if f.unwritable {
            Target::Unwritable
        } else if f.excluded {
            Target::Filtered
        } else {
            Target::Family(idx)
        }
    }

    /// A sample that does not belong to the family being read: find this source's family it
    /// does belong to, or start an untyped one named after it.
    fn switch_implicit(&mut self, body: &[u8], name: &[u8]) -> Suffix {
        self.flush(body);
        for candidate in Kind::candidate_bases(name) {
            let found = self
                .merger
                .same_base(self.source, candidate)
                .find_map(|(idx, f)| Some((idx, f.kind, f.kind.accepts(&f.base, name, f.input)?)));
            if let Some((idx, kind, suffix)) = found {
                let target = self.target_of(idx);
                self.set_cur(kind, candidate, target);
                return suffix;
            }
        }
        if !self.afford_family(name.len(), Header::default()) {
            self.set_cur(Kind::Unknown, name, Target::Filtered);
            return Suffix::Bare;
        }
        let idx = self.merger.create(
            self.source,
            self.input,
            name,
            Kind::Unknown,
            Header::default(),
        );
        let target = self.target_of(idx);
        self.set_cur(Kind::Unknown, name, target);
        Suffix::Bare
    }

    /// The family that takes this family's samples of a suffix the output format has no place
    /// for here (`_created` in text): made when its first sample comes.
    fn companion(&mut self, body: &[u8], family: u32, which: Companion) -> Option<u32> {
        let slot = which as usize;
        let existing = self.merger.families[family as usize].companions[slot];
        if existing != u32::MAX {
            return Some(existing);
        }
        self.flush(body);
        let f = &self.merger.families[family as usize];
        let mut base = f.base.to_vec();
        base.extend_from_slice(which.suffix().bytes());
        let help = f.help.clone();
        let header = Header {
            help: help.as_deref(),
            unit: None,
        };
        if !self.afford_family(base.len(), header) {
            return None;
        }
        let idx = self
            .merger
            .create(self.source, self.input, &base, Kind::Gauge, header);
        self.merger.families[family as usize].companions[slot] = idx;
        Some(idx)
    }

    #[inline]
    fn sample(&mut self, body: &[u8], start: usize, end: usize, s: Sample) {
        self.stats.samples_in += 1;
        let line = &body[start..end];
        let name = s.name.of(line);
        if self.has_pending {
            self.resolve(body);
        }
        let suffix = match self.cur {
            Some(_) => match accepts_masked(self.cur_mask, &self.cur_base, name) {
                Some(suffix) => suffix,
                None => self.switch_implicit(body, name),
            },
            None => self.switch_implicit(body, name),
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
            Target::Unwritable => {
                self.stats.unrepresentable += 1;
                return;
            }
        };
        let format = self.merger.format;
        let companion = if self.cur_companions {
            kind.companion(suffix, format)
        } else {
            None
        };
        let (family, counted_as) = match companion {
            Some(which) => match self.companion(body, family, which) {
                None => {
                    self.stats.cut_lines += 1;
                    return;
                }
                Some(c) if self.merger.families[c as usize].excluded => {
                    self.stats.samples_filtered += 1;
                    return;
                }
                Some(c) => (c, Suffix::Bare),
            },
            None => (family, suffix),
        };
        if self.check_samples
            && let Err(why) =
                validity::check(line, &s, &self.merger.scanner.labels, kind, suffix, format)
        {
            match why {
                Invalid::Malformed => self.stats.malformed_lines += 1,
                Invalid::Unrepresentable => self.stats.unrepresentable += 1,
            }
            return;
        }
        let exemplar = s.exemplar;
        let keep_exemplar = exemplar.is_some_and(|e| {
            format == Format::OpenMetrics
                && e.within_limit
                && kind.allows_exemplar(suffix)
                && !self.merger.scanner.exemplar_labels.iter().any(|l| l.utf8)
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
        // Stop at this line boundary rather than pass the allowance. `need` bounds what the line
        // can become: labels added, a name quoted, `exported_` renames, escapes repaired.
        let need = 2 * line.len() + self.labels.framed().len() + 64;
        if self.cut || self.written() + need > self.allowance {
            self.stop();
            self.stats.cut_lines += 1;
            return;
        }
        let histogram =
            self.check_histograms && matches!(kind, Kind::Histogram | Kind::GaugeHistogram);
        let line_start = if histogram { self.position() } else { 0 };
        // The family's segment must be the open one before anything of this line is written.
        self.merger.switch_to(family);
        self.stats.samples_out += 1;
        // Which suffixes a family wrote, kept in a register and stored when the family changes.
        if family != self.seen_family {
            self.store_seen();
            self.seen_family = family;
        }
        self.seen |= 1 << counted_as as u8;
        self.write(body, start, end, &s, keep_exemplar, convert_ts);
        if histogram {
            let position = (line_start, self.position());
            let value = s.value.of(line);
            let labels = &self.merger.scanner.labels;
            if let Some(ended) = super::histogram::follow(
                &mut self.group,
                family,
                line,
                labels,
                value,
                suffix,
                position,
            ) {
                self.judge_group(ended);
            }
        }
    }

    /// Where the next byte written for this source lands in the active arena (queued lines
    /// included: they are copied there).
    #[inline]
    fn position(&self) -> usize {
        self.merger.arena.len() + self.run.map_or(0, |(s, e)| e - s)
    }

    /// An app's histogram group OpenMetrics would refuse is left out (see `histogram.rs`).
    fn judge_group(&mut self, g: super::histogram::Group) {
        if !g.valid() {
            self.merger.families[g.family as usize]
                .skip
                .push((g.start, g.end));
            *self.merger.invalid.entry(self.source).or_default() += g.samples;
        }
    }

    /// Writes a sample that passed every check.
    #[inline]
    fn write(
        &mut self,
        body: &[u8],
        start: usize,
        end: usize,
        s: &Sample,
        keep_exemplar: bool,
        convert_ts: bool,
    ) {
        let line = &body[start..end];
        let exemplar = s.exemplar;
        let exemplar_ok = exemplar.is_none_or(|e| !keep_exemplar || e.canonical);
        let simple = s.canonical && !convert_ts && exemplar_ok;
        let cut = if exemplar.is_some() && !keep_exemplar {
            s.value_end
        } else {
            line.len()
        };
        if self.labels.is_empty() {
            if simple && cut == line.len() {
                self.verbatim(body, start, end);
            } else if simple {
                self.flush(body);
                let out = &mut self.merger.arena;
                out.extend_from_slice(&line[..cut]);
                out.push(b'\n');
            } else {
                self.flush(body);
                self.rebuild(line, s, keep_exemplar);
            }
            return;
        }
        self.flush(body);
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
            // The rest of the line is copied with its newline when the body has one right there.
            let lf = cut == line.len() && body.get(end) == Some(&b'\n');
            let rest_end = start + cut + usize::from(lf);
            let out = &mut self.merger.arena;
            out.extend_from_slice(&line[..s.name.end]);
            let framed = self.labels.framed();
            match s.open {
                Some(open) if has_own => {
                    out.extend_from_slice(framed);
                    out.extend_from_slice(&body[start + open + 1..rest_end]);
                }
                _ => {
                    // No labels of its own: `{added}` then the value.
                    out.extend_from_slice(&framed[..framed.len() - 1]);
                    out.push(b'}');
                    let after = s.open.map_or(s.name.end, |_| s.head_end);
                    out.extend_from_slice(&body[start + after..rest_end]);
                }
            }
            if !lf {
                out.push(b'\n');
            }
        } else {
            self.rebuild(line, s, keep_exemplar);
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
    fn verbatim(&mut self, body: &[u8], start: usize, end: usize) {
        let lf = end < body.len() && body[end] == b'\n';
        if lf {
            match &mut self.run {
                Some((_, run_end)) if *run_end == start => *run_end = end + 1,
                _ => {
                    self.flush(body);
                    self.run = Some((start, end + 1));
                }
            }
        } else {
            // A CRLF or last unterminated line: the body bytes are not the output bytes.
            self.flush(body);
            let out = &mut self.merger.arena;
            out.extend_from_slice(&body[start..end]);
            out.push(b'\n');
        }
    }

    #[inline]
    fn flush(&mut self, body: &[u8]) {
        if let Some((start, end)) = self.run.take() {
            self.merger.arena.extend_from_slice(&body[start..end]);
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
