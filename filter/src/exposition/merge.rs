//! The merged exposition of one scrape: families in first-seen order, each written once.
//!
//! Rewritten lines go straight into one arena. Each family remembers the arena ranges
//! ("segments") that hold its header and samples. When a later source adds to a family that is no
//! longer at the end of the arena (two apps both exporting `process_cpu_seconds_total`), `finish`
//! moves the out-of-place tail once so every family is contiguous. The usual case, every family
//! from one source, needs no move at all: the arena is the response body.

use std::collections::HashMap;

use super::escape::write_help;
use super::names::{is_legacy_metric_name, write_name};
use super::scan::Scanner;
use super::{FamilyFilter, Format, Kind};

/// Bytes the arena keeps free beyond a source's expected output (see [`Merger::reserve`]).
const HEADROOM: usize = 64 * 1024;

pub(crate) struct Family {
    pub kind: Kind,
    /// The name every sample starts with (without `_total`, `_bucket`...).
    pub base: Box<[u8]>,
    /// The scrape's filter left this family out.
    pub excluded: bool,
    /// Arena ranges, in order.
    pub segments: Vec<(usize, usize)>,
}

/// Metadata of a family as a source declared it, for its header.
#[derive(Default, Clone, Copy)]
pub(crate) struct Header<'a> {
    pub help: Option<&'a [u8]>,
    pub unit: Option<&'a [u8]>,
    /// The format the source wrote the help text in.
    pub source_format: Option<Format>,
}

/// Merges sources into one exposition; reused from scrape to scrape so its buffers keep their
/// capacity (a wasm VM's memory never shrinks: growing it once is all we can afford).
pub struct Merger {
    pub(crate) format: Format,
    pub(crate) filter: Option<FamilyFilter>,
    pub(crate) arena: Vec<u8>,
    scratch: Vec<u8>,
    pub(crate) families: Vec<Family>,
    index: HashMap<Box<[u8]>, u32>,
    /// The family whose segment is open at the end of the arena, and where it starts.
    open: Option<(u32, usize)>,
    pub(crate) scanner: Scanner,
    /// Reused key buffer for lookups.
    key: Vec<u8>,
    finished: bool,
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
            arena: Vec::new(),
            scratch: Vec::new(),
            families: Vec::new(),
            index: HashMap::new(),
            open: None,
            scanner: Scanner::default(),
            key: Vec::new(),
            finished: false,
        }
    }

    /// Starts a new scrape answered in `format`, keeping only the families `filter` selects.
    pub fn begin(&mut self, format: Format, filter: Option<FamilyFilter>) {
        self.format = format;
        self.filter = filter;
        self.arena.clear();
        self.scratch.clear();
        self.families.clear();
        self.index.clear();
        self.open = None;
        self.finished = false;
    }

    /// The output format of this scrape.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reserves room for `additional` more output bytes, so a large source grows the arena once.
    ///
    /// Grown exactly, plus headroom for what usually follows (the self-metrics, labels longer
    /// than guessed): left to `Vec`, a 34 MB arena would double to 68 MB for a few hundred bytes
    /// of self-metrics, and a wasm module's memory never shrinks back.
    pub fn reserve(&mut self, additional: usize) {
        if self.arena.capacity() - self.arena.len() < additional {
            self.arena
                .reserve_exact(additional + additional / 16 + HEADROOM);
        }
    }

    /// Finds the family whose header name is `base` + the kind's suffix in this format.
    pub(crate) fn lookup(&mut self, base: &[u8], kind: Kind) -> Option<u32> {
        self.key.clear();
        self.key.extend_from_slice(base);
        self.key.extend_from_slice(kind.header_suffix(self.format));
        self.index.get(&self.key[..]).copied()
    }

    /// Finds a family by its exact header name.
    pub(crate) fn lookup_key(&self, key: &[u8]) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Creates a family (the caller checked it does not exist) and, unless the filter leaves it
    /// out, writes its header into a newly opened segment.
    pub(crate) fn create(&mut self, base: &[u8], kind: Kind, header: Header<'_>) -> u32 {
        let mut key = Vec::with_capacity(base.len() + 8);
        key.extend_from_slice(base);
        key.extend_from_slice(kind.header_suffix(self.format));
        // The filter sees the name text 0.0.4 gives the family (`rq_total` for a counter, the name
        // users query), whatever this scrape's format: a filter must not depend on `Accept`.
        let excluded = self.filter.as_ref().is_some_and(|f| {
            let mut text_name = base.to_vec();
            text_name.extend_from_slice(kind.header_suffix(Format::Text));
            !f.keeps(&text_name)
        });
        let idx = self.families.len() as u32;
        self.families.push(Family {
            kind,
            base: base.into(),
            excluded,
            segments: Vec::new(),
        });
        if !excluded {
            self.open_segment(idx);
            self.write_header(&key, kind, header);
        }
        self.index.insert(key.into_boxed_slice(), idx);
        idx
    }

    fn write_header(&mut self, name: &[u8], kind: Kind, header: Header<'_>) {
        let format = self.format;
        let Some(word) = kind.type_word(format) else {
            return;
        };
        let out = &mut self.arena;
        let legacy = is_legacy_metric_name(name);
        let write_name = |out: &mut Vec<u8>| write_name(name, legacy, out);
        if let Some(help) = header.help.filter(|h| !h.is_empty()) {
            out.extend_from_slice(b"# HELP ");
            write_name(out);
            out.push(b' ');
            write_help(help, header.source_format.unwrap_or(format), format, out);
            out.push(b'\n');
        }
        out.extend_from_slice(b"# TYPE ");
        write_name(out);
        out.push(b' ');
        out.extend_from_slice(word.as_bytes());
        out.push(b'\n');
        if format == Format::OpenMetrics
            && let Some(unit) = header.unit.filter(|u| !u.is_empty())
            && name.len() > unit.len()
            && name.ends_with(unit)
            && name[name.len() - unit.len() - 1] == b'_'
        {
            out.extend_from_slice(b"# UNIT ");
            write_name(out);
            out.push(b' ');
            out.extend_from_slice(unit);
            out.push(b'\n');
        }
    }

    /// Makes `family` the one whose samples are being appended.
    #[inline]
    pub(crate) fn switch_to(&mut self, family: u32) {
        if self.open.map(|(f, _)| f) != Some(family) {
            self.close_segment();
            self.open_segment(family);
        }
    }

    fn open_segment(&mut self, family: u32) {
        self.close_segment();
        self.open = Some((family, self.arena.len()));
    }

    pub(crate) fn close_segment(&mut self) {
        if let Some((family, start)) = self.open.take() {
            let end = self.arena.len();
            if end > start {
                self.families[family as usize].segments.push((start, end));
            }
        }
    }

    /// Ends the scrape and returns the body: every family once and contiguous, then `# EOF` for
    /// OpenMetrics. Calling it again returns the same body.
    pub fn finish(&mut self) -> &[u8] {
        if !self.finished {
            self.finished = true;
            self.close_segment();
            self.make_contiguous();
            if self.format == Format::OpenMetrics {
                self.arena.extend_from_slice(b"# EOF\n");
            }
        }
        &self.arena
    }

    /// Moves the families that are out of place so each is one contiguous run.
    ///
    /// Only the middle of the arena moves: the families before the first out-of-place one are
    /// in place, and so are the single-segment families at the end. When apps share a family
    /// (`process_cpu_seconds_total`) and Envoy's 34 MB arrives last, that is the apps' few MB,
    /// not Envoy's output.
    fn make_contiguous(&mut self) {
        let mut cursor = 0;
        let mut first_moved = None;
        for (i, f) in self.families.iter().enumerate() {
            match f.segments.as_slice() {
                [] => {}
                [(start, end)] if *start == cursor => cursor = *end,
                _ => {
                    first_moved = Some(i);
                    break;
                }
            }
        }
        let Some(first) = first_moved else { return };
        // Families from `last` on tile [tail, arena end) in order, one segment each.
        let mut tail = self.arena.len();
        let mut last = self.families.len();
        for (i, f) in self.families.iter().enumerate().skip(first + 1).rev() {
            match f.segments.as_slice() {
                [] => last = i,
                [(start, end)] if *end == tail => {
                    tail = *start;
                    last = i;
                }
                _ => break,
            }
        }
        // Every other segment lies in [cursor, tail): write them there in family order.
        self.scratch.clear();
        for f in &self.families[first..last] {
            for &(start, end) in &f.segments {
                self.scratch.extend_from_slice(&self.arena[start..end]);
            }
        }
        if self.scratch.len() == tail - cursor {
            self.arena[cursor..tail].copy_from_slice(&self.scratch);
        } else {
            // Unreachable while segments tile the arena; if not, still write a valid body.
            self.arena
                .splice(cursor..tail, self.scratch.iter().copied());
        }
        for f in &mut self.families {
            f.segments.clear();
        }
    }
}
