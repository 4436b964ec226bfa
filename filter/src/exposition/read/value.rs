//! Sample values and timestamps: what both formats accept, and converting timestamps between them
//! (text 0.0.4 writes integer milliseconds, OpenMetrics decimal seconds).

use crate::exposition::read::Format;

/// Whether `v` is a float every Prometheus parser (Go's `ParseFloat`, Python's `float`) reads the
/// same way: decimal with optional fraction and exponent, `±Inf`/`±Infinity`, or `NaN`, any case.
/// Hex floats and `_` separators are refused: parsers disagree on them.
#[inline]
pub(crate) fn is_float(v: &[u8]) -> bool {
    // Nearly every value starts with a digit: decide those without the word comparisons below.
    if v.first().is_some_and(u8::is_ascii_digit) {
        return is_decimal(v);
    }
    let unsigned = match v.first() {
        Some(b'+' | b'-') => &v[1..],
        _ => v,
    };
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return true;
    }
    if v.eq_ignore_ascii_case(b"nan") {
        return true;
    }
    is_decimal(unsigned)
}

/// `digits [. digits] [e [sign] digits]` or `. digits [...]`, with at least one mantissa digit.
#[inline]
fn is_decimal(s: &[u8]) -> bool {
    let mut i = 0;
    let int = s.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int;
    let mut frac = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == s.len()
}

/// Whether `ts` is a timestamp as `format` writes them.
pub(crate) fn is_timestamp(ts: &[u8], format: Format) -> bool {
    match format {
        Format::Text => parse_millis(ts).is_some(),
        Format::OpenMetrics => {
            let unsigned = match ts.first() {
                Some(b'+' | b'-') => &ts[1..],
                _ => ts,
            };
            is_decimal(unsigned)
        }
    }
}

fn parse_millis(ts: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(ts).ok()?;
    if s.starts_with('+') {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Appends `ts`, a valid timestamp in `from`'s syntax, rewritten in `to`'s. Returns false when it
/// does not fit (an OpenMetrics time too far out for 64-bit milliseconds).
pub(crate) fn write_timestamp(ts: &[u8], from: Format, to: Format, out: &mut Vec<u8>) -> bool {
    match (from, to) {
        (a, b) if a == b => {
            out.extend_from_slice(ts);
            true
        }
        (Format::Text, _) => {
            let Some(ms) = parse_millis(ts) else {
                return false;
            };
            let sign = if ms < 0 { "-" } else { "" };
            let abs = ms.unsigned_abs();
            out.extend_from_slice(format!("{sign}{}.{:03}", abs / 1000, abs % 1000).as_bytes());
            true
        }
        (_, _) => match seconds_to_millis(ts) {
            Some(ms) => {
                out.extend_from_slice(ms.to_string().as_bytes());
                true
            }
            None => false,
        },
    }
}

/// OpenMetrics seconds to whole milliseconds, truncating below a millisecond; exact for plain
/// decimals (no float rounding), through f64 only when an exponent is present.
fn seconds_to_millis(ts: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(ts).ok()?;
    if s.contains(['e', 'E']) {
        let ms = (s.parse::<f64>().ok()? * 1000.0).trunc();
        return (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64);
    }
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut millis = 0i64;
    for i in 0..3 {
        let d = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        millis = millis * 10 + d;
    }
    let v = int.checked_mul(1000)?.checked_add(millis)?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        for ok in [
            "0", "1", "-1", "+1.5", "1e3", "1.5E-3", ".5", "5.", "NaN", "nan", "+Inf", "-inf",
            "Infinity",
        ] {
            assert!(is_float(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", ".", "1e", "0x1p3", "1_000", "1.2.3", "+nan", "abc", "1 ",
        ] {
            assert!(!is_float(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert!(is_timestamp(b"1395066363000", Format::Text));
        assert!(is_timestamp(b"-5", Format::Text));
        assert!(!is_timestamp(b"1.5", Format::Text));
        assert!(!is_timestamp(b"99999999999999999999", Format::Text));
        assert!(is_timestamp(b"1395066363.123", Format::OpenMetrics));
        assert!(!is_timestamp(b"NaN", Format::OpenMetrics));
    }

    fn convert(ts: &str, from: Format, to: Format) -> String {
        let mut out = Vec::new();
        assert!(write_timestamp(ts.as_bytes(), from, to, &mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn conversions() {
        use Format::*;
        assert_eq!(
            convert("1395066363000", Text, OpenMetrics),
            "1395066363.000"
        );
        assert_eq!(convert("-5", Text, OpenMetrics), "-0.005");
        assert_eq!(convert("1395066363.5", OpenMetrics, Text), "1395066363500");
        assert_eq!(convert("1.23456", OpenMetrics, Text), "1234");
        assert_eq!(convert("-0.5", OpenMetrics, Text), "-500");
        assert_eq!(convert("1.5e3", OpenMetrics, Text), "1500000");
        assert_eq!(convert("12", Text, Text), "12");
        let mut out = Vec::new();
        assert!(!write_timestamp(b"1e300", OpenMetrics, Text, &mut out));
    }
}
