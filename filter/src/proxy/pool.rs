//! Mergers reused across scrapes. A VM serves one worker thread, but several scrapes can be in
//! flight on it at once; each takes its own merger and gives it back, so buffers keep their
//! capacity (a wasm VM's memory never shrinks: grow once, reuse forever).
//!
//! Streamed and dispatched scrapes keep apart: a streamed one grows only its side arena (the
//! apps' output; Envoy's answer passes a piece at a time), a dispatched one both. Were they
//! mixed, a streamed scrape and the dispatched one beside it (an identical scrape during a
//! stream) would each grow the other's second arena in turn, and the VM would keep four full
//! outputs where three are used.

use std::cell::RefCell;

use crate::exposition::Merger;

#[derive(Default)]
struct Pools {
    streamed: Vec<Merger>,
    dispatched: Vec<Merger>,
}

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

pub(crate) fn take(streamed: bool) -> Merger {
    POOLS
        .with(|p| {
            let mut pools = p.borrow_mut();
            if streamed {
                pools.streamed.pop()
            } else {
                pools.dispatched.pop()
            }
        })
        .unwrap_or_default()
}

/// Keeps at most one merger per kind of scrape that can be in flight, both pools together: a
/// burst of different scrapes does not leave more outputs' worth of memory behind than can be
/// used at once.
pub(crate) fn give_back(m: Merger, streamed: bool) {
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        if pools.streamed.len() + pools.dispatched.len() < super::inflight::MAX_FLIGHTS {
            if streamed {
                pools.streamed.push(m);
            } else {
                pools.dispatched.push(m);
            }
        }
    });
}

/// A finished answer that scrapes still wait to be handed (see `admission`): its merger holds
/// the bytes, and goes back to the pool when the last of them was answered. Kept rather than
/// copied: under a flood, a copy was one more output in a VM whose memory never shrinks.
pub(crate) struct Kept {
    merger: RefCell<Option<Merger>>,
    streamed: bool,
}

impl Kept {
    pub(crate) fn new(merger: Merger, streamed: bool) -> Kept {
        Kept {
            merger: RefCell::new(Some(merger)),
            streamed,
        }
    }

    /// Calls `f` with the answer's bytes (the merger's finished body; empty if it is gone).
    pub(crate) fn with_bytes<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        match self.merger.borrow_mut().as_mut() {
            Some(m) => f(m.finish()),
            None => f(&[]),
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(m) = self.merger.get_mut().take() {
            give_back(m, self.streamed);
        }
    }
}
