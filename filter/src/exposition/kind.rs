//! Metric family types, and the rules that tie a family's name to its samples' names in each format.
//!
//! The two formats name families differently: text 0.0.4 names a counter family after its samples
//! (`# TYPE requests_total counter`), OpenMetrics after the stem (`# TYPE requests counter` with
//! samples `requests_total`). Sample names never change between formats; only the header does.

use super::Format;

/// The type of a metric family, normalised across both input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A counter whose samples are `<base>_total` (and, in OpenMetrics, `<base>_created`).
    Counter,
    /// A text-format counter whose sample name has no `_total` suffix (Envoy has many). OpenMetrics
    /// requires `_total` on counter samples, so these are written as `unknown` there: renaming the
    /// series would break every query written against the text scrape.
    CounterBare,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    StateSet,
    Info,
    /// `untyped` in text, `unknown` in OpenMetrics; also every family seen without a `# TYPE`.
    Unknown,
}

/// What a sample's name says about it, relative to its family's base name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suffix {
    Bare,
    Total,
    Created,
    Bucket,
    Count,
    Sum,
    GCount,
    GSum,
    Info,
}

/// Every suffix a sample name may carry after its family's base name.
const SUFFIXES: [&[u8]; 8] = [
    b"_total",
    b"_created",
    b"_bucket",
    b"_count",
    b"_sum",
    b"_gcount",
    b"_gsum",
    b"_info",
];

impl Kind {
    /// Reads a `# TYPE <name> <word>` line written in `input`; returns the kind and the family's
    /// base name (the part every sample name starts with), or `None` for an unknown type word.
    pub(crate) fn declare<'a>(
        name: &'a [u8],
        word: &[u8],
        input: Format,
    ) -> Option<(Kind, &'a [u8])> {
        let kind = match word {
            b"counter" => {
                if input == Format::OpenMetrics {
                    return Some((Kind::Counter, name));
                }
                return Some(match name.strip_suffix(b"_total") {
                    Some(base) if !base.is_empty() => (Kind::Counter, base),
                    _ => (Kind::CounterBare, name),
                });
            }
            b"gauge" => Kind::Gauge,
            b"histogram" => Kind::Histogram,
            b"gaugehistogram" => Kind::GaugeHistogram,
            b"summary" => Kind::Summary,
            b"stateset" => Kind::StateSet,
            b"info" => Kind::Info,
            b"untyped" | b"unknown" => Kind::Unknown,
            _ => return None,
        };
        Some((kind, name))
    }

    /// Whether a sample called `name` belongs to a family of this kind with this base name, and
    /// what its suffix is.
    #[inline]
    pub(crate) fn accepts(self, base: &[u8], name: &[u8]) -> Option<Suffix> {
        if !super::bytes::starts_with(name, base) {
            return None;
        }
        let rest = &name[base.len()..];
        // A match compiles to a length switch and word compares; this runs once per sample.
        let suffix = match rest {
            b"" => Suffix::Bare,
            b"_total" => Suffix::Total,
            b"_created" => Suffix::Created,
            b"_bucket" => Suffix::Bucket,
            b"_count" => Suffix::Count,
            b"_sum" => Suffix::Sum,
            b"_gcount" => Suffix::GCount,
            b"_gsum" => Suffix::GSum,
            b"_info" => Suffix::Info,
            _ => return None,
        };
        let ok = match self {
            Kind::Counter => matches!(suffix, Suffix::Total | Suffix::Created),
            Kind::CounterBare | Kind::Gauge | Kind::StateSet | Kind::Unknown => {
                suffix == Suffix::Bare
            }
            Kind::Histogram => matches!(
                suffix,
                Suffix::Bucket | Suffix::Count | Suffix::Sum | Suffix::Created
            ),
            Kind::GaugeHistogram => {
                matches!(suffix, Suffix::Bucket | Suffix::GCount | Suffix::GSum)
            }
            Kind::Summary => matches!(
                suffix,
                Suffix::Bare | Suffix::Count | Suffix::Sum | Suffix::Created
            ),
            Kind::Info => suffix == Suffix::Info,
        };
        ok.then_some(suffix)
    }

    /// The suffix the family header's name carries after the base name, in `format`.
    pub(crate) fn header_suffix(self, format: Format) -> &'static [u8] {
        match (format, self) {
            (Format::Text, Kind::Counter) => b"_total",
            (Format::Text, Kind::Info) => b"_info",
            _ => b"",
        }
    }

    /// The type word of the `# TYPE` line in `format`; `None` when the format has no such type (a
    /// gauge histogram in text, whose samples are left out).
    pub(crate) fn type_word(self, format: Format) -> Option<&'static str> {
        Some(match format {
            Format::Text => match self {
                Kind::Counter | Kind::CounterBare => "counter",
                Kind::Gauge | Kind::StateSet | Kind::Info => "gauge",
                Kind::Histogram => "histogram",
                Kind::Summary => "summary",
                Kind::Unknown => "untyped",
                Kind::GaugeHistogram => return None,
            },
            Format::OpenMetrics => match self {
                Kind::Counter => "counter",
                Kind::CounterBare | Kind::Unknown => "unknown",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
                Kind::GaugeHistogram => "gaugehistogram",
                Kind::Summary => "summary",
                Kind::StateSet => "stateset",
                Kind::Info => "info",
            },
        })
    }

    /// Whether a sample with this suffix can be written in `format` at all. Text 0.0.4 has no place
    /// for `_created` samples (OpenMetrics' creation timestamps) nor for gauge histograms (written
    /// headerless, their `_bucket` samples would read as part of whatever family precedes them).
    pub(crate) fn representable(self, suffix: Suffix, format: Format) -> bool {
        format == Format::OpenMetrics
            || !(suffix == Suffix::Created || self == Kind::GaugeHistogram)
    }

    /// Whether OpenMetrics allows an exemplar on a sample with this suffix.
    pub(crate) fn allows_exemplar(self, suffix: Suffix) -> bool {
        matches!(
            (self, suffix),
            (Kind::Counter, Suffix::Total)
                | (Kind::Histogram, Suffix::Bucket)
                | (Kind::GaugeHistogram, Suffix::Bucket)
        )
    }

    /// Base names a sample called `name` could belong to: itself, and itself minus each known
    /// suffix. Used only when a sample does not fit the family being read (a family switch).
    pub(crate) fn candidate_bases(name: &[u8]) -> impl Iterator<Item = &[u8]> {
        std::iter::once(name).chain(
            SUFFIXES
                .iter()
                .filter_map(move |s| name.strip_suffix(*s).filter(|b| !b.is_empty())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counter_names() {
        assert_eq!(
            Kind::declare(b"rq_total", b"counter", Format::Text),
            Some((Kind::Counter, &b"rq"[..]))
        );
        assert_eq!(
            Kind::declare(b"rq_completed", b"counter", Format::Text),
            Some((Kind::CounterBare, &b"rq_completed"[..]))
        );
        assert_eq!(
            Kind::declare(b"rq", b"counter", Format::OpenMetrics),
            Some((Kind::Counter, &b"rq"[..]))
        );
        assert_eq!(Kind::declare(b"x", b"bogus", Format::Text), None);
    }

    #[test]
    fn sample_membership() {
        assert_eq!(
            Kind::Counter.accepts(b"rq", b"rq_total"),
            Some(Suffix::Total)
        );
        assert_eq!(Kind::Counter.accepts(b"rq", b"rq"), None);
        assert_eq!(
            Kind::Histogram.accepts(b"t", b"t_bucket"),
            Some(Suffix::Bucket)
        );
        assert_eq!(Kind::Histogram.accepts(b"t", b"t_other"), None);
        assert_eq!(Kind::Summary.accepts(b"t", b"t"), Some(Suffix::Bare));
        assert_eq!(Kind::Gauge.accepts(b"t", b"t_sum"), None);
        assert_eq!(
            Kind::Info.accepts(b"build", b"build_info"),
            Some(Suffix::Info)
        );
    }

    #[test]
    fn headers_per_format() {
        assert_eq!(Kind::Counter.header_suffix(Format::Text), b"_total");
        assert_eq!(Kind::Counter.header_suffix(Format::OpenMetrics), b"");
        assert_eq!(
            Kind::CounterBare.type_word(Format::OpenMetrics),
            Some("unknown")
        );
        assert_eq!(Kind::GaugeHistogram.type_word(Format::Text), None);
        assert_eq!(Kind::Info.type_word(Format::Text), Some("gauge"));
    }

    #[test]
    fn candidates() {
        let c: Vec<&[u8]> = Kind::candidate_bases(b"a_sum").collect();
        assert_eq!(c, vec![&b"a_sum"[..], &b"a"[..]]);
        let c: Vec<&[u8]> = Kind::candidate_bases(b"_sum").collect();
        assert_eq!(c, vec![&b"_sum"[..]]);
    }
}
