//! What one sample must be for the output to parse: Prometheus refuses a whole scrape for one
//! bad line, so a sample the output format cannot carry is dropped and counted, never written.
//!
//! Both formats: no `__name__` label inside braces (Prometheus: "metric name specified more than
//! once"); only legacy names (`[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics, `[a-zA-Z_][a-zA-Z0-9_]*`
//! for labels), since we answer text 0.0.4 and OpenMetrics 1.0, which have no quoted names; a
//! histogram bucket's `le` and a summary quantile's `quantile` present and numbers (not NaN).
//!
//! OpenMetrics only (its parsers check values): counter-like samples (`_total`, `_count`,
//! `_bucket`, `_sum`, `_gcount`) never negative and, with `_gsum`, never NaN; `_bucket`,
//! `_count`, `_gcount` whole numbers; an infinite `le` written `+Inf`; `quantile` in [0, 1]
//! and its value not negative; `info` samples 1; `stateset` samples 0 or 1.
//!
//! Applied to every source but a trusted lead (`Merger::trust_lead`: Envoy's admin, whose
//! renderer writes legacy names and numeric values), so Envoy's 34 MB keep the fast path; rules
//! without a value check return before parsing anything, and whole numbers are recognized
//! without parsing.

use crate::exposition::decide::kind::{Kind, Suffix};
use crate::exposition::read::Format;
use crate::exposition::read::names::is_legacy_metric_name;
use crate::exposition::read::scan::{LabelSpan, Sample};
use crate::exposition::read::value::is_float;

/// Why a sample cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not valid in any format.
    Malformed,
    /// Valid input, but the output format cannot carry it.
    Unrepresentable,
}

/// Checks a scanned sample of a family of `kind` (its suffix `suffix`) for `format`.
#[inline]
pub(crate) fn check(
    line: &[u8],
    s: &Sample,
    labels: &[LabelSpan],
    kind: Kind,
    suffix: Suffix,
    format: Format,
) -> Result<(), Invalid> {
    let name = s.name.of(line);
    if s.quoted_name && !is_legacy_metric_name(name) {
        return Err(Invalid::Unrepresentable);
    }
    let mut bound = None;
    let wants = match (kind, suffix) {
        (Kind::Histogram | Kind::GaugeHistogram, Suffix::Bucket) => Some(&b"le"[..]),
        (Kind::Summary, Suffix::Bare) => Some(&b"quantile"[..]),
        _ => None,
    };
    for l in labels {
        let label = l.name.of(line);
        if l.utf8 {
            return Err(Invalid::Unrepresentable);
        }
        if label.len() == 8 && label == b"__name__" {
            return Err(Invalid::Malformed);
        }
        if wants.is_some_and(|w| w == label) {
            bound = Some(l.value.of(line));
        }
    }
    if let Some(which) = wants {
        let b = bound.ok_or(Invalid::Malformed)?;
        if !is_float(b) || b.eq_ignore_ascii_case(b"nan") {
            return Err(Invalid::Malformed);
        }
        if format == Format::OpenMetrics {
            let v = parse(b);
            if which == b"le" && v.is_infinite() && b != b"+Inf" && v > 0.0 {
                return Err(Invalid::Unrepresentable);
            }
            if which == b"quantile" && !(0.0..=1.0).contains(&v) {
                return Err(Invalid::Unrepresentable);
            }
        }
    }
    if format == Format::OpenMetrics {
        value_fits(s.value.of(line), kind, suffix)?;
    }
    Ok(())
}

/// The value rules of OpenMetrics for this kind of sample.
#[inline]
fn value_fits(value: &[u8], kind: Kind, suffix: Suffix) -> Result<(), Invalid> {
    let counter_like = matches!(
        suffix,
        Suffix::Total | Suffix::Count | Suffix::Bucket | Suffix::Sum | Suffix::GCount
    ) && kind != Kind::Unknown;
    let whole = matches!(suffix, Suffix::Bucket | Suffix::Count | Suffix::GCount)
        && matches!(kind, Kind::Histogram | Kind::GaugeHistogram | Kind::Summary);
    let set = matches!(kind, Kind::Info | Kind::StateSet);
    let quantile = kind == Kind::Summary && suffix == Suffix::Bare;
    if !(counter_like || whole || set || quantile || suffix == Suffix::GSum) {
        // Gauges, unknowns and the like: any number goes.
        return Ok(());
    }
    // The usual values, decided without parsing: `12`, `12.0` (whole, non-negative).
    if !set && whole_number(value).is_some() {
        return Ok(());
    }
    let v = parse(value);
    let bad = (counter_like && (v < 0.0 || v.is_nan()))
        || (suffix == Suffix::GSum && v.is_nan())
        || (whole && v.fract() != 0.0)
        || (quantile && v < 0.0)
        || (kind == Kind::Info && v != 1.0)
        || (kind == Kind::StateSet && v != 0.0 && v != 1.0);
    if bad {
        Err(Invalid::Unrepresentable)
    } else {
        Ok(())
    }
}

/// `Some` for digits with an optional all-zero fraction (`12`, `12.0`): a whole number >= 0.
#[inline]
fn whole_number(v: &[u8]) -> Option<()> {
    let int = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if int == 0 {
        return None;
    }
    match &v[int..] {
        [] => Some(()),
        [b'.', zeros @ ..] if zeros.iter().all(|&b| b == b'0') => Some(()),
        _ => None,
    }
}

/// A value the scanner accepted (`is_float`), as a number.
fn parse(v: &[u8]) -> f64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}
