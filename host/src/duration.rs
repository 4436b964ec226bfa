//! Go's duration syntax (`30s`, `1m`, `500ms`, `1m30s`), as Kuma's resources and Prometheus'
//! query parameters write durations.

use std::time::Duration;

/// The longest duration read: a decade. Longer is refused rather than overflowing.
const MAX: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `s`: one or more `<number><unit>` (units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
/// `None` when it is not one, or is longer than a decade.
pub fn parse(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let part = n * unit;
        if !part.is_finite() || part > MAX.as_secs_f64() {
            return None;
        }
        total = total.checked_add(Duration::try_from_secs_f64(part).ok()?)?;
    }
    (total <= MAX).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in ["", "soon", "10", "-1s", "1d", "1e400s", "99999999999h"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
