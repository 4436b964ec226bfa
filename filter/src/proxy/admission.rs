//! How much answering one proxy does at once, whichever worker answers.
//!
//! Every answer handed to Envoy (a local reply of the whole output, or a scrape streaming
//! through) stays in Envoy's buffers until its client has read it: eighty scrapes of a 14 MB
//! answer at once took Envoy to 2.9 GB. So each answer takes a **lease** on the proxy's
//! answering budget ([`crate::config::FilterConfig::max_answering_bytes`]) in Envoy's shared
//! data (one store for every worker's VM): its size, until its client could have read it. An
//! answer that does not fit waits, in its VM's [`queue`], and is handed over when leases end;
//! one that waits past its deadline is answered 503 with `Retry-After`, and counted.
//!
//! - [`budget::MIN_ANSWERS`] answers are always admitted, whatever their size: one Prometheus, or an HA
//!   pair scraping at the same moment, is never made to wait.
//! - A lease ends when its client's connection closes: Envoy holds an answer's bytes until its
//!   client has read them, and tells an HTTP filter nothing of it, so the same module also runs
//!   as a network filter on the listener ([`crate::config::CONNECTIONS_ROOT_ID`]), whose only
//!   work is to hear each connection close ([`closed`]). Each answer has its own lease (an
//!   HTTP/2 connection's streams each count), tagged with Envoy's connection id, unique across
//!   workers. A client that reads slowly keeps its lease, so slow readers hold
//!   the budget, never more than it: past it, scrapes wait and are refused, and Envoy's memory
//!   stays bounded. A connection never heard closing (its VM died) frees its lease after
//!   [`budget::MAX_CONNECTION_LEASE`].
//! - Without that network filter (`leases_end_on_close` off: the wasmtime runner), a lease ends
//!   at [`budget::DRAIN_BYTES_PER_SEC`] after its answer was handed over (the rate a scraper on
//!   the same host or network reads at), or after [`budget::MAX_LEASE`] whatever happens.
//! - The store refusing (contention past retries, no store) admits: the budget is a guard
//!   against floods, never a reason to refuse a lone scrape.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;

use crate::budget::{self, Lease};

const KEY: &str = "meshmetrics/answering";
/// The longest an answer waits for the budget when the scraper sent no timeout.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often a VM with answers waiting looks at the budget again.
pub(crate) const TICK: Duration = Duration::from_millis(20);

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Changes the store with `f` (its answer), compare-and-swap; `fallback` when the store cannot
/// be had (it admits: the budget guards against floods, never refuses a lone scrape for that).
fn update<T>(fallback: T, mut f: impl FnMut(&mut Vec<Lease>) -> T) -> T {
    for _ in 0..16 {
        let Ok((value, cas)) = hostcalls::get_shared_data(KEY) else {
            return fallback;
        };
        let mut leases = budget::decode(value.as_deref().unwrap_or_default());
        let answer = f(&mut leases);
        if hostcalls::set_shared_data(KEY, Some(&budget::encode(&leases)), cas).is_ok() {
            return answer;
        }
    }
    fallback
}

/// Takes a lease of `bytes` for `context`'s answer, if the budget has room. `limit` 0: no
/// budget.
pub(crate) fn take(context: u32, bytes: u64, now: SystemTime, limit: u64) -> bool {
    if limit == 0 {
        return true;
    }
    let now_ms = millis(now);
    let connection = CONNECTIONS.with(|c| c.borrow().get(&context).copied());
    let hold = match connection {
        Some(_) => budget::MAX_CONNECTION_LEASE,
        None => budget::MAX_LEASE,
    };
    let id = id(context, now);
    update(true, |leases| {
        budget::take(
            leases,
            id,
            connection.unwrap_or(0),
            bytes,
            now_ms,
            limit,
            hold,
        )
    })
}

/// Envoy's id of the connection the current stream came on, if the host tells it (never 0:
/// Envoy counts connections from 1).
pub(crate) fn connection_id() -> Option<u64> {
    let raw = hostcalls::get_property(vec!["connection_id"]).ok()??;
    let bytes: [u8; 8] = raw.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes)).filter(|c| *c != 0)
}

/// `context`'s answer is leased on its connection `connection` (see the module's docs).
pub(crate) fn on_connection(context: u32, connection: u64) {
    CONNECTIONS.with(|c| {
        c.borrow_mut().insert(context, connection);
    });
}

/// Client connection `connection` closed: the lease of the answers it carried ends.
pub(crate) fn closed(connection: u64, now: SystemTime) {
    let now_ms = millis(now);
    update((), |leases| {
        budget::end(leases, connection, now_ms);
    });
}

/// `id`'s answer was handed over: its lease ends when its client could have read it.
fn settle(id: u64, now: SystemTime) {
    let now_ms = millis(now);
    update((), |leases| {
        budget::settle(leases, id, now_ms);
    });
}

thread_local! {
    /// This VM's part of lease ids: told apart from other workers' VMs by their start time.
    static VM: Cell<u64> = const { Cell::new(0) };
    static QUEUE: RefCell<VecDeque<Waiting>> = const { RefCell::new(VecDeque::new()) };
    /// Contexts of this VM holding a lease, settled when their stream ends.
    static LEASED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Contexts whose leases end with their connection (see [`on_connection`]).
    static CONNECTIONS: RefCell<std::collections::HashMap<u32, u64>> =
        RefCell::new(std::collections::HashMap::new());
    /// The size of the last whole answer made on this VM: what a streamed one is taken to be.
    static LAST_ANSWER: Cell<u64> = const { Cell::new(1 << 20) };
}

/// What a streamed answer's lease is sized as: the last whole answer (1 MiB before any).
pub(crate) fn last_answer_bytes() -> u64 {
    LAST_ANSWER.with(Cell::get)
}

pub(crate) fn saw_answer(bytes: u64) {
    LAST_ANSWER.with(|c| c.set(bytes.max(1)));
}

/// The lease id of `context`'s answer on this VM.
pub(crate) fn id(context: u32, now: SystemTime) -> u64 {
    let vm = VM.with(|v| {
        if v.get() == 0 {
            let nanos = now
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            v.set(nanos.rotate_left(32) | 1);
        }
        v.get()
    });
    (vm & !0xffff_ffff) | u64::from(context)
}

/// Remembers that `context` holds a lease (settled by [`done`]).
pub(crate) fn leased(context: u32) {
    LEASED.with(|l| {
        let mut l = l.borrow_mut();
        if !l.contains(&context) {
            l.push(context);
        }
    });
}

/// An answer waiting for the budget.
pub(crate) struct Waiting {
    pub context: u32,
    pub head: bool,
    pub content_type: &'static str,
    pub body: Rc<super::pool::Kept>,
    pub deadline: SystemTime,
    /// What kind of scrape it answers (plugin, format, `filter`): an identical scrape arriving
    /// while it waits joins it rather than fetching again.
    pub kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Kind {
    pub plugin: u32,
    pub format: crate::exposition::Format,
    pub filter: Option<String>,
}

/// A scrape of `kind` joins an identical answer still waiting to be handed over, if there is
/// one: under a flood, the answers waiting hold one output per kind in the VM, and no new fetch
/// starts while they wait. Whether it joined.
pub(crate) fn join(kind: &Kind, context: u32, head: bool, deadline: SystemTime) -> bool {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let Some(same) = q.iter().find(|w| w.kind == *kind) else {
            return false;
        };
        let joined = Waiting {
            context,
            head,
            content_type: same.content_type,
            body: Rc::clone(&same.body),
            deadline,
            kind: kind.clone(),
        };
        q.push_back(joined);
        true
    })
}

/// Queues an answer; whether the queue was empty (the caller starts the tick).
pub(crate) fn queue(w: Waiting) -> bool {
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        q.push_back(w);
        q.len() == 1
    })
}

pub(crate) fn queued() -> usize {
    QUEUE.with(|q| q.borrow().len())
}

/// `context`'s stream ended: its lease (if any) is settled, and it leaves the queue (its scraper
/// gave up).
pub(crate) fn done(context: u32, now: SystemTime) {
    let held = LEASED.with(|l| {
        let mut l = l.borrow_mut();
        l.iter()
            .position(|c| *c == context)
            .map(|i| l.swap_remove(i))
    });
    let connection = CONNECTIONS.with(|c| c.borrow_mut().remove(&context));
    // A connection's lease ends when it closes ([`closed`]), not here.
    if held.is_some() && connection.is_none() {
        settle(id(context, now), now);
    }
    QUEUE.with(|q| q.borrow_mut().retain(|w| w.context != context));
}

/// The answers that may leave now (they took their lease), and those whose wait is over, in
/// the order they came. What is left waits for the next tick.
pub(crate) fn ready(now: SystemTime, budget: u64) -> (Vec<Waiting>, Vec<Waiting>) {
    let (mut go, mut expired) = (Vec::new(), Vec::new());
    QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        while let Some(w) = q.pop_front() {
            if w.deadline <= now {
                expired.push(w);
            } else if take(
                w.context,
                w.body.with_bytes(|b| b.len() as u64),
                now,
                budget,
            ) {
                leased(w.context);
                go.push(w);
            } else {
                // First come, first served: nobody overtakes the head of the queue.
                q.push_front(w);
                break;
            }
        }
    });
    (go, expired)
}
