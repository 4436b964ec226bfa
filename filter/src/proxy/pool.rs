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

pub(crate) fn give_back(m: Merger) {
    POOL.with(|p| p.borrow_mut().push(m));
}
