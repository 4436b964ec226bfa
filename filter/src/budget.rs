//! The proxy's answering budget, as the leases kept in Envoy's shared data (see
//! `proxy/admission.rs` for why and how it is used). Plain data and decisions, so they are
//! unit-tested natively; the store and the clock are the caller's.

use std::time::Duration;

/// Answers always admitted at once, whatever their size: one Prometheus, or an HA pair scraping
/// at the same moment, never waits for the budget.
pub const MIN_ANSWERS: usize = 2;
/// Leases kept at most (the store's value stays small: 32 bytes each).
pub const MAX_LEASES: usize = 256;
/// The longest a lease lives when it ends at an assumed reading rate, whatever happens (a VM
/// that died holds nothing for long).
pub const MAX_LEASE: Duration = Duration::from_secs(60);
/// The longest a lease lives when it ends with its client's connection: a client that reads
/// slowly holds its share of the budget as long as Envoy holds its bytes, up to this (past it,
/// the connection is taken as lost to a VM that died and never heard it close).
pub const MAX_CONNECTION_LEASE: Duration = Duration::from_secs(600);
/// How fast a client is taken to read an answer once it is handed to Envoy: a lease ends
/// `bytes / DRAIN_BYTES_PER_SEC` after that. Envoy tells a filter nothing when a client has read
/// its bytes; this is what a scraper on the same host or network reads at.
pub const DRAIN_BYTES_PER_SEC: u64 = 64 << 20;

const ENTRY: usize = 32;

/// One answer's hold on the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The answer's (one per stream).
    pub id: u64,
    /// Envoy's id of the client connection it went out on, whose close ends it; 0: none (it
    /// ends at the assumed reading rate). Several streams of one HTTP/2 connection each hold
    /// their own lease.
    pub connection: u64,
    pub bytes: u64,
    pub until_ms: u64,
}

pub fn decode(b: &[u8]) -> Vec<Lease> {
    let field = |c: &[u8], i: usize| {
        let mut f = [0u8; 8];
        f.copy_from_slice(&c[i * 8..i * 8 + 8]);
        u64::from_le_bytes(f)
    };
    b.chunks_exact(ENTRY)
        .map(|c| Lease {
            id: field(c, 0),
            connection: field(c, 1),
            bytes: field(c, 2),
            until_ms: field(c, 3),
        })
        .collect()
}

pub fn encode(leases: &[Lease]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leases.len() * ENTRY);
    for l in leases {
        out.extend_from_slice(&l.id.to_le_bytes());
        out.extend_from_slice(&l.connection.to_le_bytes());
        out.extend_from_slice(&l.bytes.to_le_bytes());
        out.extend_from_slice(&l.until_ms.to_le_bytes());
    }
    out
}

/// Takes a lease of `bytes` for `id` (sent on `connection`, 0 if none) at `now_ms`, for at
/// most `hold`, if it fits: fewer than [`MIN_ANSWERS`] out, or the bytes out plus these within
/// `budget`. Ended leases are dropped first; a lease `id` already held is replaced. Whether it
/// took.
#[allow(clippy::too_many_arguments)] // Plain numbers of one decision, named at every call.
pub fn take(
    leases: &mut Vec<Lease>,
    id: u64,
    connection: u64,
    bytes: u64,
    now_ms: u64,
    budget: u64,
    hold: Duration,
) -> bool {
    leases.retain(|l| l.until_ms > now_ms && l.id != id);
    let used: u64 = leases.iter().map(|l| l.bytes).sum();
    let fits = leases.len() < MIN_ANSWERS
        || (leases.len() < MAX_LEASES && used.saturating_add(bytes) <= budget);
    if fits {
        leases.push(Lease {
            id,
            connection,
            bytes,
            until_ms: now_ms + hold.as_millis() as u64,
        });
    }
    fits
}

/// Client connection `connection` closed: the leases of the answers it carried end now.
/// Whether there were any.
pub fn end(leases: &mut Vec<Lease>, connection: u64, now_ms: u64) -> bool {
    leases.retain(|l| l.until_ms > now_ms);
    let before = leases.len();
    leases.retain(|l| connection == 0 || l.connection != connection);
    leases.len() < before
}

/// `id`'s answer was handed over at `now_ms`: its lease ends once its client could have read
/// it. Whether there was such a lease.
pub fn settle(leases: &mut Vec<Lease>, id: u64, now_ms: u64) -> bool {
    leases.retain(|l| l.until_ms > now_ms);
    match leases.iter_mut().find(|l| l.id == id) {
        Some(l) => {
            l.until_ms = now_ms + (l.bytes.saturating_mul(1000) / DRAIN_BYTES_PER_SEC).max(1);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn leases_round_trip() {
        let l = vec![
            Lease {
                id: 1,
                connection: 0,
                bytes: 10,
                until_ms: 5,
            },
            Lease {
                id: u64::MAX,
                connection: 3,
                bytes: 20,
                until_ms: 6,
            },
        ];
        assert_eq!(decode(&encode(&l)), l);
        assert!(decode(&[1, 2, 3]).is_empty(), "a torn value is no lease");
    }

    #[test]
    fn two_answers_always_fit_a_third_within_the_budget() {
        let mut l = Vec::new();
        // 14 MB answers against a 32 MB budget: two always, the third waits.
        assert!(take(&mut l, 1, 0, 14 * MB, 0, 32 * MB, MAX_LEASE));
        assert!(take(&mut l, 2, 0, 14 * MB, 0, 32 * MB, MAX_LEASE));
        assert!(!take(&mut l, 3, 0, 14 * MB, 0, 32 * MB, MAX_LEASE));
        // Even answers larger than the whole budget: two of them.
        let mut big = Vec::new();
        assert!(take(&mut big, 1, 0, 100 * MB, 0, 32 * MB, MAX_LEASE));
        assert!(take(&mut big, 2, 0, 100 * MB, 0, 32 * MB, MAX_LEASE));
        assert!(!take(&mut big, 3, 0, 1, 0, 32 * MB, MAX_LEASE));
        // Small ones share the budget.
        let mut small = Vec::new();
        for id in 0..32 {
            assert!(take(&mut small, id, 0, MB, 0, 32 * MB, MAX_LEASE), "{id}");
        }
        assert!(!take(&mut small, 99, 0, MB, 0, 32 * MB, MAX_LEASE));
    }

    #[test]
    fn a_settled_lease_ends_when_its_client_could_have_read_it() {
        let mut l = Vec::new();
        assert!(take(&mut l, 1, 0, 14 * MB, 0, 14 * MB, MAX_LEASE));
        assert!(take(&mut l, 2, 0, 14 * MB, 0, 14 * MB, MAX_LEASE));
        assert!(settle(&mut l, 1, 1000));
        let ends = 1000 + 14 * MB * 1000 / DRAIN_BYTES_PER_SEC;
        assert!(!take(&mut l, 3, 0, 14 * MB, ends - 1, 14 * MB, MAX_LEASE));
        assert!(take(&mut l, 3, 0, 14 * MB, ends, 14 * MB, MAX_LEASE));
        assert!(!settle(&mut l, 42, ends), "no such lease");
    }

    #[test]
    fn an_unsettled_lease_ends_after_the_longest_lease() {
        let mut l = Vec::new();
        assert!(take(&mut l, 1, 0, MB, 0, MB, MAX_LEASE));
        assert!(take(&mut l, 2, 0, MB, 0, MB, MAX_LEASE));
        let max = MAX_LEASE.as_millis() as u64;
        assert!(!take(&mut l, 3, 0, MB, max - 1, MB, MAX_LEASE));
        assert!(take(&mut l, 3, 0, MB, max, MB, MAX_LEASE));
    }

    #[test]
    fn a_connection_lease_ends_when_its_connection_closes() {
        let mut l = Vec::new();
        let hold = MAX_CONNECTION_LEASE;
        // Two streams of one HTTP/2 connection (7), one of another (8): a lease each.
        assert!(take(&mut l, 1, 7, 14 * MB, 0, 14 * MB, hold));
        assert!(take(&mut l, 2, 7, 14 * MB, 0, 14 * MB, hold));
        assert!(
            !take(&mut l, 3, 8, 14 * MB, 0, 14 * MB, hold),
            "the second stream counts"
        );
        // Held long past any assumed reading rate: the client has not gone.
        assert!(!take(&mut l, 3, 8, 14 * MB, 120_000, 14 * MB, hold));
        assert!(end(&mut l, 7, 120_000), "both of connection 7's end");
        assert!(l.is_empty());
        assert!(take(&mut l, 3, 8, 14 * MB, 120_000, 14 * MB, hold));
        assert!(!end(&mut l, 7, 120_000), "ended once");
        // A stream's next answer replaces its lease rather than adding one.
        assert!(take(&mut l, 3, 8, MB, 120_001, 14 * MB, hold));
        assert_eq!(l.iter().filter(|x| x.id == 3).count(), 1);
        // A VM that died never hears the close: the lease ends after the longest hold.
        assert!(take(&mut l, 4, 9, 14 * MB, 120_001, 14 * MB, hold));
        assert!(!take(&mut l, 5, 10, 14 * MB, 120_001, 14 * MB, hold));
        assert!(take(
            &mut l,
            5,
            10,
            14 * MB,
            120_001 + hold.as_millis() as u64,
            14 * MB,
            hold
        ));
    }
}
