//! Which output family each source family's samples go to: the decisions that make a merge
//! lossless and deterministic.
//!
//! Source families are registered in priority order (Envoy first, then the aggregates in their
//! configured order; within a source, in the order the source wrote them), never in the order
//! the answers arrived, so the same bodies always give the same families. Everything is judged
//! on the names the *output* format gives a family and its samples:
//!
//! 1. **Same family**: the header name and type word are another family's: the samples join it
//!    (two apps' `process_cpu_seconds_total`, or an OpenMetrics `info` and a text gauge
//!    `x_info` written as text, where both are gauges named `x_info`).
//! 2. **`_created` folded** (OpenMetrics out, text in): a text gauge `X_created` joins the
//!    counter, histogram or summary `X` it describes, as prometheus_client meant it.
//! 3. **Untyped samples** whose name a gauge holds (or, in text, a counter) join it: families
//!    whose samples must carry `le` / `quantile` or obey value rules are not joined blindly.
//! 4. **A family of its own** when none of the names it claims (its header name and every sample
//!    name its type word gives it, see [`Kind::claimed_suffixes`]) is claimed already.
//! 5. **Otherwise it is written as `unknown`** (`untyped` in text): one family per sample name,
//!    samples unchanged. Where such a name is only the *header* name of a typed family (Envoy's
//!    counter `rq_total` is family `rq` in OpenMetrics, and its bare `rq` needs that name), the
//!    typed family is written as `unknown` too, so both keep every sample.
//! 6. **A true conflict** is left: the same sample name with another type in a family registered
//!    earlier. Those samples are dropped and counted against their source.

use std::collections::HashMap;

use crate::exposition::decide::family::SourceFamily;
use crate::exposition::decide::kind::{Kind, Suffix};
use crate::exposition::read::Format;

/// What a source family puts into an output family.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub sf: u32,
    /// Only its samples named `<base><suffix>` (a family written as one `unknown` family per
    /// sample name); `None`: all of them.
    pub only: Option<Suffix>,
    /// A text `X_created` gauge folded into the family `X`: its samples go next to the samples
    /// with the same labels.
    pub created: bool,
}

/// A family of the output.
pub(crate) struct OutFamily {
    /// The name of its `# HELP` / `# TYPE` lines.
    pub name: Box<[u8]>,
    /// Gives the type word (in the output format); `Unknown` when written as `unknown`.
    pub kind: Kind,
    pub members: Vec<Member>,
    /// Where it goes in the output: the (source, family, suffix) of its first member.
    pub key: (u16, u32, u8),
    /// Written as `unknown` families after it was made: its members live elsewhere now.
    pub dead: bool,
    /// A streamed lead family whose bytes were sent: nothing may join it or make it `unknown`.
    pub sealed: bool,
}

/// How a source family was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// The first member, whole, of a new family: its header can be written now.
    New(u32),
    /// Joined a family, or written as several `unknown` ones.
    Elsewhere,
    /// Every sample it can hold is a true conflict.
    Dropped,
}

/// The output's families and the names they claim.
#[derive(Default)]
pub(crate) struct Resolver {
    pub families: Vec<OutFamily>,
    format: Option<Format>,
    /// Header name → family.
    by_name: HashMap<Box<[u8]>, u32>,
    /// Claimed name → (family, whether samples may carry it; else it is only the header's).
    claims: HashMap<Box<[u8]>, (u32, bool)>,
    /// True conflicts: the source family, and which of its samples (`None`: all).
    pub dropped: Vec<(u32, Suffix)>,
    name: Vec<u8>,
    /// The lead streams: families may be sealed.
    pub sealing: bool,
    /// Registrations refused because they would have changed a sealed family.
    pub refused: u64,
}

/// The sample suffixes a source family can hold in the output: what its type allows in the
/// output format, and what its input could carry (a text counter has no `_created` samples).
pub(crate) fn held(f: &SourceFamily, format: Format) -> impl Iterator<Item = Suffix> + '_ {
    let input = f.kind.sample_suffixes(f.input);
    f.kind
        .sample_suffixes(format)
        .iter()
        .copied()
        .filter(move |s| input.contains(s))
}

fn concat(out: &mut Vec<u8>, a: &[u8], b: &[u8]) {
    out.clear();
    out.extend_from_slice(a);
    out.extend_from_slice(b);
}

impl Resolver {
    pub(crate) fn begin(&mut self, format: Format) {
        self.format = Some(format);
        self.families.clear();
        self.by_name.clear();
        self.claims.clear();
        self.dropped.clear();
        self.sealing = false;
        self.refused = 0;
    }

    /// Whether family `t` may still change (be joined, or made `unknown`); when it may not, the
    /// newcomer's samples named `<base><suffix>` (all of them: `None`) are dropped instead.
    fn open_or_drop(
        &mut self,
        sfs: &[SourceFamily],
        t: u32,
        id: u32,
        only: Option<Suffix>,
    ) -> bool {
        if !self.families[t as usize].sealed {
            return true;
        }
        self.refused += 1;
        match only {
            Some(s) => self.dropped.push((id, s)),
            None => {
                let format = self.format();
                let names: Vec<Suffix> = held(&sfs[id as usize], format).collect();
                self.dropped.extend(names.into_iter().map(|s| (id, s)));
            }
        }
        false
    }

    fn format(&self) -> Format {
        self.format.unwrap_or(Format::Text)
    }

    /// Places source family `id` (registered after every family of higher priority).
    pub(crate) fn register(&mut self, sfs: &[SourceFamily], id: u32) -> Placement {
        let format = self.format();
        let f = &sfs[id as usize];
        let word = f.kind.type_word(format);
        // 2. A text `X_created` gauge into the OpenMetrics counter / histogram / summary `X`.
        if format == Format::OpenMetrics
            && f.input == Format::Text
            && matches!(f.kind, Kind::Gauge | Kind::Unknown)
            && let Some(stem) = f.base.strip_suffix(b"_created")
            && let Some(&t) = self.by_name.get(stem)
            && matches!(
                self.families[t as usize].kind,
                Kind::Counter | Kind::Histogram | Kind::Summary
            )
        {
            if !self.open_or_drop(sfs, t, id, None) {
                return Placement::Dropped;
            }
            self.join(t, id, None, true);
            return Placement::Elsewhere;
        }
        let mut header = std::mem::take(&mut self.name);
        concat(&mut header, &f.base, f.kind.header_suffix(format));
        let placed = self.place(sfs, id, &header, word);
        self.name = header;
        placed
    }

    fn place(&mut self, sfs: &[SourceFamily], id: u32, header: &[u8], word: &str) -> Placement {
        let format = self.format();
        let f = &sfs[id as usize];
        // 1. The same family.
        if let Some(&t) = self.by_name.get(header)
            && self.families[t as usize].kind.type_word(format) == word
        {
            if !self.open_or_drop(sfs, t, id, None) {
                return Placement::Dropped;
            }
            self.join(t, id, None, false);
            return Placement::Elsewhere;
        }
        // 3. Untyped samples into the family that holds their name.
        if f.kind == Kind::Unknown
            && let Some(&(t, true)) = self.claims.get(header)
            && self.takes_untyped(t)
        {
            if !self.open_or_drop(sfs, t, id, None) {
                return Placement::Dropped;
            }
            self.join(t, id, None, false);
            return Placement::Elsewhere;
        }
        // 4. A family of its own.
        let holds = f.kind.sample_suffixes(format);
        let suffixes = f.kind.claimed_suffixes(format);
        let mut name = Vec::with_capacity(f.base.len() + 8);
        let free = !self.claims.contains_key(header)
            && suffixes.iter().all(|s| {
                concat(&mut name, &f.base, s.bytes());
                !self.claims.contains_key(&name[..])
            });
        if free {
            let t = self.families.len() as u32;
            self.families.push(OutFamily {
                name: header.into(),
                kind: f.kind,
                members: vec![Member {
                    sf: id,
                    only: None,
                    created: false,
                }],
                key: (f.source, id, 0),
                dead: false,
                sealed: false,
            });
            self.by_name.insert(header.into(), t);
            let mut header_is_sample = false;
            for s in suffixes {
                concat(&mut name, &f.base, s.bytes());
                let held = holds.contains(s);
                header_is_sample |= held && name == header;
                self.claims.insert(name.as_slice().into(), (t, held));
            }
            if !header_is_sample {
                self.claims.insert(header.into(), (t, false));
            }
            return Placement::New(t);
        }
        // 5. `unknown`, one family per sample name.
        self.demoted(sfs, id)
    }

    /// Places each sample name of `id` in an `unknown` family of that name.
    fn demoted(&mut self, sfs: &[SourceFamily], id: u32) -> Placement {
        let format = self.format();
        let names: Vec<Suffix> = held(&sfs[id as usize], format).collect();
        let whole = names.len() == 1;
        let mut result = Placement::Dropped;
        for s in names {
            let only = if whole { None } else { Some(s) };
            match self.place_unknown(sfs, id, s, only) {
                Placement::Dropped => {}
                p if whole => result = p,
                _ => result = Placement::Elsewhere,
            }
        }
        result
    }

    fn place_unknown(
        &mut self,
        sfs: &[SourceFamily],
        id: u32,
        suffix: Suffix,
        only: Option<Suffix>,
    ) -> Placement {
        let format = self.format();
        let f = &sfs[id as usize];
        let mut name = Vec::with_capacity(f.base.len() + 8);
        concat(&mut name, &f.base, suffix.bytes());
        let unknown = Kind::Unknown.type_word(format);
        loop {
            match self.claims.get(&name[..]) {
                None => {
                    let t = self.families.len() as u32;
                    self.families.push(OutFamily {
                        name: name.as_slice().into(),
                        kind: Kind::Unknown,
                        members: vec![Member {
                            sf: id,
                            only,
                            created: false,
                        }],
                        key: (f.source, id, suffix as u8),
                        dead: false,
                        sealed: false,
                    });
                    self.by_name.insert(name.as_slice().into(), t);
                    self.claims.insert(name.into_boxed_slice(), (t, true));
                    return if only.is_none() {
                        Placement::New(t)
                    } else {
                        Placement::Elsewhere
                    };
                }
                Some(&(t, holds_samples)) => {
                    let fam = &self.families[t as usize];
                    let same = fam.kind.type_word(format) == unknown && fam.name[..] == name[..];
                    if same || (holds_samples && f.kind == Kind::Unknown && self.takes_untyped(t)) {
                        if !self.open_or_drop(sfs, t, id, Some(suffix)) {
                            return Placement::Dropped;
                        }
                        self.join(t, id, only, false);
                        return Placement::Elsewhere;
                    }
                    if holds_samples {
                        self.dropped.push((id, suffix));
                        return Placement::Dropped;
                    }
                    // Only the header name of a typed family: write that one as `unknown` too.
                    if !self.open_or_drop(sfs, t, id, Some(suffix)) {
                        return Placement::Dropped;
                    }
                    self.demote(sfs, t);
                }
            }
        }
    }

    /// Turns family `t` into `unknown` families, one per sample name of each member.
    fn demote(&mut self, sfs: &[SourceFamily], t: u32) {
        let fam = &mut self.families[t as usize];
        fam.dead = true;
        let members = std::mem::take(&mut fam.members);
        self.claims.retain(|_, (owner, _)| *owner != t);
        self.by_name.retain(|_, owner| *owner != t);
        for m in members {
            if m.created {
                self.place_unknown(sfs, m.sf, Suffix::Bare, None);
            } else {
                self.demoted(sfs, m.sf);
            }
        }
    }

    /// Whether untyped samples may join family `t`: only where no sample rule applies (a
    /// summary's `quantile`, a bucket's `le`, OpenMetrics' counter values).
    fn takes_untyped(&self, t: u32) -> bool {
        match self.families[t as usize].kind {
            Kind::Gauge | Kind::Unknown | Kind::CounterBare => true,
            Kind::Counter => self.format() == Format::Text,
            _ => false,
        }
    }

    fn join(&mut self, t: u32, sf: u32, only: Option<Suffix>, created: bool) {
        self.families[t as usize]
            .members
            .push(Member { sf, only, created });
    }
}
