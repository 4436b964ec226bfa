//! Scrapes in flight on this VM, so that identical ones share one fetch.
//!
//! A scrape that arrives while an identical one (same configuration, output format and
//! `filter`) is being fetched waits for it and is answered the same bytes: N scrapers cost one
//! scrape of CPU and one output of memory, not N. How fresh: a scrape that joins gets the
//! values of a fetch that began before it arrived (by at most that fetch's duration, which the
//! per-source timeout bounds); a scrape that arrives after a fetch was answered never gets its
//! bytes: it fetches anew. So an answer is never older than the fetch in flight when the scrape
//! arrived (`tests/tests/robustness.rs`, `a_joined_scrape_shares_the_fetch_in_flight_and_a_later_one_fetches_anew`).
//!
//! When Envoy's answer streams through the filter ([`crate::config::FilterConfig::stream_envoy`]),
//! a scrape with nothing identical in flight streams: it holds one piece, not an output, and its
//! bytes leave as they are made, so nobody can wait for it. An identical scrape arriving
//! meanwhile starts a buffered flight (Envoy's stats fetched by a dispatched call, the answer
//! kept whole), and the scrapes after it wait for that one: a burst of N scrapers costs two of
//! Envoy's renders, not N. And for [`CONTENTION`] after that, scrapes are not streamed: under
//! a burst, one shared fetch beats a stream beside it (two outputs of memory instead of one);
//! streaming is for the lone scraper, which is how Prometheus scrapes a proxy. (Letting scrapes wait for a streamed one until it sends, and replaying
//! its bytes to them, left some of them hanging in Envoy; not worth its complexity.)
//!
//! At most [`MAX_FLIGHTS`] different scrapes are fetched at once on a VM (each holds an output);
//! one more kind is answered 503 with `Retry-After`, and logged.

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime};

use crate::exposition::Format;

/// Different scrapes (format × `filter`) fetched at once on one VM.
pub(crate) const MAX_FLIGHTS: usize = 4;

/// A scrape waiting for another's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    pub context: u32,
    pub head: bool,
    /// Until when it may wait for the answering budget (its scraper's timeout).
    pub deadline: SystemTime,
}

struct Flight {
    /// The plugin configuration (root context) it was made under.
    plugin: u32,
    /// It streams: it takes no waiters.
    streaming: bool,
    format: Format,
    filter: Option<String>,
    leader: u32,
    waiters: Vec<Waiter>,
}

/// How long after identical scrapes met on this VM new ones are dispatched rather than streamed.
pub(crate) const CONTENTION: Duration = Duration::from_secs(10);

thread_local! {
    static FLIGHTS: RefCell<Vec<Flight>> = const { RefCell::new(Vec::new()) };
    /// Until when scrapes are not streamed (identical ones met).
    static CONTENDED_UNTIL: Cell<SystemTime> = const { Cell::new(SystemTime::UNIX_EPOCH) };
}

/// What a new scrape does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Join {
    /// Fetch, and answer the waiters too.
    Lead,
    /// Stream Envoy's answer through; nobody waits for it.
    Stream,
    /// Wait for the identical scrape in flight.
    Wait,
    /// Too many different scrapes in flight.
    Busy,
}

/// How a new scrape goes: `may_stream` when this one could stream (a GET, with streaming on);
/// `now`, the host's clock.
pub(crate) fn join(
    now: SystemTime,
    plugin: u32,
    format: Format,
    filter: Option<&str>,
    me: Waiter,
    may_stream: bool,
) -> Join {
    FLIGHTS.with(|f| {
        let mut flights = f.borrow_mut();
        let same = |fl: &&mut Flight| {
            fl.plugin == plugin && fl.format == format && fl.filter.as_deref() == filter
        };
        if let Some(flight) = flights.iter_mut().filter(same).find(|fl| !fl.streaming) {
            flight.waiters.push(me);
            CONTENDED_UNTIL.with(|c| c.set(now + CONTENTION));
            return Join::Wait;
        }
        if flights.len() >= MAX_FLIGHTS {
            return Join::Busy;
        }
        let met = flights.iter_mut().any(|fl| same(&fl));
        if met {
            CONTENDED_UNTIL.with(|c| c.set(now + CONTENTION));
        }
        let streaming = may_stream && !met && CONTENDED_UNTIL.with(Cell::get) <= now;
        flights.push(Flight {
            plugin,
            streaming,
            format,
            filter: filter.map(str::to_owned),
            leader: me.context,
            waiters: Vec::new(),
        });
        if streaming { Join::Stream } else { Join::Lead }
    })
}

/// The leader's answer is ready: its flight ends, and these are waiting for the same bytes.
pub(crate) fn land(leader: u32) -> Vec<Waiter> {
    FLIGHTS.with(|f| {
        let mut flights = f.borrow_mut();
        match flights.iter().position(|fl| fl.leader == leader) {
            Some(i) => flights.swap_remove(i).waiters,
            None => Vec::new(),
        }
    })
}

/// A waiting scrape's stream ended (its scraper gave up): nobody answers it any more.
pub(crate) fn leave(context: u32) {
    FLIGHTS.with(|f| {
        for fl in f.borrow_mut().iter_mut() {
            fl.waiters.retain(|w| w.context != context);
        }
    });
}
