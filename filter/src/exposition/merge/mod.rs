//! The merged exposition of one scrape.
//!
//! Each source's families are kept apart while the sources are read ("source families"), and
//! only when the scrape ends are they bound to the output's families, in priority order
//! ([`crate::exposition::decide::resolve`]): which family wins a conflict, and the order of families and samples,
//! never depend on the order in which answers arrived.
//!
//! Rewritten lines go straight into an arena. The *lead* source (priority 0, Envoy) writes into
//! the main arena, which becomes the response body; its families are bound as it is read, so
//! their headers are written in place and, in the usual case, its 34 MB never move again. The
//! other sources (the apps, small) write into a side arena and are copied after the lead's
//! families when the scrape ends ([`crate::exposition::write::assemble`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::exposition::decide::family::{
    Header, OWN_PREFIX, OWN_PRIORITY, SameBase, SourceFamily, family_names,
};
use crate::exposition::decide::kind::Suffix;
use crate::exposition::decide::resolve::{Placement, Resolver};
use crate::exposition::decide::{FamilyFilter, FamilySelection, Kind};
use crate::exposition::read::Format;
use crate::exposition::read::scan::Scanner;
use crate::exposition::write::assemble::{self, Assembly, Piece};
use crate::exposition::write::header::write_header;
use crate::exposition::write::side::{Region, SideArena};

pub(crate) mod pass;
pub(crate) mod passing;
pub(crate) mod selfmetrics;
pub(crate) mod stats;

/// Bytes the main arena keeps free beyond a source's expected output (see [`Merger::reserve`]).
const HEADROOM: usize = 64 * 1024;

/// The same for a side chunk: one per app, so a few dozen small apps must not each keep 64 KiB;
/// a chunk that outgrows its guess copies only its own source's bytes.
const SIDE_HEADROOM: usize = 4 * 1024;

/// Bounds on what one scrape writes. The VM's memory follows from them, whatever the sources
/// send: a body of 30 MB of `a 1` grows twentyfold with the mesh's labels, and a wasm VM that
/// fails an allocation aborts for good.
///
/// Both are applied so that the arrival order changes nothing: a source is stopped at a line
/// boundary when *it* has written `source_bytes` (what it wrote before stays), and when the
/// families are bound, in priority order, a source that would take the scrape past
/// `scrape_bytes` is left out whole ([`Merger::over_budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The output of one scrape, every source together (the filter's own few families on top).
    pub scrape_bytes: usize,
    /// One source's share of it.
    pub source_bytes: usize,
}

impl Limits {
    /// No bounds (the engine alone, tests, benchmarks).
    pub const UNLIMITED: Limits = Limits {
        scrape_bytes: usize::MAX,
        source_bytes: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::UNLIMITED
    }
}

/// Whether the lead's bytes leave as they are written ([`Merger::stream_lead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// The lead is read whole before anything leaves (an answer dispatched and buffered).
    Off,
    /// Every lead family so far is final: its bytes leave as they are written.
    Live,
    /// A lead family an app shares (or one placed elsewhere) came: from it on, the lead is
    /// held and leaves when the scrape ends, in the order a buffered scrape has.
    Held,
}

/// Merges sources into one exposition; reused from scrape to scrape so its buffers keep their
/// capacity (a wasm VM's memory never shrinks: growing it once is all we can afford).
pub struct Merger {
    pub(crate) format: Format,
    pub(crate) filter: Option<FamilyFilter>,
    /// Which of the lead's (Envoy's) families are kept ([`Merger::select_lead`]).
    pub(crate) lead_selection: Option<Arc<FamilySelection>>,
    /// The active arena: the main one, or a side chunk while a non-lead source is read.
    pub(crate) arena: Vec<u8>,
    /// The main arena while a side chunk is active.
    parked: Vec<u8>,
    /// Where the other sources' output waits for the end ([`SideArena`]).
    pub(crate) side: SideArena,
    /// `arena` holds a side chunk now.
    pub(crate) swapped: bool,
    pub(crate) families: Vec<SourceFamily>,
    /// (source, base name) → that source's latest family with this base.
    index: HashMap<Box<[u8]>, u32>,
    pub(crate) resolver: Resolver,
    /// The family whose segment is open at the end of the active arena, and where it starts.
    open: Option<(u32, usize)>,
    pub(crate) scanner: Scanner,
    /// Samples dropped as true conflicts, per source priority (filled when families are bound).
    conflicts: HashMap<u16, u64>,
    /// Samples of histogram groups that cannot be written validly, per source priority.
    pub(crate) invalid: HashMap<u16, u64>,
    /// The priority the next [`Merger::source`] gets.
    next_priority: u16,
    /// Reused buffers: lookup keys, and the assembly's pieces and generated bytes.
    key: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) generated: Vec<u8>,
    pub(crate) pieces: Vec<Piece>,
    /// Bytes of the main arena that `finish` had to move (see [`Merger::moved_bytes`]).
    pub(crate) moved: usize,
    pub(crate) limits: Limits,
    /// The lead source is Envoy's own admin: its samples skip the validity checks.
    pub(crate) trusted_lead: bool,
    /// What each source (by priority) was charged in this scrape.
    pub(crate) written: HashMap<u16, usize>,
    /// Sources left out because the scrape's budget was spent by sources of higher priority.
    over: Vec<u16>,
    finished: bool,
    /// Bytes of the main arena handed out and dropped (a streamed lead): positions count from
    /// the start of the body, and the main arena holds positions `base..`.
    base: usize,
    pub(crate) stream: Stream,
    /// Every name an app family may take in the output: its header name, the names its type
    /// claims, its sample names, the family a text `_created` folds into. A lead family none of
    /// whose names is here is never joined or made `unknown` by an app, so it can leave at once.
    app_names: HashSet<Box<[u8]>>,
    /// The streamed lead family samples are appended to (`u32::MAX`: none).
    stream_family: u32,
    /// Where the held part of the lead starts ([`Stream::Held`]): the bytes before are final.
    hold_at: usize,
    /// Lead samples and families refused because they would have changed bytes already sent.
    refused: u64,
}

impl Default for Merger {
    fn default() -> Self {
        Merger::new()
    }
}

impl Merger {
    pub fn new() -> Merger {
        Merger {
            format: Format::Text,
            filter: None,
            lead_selection: None,
            arena: Vec::new(),
            parked: Vec::new(),
            side: SideArena::default(),
            swapped: false,
            families: Vec::new(),
            index: HashMap::new(),
            resolver: Resolver::default(),
            open: None,
            scanner: Scanner::default(),
            conflicts: HashMap::new(),
            invalid: HashMap::new(),
            next_priority: 0,
            key: Vec::new(),
            scratch: Vec::new(),
            generated: Vec::new(),
            pieces: Vec::new(),
            moved: 0,
            limits: Limits::UNLIMITED,
            trusted_lead: false,
            written: HashMap::new(),
            over: Vec::new(),
            finished: false,
            base: 0,
            stream: Stream::Off,
            app_names: HashSet::new(),
            stream_family: u32::MAX,
            hold_at: 0,
            refused: 0,
        }
    }

    /// Starts a new scrape answered in `format`, keeping only the families `filter` selects.
    pub fn begin(&mut self, format: Format, filter: Option<FamilyFilter>) {
        self.use_main();
        self.format = format;
        self.filter = filter;
        self.lead_selection = None;
        self.arena.clear();
        self.side.clear();
        self.families.clear();
        self.index.clear();
        self.resolver.begin(format);
        self.open = None;
        self.conflicts.clear();
        self.invalid.clear();
        self.next_priority = 0;
        self.scratch.clear();
        self.generated.clear();
        self.pieces.clear();
        self.moved = 0;
        self.written.clear();
        self.over.clear();
        self.finished = false;
        self.base = 0;
        self.stream = Stream::Off;
        self.app_names.clear();
        self.stream_family = u32::MAX;
        self.hold_at = 0;
        self.refused = 0;
    }

    /// The position of the next byte written to the active arena, counted from the start of
    /// its body (the main arena may have handed out and dropped its first `base` bytes).
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        if self.swapped {
            self.side.end() + self.arena.len()
        } else {
            self.arena.len() + self.base
        }
    }

    /// The main arena, and the position of its first byte.
    fn main(&self) -> (&[u8], usize) {
        let main = if self.swapped {
            &self.parked
        } else {
            &self.arena
        };
        (main, self.base)
    }

    fn main_mut(&mut self) -> &mut Vec<u8> {
        if self.swapped {
            &mut self.parked
        } else {
            &mut self.arena
        }
    }

    /// Streaming starts: the apps are all read, so the names they may take are known.
    pub(crate) fn start_stream(&mut self) {
        self.collect_app_names();
        self.stream = Stream::Live;
        self.resolver.sealing = true;
    }

    /// Gathers every name the apps' families may take ([`Merger::app_names`]).
    pub(crate) fn collect_app_names(&mut self) {
        let format = self.format;
        let mut names = std::mem::take(&mut self.app_names);
        names.clear();
        for f in self
            .families
            .iter()
            .filter(|f| f.source != 0 && !f.excluded)
        {
            family_names(f, format, |name| {
                names.insert(name.into());
            });
            if format == Format::OpenMetrics
                && f.input == Format::Text
                && matches!(f.kind, Kind::Gauge | Kind::Unknown)
                && let Some(stem) = f.base.strip_suffix(b"_created")
            {
                names.insert(stem.into());
            }
        }
        self.app_names = names;
    }

    /// Whether an app family may take `name` (one of [`Merger::collect_app_names`]).
    pub(crate) fn app_may_take(&self, name: &[u8]) -> bool {
        self.app_names.contains(name)
    }

    /// Whether an app may join lead family `id` or make it `unknown` (conservatively: an app
    /// family takes one of its names).
    fn shared_with_apps(&self, id: u32) -> bool {
        let mut shared = false;
        family_names(&self.families[id as usize], self.format, |name| {
            shared |= self.app_names.contains(name);
        });
        shared
    }

    /// From here on the lead is held until the scrape ends. The streamed family being written
    /// may still get samples (Envoy's next family has not started: one placed elsewhere writes
    /// no header): they go to a segment of their own, sent right after the ready bytes.
    fn hold(&mut self) {
        self.close_segment();
        self.stream = Stream::Held;
        self.hold_at = self.pos();
    }

    /// The segments of the last streamed family written after the lead was held.
    pub(crate) fn late_segments(&self) -> &[(usize, usize)] {
        match (self.stream, self.families.get(self.stream_family as usize)) {
            (Stream::Held, Some(f)) => {
                let first = f.segments.partition_point(|&(s, _)| s < self.hold_at);
                &f.segments[first..]
            }
            _ => &[],
        }
    }

    /// The bytes of the body that are final and not yet taken: a streamed lead's families as
    /// they are written, up to the first one that must wait for the end ([`Stream::Held`]).
    /// Empty unless the lead is streamed.
    pub fn ready(&self) -> &[u8] {
        let (main, base) = self.main();
        match self.stream {
            Stream::Off => &[],
            Stream::Live => main,
            Stream::Held => &main[..self.hold_at.saturating_sub(base).min(main.len())],
        }
    }

    /// The bytes of [`Merger::ready`] were sent: they are dropped from the arena, which so holds
    /// one piece of a streamed lead, never all of it.
    pub fn consume_ready(&mut self) {
        let n = self.ready().len();
        let main = self.main_mut();
        if n == main.len() {
            main.clear();
        } else {
            main.drain(..n);
        }
        self.base += n;
    }

    /// Lead samples and families left out while streaming, because they would have changed
    /// bytes already sent: samples of a family that came back after another one started, or a
    /// later family that would join a sent one. Envoy writes each family once, contiguous, so
    /// this stays 0 with Envoy; they are counted against the lead as conflicts.
    pub fn stream_refused(&self) -> u64 {
        self.refused + self.resolver.refused
    }

    /// Sets the bounds of every scrape from now on (see [`Limits`]). A source that would write
    /// more than its share stops at a line boundary and says so ([`SourceStats::output_limit`]).
    ///
    /// [`SourceStats::output_limit`]: crate::exposition::SourceStats::output_limit
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Declares the lead source (priority 0) to be Envoy's own admin renderer, whose names are
    /// legacy names and whose values are numbers: its samples skip the checks of `validity.rs`,
    /// so its 34 MB keep the fast path. Every other source, and the lead unless this is set, is
    /// checked.
    pub fn trust_lead(&mut self, trusted: bool) {
        self.trusted_lead = trusted;
    }

    /// What a source of this priority may write in this scrape.
    pub(crate) fn allowance(&self, priority: u16) -> usize {
        if priority == OWN_PRIORITY {
            return usize::MAX;
        }
        self.limits.source_bytes.min(self.limits.scrape_bytes)
    }

    /// Whether the source of this priority was left out because the sources before it spent
    /// the scrape's budget (known once [`Merger::resolve`] has run).
    pub fn over_budget(&self, priority: u16) -> bool {
        self.over.contains(&priority)
    }

    /// Leaves out, in priority order, the sources that do not fit in the scrape's budget.
    fn apply_scrape_budget(&mut self) {
        let mut sources: Vec<(u16, usize)> = self
            .written
            .iter()
            .filter(|(p, _)| **p != OWN_PRIORITY)
            .map(|(p, w)| (*p, *w))
            .collect();
        sources.sort_unstable();
        let mut total = 0usize;
        for (priority, written) in sources {
            if self.over.contains(&priority) {
                continue;
            }
            total = total.saturating_add(written);
            // The lead is bound as it is read, and its share never passes the scrape's.
            if total > self.limits.scrape_bytes && priority != 0 {
                total -= written;
                self.over.push(priority);
                for f in self.families.iter_mut().filter(|f| f.source == priority) {
                    f.excluded = true;
                }
            }
        }
    }

    /// The output format of this scrape.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reserves room for `additional` more output bytes in the active arena, so a large source
    /// grows it once.
    ///
    /// Grown exactly, plus headroom for what usually follows (the self-metrics, labels longer
    /// than guessed): left to `Vec`, a 34 MB arena would double to 68 MB for a few hundred bytes
    /// of self-metrics, and a wasm module's memory never shrinks back.
    pub fn reserve(&mut self, additional: usize) {
        if self.arena.capacity() - self.arena.len() < additional {
            let headroom = if self.swapped {
                SIDE_HEADROOM
            } else {
                HEADROOM
            };
            self.arena
                .reserve_exact(additional + additional / 16 + headroom);
        }
    }

    /// Makes the main arena the active one.
    pub(crate) fn use_main(&mut self) {
        if self.swapped {
            self.close_segment();
            let chunk = std::mem::replace(&mut self.arena, std::mem::take(&mut self.parked));
            self.side.close(chunk);
            self.swapped = false;
        }
    }

    /// Makes a side chunk the active arena, for a source expected to write about `want` bytes.
    pub(crate) fn use_side(&mut self, want: usize) {
        if !self.swapped {
            self.close_segment();
            let chunk = self.side.open(want);
            self.parked = std::mem::replace(&mut self.arena, chunk);
            self.swapped = true;
        }
    }

    /// The priority the next source gets when none is given: the order of the calls.
    pub(crate) fn next_priority(&mut self) -> u16 {
        let p = self.next_priority;
        self.next_priority = self.next_priority.saturating_add(1);
        p
    }

    pub(crate) fn saw_priority(&mut self, priority: u16) {
        if priority != OWN_PRIORITY && priority >= self.next_priority {
            self.next_priority = priority + 1;
        }
    }

    fn index_key(&mut self, source: u16, base: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(&source.to_le_bytes());
        self.key.extend_from_slice(base);
    }

    /// Source `source`'s families with this base name, latest first.
    pub(crate) fn same_base(&mut self, source: u16, base: &[u8]) -> SameBase<'_> {
        self.index_key(source, base);
        let first = self.index.get(&self.key[..]).copied().unwrap_or(u32::MAX);
        SameBase {
            families: &self.families,
            next: first,
        }
    }

    /// Source `source`'s family of this base name and kind.
    pub(crate) fn lookup(&mut self, source: u16, base: &[u8], kind: Kind) -> Option<u32> {
        self.same_base(source, base)
            .find(|(_, f)| f.kind == kind)
            .map(|(i, _)| i)
    }

    /// Keeps only the lead's (Envoy's) families `selection` keeps, in this scrape (call it after
    /// [`Merger::begin`]). The apps' families are never asked: profiles are Envoy's.
    pub fn select_lead(&mut self, selection: Option<Arc<FamilySelection>>) {
        self.lead_selection = selection.filter(|s| !s.keeps_all());
    }

    /// Creates a family of source `source`. A lead family is bound at once and its header
    /// written; the others are bound when the scrape ends.
    pub(crate) fn create(
        &mut self,
        source: u16,
        input: Format,
        base: &[u8],
        kind: Kind,
        header: Header<'_>,
    ) -> u32 {
        // The filter sees the name text 0.0.4 gives the family (`rq_total` for a counter, the name
        // users query), whatever this scrape's format: a filter must not depend on `Accept`.
        let selection = self.lead_selection.as_ref().filter(|_| source == 0);
        let filtered = (self.filter.is_some() || selection.is_some()) && {
            let mut text_name = base.to_vec();
            text_name.extend_from_slice(kind.header_suffix(Format::Text));
            self.filter.as_ref().is_some_and(|f| !f.keeps(&text_name))
                || selection.is_some_and(|s| !s.keeps(&text_name))
        };
        let own = source != OWN_PRIORITY && base.starts_with(OWN_PREFIX);
        let unwritable = !crate::exposition::read::names::is_legacy_metric_name(base);
        let id = self.families.len() as u32;
        self.index_key(source, base);
        let prev_same_base = self
            .index
            .insert(self.key.as_slice().into(), id)
            .unwrap_or(u32::MAX);
        self.families.push(SourceFamily {
            source,
            input,
            kind,
            base: base.into(),
            help: header.help.filter(|h| !h.is_empty()).map(Into::into),
            unit: header.unit.filter(|u| !u.is_empty()).map(Into::into),
            excluded: filtered || own || unwritable,
            blocked: own,
            unwritable,
            streamed: false,
            in_main: !self.swapped,
            placed: false,
            inline_header: None,
            segments: Vec::new(),
            skip: Vec::new(),
            seen: 0,
            companions: [u32::MAX; 3],
            prev_same_base,
        });
        if !self.swapped && !filtered && !own && !unwritable {
            self.bind_lead(id);
        }
        id
    }

    /// Binds a lead family now, and writes its header in place when it starts a family.
    ///
    /// While the lead streams, a family no app shares is sealed: it leaves as it is written.
    /// The first one an app shares (or one that goes elsewhere) holds the rest of the lead.
    fn bind_lead(&mut self, id: u32) {
        if self.stream == Stream::Live && self.shared_with_apps(id) {
            self.hold();
        }
        let placement = self.resolver.register(&self.families, id);
        self.families[id as usize].placed = true;
        match placement {
            Placement::New(t) => {
                self.close_segment();
                let start = self.pos();
                let fam = &self.resolver.families[t as usize];
                let sf = &self.families[id as usize];
                write_header(
                    &fam.name,
                    fam.kind,
                    sf.help.as_deref(),
                    sf.unit.as_deref(),
                    sf.input,
                    self.format,
                    &mut self.arena,
                );
                let end = self.pos();
                self.families[id as usize].inline_header = Some((t, start, end));
                if self.stream == Stream::Live {
                    self.resolver.families[t as usize].sealed = true;
                    self.families[id as usize].streamed = true;
                    self.stream_family = id;
                }
            }
            // Written nowhere: its samples are not even copied.
            Placement::Dropped => {
                let f = &mut self.families[id as usize];
                f.excluded = true;
                f.blocked = true;
            }
            Placement::Elsewhere => {
                if self.stream == Stream::Live {
                    self.hold();
                }
            }
        }
    }

    /// Binds every family not bound yet, in priority order, and counts the true conflicts.
    /// Called by [`Merger::finish`]; call it earlier to read [`Merger::conflicts`].
    pub fn resolve(&mut self) {
        self.use_main();
        self.apply_scrape_budget();
        let mut todo: Vec<u32> = (0..self.families.len() as u32)
            .filter(|&i| {
                let f = &self.families[i as usize];
                !f.placed && !f.excluded
            })
            .collect();
        todo.sort_by_key(|&i| (self.families[i as usize].source, i));
        for id in todo {
            self.families[id as usize].placed = true;
            self.resolver.register(&self.families, id);
        }
        let dropped = std::mem::take(&mut self.resolver.dropped);
        for &(sf, suffix) in &dropped {
            let n = self.count_samples(sf, suffix) as u64;
            let source = self.families[sf as usize].source;
            *self.conflicts.entry(source).or_default() += n;
        }
        self.resolver.dropped = dropped;
        self.resolver.dropped.clear();
    }

    /// How many samples named `<base><suffix>` family `sf` wrote: counted again from its
    /// ranges, only for true conflicts (rare), so the per-sample path keeps no counter.
    fn count_samples(&mut self, sf: u32, suffix: Suffix) -> usize {
        let f = &self.families[sf as usize];
        if f.seen & (1 << suffix as u8) == 0 {
            return 0;
        }
        let in_main = f.in_main;
        let mut want = f.base.to_vec();
        want.extend_from_slice(suffix.bytes());
        let mut n = 0;
        // Field by field: the scanner is used while the arena is read.
        let region = region_of(
            &self.arena,
            &self.parked,
            &self.side,
            self.swapped,
            self.base,
            in_main,
        );
        let f = &self.families[sf as usize];
        for &(s, e) in &f.segments {
            let seg = region.get(s, e);
            for line in seg
                .strip_suffix(b"\n")
                .unwrap_or(seg)
                .split(|&b| b == b'\n')
            {
                if let crate::exposition::read::scan::Line::Sample(sample) =
                    self.scanner.scan(line, self.format, b"")
                    && sample.name.of(line) == want.as_slice()
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// Samples of the source with this priority left out because their histogram group could
    /// not be written validly (no `+Inf` bucket, buckets out of order...), as far as
    /// [`Merger::resolve`] has judged.
    pub fn invalid(&self, priority: u16) -> u64 {
        self.invalid.get(&priority).copied().unwrap_or(0)
    }

    /// Samples of the source with this priority dropped as true conflicts with a family of
    /// higher priority, as far as [`Merger::resolve`] has judged.
    pub fn conflicts(&self, priority: u16) -> u64 {
        self.conflicts.get(&priority).copied().unwrap_or(0)
    }

    /// How many bytes of the lead's output the last `finish` moved: 0 when the lead's
    /// families stayed where they were written, as they should unless an app shares one of them.
    pub fn moved_bytes(&self) -> usize {
        self.moved
    }

    /// Makes `family` the one whose samples are being appended; `false` (and counted) when it
    /// is a streamed family another one followed: its bytes were sent, no sample can join them.
    #[inline]
    pub(crate) fn switch_to(&mut self, family: u32) -> bool {
        if self.open.map(|(f, _)| f) != Some(family) {
            if self.families[family as usize].streamed && family != self.stream_family {
                self.refused += 1;
                return false;
            }
            self.close_segment();
            self.open = Some((family, self.pos()));
        }
        true
    }

    pub(crate) fn close_segment(&mut self) {
        if let Some((family, start)) = self.open.take() {
            let end = self.pos();
            if end > start {
                self.families[family as usize].segments.push((start, end));
            }
        }
    }

    /// Ends the scrape and returns the body: every family once and contiguous, in priority
    /// order, then `# EOF` for OpenMetrics. Calling it again returns the same body.
    pub fn finish(&mut self) -> &[u8] {
        if !self.finished {
            self.finished = true;
            self.resolve();
            self.close_segment();
            self.assemble();
            if self.format == Format::OpenMetrics {
                self.arena.extend_from_slice(b"# EOF\n");
            }
        }
        &self.arena
    }
}

/// The main arena's bytes (`in_main`) or the side arena's, by position, wherever each is now:
/// while a side chunk is written, it is the active arena and the main one is parked.
fn region_of<'a>(
    arena: &'a [u8],
    parked: &'a [u8],
    side: &'a SideArena,
    swapped: bool,
    base: usize,
    in_main: bool,
) -> Region<'a> {
    match (in_main, swapped) {
        (true, false) => Region::Main { bytes: arena, base },
        (true, true) => Region::Main {
            bytes: parked,
            base,
        },
        (false, swapped) => Region::Side {
            side,
            active: swapped.then(|| (arena, side.end())),
        },
    }
}

/// Writing the body: the bound families as pieces (`write/assemble.rs`), in place or handed out.
impl Merger {
    /// Builds the body in the main arena from the bound families.
    fn assemble(&mut self) {
        let base = self.pos() - self.arena.len();
        let (pieces, first_moved, cursor) = self.plan();
        let rest = &pieces[first_moved..];
        let total: usize = rest.iter().map(assemble::piece_len).sum();
        if rest.iter().any(|p| matches!(p, Piece::Main(..))) {
            // Some of the main arena moves: copy what follows the in-place part aside first.
            self.scratch.clear();
            self.scratch.reserve_exact(total);
            for p in rest {
                self.scratch.extend_from_slice(assemble::slice(
                    p,
                    &self.arena,
                    base,
                    &self.side,
                    &self.generated,
                ));
            }
            self.arena.truncate(cursor - base);
            self.arena.extend_from_slice(&self.scratch);
            self.scratch.clear();
            self.moved = total;
        } else {
            self.arena.truncate(cursor - base);
            self.arena.reserve_exact(total + 64);
            for p in rest {
                let (main, side, generated) = (&mut self.arena, &self.side, &self.generated);
                let part = match *p {
                    Piece::Side(s, e) => side.get(s, e),
                    Piece::Generated(s, e) => &generated[s..e],
                    Piece::Main(..) => continue,
                };
                main.extend_from_slice(part);
            }
        }
        self.pieces = pieces;
    }

    /// Hands the rest of the body to `emit` piece by piece, never copying it into one buffer:
    /// what the main arena holds in place, then the other pieces where they are (the apps' bytes
    /// in the side arena). For a streamed scrape, whose last bytes are appended to Envoy's last
    /// piece one by one: a second copy of the apps' output is spared.
    fn emit_pieces(&mut self, emit: &mut dyn FnMut(&[u8])) {
        let base = self.pos() - self.arena.len();
        let (pieces, first_moved, cursor) = self.plan();
        emit(&self.arena[..cursor - base]);
        for p in &pieces[first_moved..] {
            emit(assemble::slice(
                p,
                &self.arena,
                base,
                &self.side,
                &self.generated,
            ));
        }
        self.pieces = pieces;
    }

    /// The pieces of the body from the bound families, where the first one not in place in the
    /// main arena is, and where the in-place part ends.
    fn plan(&mut self) -> (Vec<Piece>, usize, usize) {
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.clear();
        self.generated.clear();
        let base = self.pos() - self.arena.len();
        // Sealed families were sent as the lead streamed (or wait in `ready`): they come first.
        let ready = self.ready().len();
        if ready > 0 {
            pieces.push(Piece::Main(base, base + ready));
        }
        for &(s, e) in self.late_segments() {
            pieces.push(Piece::Main(s, e));
        }
        Assembly {
            families: &self.families,
            out: &mut self.resolver.families,
            main: &self.arena,
            base,
            side: &self.side,
            scanner: &mut self.scanner,
            format: self.format,
            generated: &mut self.generated,
        }
        .pieces(&mut pieces);
        let (first_moved, cursor) = assemble::in_place(&pieces, base);
        (pieces, first_moved, cursor)
    }
}

impl Merger {
    /// Ends the scrape as [`Merger::finish`] does, but hands the body (the same bytes) to `emit`
    /// in pieces, where they lie, instead of copying them into one buffer: the apps' output is
    /// not copied a second time. The merger is spent until the next [`Merger::begin`].
    pub fn finish_into(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if self.finished {
            emit(&self.arena);
            return;
        }
        self.finished = true;
        self.resolve();
        self.close_segment();
        self.emit_pieces(emit);
        if self.format == Format::OpenMetrics {
            emit(b"# EOF\n");
        }
        // Not a body any more: a later `finish` must not return what is left of it.
        self.arena.clear();
    }
}
