//! Envoy's families that no app can touch, passed on as Envoy wrote them.
//!
//! A streamed lead ([`Merger::stream_lead`]) reads every line of Envoy's answer (34 MB at 2,000
//! clusters) to find where its families start and to write its samples out again. When the
//! scrape is answered in Prometheus text, Envoy's samples get no labels, the scrape has no
//! `filter`, and the lead is Envoy's own renderer ([`Merger::trust_lead`]), the engine would write
//! such a family byte for byte as Envoy did. Then only the lines that start with `#` need reading:
//! [`Passing`] finds them with `memchr` and says the piece may leave untouched, so the filter
//! neither parses Envoy's samples nor copies them out of the VM.
//!
//! The first comment line that cannot pass (a family an app may join or make `unknown`, a
//! `meshmetrics_` family, anything but `# TYPE`) hands the rest of the body to the engine
//! ([`Merger::take_over`]), which reads it as a streamed lead: it holds from there and merges. So
//! the bytes are the buffered scrape's. The lead's share of the scrape's output counts what
//! passed; a piece that would take it past its share goes to the engine, which stops at a line
//! boundary as it always does.
//!
//! Envoy's renderer writes `# TYPE` before each family's samples and never a family twice: the
//! samples under a passed header are that family's.

use crate::exposition::decide::family::{OWN_PREFIX, names_of};
use crate::exposition::decide::kind::Kind;
use crate::exposition::merge::Merger;
use crate::exposition::merge::stats::SourceStats;
use crate::exposition::read::format::Format;
use crate::exposition::read::scan::Line;
use crate::exposition::write::LabelSet;

/// A comment line longer than this, split across pieces, goes to the engine (which bounds
/// lines by the source's share) rather than be held here.
const MAX_HELD: usize = 64 * 1024;

/// What becomes of a family of the lead, judged by its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// It leaves as Envoy wrote it.
    Pass,
    /// The scrape's rules (MeshMetric's profiles, `exclude`, `include`) drop it: its header and
    /// samples are left out, unread.
    Drop,
    /// The engine reads it and the rest of the lead.
    Engine,
}

/// The lead passing untouched, piece by piece ([`Merger::pass_lead`]).
#[derive(Debug, Default)]
pub struct Passing {
    /// The start of a comment line whose end is in a later piece: not sent until judged.
    pub(crate) held: Vec<u8>,
    /// The last piece ended with a newline (or none came yet): a `#` first starts a line.
    line_start: bool,
    /// The `# TYPE` line (with its newline) of the family passing now: the engine taking over
    /// inside it must know it, as Envoy's samples that follow do not repeat it.
    pub(crate) header: Vec<u8>,
    /// Bytes of the body passed on.
    pub(crate) passed: usize,
    /// What the lead may write in this scrape.
    allowance: usize,
    /// Envoy's body was cut ([`Passing::cut`]) and the line begun downstream is ended: nothing
    /// more passes.
    cut: bool,
    /// The family being read is dropped (by the scrape's rules): its lines do not leave.
    dropping: bool,
}

/// What leaves for one piece of the lead: `front`, then the piece's first `keep` bytes but the
/// `drop` ranges; then, with `engine_from`, the engine reads [`Passing`]'s held bytes and the
/// piece from there on ([`Merger::take_over`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Passed {
    /// Held bytes of earlier pieces that go first: a comment line now known to pass.
    pub front: Vec<u8>,
    /// How many bytes of the piece follow them.
    pub keep: usize,
    /// Ranges of the piece's first `keep` bytes that do not leave (families the scrape's rules
    /// drop), in order, apart.
    pub drop: Vec<(usize, usize)>,
    /// Where the engine takes over the piece.
    pub engine_from: Option<usize>,
}

impl Passed {
    /// The piece of `size` bytes leaves exactly as it came.
    pub fn unchanged(&self, size: usize) -> bool {
        self.front.is_empty()
            && self.keep == size
            && self.engine_from.is_none()
            && self.drop.is_empty()
    }

    /// The bytes of `piece` that leave, in order (`front` aside): for tests and hosts that
    /// copy.
    pub fn kept<'p>(&self, piece: &'p [u8]) -> impl Iterator<Item = &'p [u8]> {
        let mut at = 0;
        let mut runs = Vec::with_capacity(self.drop.len() + 1);
        for &(from, to) in &self.drop {
            runs.push(&piece[at..from]);
            at = to;
        }
        runs.push(&piece[at..self.keep]);
        runs.into_iter().filter(|r| !r.is_empty())
    }
}

impl Merger {
    /// Whether the lead, with `labels` added to its samples, may pass untouched in this scrape:
    /// Prometheus text out, no `filter`, no labels, Envoy's own renderer. (Families the
    /// scrape's MeshMetric rules drop are dropped whole as they pass.)
    pub fn may_pass_lead(&self, labels: &LabelSet) -> bool {
        self.format == Format::Text
            && self.filter.is_none()
            && self.trusted_lead
            && labels.is_empty()
    }

    /// Starts passing the lead (priority 0) untouched. Call it after every other source was
    /// added, and only when [`Merger::may_pass_lead`]: which of its families may pass depends
    /// on every name the apps' families take.
    pub fn pass_lead(&mut self) -> Passing {
        self.collect_app_names();
        self.saw_priority(0);
        Passing {
            held: Vec::new(),
            header: Vec::new(),
            line_start: true,
            passed: 0,
            allowance: self.allowance(0),
            cut: false,
            dropping: false,
        }
    }

    /// What becomes of the family a lead comment line (`line`, its newline left out) starts:
    /// a `# TYPE` of a family the scrape's rules drop is dropped whole, one none of whose names
    /// an app may take (and not the filter's own) passes, anything else goes to the engine.
    fn lets_pass(&mut self, line: &[u8]) -> Verdict {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Line::Type { name, word } = self.scanner.scan(line, Format::Text, b"") else {
            return Verdict::Engine;
        };
        let Some((kind, base)) = Kind::declare(name, word, Format::Text) else {
            return Verdict::Engine;
        };
        if base.starts_with(OWN_PREFIX) {
            return Verdict::Engine;
        }
        // Envoy's `# TYPE` names the family as text 0.0.4 does (`rq_total` for a counter): the
        // name the rules are asked about (as `Merger::create` asks them).
        if self.lead_selection.as_ref().is_some_and(|s| !s.keeps(name)) {
            return Verdict::Drop;
        }
        let mut shared = false;
        names_of(base, kind, self.format, |n| shared |= self.app_may_take(n));
        if shared {
            Verdict::Engine
        } else {
            Verdict::Pass
        }
    }

    /// Ends a lead that passed to its end: its share is charged, and it reports what it read.
    pub fn end_passing(&mut self, passing: Passing) -> SourceStats {
        self.budget.charge(0, passing.passed);
        SourceStats {
            bytes: passing.passed as u64,
            ..SourceStats::default()
        }
    }
}

impl Passing {
    /// Judges the next piece of the lead.
    pub fn piece(&mut self, merger: &mut Merger, piece: &[u8]) -> Passed {
        if self.passed + self.held.len() + piece.len() > self.allowance {
            // Past the lead's share: the engine stops it at a line boundary, once the line
            // already begun downstream is ended.
            let mut out = Passed::default();
            match (
                self.line_start || !self.held.is_empty(),
                memchr::memchr(b'\n', piece),
            ) {
                (true, _) => out.engine_from = Some(0),
                (false, Some(nl)) => {
                    out.keep = nl + 1;
                    out.engine_from = Some(nl + 1);
                }
                (false, None) => out.keep = piece.len(),
            }
            if self.dropping && out.keep > 0 {
                // The line begun is a dropped family's: it was never sent, nothing to end.
                out.drop.push((0, out.keep));
            } else {
                self.passed += out.keep;
            }
            return out;
        }
        let mut out = Passed::default();
        let mut from = 0;
        if !self.held.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', piece) else {
                self.held.extend_from_slice(piece);
                if self.held.len() > MAX_HELD {
                    out.engine_from = Some(piece.len());
                }
                return out;
            };
            let partial = self.held.len();
            self.held.extend_from_slice(&piece[..nl]);
            let verdict = merger.lets_pass(&self.held);
            if verdict != Verdict::Engine {
                self.header.clear();
                self.header.extend_from_slice(&self.held);
                self.header.push(b'\n');
            }
            self.held.truncate(partial);
            match verdict {
                Verdict::Engine => {
                    out.engine_from = Some(0);
                    return out;
                }
                // The held start goes first; the piece follows whole.
                Verdict::Pass => {
                    out.front = std::mem::take(&mut self.held);
                    self.dropping = false;
                }
                // It was never sent: it is dropped with the rest of its family.
                Verdict::Drop => {
                    self.held.clear();
                    self.dropping = true;
                }
            }
            from = nl + 1;
        }
        out.keep = piece.len();
        // Where the family being dropped began in this piece.
        let mut dropping_from = self.dropping.then_some(0);
        let mut at = from;
        while let Some(i) = memchr::memchr(b'#', &piece[at..]) {
            let p = at + i;
            at = p + 1;
            let starts_line = match p {
                0 => self.line_start,
                _ => piece[p - 1] == b'\n',
            };
            if !starts_line {
                continue;
            }
            let Some(len) = memchr::memchr(b'\n', &piece[p..]) else {
                // Judged when its end comes.
                self.held.extend_from_slice(&piece[p..]);
                out.keep = p;
                break;
            };
            let verdict = merger.lets_pass(&piece[p..p + len]);
            match verdict {
                Verdict::Engine => {
                    out.keep = p;
                    out.engine_from = Some(p);
                    break;
                }
                Verdict::Pass => {
                    if let Some(start) = dropping_from.take() {
                        out.drop.push((start, p));
                    }
                    self.dropping = false;
                }
                Verdict::Drop => {
                    dropping_from.get_or_insert(p);
                    self.dropping = true;
                }
            }
            self.header.clear();
            self.header.extend_from_slice(&piece[p..=p + len]);
            at = p + len + 1;
        }
        if let Some(start) = dropping_from
            && start < out.keep
        {
            out.drop.push((start, out.keep));
        }
        if out.engine_from.is_some() {
            // The engine reads on from a header of its own: nothing is being dropped here.
            self.dropping = false;
        }
        if let Some(&last) = piece.last() {
            self.line_start = last == b'\n';
        }
        let dropped: usize = out.drop.iter().map(|(a, b)| b - a).sum();
        self.passed += out.front.len() + out.keep - dropped;
        out
    }

    /// Envoy's body is dropped from here on (it grew past the filter's cap on bodies): how many
    /// bytes of `piece` still pass to end the line already begun downstream. A held comment
    /// line was never sent and is dropped with the rest.
    pub fn cut(&mut self, piece: &[u8]) -> usize {
        let at_line_start = self.line_start || !self.held.is_empty();
        self.held.clear();
        // A line of a dropped family was never begun downstream.
        if self.cut || at_line_start || self.dropping {
            self.cut = true;
            self.line_start = true;
            return 0;
        }
        let keep = match memchr::memchr(b'\n', piece) {
            Some(nl) => {
                self.cut = true;
                self.line_start = true;
                nl + 1
            }
            None => piece.len(),
        };
        self.passed += keep;
        keep
    }

    /// The lead's body ended: a held last line is judged, and an unterminated last line ended.
    pub fn end(&mut self, merger: &mut Merger) -> Passed {
        let mut out = Passed::default();
        if self.held.is_empty() {
            // A last line of a dropped family was not sent: nothing to end.
            if !self.line_start && !self.dropping {
                out.front = b"\n".to_vec();
            }
            return out;
        }
        if self.held.last() == Some(&b'\r') {
            out.engine_from = Some(0);
            return out;
        }
        match merger.lets_pass(&self.held) {
            Verdict::Engine => {
                out.engine_from = Some(0);
                return out;
            }
            Verdict::Drop => {
                self.held.clear();
                return out;
            }
            Verdict::Pass => {}
        }
        out.front = std::mem::take(&mut self.held);
        out.front.push(b'\n');
        self.passed += out.front.len();
        out
    }
}
