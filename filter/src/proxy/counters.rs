//! Cumulative per-source drop counts, kept in Envoy's shared data: every worker's VM adds to the
//! same number, so `meshmetrics_source_samples_dropped_total` only ever grows, whichever worker
//! answers a scrape. Likewise the scrapes refused with 503.

use proxy_wasm::hostcalls;

fn key(source: &str) -> String {
    format!("meshmetrics/dropped/{source}")
}

fn decode(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Adds `n` to the source's count and returns the new total (or the last total read when the
/// shared store stays contended).
pub(crate) fn add(source: &str, n: u64) -> u64 {
    add_at(&key(source), n)
}

/// Adds `n` to the count under `key` (any key) and returns the new total.
pub(crate) fn add_at(key: &str, n: u64) -> u64 {
    let mut last = 0;
    for _ in 0..8 {
        let Ok((value, cas)) = hostcalls::get_shared_data(key) else {
            return n;
        };
        last = decode(value);
        if n == 0 {
            return last;
        }
        let total = last.saturating_add(n);
        if hostcalls::set_shared_data(key, Some(&total.to_le_bytes()), cas).is_ok() {
            return total;
        }
    }
    last
}

/// Scrapes answered 503 so far on this proxy, by why: `budget` (waited past their deadline for
/// the answering budget) or `flights` (too many different scrapes in flight on a worker).
pub(crate) fn refused(reason: &str, n: u64) -> u64 {
    add_at(&format!("meshmetrics/refused/{reason}"), n)
}

/// Sets the value under `key`: a gauge every worker's scrape reads (the pusher's last figures).
pub(crate) fn set_at(key: &str, v: u64) {
    let _ = hostcalls::set_shared_data(key, Some(&v.to_le_bytes()), None);
}
