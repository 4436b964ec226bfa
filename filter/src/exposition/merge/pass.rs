//! One pass over one source: scan each line, decide its family once per family, and write the
//! rewritten sample into the merger's arena.
//!
//! Per line the work is a scan (no allocation), a prefix comparison against the current family,
//! and a copy. Runs of lines that need no change at all (Envoy's samples when no labels are added)
//! are not even copied line by line: they are copied as one block when the run ends.

use crate::exposition::decide::Kind;
use crate::exposition::decide::family::Header;
use crate::exposition::decide::kind::{Companion, Suffix, accepts_masked};
use crate::exposition::decide::validity::{self, Invalid};
use crate::exposition::merge::Merger;
use crate::exposition::merge::passing::Passing;
use crate::exposition::merge::stats::SourceStats;
use crate::exposition::read::Format;
use crate::exposition::read::bytes;
use crate::exposition::read::names::is_legacy_metric_name;
use crate::exposition::read::scan::{Line, NamesKey, Sample};
use crate::exposition::read::value::write_timestamp;
use crate::exposition::write::LabelSet;
use crate::exposition::write::sample::{SampleParts, write_canonical};

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

/// The state of one source's pass, kept between the pieces of its body. Owned, so a streamed
/// source ([`LeadStream`]) keeps it between callbacks while the merger is lent elsewhere.
#[derive(Default)]
struct State {
    /// The source's priority: 0 is the lead.
    source: u16,
    /// Whether the label names of a key collide with the labels this source adds: the answer
    /// for the next sample with the same names, which is most samples.
    collides: Option<(NamesKey, bool)>,
    input: Format,
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
    /// Where this source's output starts in the active arena (a position, see `Merger::pos`).
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
    group: Option<crate::exposition::decide::histogram::Group>,
    cur_base: Vec<u8>,
    /// `cur_base` is a legacy metric name, so the scanner may trust a line starting with it.
    cur_base_legacy: bool,
    /// Range of consecutive verbatim lines of the current piece not yet copied.
    run: Option<(usize, usize)>,
    eof: bool,
    /// A converted timestamp, built before anything of its line is written.
    ts: Vec<u8>,
}

/// One source's pass: its state, the merger it writes into and the labels it adds.
struct Pass<'m> {
    merger: &'m mut Merger,
    labels: &'m LabelSet,
    st: State,
}

/// A source being merged piece by piece, as its body is read from the host: the filter never
/// holds a whole body, only the output and one piece. Lines may be split across pieces.
pub struct SourceReader<'m> {
    pass: Pass<'m>,
    /// The start of a line whose end is in a later piece.
    carry: Vec<u8>,
    /// Only lent a streamed source's state for one piece: dropping it ends nothing.
    suspended: bool,
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
        let st = self.open_source(priority, input, labels, size);
        SourceReader {
            pass: Pass {
                merger: self,
                labels,
                st,
            },
            carry: Vec::new(),
            suspended: false,
        }
    }

    /// Makes room for a source and returns the state of its pass.
    fn open_source(
        &mut self,
        priority: u16,
        input: Format,
        labels: &LabelSet,
        size: usize,
    ) -> State {
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
            // A streamed lead (size 0) is taken out piece by piece: it needs no room ahead.
            if size > 0 {
                let apps = self.arenas.side.capacity();
                self.reserve(
                    expected
                        .saturating_add(apps)
                        .min(self.budget.limits().scrape_bytes),
                );
            }
        } else {
            self.use_side(expected);
            self.reserve(expected);
        }
        State {
            source: priority,
            input,
            start: self.pos(),
            allowance,
            check_histograms: priority != 0 && self.format == Format::OpenMetrics,
            check_samples: priority != 0 || !self.trusted_lead,
            ..State::default()
        }
    }
}

/// The lead source (Envoy) streamed: read piece by piece as its answer passes through the
/// filter, after every other source was read, with what is final handed out as it is written
/// ([`Merger::ready`]). Holds the pass's state between pieces.
pub struct LeadStream {
    st: State,
    carry: Vec<u8>,
    labels: LabelSet,
}

impl Merger {
    /// Starts streaming the lead (priority 0). Call it after every other source was added: an
    /// app family the lead shares decides where the lead's bytes may go, so the apps must be
    /// known before any of them leaves ([`Merger::ready`]).
    pub fn stream_lead(&mut self, input: Format, labels: &LabelSet) -> LeadStream {
        self.start_stream();
        let st = self.open_source(0, input, labels, 0);
        LeadStream {
            st,
            carry: Vec::new(),
            labels: labels.clone(),
        }
    }

    /// Takes over a lead that passed untouched until here ([`Merger::pass_lead`]): it is read
    /// as a streamed lead from what `passing` held back on, and its share counts what passed.
    pub fn take_over(&mut self, passing: Passing, input: Format, labels: &LabelSet) -> LeadStream {
        let mut lead = self.stream_lead(input, labels);
        if !passing.header.is_empty() {
            // The family passing was in, bound now (its header written and dropped: Envoy's
            // went already), so that its samples that follow join it.
            self.feed_lead(&mut lead, &passing.header);
            let mut pass = Pass {
                merger: self,
                labels: &lead.labels,
                st: std::mem::take(&mut lead.st),
            };
            if pass.st.has_pending {
                pass.resolve(&[]);
            }
            lead.st = std::mem::take(&mut pass.st);
            self.consume_ready();
        }
        lead.st.overhead += passing.passed;
        lead.st.stats.bytes = passing.passed as u64;
        if !passing.held.is_empty() {
            self.feed_lead(&mut lead, &passing.held);
        }
        lead
    }

    /// Merges the next piece of the streamed lead; what became final is then in
    /// [`Merger::ready`].
    pub fn feed_lead(&mut self, stream: &mut LeadStream, piece: &[u8]) {
        let mut reader = SourceReader {
            pass: Pass {
                merger: self,
                labels: &stream.labels,
                st: std::mem::take(&mut stream.st),
            },
            carry: std::mem::take(&mut stream.carry),
            suspended: true,
        };
        reader.feed(piece);
        stream.st = std::mem::take(&mut reader.pass.st);
        stream.carry = std::mem::take(&mut reader.carry);
    }

    /// Ends the streamed lead (its last line may lack a newline) and says how it went.
    pub fn end_lead(&mut self, stream: LeadStream) -> SourceStats {
        let LeadStream { st, carry, labels } = stream;
        let reader = SourceReader {
            pass: Pass {
                merger: self,
                labels: &labels,
                st,
            },
            carry,
            suspended: false,
        };
        reader.finish()
    }
}

impl SourceReader<'_> {
    /// Merges the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        self.pass.st.stats.bytes += piece.len() as u64;
        if self.pass.st.cut {
            self.pass.st.stats.cut_lines += memchr::memchr_iter(b'\n', piece).count() as u64;
            return;
        }
        let mut rest = piece;
        if !self.carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', piece) else {
                self.carry.extend_from_slice(piece);
                // One line longer than all the source may write: it can never be written.
                if self.carry.len() > self.pass.st.allowance {
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
        if self.pass.st.cut {
            self.pass.st.stats.cut_lines += u64::from(done < rest.len());
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
        if !self.carry.is_empty() && !pass.st.cut {
            let line = &self.carry[..];
            pass.line(line, 0, strip_cr(line, 0, line.len()));
            pass.flush(line);
        }
        if pass.st.has_pending {
            pass.resolve(&[]);
        }
        std::mem::take(&mut pass.st.stats)
    }
}

impl Drop for SourceReader<'_> {
    fn drop(&mut self) {
        if self.suspended {
            return;
        }
        self.pass.store_seen();
        if let Some(g) = self.pass.st.group.take() {
            self.pass.judge_group(g);
        }
        let written = self.pass.written();
        self.pass.merger.budget.charge(self.pass.st.source, written);
        self.pass.merger.close_segment();
        self.pass.merger.use_main();
    }
}

impl Pass<'_> {
    /// What this source has cost so far: its output (queued lines included) and overhead.
    #[inline]
    fn written(&self) -> usize {
        let queued = self.st.run.map_or(0, |(s, e)| e - s);
        self.merger.pos() - self.st.start + queued + self.st.overhead
    }

    /// Stops the source: its allowance is spent.
    fn stop(&mut self) {
        self.st.cut = true;
        self.st.stats.output_limit = true;
    }

    /// Stops the source at a line it does not read.
    fn cut_here(&mut self) {
        self.stop();
        self.st.stats.cut_lines += 1;
    }

    /// Charges a new family of this source: its bookkeeping (index, claims, header written
    /// later) is memory too, and a source declaring a million families must not get it free.
    /// Charges it before it is made (a lead family's header is written at once): `false`, and
    /// the source is stopped, when it does not fit.
    fn afford_family(&mut self, name: usize, header: Header<'_>) -> bool {
        let text = header.help.map_or(0, <[u8]>::len) + header.unit.map_or(0, <[u8]>::len);
        let cost = 4 * name + 2 * text + FAMILY_COST;
        if self.st.cut || self.written().saturating_add(cost) > self.st.allowance {
            self.stop();
            return false;
        }
        self.st.overhead += cost;
        true
    }

    fn store_seen(&mut self) {
        if self.st.seen != 0 {
            self.merger.families[self.st.seen_family as usize].seen |= self.st.seen;
            self.st.seen = 0;
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
        if self.st.cut {
            self.st.stats.cut_lines += 1;
            return;
        }
        if self.st.eof {
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                self.st.stats.malformed_lines += 1;
            }
            return;
        }
        let known_prefix: &[u8] = if self.st.cur_base_legacy {
            &self.st.cur_base
        } else {
            b""
        };
        match self.merger.scanner.scan(line, self.st.input, known_prefix) {
            Line::Sample(s) => self.sample(body, start, end, s),
            Line::Blank | Line::Comment => {}
            Line::Eof => self.st.eof = self.st.input == Format::OpenMetrics,
            Line::Malformed => self.st.stats.malformed_lines += 1,
            Line::Help { name, text } => {
                self.pending_for(body, name);
                if self.st.pending.help.is_none() {
                    self.st.pending.help = Some(self.st.pending.keep(text));
                }
            }
            Line::Type { name, word } => match Kind::declare(name, word, self.st.input) {
                Some((kind, base)) => {
                    self.pending_for(body, name);
                    if self.st.pending.declared.is_none() {
                        self.st.pending.declared = Some((kind, base.len()));
                    }
                }
                None => self.st.stats.malformed_lines += 1,
            },
            Line::Unit { name, unit } => {
                self.pending_for(body, name);
                if self.st.pending.unit.is_none() {
                    self.st.pending.unit = Some(self.st.pending.keep(unit));
                }
            }
        }
    }

    /// Makes `pending` the declaration for `name`, binding the previous one if it was for another
    /// name.
    fn pending_for(&mut self, body: &[u8], name: &[u8]) {
        if self.st.has_pending && !bytes::eq(self.st.pending.name(), name) {
            self.resolve(body);
        }
        if !self.st.has_pending {
            self.st.has_pending = true;
            let p = &mut self.st.pending;
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
        self.st.has_pending = false;
        // Taken out so its text can be read while the merger is written; put back for its buffer.
        let p = std::mem::take(&mut self.st.pending);
        let (kind, base) = match p.declared {
            Some((kind, len)) => (kind, &p.name()[..len]),
            None => (Kind::Unknown, p.name()),
        };
        let idx = match self.merger.lookup(self.st.source, base, kind) {
            Some(idx) => idx,
            None => {
                let header = Header {
                    help: p.range(p.help),
                    unit: p.range(p.unit),
                };
                if !self.afford_family(base.len(), header) {
                    self.set_cur(kind, base, Target::Filtered);
                    self.st.pending = p;
                    return;
                }
                self.merger
                    .create(self.st.source, self.st.input, base, kind, header)
            }
        };
        let target = self.target_of(idx);
        self.set_cur(kind, base, target);
        self.st.pending = p;
    }

    fn set_cur(&mut self, kind: Kind, base: &[u8], target: Target) {
        self.st.cur_base.clear();
        self.st.cur_base.extend_from_slice(base);
        self.st.cur_base_legacy = is_legacy_metric_name(base);
        self.st.cur = Some((kind, target));
        self.st.cur_mask = kind.suffix_mask(self.st.input);
        self.st.cur_companions = kind
            .sample_suffixes(self.st.input)
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
                .same_base(self.st.source, candidate)
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
            self.st.source,
            self.st.input,
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
            .create(self.st.source, self.st.input, &base, Kind::Gauge, header);
        self.merger.families[family as usize].companions[slot] = idx;
        Some(idx)
    }

    #[inline]
    fn sample(&mut self, body: &[u8], start: usize, end: usize, s: Sample) {
        self.st.stats.samples_in += 1;
        let line = &body[start..end];
        let name = s.name.of(line);
        if self.st.has_pending {
            self.resolve(body);
        }
        let suffix = match self.st.cur {
            Some(_) => match accepts_masked(self.st.cur_mask, &self.st.cur_base, name) {
                Some(suffix) => suffix,
                None => self.switch_implicit(body, name),
            },
            None => self.switch_implicit(body, name),
        };
        let Some((kind, target)) = self.st.cur else {
            return;
        };
        let family = match target {
            Target::Family(idx) => idx,
            Target::Filtered => {
                self.st.stats.samples_filtered += 1;
                return;
            }
            Target::Conflict => {
                self.st.stats.type_conflicts += 1;
                return;
            }
            Target::Unwritable => {
                self.st.stats.unrepresentable += 1;
                return;
            }
        };
        let format = self.merger.format;
        let companion = if self.st.cur_companions {
            kind.companion(suffix, format)
        } else {
            None
        };
        let (family, counted_as) = match companion {
            Some(which) => match self.companion(body, family, which) {
                None => {
                    self.st.stats.cut_lines += 1;
                    return;
                }
                Some(c) if self.merger.families[c as usize].excluded => {
                    self.st.stats.samples_filtered += 1;
                    return;
                }
                Some(c) => (c, Suffix::Bare),
            },
            None => (family, suffix),
        };
        if self.st.check_samples
            && let Err(why) =
                validity::check(line, &s, &self.merger.scanner.labels, kind, suffix, format)
        {
            match why {
                Invalid::Malformed => self.st.stats.malformed_lines += 1,
                Invalid::Unrepresentable => self.st.stats.unrepresentable += 1,
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
        let convert_ts = s.timestamp.is_some() && self.st.input != format;
        if convert_ts {
            self.st.ts.clear();
            let ts = s.timestamp.map_or(&b""[..], |t| t.of(line));
            if !write_timestamp(ts, self.st.input, format, &mut self.st.ts) {
                self.st.stats.unrepresentable += 1;
                return;
            }
        }
        // Stop at this line boundary rather than pass the allowance. `need` bounds what the line
        // can become: labels added, a name quoted, `exported_` renames, escapes repaired.
        let need = 2 * line.len() + self.labels.framed().len() + 64;
        if self.st.cut || self.written() + need > self.st.allowance {
            self.stop();
            self.st.stats.cut_lines += 1;
            return;
        }
        let histogram =
            self.st.check_histograms && matches!(kind, Kind::Histogram | Kind::GaugeHistogram);
        let line_start = if histogram { self.position() } else { 0 };
        // The family's segment must be the open one before anything of this line is written.
        if !self.merger.switch_to(family) {
            self.st.stats.type_conflicts += 1;
            return;
        }
        self.st.stats.samples_out += 1;
        // Which suffixes a family wrote, kept in a register and stored when the family changes.
        if family != self.st.seen_family {
            self.store_seen();
            self.st.seen_family = family;
        }
        self.st.seen |= 1 << counted_as as u8;
        self.write(body, start, end, &s, keep_exemplar, convert_ts);
        if histogram {
            let position = (line_start, self.position());
            let value = s.value.of(line);
            let labels = &self.merger.scanner.labels;
            if let Some(ended) = crate::exposition::decide::histogram::follow(
                &mut self.st.group,
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
        self.merger.pos() + self.st.run.map_or(0, |(s, e)| e - s)
    }

    /// An app's histogram group OpenMetrics would refuse is left out (see `histogram.rs`).
    fn judge_group(&mut self, g: crate::exposition::decide::histogram::Group) {
        if !g.valid() {
            self.merger.families[g.family as usize]
                .skip
                .push((g.start, g.end));
            *self.merger.invalid.entry(self.st.source).or_default() += g.samples;
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
                let out = &mut self.merger.arenas.active;
                out.extend_from_slice(&line[..cut]);
                out.push(b'\n');
            } else {
                self.flush(body);
                self.rebuild(line, s, keep_exemplar);
            }
            return;
        }
        self.flush(body);
        let key = self.merger.scanner.names_key();
        let collides = match (self.st.collides, key) {
            (Some((cached, answer)), Some(key)) if cached == key => answer,
            _ => {
                let labels = self.labels;
                let answer = self
                    .merger
                    .scanner
                    .labels
                    .iter()
                    .any(|l| labels.contains(l.name.of(line)));
                self.st.collides = key.map(|k| (k, answer));
                answer
            }
        };
        if simple && !collides && !s.quoted_name {
            let has_own = !self.merger.scanner.labels.is_empty();
            // The rest of the line is copied with its newline when the body has one right there.
            let lf = cut == line.len() && body.get(end) == Some(&b'\n');
            let rest_end = start + cut + usize::from(lf);
            let out = &mut self.merger.arenas.active;
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

    /// Writes the sample in canonical form from its parts (`write/sample.rs`).
    fn rebuild(&mut self, line: &[u8], s: &Sample, keep_exemplar: bool) {
        let m = &mut *self.merger;
        let timestamp = s.timestamp.map(|ts| {
            if self.st.input == m.format {
                ts.of(line)
            } else {
                &self.st.ts[..]
            }
        });
        let parts = SampleParts {
            line,
            sample: s,
            own: &m.scanner.labels,
            exemplar_labels: keep_exemplar.then_some(&m.scanner.exemplar_labels[..]),
            timestamp,
        };
        write_canonical(&parts, self.labels, &mut m.arenas.active);
    }

    /// Queues `body[start..end]` (a line that needs no change) for a block copy.
    #[inline]
    fn verbatim(&mut self, body: &[u8], start: usize, end: usize) {
        let lf = end < body.len() && body[end] == b'\n';
        if lf {
            match &mut self.st.run {
                Some((_, run_end)) if *run_end == start => *run_end = end + 1,
                _ => {
                    self.flush(body);
                    self.st.run = Some((start, end + 1));
                }
            }
        } else {
            // A CRLF or last unterminated line: the body bytes are not the output bytes.
            self.flush(body);
            let out = &mut self.merger.arenas.active;
            out.extend_from_slice(&body[start..end]);
            out.push(b'\n');
        }
    }

    #[inline]
    fn flush(&mut self, body: &[u8]) {
        if let Some((start, end)) = self.st.run.take() {
            self.merger
                .arenas
                .active
                .extend_from_slice(&body[start..end]);
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
