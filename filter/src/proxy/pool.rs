//! Mergers reused across scrapes. A VM serves one worker thread, but several scrapes can be in
//! flight on it at once; each takes its own merger and gives it back, so buffers keep their
//! capacity (a wasm VM's memory never shrinks: grow once, reuse forever).

use std::cell::RefCell;

use crate::exposition::Merger;

thread_local! {
    static POOL: RefCell<Vec<Merger>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn take() -> Merger {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Keeps at most one merger per kind of scrape that can be in flight: a burst of different
/// scrapes does not leave more outputs' worth of memory behind than can be used at once.
pub(crate) fn give_back(m: Merger) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < super::inflight::MAX_FLIGHTS {
            pool.push(m);
        }
    });
}
