//! Envoy's response body as the filter rewrites it in place.
//!
//! Envoy's buffer API can replace bytes only at the start of what it holds (`set_buffer(0, n,
//! bytes)` drains `n` bytes and prepends) or append at its end (any start at or past its length).
//! So what the filter writes goes *after* the bytes in hand, and those are drained when the call
//! ends. Bytes kept untouched from the start are left where they are, never copied, as long as
//! nothing before them changed: a body that passes whole costs no copy at all. The bytes in hand
//! are read in windows ([`WINDOW`]): a body that waited in Envoy for the apps (all of Envoy's
//! answer, paused) never sits whole in the VM, whose memory never shrinks.

use proxy_wasm::hostcalls;
use proxy_wasm::types::BufferType;

/// The most of a body the VM reads at once: Envoy's as it passes, and a dispatched call's answer.
/// Whatever is read at once is a peak of the VM's memory, which never shrinks; 64 KiB costs a
/// few hundred hostcalls for a 34 MB body (~1 µs each).
pub(crate) const WINDOW: usize = 64 * 1024;

/// The `size` bytes of Envoy's body in hand, as they are kept, consumed and replaced in order.
pub(crate) struct Body {
    /// Bytes in hand when the call began.
    size: usize,
    /// Of those, how many were kept or consumed so far (in order).
    read: usize,
    /// Kept untouched from the start, left where they are.
    untouched: usize,
    /// Something before the bytes still in hand changed: what leaves is what was appended, and
    /// the bytes in hand are drained at the end.
    rewritten: bool,
    /// What Envoy holds now: the bytes in hand and what was appended.
    len: usize,
}

impl Body {
    pub(crate) fn new(size: usize) -> Body {
        Body {
            size,
            read: 0,
            untouched: 0,
            rewritten: false,
            len: size,
        }
    }

    /// Reads the bytes in hand `at..at + len` (at most a [`WINDOW`]); `None` if Envoy holds fewer.
    pub(crate) fn window(at: usize, len: usize) -> Option<Vec<u8>> {
        let bytes = hostcalls::get_buffer(BufferType::HttpResponseBody, at, len)
            .ok()
            .flatten()?;
        (bytes.len() == len).then_some(bytes)
    }

    /// The next `n` bytes in hand leave as they are.
    pub(crate) fn keep(&mut self, n: usize) {
        if self.rewritten {
            self.copy(self.read, n);
        } else {
            self.untouched += n;
        }
        self.read += n;
    }

    /// The next `n` bytes in hand do not leave as they are (dropped, or rewritten by what is
    /// put next).
    pub(crate) fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.rewrite();
        self.read += n;
    }

    /// `bytes` leave next.
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.read < self.size {
            // Bytes in hand not judged yet would come first: they are replaced from here on.
            self.rewrite();
        }
        self.append(bytes);
    }

    /// Ends the call: if anything changed, the bytes in hand are drained and what was appended
    /// is all that leaves.
    pub(crate) fn finish(self) {
        if self.rewritten && self.size > 0 {
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, self.size, &[]);
        }
    }

    fn rewrite(&mut self) {
        if !self.rewritten {
            self.rewritten = true;
            self.copy(0, self.untouched);
        }
    }

    /// Appends the bytes in hand `from..from + n`, a window at a time.
    fn copy(&mut self, from: usize, n: usize) {
        let mut at = from;
        while at < from + n {
            let len = WINDOW.min(from + n - at);
            let Some(bytes) = Body::window(at, len) else {
                return;
            };
            self.append(&bytes);
            at += len;
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, self.len, 0, bytes);
        self.len += bytes.len();
    }
}

/// Reads a dispatched call's answer of `size` bytes a [`WINDOW`] at a time into `feed`: the VM
/// never holds it whole. Whether every byte was read.
pub(crate) fn read_call(size: usize, mut feed: impl FnMut(&[u8])) -> bool {
    let mut at = 0;
    while at < size {
        let want = WINDOW.min(size - at);
        match hostcalls::get_buffer(BufferType::HttpCallResponseBody, at, want) {
            Ok(Some(piece)) if !piece.is_empty() => {
                feed(&piece);
                at += piece.len();
            }
            _ => return false,
        }
    }
    true
}
