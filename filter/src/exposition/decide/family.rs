//! A family as one source declared it, before it is bound to the output's families: its kind,
//! its names, where its samples were written. `resolve.rs` binds these; `merge` creates them.

use crate::exposition::decide::Kind;
use crate::exposition::read::Format;

/// The prefix of the filter's own families: no source may write under it.
pub(crate) const OWN_PREFIX: &[u8] = b"meshmetrics_";

/// Priority of the filter's own families: after every source.
pub(crate) const OWN_PRIORITY: u16 = u16::MAX;

/// A family as one source declared it.
pub(crate) struct SourceFamily {
    /// The source's priority: 0 is the lead (Envoy), then the aggregates in configured order.
    pub source: u16,
    pub input: Format,
    pub kind: Kind,
    /// The name every sample starts with (without `_total`, `_bucket`...).
    pub base: Box<[u8]>,
    pub help: Option<Box<[u8]>>,
    pub unit: Option<Box<[u8]>>,
    /// Its samples are not written: left out by the scrape's filter, or blocked.
    pub excluded: bool,
    /// Its samples are dropped and counted: under our own prefix, or a true conflict.
    pub blocked: bool,
    /// Its name is not one the output formats can carry (a quoted UTF-8 name).
    pub unwritable: bool,
    /// Its ranges are in the main arena (a lead family), not the side arena.
    pub in_main: bool,
    /// Bound to an output family.
    pub placed: bool,
    /// The header written in the main arena when it was bound: (output family, range).
    pub inline_header: Option<(u32, usize, usize)>,
    /// Arena ranges of its samples, in order.
    pub segments: Vec<(usize, usize)>,
    /// Arena ranges of histogram groups that cannot be written validly (see `histogram.rs`).
    pub skip: Vec<(usize, usize)>,
    /// The suffixes of the samples written (bit `Suffix as u8`).
    pub seen: u16,
    /// The families its `_created` / `_gcount` / `_gsum` samples go to when the output format
    /// has no place for them here (`u32::MAX`: none yet).
    pub companions: [u32; 3],
    /// A streamed lead family: its bytes left as they were written, nothing may join it.
    pub streamed: bool,
    /// The previous family of this source with the same base name (`u32::MAX`: none).
    pub prev_same_base: u32,
}

/// Metadata of a family as a source declared it, for its header.
#[derive(Default, Clone, Copy)]
pub(crate) struct Header<'a> {
    pub help: Option<&'a [u8]>,
    pub unit: Option<&'a [u8]>,
}

/// Every name family `f` may take in the output: its header name, the names its type claims and
/// its sample names.
pub(crate) fn family_names(f: &SourceFamily, format: Format, each: impl FnMut(&[u8])) {
    names_of(&f.base, f.kind, format, each);
}

/// Every name a family of `kind` with base name `base` takes in `format`: its header name, the
/// names its type claims, its sample names.
pub(crate) fn names_of(base: &[u8], kind: Kind, format: Format, mut each: impl FnMut(&[u8])) {
    let mut name = Vec::with_capacity(base.len() + 16);
    let mut with = |suffix: &[u8], each: &mut dyn FnMut(&[u8])| {
        name.clear();
        name.extend_from_slice(base);
        name.extend_from_slice(suffix);
        each(&name);
    };
    with(kind.header_suffix(format), &mut each);
    for s in kind.claimed_suffixes(format) {
        with(s.bytes(), &mut each);
    }
    for s in kind.sample_suffixes(format) {
        with(s.bytes(), &mut each);
    }
}

/// Iterates a source's families that share a base name.
pub(crate) struct SameBase<'a> {
    pub families: &'a [SourceFamily],
    pub next: u32,
}

impl<'a> Iterator for SameBase<'a> {
    type Item = (u32, &'a SourceFamily);

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.families.get(self.next as usize)?;
        let id = self.next;
        self.next = f.prev_same_base;
        Some((id, f))
    }
}
