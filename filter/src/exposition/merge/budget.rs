//! What one scrape may write: each source's share, and the scrape's total.
//!
//! Both bounds are applied so that the arrival order changes nothing: a source is stopped at a
//! line boundary when *it* has written its share (the pass asks [`Budget::allowance`]), and when
//! the families are bound, in priority order, a source that would take the scrape past the total
//! is left out whole ([`Budget::settle`]).

use std::collections::HashMap;

use crate::exposition::decide::family::OWN_PRIORITY;

/// Bounds on what one scrape writes. The VM's memory follows from them, whatever the sources
/// send: a body of 30 MB of `a 1` grows twentyfold with the mesh's labels, and a wasm VM that
/// fails an allocation aborts for good.
///
/// Both are applied so that the arrival order changes nothing: a source is stopped at a line
/// boundary when *it* has written `source_bytes` (what it wrote before stays), and when the
/// families are bound, in priority order, a source that would take the scrape past
/// `scrape_bytes` is left out whole ([`crate::exposition::Merger::over_budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The output of one scrape, every source together (the filter's own few families on top).
    pub scrape_bytes: usize,
    /// One source's share of it.
    pub source_bytes: usize,
}

impl Limits {
    /// No bounds (the engine alone, tests, benchmarks).
    pub const UNLIMITED: Limits = Limits {
        scrape_bytes: usize::MAX,
        source_bytes: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::UNLIMITED
    }
}

/// One scrape's accounts: what each source (by priority) was charged, and who was left out.
#[derive(Default)]
pub(crate) struct Budget {
    limits: Limits,
    written: HashMap<u16, usize>,
    over: Vec<u16>,
}

impl Budget {
    /// Bounds for every scrape from now on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new scrape: no source charged, none left out.
    pub fn clear(&mut self) {
        self.written.clear();
        self.over.clear();
    }

    /// What a source of this priority may write in this scrape (the filter's own: no bound).
    pub fn allowance(&self, priority: u16) -> usize {
        if priority == OWN_PRIORITY {
            return usize::MAX;
        }
        self.limits.source_bytes.min(self.limits.scrape_bytes)
    }

    /// The source of this priority wrote `bytes` more.
    pub fn charge(&mut self, priority: u16, bytes: usize) {
        *self.written.entry(priority).or_default() += bytes;
    }

    /// Whether the source of this priority was left out by [`Budget::settle`].
    pub fn is_over(&self, priority: u16) -> bool {
        self.over.contains(&priority)
    }

    /// Leaves out, in priority order, the sources that do not fit in the scrape's total, and
    /// hands each newly left out one to `leave_out`. The lead (priority 0) is bound as it is
    /// read and its share never passes the total: it is never left out.
    pub fn settle(&mut self, mut leave_out: impl FnMut(u16)) {
        let mut sources: Vec<(u16, usize)> = self
            .written
            .iter()
            .filter(|(p, _)| **p != OWN_PRIORITY)
            .map(|(p, w)| (*p, *w))
            .collect();
        sources.sort_unstable();
        let mut total = 0usize;
        for (priority, written) in sources {
            if self.over.contains(&priority) {
                continue;
            }
            total = total.saturating_add(written);
            if total > self.limits.scrape_bytes && priority != 0 {
                total -= written;
                self.over.push(priority);
                leave_out(priority);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(scrape_bytes: usize, source_bytes: usize) -> Budget {
        let mut b = Budget::default();
        b.set_limits(Limits {
            scrape_bytes,
            source_bytes,
        });
        b
    }

    #[test]
    fn sources_are_left_out_in_priority_order_whatever_the_charging_order() {
        let mut b = budget(100, 80);
        // Charged in arrival order: the last app answered first.
        b.charge(3, 10);
        b.charge(2, 30);
        b.charge(0, 60);
        b.charge(1, 20);
        let mut out = Vec::new();
        b.settle(|p| out.push(p));
        // 60 + 20 fit, 30 does not, 10 still does.
        assert_eq!(out, [2]);
        assert!(b.is_over(2) && !b.is_over(3) && !b.is_over(0));
    }

    #[test]
    fn the_lead_and_the_filters_own_are_never_left_out() {
        let mut b = budget(10, 10);
        b.charge(0, 50);
        b.charge(OWN_PRIORITY, 1000);
        b.settle(|p| panic!("{p} left out"));
        assert_eq!(b.allowance(OWN_PRIORITY), usize::MAX);
        assert_eq!(b.allowance(1), 10);
    }

    #[test]
    fn a_new_scrape_starts_with_clean_accounts() {
        let mut b = budget(10, 10);
        b.charge(1, 50);
        b.settle(|_| {});
        assert!(b.is_over(1));
        b.clear();
        assert!(!b.is_over(1));
        b.charge(1, 5);
        b.settle(|p| panic!("{p} left out"));
    }
}
