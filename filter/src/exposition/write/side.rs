//! Where the sources other than the lead (the apps) write: one chunk per source.
//!
//! Their bytes stay here until the scrape ends, when they are copied after the lead's families.
//! Kept in one `Vec`, every app that did not fit made it grow: the apps read before it were
//! copied, and the blocks freed were too small for the next growth, so five 1 MB apps (9.8 MB
//! once labelled) left the VM at 23.7 MB, for good (a wasm VM's memory never shrinks). A chunk
//! per source is never copied when another source arrives, and chunks are kept from scrape to
//! scrape for their capacity.
//!
//! Positions run on across chunks as if they were one arena: a chunk holds the positions from
//! its `start` to `start + len`. A segment (a family's run of lines) never spans two chunks: a
//! chunk is closed only when its source ends, after its open segment was closed.

#[derive(Default)]
pub(crate) struct SideArena {
    /// Closed chunks, in order, each with the position of its first byte.
    chunks: Vec<(usize, Vec<u8>)>,
    /// Emptied chunks of earlier scrapes, kept for their capacity.
    spare: Vec<Vec<u8>>,
    /// The position the next chunk starts at: the bytes of the closed chunks.
    end: usize,
}

impl SideArena {
    /// Empties it for a new scrape; every chunk is kept, empty, for its capacity.
    pub(crate) fn clear(&mut self) {
        for (_, mut chunk) in self.chunks.drain(..) {
            chunk.clear();
            self.spare.push(chunk);
        }
        self.end = 0;
    }

    /// An empty chunk for the next source, which expects to write about `want` bytes: the
    /// smallest spare one that holds them, else the largest (grown by the caller's reserve).
    /// Its first byte will be at position [`SideArena::end`].
    pub(crate) fn open(&mut self, want: usize) -> Vec<u8> {
        let fits = self
            .spare
            .iter()
            .enumerate()
            .filter(|(_, c)| c.capacity() >= want)
            .min_by_key(|(_, c)| c.capacity())
            .map(|(i, _)| i);
        let pick = fits.or_else(|| {
            self.spare
                .iter()
                .enumerate()
                .max_by_key(|(_, c)| c.capacity())
                .map(|(i, _)| i)
        });
        pick.map(|i| self.spare.swap_remove(i)).unwrap_or_default()
    }

    /// The source that wrote into `chunk` (from [`SideArena::open`]) ended.
    pub(crate) fn close(&mut self, chunk: Vec<u8>) {
        if chunk.is_empty() {
            self.spare.push(chunk);
            return;
        }
        let len = chunk.len();
        self.chunks.push((self.end, chunk));
        self.end += len;
    }

    /// The position the chunk being written (if any) starts at.
    pub(crate) fn end(&self) -> usize {
        self.end
    }

    /// The most the sources wrote here in one scrape so far, as far as the chunks' capacity
    /// tells (kept from scrape to scrape).
    pub(crate) fn capacity(&self) -> usize {
        let closed: usize = self.chunks.iter().map(|(_, c)| c.capacity()).sum();
        closed + self.spare.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Positions `s..e` of a closed chunk (a segment, or part of one).
    pub(crate) fn get(&self, s: usize, e: usize) -> &[u8] {
        if s >= e {
            return &[];
        }
        let k = self
            .chunks
            .partition_point(|&(start, _)| start <= s)
            .saturating_sub(1);
        match self.chunks.get(k) {
            Some((start, chunk)) if s >= *start && e - start <= chunk.len() => {
                &chunk[s - start..e - start]
            }
            // Not a range it handed out: only a bug of ours lands here, never input. Tests stop
            // on it; a running filter writes nothing rather than trap the VM.
            _ => {
                debug_assert!(false, "side range {s}..{e} is in no chunk");
                &[]
            }
        }
    }
}

/// One arena's bytes, by position: the main arena (which may have dropped its first `base`
/// bytes) or the side arena (with the chunk being written, if a source is being read).
#[derive(Clone, Copy)]
pub(crate) enum Region<'a> {
    Main {
        bytes: &'a [u8],
        base: usize,
    },
    Side {
        side: &'a SideArena,
        /// The chunk being written and its first position.
        active: Option<(&'a [u8], usize)>,
    },
}

impl<'a> Region<'a> {
    /// Positions `s..e`, all in one segment.
    pub(crate) fn get(self, s: usize, e: usize) -> &'a [u8] {
        match self {
            Region::Main { bytes, base } => &bytes[s - base..e - base],
            Region::Side {
                active: Some((chunk, start)),
                ..
            } if s >= start => &chunk[s - start..e - start],
            Region::Side { side, .. } => side.get(s, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, LabelSet, Merger};

    #[test]
    fn many_small_apps_keep_little_room_each() {
        // Forty apps of ~1 KB: each chunk keeps a few KiB of headroom, not the main arena's
        // 64 KiB (40 of those would be 2.6 MB for 50 KB of output).
        let mut merger = Merger::new();
        merger.begin(Format::Text, None);
        merger.add_source(b"envoy_up 1\n", Format::Text, &LabelSet::default());
        for i in 0..40 {
            let labels = LabelSet::new([("mesh", "default"), ("aggregate", "app")]).expect("valid");
            let body: String = (0..30)
                .map(|n| format!("app{i}_items{{n=\"{n}\"}} {n}\n"))
                .collect();
            merger.add_source(body.as_bytes(), Format::Text, &labels);
        }
        let capacity = merger.arenas.side.capacity();
        let body = merger.finish();
        assert!(
            body.windows(10).any(|w| w == b"app39_item"),
            "every app is written"
        );
        assert!(
            capacity < 40 * 16 * 1024,
            "{capacity} bytes kept for the apps"
        );
    }

    #[test]
    fn positions_run_on_across_chunks_and_chunks_are_reused() {
        let mut side = SideArena::default();
        let mut a = side.open(4);
        a.extend_from_slice(b"abcd");
        side.close(a);
        assert_eq!(side.end(), 4);
        let mut b = side.open(3);
        b.extend_from_slice(b"xyz");
        side.close(b);
        assert_eq!(side.get(0, 4), b"abcd");
        assert_eq!(side.get(1, 3), b"bc");
        assert_eq!(side.get(4, 7), b"xyz");
        assert_eq!(side.get(6, 7), b"z");
        assert_eq!(side.get(4, 4), b"");

        let capacity = side.capacity();
        side.clear();
        assert_eq!(side.end(), 0);
        assert_eq!(side.capacity(), capacity, "the chunks are kept");
        // The smallest spare chunk that fits is taken: the 4-byte one for 4 bytes.
        let c = side.open(4);
        assert!(c.is_empty() && c.capacity() >= 4);
        side.close(c);
        assert_eq!(side.get(0, 0), b"");
    }
}
