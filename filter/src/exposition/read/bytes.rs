//! Byte-slice primitives the scanner runs on every sample, written eight bytes at a time.
//!
//! Why not `==` and `memchr`: in the `.wasm`, slice equality calls wasi-libc's `memcmp`, a byte
//! loop, and memchr's portable code works on `usize`, four bytes on wasm32. Per sample these run
//! over 10–60-byte names and label values, where a `u64` compare or an 8-byte SWAR step is what
//! both V8 and native code do fastest (profiled: `memcmp` was 29% of the filter's time in
//! wasmtime before this module).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `s` at `i..i + 8`, little-endian; the caller checked `i + 8 <= s.len()`.
#[inline(always)]
fn word(s: &[u8], i: usize) -> u64 {
    match s[i..].first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        // Unreachable by the callers' bound; answering 0 keeps this panic-free regardless.
        None => 0,
    }
}

/// Whether `a == b`.
#[inline]
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The tail: one word ending at `n`, overlapping bytes already compared.
    i == n || word(a, n - 8) == word(b, n - 8)
}

/// Whether `s` starts with `prefix`.
#[inline]
pub(crate) fn starts_with(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && eq(&s[..prefix.len()], prefix)
}

/// A mask with the high bit set in each byte of `w` equal to `b`. Bits above the first match
/// may be wrong (a borrow), so only the lowest set bit is meaningful.
#[inline(always)]
fn matches(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * b as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first `"` or `\` in `s` at or after `from`, and whether a byte from `from` up
/// to it is non-ASCII (so the caller validates UTF-8 only then).
#[inline]
pub(crate) fn find_quote_or_backslash(s: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut i = from;
    let mut high = 0;
    while i + 8 <= s.len() {
        let w = word(s, i);
        let hit = matches(w, b'"') | matches(w, b'\\');
        if hit != 0 {
            let k = (hit.trailing_zeros() / 8) as usize;
            // Only the bytes before the hit count.
            let before = if k == 0 {
                0
            } else {
                w & (u64::MAX >> (64 - 8 * k))
            };
            return Some((i + k, high != 0 || before & HIGHS != 0));
        }
        high |= w & HIGHS;
        i += 8;
    }
    while i < s.len() {
        match s[i] {
            b'"' | b'\\' => return Some((i, high != 0)),
            b if b >= 0x80 => high = 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_at_every_length() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..40 {
            assert!(eq(&a[..n], &a[..n]));
            for flip in 0..n {
                let mut b = a[..n].to_vec();
                b[flip] ^= 0x20;
                assert!(!eq(&a[..n], &b), "n={n} flip={flip}");
            }
        }
        assert!(!eq(b"abc", b"abcd"));
        assert!(starts_with(b"envoy_cluster_x", b"envoy_cluster"));
        assert!(!starts_with(b"envoy", b"envoy_cluster"));
        assert!(starts_with(b"x", b""));
    }

    #[test]
    fn finds_the_first_quote_or_backslash() {
        let naive = |s: &[u8], from: usize| {
            let k = s[from..].iter().position(|&b| b == b'"' || b == b'\\')? + from;
            Some((k, s[from..k].iter().any(|&b| b >= 0x80)))
        };
        let cases: [&[u8]; 8] = [
            b"",
            b"abc\"",
            b"service-00001_default_svc_8080\"} 0",
            b"a\\\"b\"",
            b"no quote at all here, none",
            "caf\u{e9} au lait\"".as_bytes(),
            "0123456789\"\u{e9}\u{e9}\u{e9}".as_bytes(),
            b"\"\"\"\"\"\"\"\"\"",
        ];
        for s in cases {
            for from in 0..=s.len() {
                let want = naive(s, from);
                let got = find_quote_or_backslash(s, from);
                assert_eq!(got.map(|g| g.0), want.map(|w| w.0), "{s:?} from {from}");
                assert_eq!(got, want, "{s:?} from {from}");
            }
        }
    }
}
