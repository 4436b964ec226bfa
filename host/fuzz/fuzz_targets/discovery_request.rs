//! Discovery's request parsing on arbitrary input: a MADS DiscoveryRequest body and a
//! `fetch-timeout` value never panic, and an accepted timeout is within the 5-minute bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmetrics::discovery::mads::{DiscoveryRequest, MAX_FETCH_TIMEOUT, parse_duration};

fuzz_target!(|data: &[u8]| {
    let _ = DiscoveryRequest::parse(data);
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(d) = parse_duration(s)
    {
        assert!(d <= MAX_FETCH_TIMEOUT, "{s:?} accepted as {d:?}");
    }
});
