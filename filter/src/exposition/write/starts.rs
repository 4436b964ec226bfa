//! When each cumulative series was first seen: the start of its OTLP points (SPEC §11), kept by
//! the VM that pushes from one push to the next.
//!
//! A push looks up every counter, histogram and summary it writes, 100,000 of them at 2,000
//! clusters, each once. In a hash map, each lookup was a cache miss or two on a table of several
//! MB that doubled as it grew, and each stalled the writer: profiled natively, a third of the
//! OTLP writer's time went into the one load of the entry. Two changes, one per cause:
//!
//! - The writer does not wait for a start: it writes a placeholder and hands the hash over
//!   ([`StartTimes::start`] is called for a family's points together, in a loop whose lookups do
//!   not depend on each other, so the processor has many misses in flight at once).
//! - The series are a table sorted by hash, 16 bytes each, with an index of where each range of
//!   hashes begins (about four series a range, 1 byte a series): one probe of the index, which
//!   stays in cache, and one line of the table. The series first seen in a push wait in a list
//!   of their own and are merged in, in place, when the push ends; in the pushes after the first
//!   there are few or none.

use std::hash::{BuildHasher, Hasher};

/// The start of every cumulative series seen so far. Bounded: past [`StartTimes::MAX`] series
/// it starts over (their starts move to the next push, which a collector reads as a reset,
/// never as a wrong rate).
pub struct StartTimes {
    /// (the series' hash, when it was first seen, ns), sorted by hash.
    seen: Vec<(u64, u64)>,
    /// Series first seen in the push being written: merged into `seen` when it ends.
    fresh: Vec<(u64, u64)>,
    /// Where each range of hashes begins in `seen` (see [`StartTimes::reindex`]).
    index: Vec<u32>,
    /// The ranges are the hashes' top `bits` bits.
    bits: u32,
    /// foldhash, seeded per VM from the system's randomness: an application chooses its label
    /// values, and must not be able to choose which series share a hash.
    hasher: foldhash::fast::FixedState,
}

impl Default for StartTimes {
    fn default() -> Self {
        // std's RandomState draws its keys from the system (WASI's `random_get` in a VM).
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        StartTimes {
            seen: Vec::new(),
            fresh: Vec::new(),
            index: Vec::new(),
            bits: 0,
            hasher: foldhash::fast::FixedState::with_seed(seed),
        }
    }
}

impl StartTimes {
    pub const MAX: usize = 1 << 20;

    /// The hash of the series `key` (its scope, its family, its labels).
    pub(crate) fn hash(&self, key: [&[u8]; 3]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in key {
            h.write(part);
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// The start of the series whose hash is `hash`, seen at `now_ns`: when it was first seen,
    /// or now.
    pub(crate) fn start(&mut self, hash: u64, now_ns: u64) -> u64 {
        if let Some(start) = self.find(hash) {
            return start;
        }
        if self.fresh.len() < Self::MAX {
            self.fresh.push((hash, now_ns));
        }
        now_ns
    }

    /// The start recorded for `hash`, if any: the index says where its range of hashes begins
    /// and ends, a few series apart.
    fn find(&self, hash: u64) -> Option<u64> {
        let range = (hash >> 1 >> (63 - self.bits)) as usize;
        let from = *self.index.get(range)? as usize;
        let to = *self.index.get(range + 1)? as usize;
        self.seen
            .get(from..to)?
            .iter()
            .find(|e| e.0 == hash)
            .map(|e| e.1)
    }

    /// The index of `seen`: for each of its 2^bits ranges of hashes (the hash's top bits), where
    /// it begins; one more entry ends the last.
    fn reindex(&mut self) {
        // About four series a range: a range is a cache line of the table.
        self.bits = (self.seen.len() / 4).max(1).ilog2().min(31);
        let ranges = 1usize << self.bits;
        self.index.clear();
        self.index.reserve_exact(ranges + 1);
        let mut at = 0usize;
        for range in 0..ranges {
            while at < self.seen.len()
                && ((self.seen[at].0 >> 1 >> (63 - self.bits)) as usize) < range
            {
                at += 1;
            }
            self.index.push(at as u32);
        }
        self.index.push(self.seen.len() as u32);
    }

    /// The push ended: the series it saw first join the table, merged from the back into the
    /// table's own buffer (grown once, by what joins), never into a second table.
    pub(crate) fn settle(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        fresh.sort_unstable_by_key(|e| e.0);
        // A series written twice in one push (two lines of one point never are).
        fresh.dedup_by_key(|e| e.0);
        if self.seen.len() + fresh.len() > Self::MAX {
            self.seen.clear();
        }
        if self.seen.is_empty() {
            // Its spare capacity (it grew by doubling) is given back.
            fresh.shrink_to_fit();
            self.seen = fresh;
            self.reindex();
            return;
        }
        let (n, m) = (self.seen.len(), fresh.len());
        self.seen.reserve_exact(m);
        self.seen.resize(n + m, (0, 0));
        let seen = &mut self.seen;
        let (mut i, mut j) = (n, m);
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && seen[i - 1].0 > fresh[j - 1].0 {
                seen[k] = seen[i - 1];
                i -= 1;
            } else {
                seen[k] = fresh[j - 1];
                j -= 1;
            }
        }
        self.reindex();
    }

    /// How many series have a start.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> [Vec<u8>; 3] {
        [
            b"envoy".to_vec(),
            b"rq".to_vec(),
            i.to_string().into_bytes(),
        ]
    }

    fn of(s: &mut StartTimes, i: u32, now: u64) -> u64 {
        let [a, b, c] = key(i);
        let h = s.hash([&a, &b, &c]);
        s.start(h, now)
    }

    #[test]
    fn a_series_keeps_the_start_it_was_first_seen_at() {
        let mut s = StartTimes::default();
        for i in 0..1000 {
            assert_eq!(of(&mut s, i, 5), 5);
        }
        // Twice in the push that first saw it (a push writes at one time), then settled once.
        assert_eq!(of(&mut s, 7, 5), 5);
        s.settle();
        assert_eq!(s.len(), 1000);
        for push in [9, 12] {
            for i in (0..2000).rev() {
                let want = if i < 1000 { 5 } else { 9 };
                assert_eq!(of(&mut s, i, push), want, "series {i} at {push}");
            }
            s.settle();
        }
        assert_eq!(s.len(), 2000);
        assert!(
            s.seen.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, once each"
        );
    }

    #[test]
    fn found_wherever_the_hashes_fall() {
        // Hashes bunched at one end (as if chosen), and spread: each found, the others not.
        for spread in [1u64, 1 << 40, u64::MAX / 4096] {
            let mut s = StartTimes {
                seen: (0..4096u64).map(|i| (i * spread, i)).collect(),
                ..StartTimes::default()
            };
            s.reindex();
            for i in 0..4096u64 {
                assert_eq!(s.find(i * spread), Some(i), "{spread}: {i}");
                if spread > 1 {
                    assert_eq!(s.find(i * spread + 1), None);
                }
            }
            assert_eq!(s.find(u64::MAX), None);
        }
    }

    #[test]
    fn past_its_bound_it_starts_over() {
        let mut s = StartTimes {
            seen: (0..StartTimes::MAX as u64).map(|i| (i, 1)).collect(),
            ..StartTimes::default()
        };
        s.reindex();
        assert_eq!(of(&mut s, 1, 2), 2);
        s.settle();
        assert_eq!(s.len(), 1);
        assert_eq!(of(&mut s, 1, 3), 2);
    }
}
