//! Where one scrape's output is written, and the positions that name its bytes.
//!
//! The lead source (Envoy) writes into the *main* arena, which becomes the response body; the
//! other sources write into chunks of the *side* arena ([`SideArena`]), copied after the lead's
//! families when the scrape ends. Whichever is being written is the *active* arena, so the hot
//! path appends to one `Vec` whatever the source. A position counts from the start of its body
//! and stays valid while the main arena hands out and drops its first bytes (a streamed lead).

use crate::exposition::write::side::{Region, SideArena};

/// Bytes the main arena keeps free beyond a source's expected output (see [`Arenas::reserve`]).
const HEADROOM: usize = 64 * 1024;

/// The same for a side chunk: one per app, so a few dozen small apps must not each keep 64 KiB;
/// a chunk that outgrows its guess copies only its own source's bytes.
const SIDE_HEADROOM: usize = 4 * 1024;

#[derive(Default)]
pub(crate) struct Arenas {
    /// The active arena: the main one, or a side chunk while a non-lead source is written.
    pub active: Vec<u8>,
    /// The main arena while a side chunk is active.
    parked: Vec<u8>,
    /// Where the other sources' output waits for the end.
    pub side: SideArena,
    /// `active` holds a side chunk now.
    swapped: bool,
    /// Bytes of the main arena handed out and dropped: the main arena holds positions `base..`.
    base: usize,
}

impl Arenas {
    /// Empties every arena for a new scrape, keeping their capacity. The main arena is active.
    pub fn clear(&mut self) {
        self.activate_main();
        self.active.clear();
        self.side.clear();
        self.base = 0;
    }

    /// The position of the next byte written to the active arena.
    #[inline]
    pub fn pos(&self) -> usize {
        if self.swapped {
            self.side.end() + self.active.len()
        } else {
            self.active.len() + self.base
        }
    }

    /// Whether a side chunk is being written.
    #[inline]
    pub fn on_side(&self) -> bool {
        self.swapped
    }

    /// The main arena, and the position of its first byte.
    pub fn main(&self) -> (&[u8], usize) {
        let main = if self.swapped {
            &self.parked
        } else {
            &self.active
        };
        (main, self.base)
    }

    /// The main arena's first `n` bytes were handed out: they are dropped, positions stay.
    pub fn consume(&mut self, n: usize) {
        let main = if self.swapped {
            &mut self.parked
        } else {
            &mut self.active
        };
        let n = n.min(main.len());
        if n == main.len() {
            main.clear();
        } else {
            main.drain(..n);
        }
        self.base += n;
    }

    /// Makes the main arena the active one; the side chunk written so far is closed.
    pub fn activate_main(&mut self) {
        if self.swapped {
            let chunk = std::mem::replace(&mut self.active, std::mem::take(&mut self.parked));
            self.side.close(chunk);
            self.swapped = false;
        }
    }

    /// Makes a new side chunk the active arena, for a source expected to write about `want`.
    pub fn activate_side(&mut self, want: usize) {
        if !self.swapped {
            let chunk = self.side.open(want);
            self.parked = std::mem::replace(&mut self.active, chunk);
            self.swapped = true;
        }
    }

    /// Reserves room for `additional` more bytes in the active arena, so a large source grows
    /// it once.
    ///
    /// Grown exactly, plus headroom for what usually follows (the self-metrics, labels longer
    /// than guessed): left to `Vec`, a 34 MB arena would double to 68 MB for a few hundred bytes
    /// of self-metrics, and a wasm module's memory never shrinks back.
    pub fn reserve(&mut self, additional: usize) {
        if self.active.capacity() - self.active.len() < additional {
            let headroom = if self.swapped {
                SIDE_HEADROOM
            } else {
                HEADROOM
            };
            self.active
                .reserve_exact(additional + additional / 16 + headroom);
        }
    }

    /// The main arena's bytes (`in_main`) or the side arena's, by position, wherever each is
    /// now: while a side chunk is written, it is the active arena and the main one is parked.
    pub fn region(&self, in_main: bool) -> Region<'_> {
        match (in_main, self.swapped) {
            (true, _) => {
                let (bytes, base) = self.main();
                Region::Main { bytes, base }
            }
            (false, swapped) => Region::Side {
                side: &self.side,
                active: swapped.then(|| (self.active.as_slice(), self.side.end())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_stay_valid_across_arenas_and_consumption() {
        let mut a = Arenas::default();
        a.active.extend_from_slice(b"lead one\n");
        assert_eq!(a.pos(), 9);
        a.activate_side(16);
        assert!(a.on_side());
        let app_at = a.pos();
        a.active.extend_from_slice(b"app\n");
        // The side chunk, still active, is found by position.
        assert_eq!(a.region(false).get(app_at, app_at + 4), b"app\n");
        a.activate_main();
        assert_eq!(a.region(false).get(app_at, app_at + 4), b"app\n");
        a.active.extend_from_slice(b"lead two\n");
        // The first line was sent: positions after it do not move.
        a.consume(9);
        assert_eq!(a.main(), (&b"lead two\n"[..], 9));
        assert_eq!(a.region(true).get(9, 18), b"lead two\n");
        assert_eq!(a.pos(), 18);
    }

    #[test]
    fn clear_starts_over_on_the_main_arena() {
        let mut a = Arenas::default();
        a.active.extend_from_slice(b"x\n");
        a.consume(2);
        a.activate_side(4);
        a.active.extend_from_slice(b"y\n");
        a.clear();
        assert!(!a.on_side());
        assert_eq!(a.pos(), 0);
        assert_eq!(a.main(), (&b""[..], 0));
    }

    #[test]
    fn a_reserve_grows_once_with_headroom() {
        let mut a = Arenas::default();
        a.reserve(1 << 20);
        let cap = a.active.capacity();
        assert!(cap >= (1 << 20) + HEADROOM);
        a.active.resize(1 << 20, b'a');
        a.reserve(1024);
        assert_eq!(a.active.capacity(), cap, "the headroom took it");
    }
}
