//! Metric family types, and the rules that tie a family's name to its samples' names in each format.
//!
//! The two formats name families differently: text 0.0.4 names a counter family after its samples
//! (`# TYPE requests_total counter`), OpenMetrics after the stem (`# TYPE requests counter` with
//! samples `requests_total`). Sample names never change between formats; only the header does.

use crate::exposition::read::Format;

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
#[repr(u8)]
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

/// Whether a sample called `name` belongs to a family with this base name whose samples may
/// carry the suffixes in `mask` ([`Kind::suffix_mask`]), and what its suffix is. Runs once per
/// sample: a length switch, word compares and a bit test.
#[inline]
pub(crate) fn accepts_masked(mask: u16, base: &[u8], name: &[u8]) -> Option<Suffix> {
    if !crate::exposition::read::bytes::starts_with(name, base) {
        return None;
    }
    let suffix = match &name[base.len()..] {
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
    (mask & (1 << suffix as u8) != 0).then_some(suffix)
}

impl Suffix {
    pub(crate) fn bytes(self) -> &'static [u8] {
        match self {
            Suffix::Bare => b"",
            Suffix::Total => b"_total",
            Suffix::Created => b"_created",
            Suffix::Bucket => b"_bucket",
            Suffix::Count => b"_count",
            Suffix::Sum => b"_sum",
            Suffix::GCount => b"_gcount",
            Suffix::GSum => b"_gsum",
            Suffix::Info => b"_info",
        }
    }
}

/// A family of its own for the samples of another that the output format cannot hold there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Companion {
    Created,
    GCount,
    GSum,
}

impl Companion {
    pub(crate) fn suffix(self) -> Suffix {
        match self {
            Companion::Created => Suffix::Created,
            Companion::GCount => Suffix::GCount,
            Companion::GSum => Suffix::GSum,
        }
    }
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

    /// Whether a sample called `name` belongs to a family of this kind with this base name,
    /// declared in `input`, and what its suffix is.
    #[inline]
    pub(crate) fn accepts(self, base: &[u8], name: &[u8], input: Format) -> Option<Suffix> {
        accepts_masked(self.suffix_mask(input), base, name)
    }

    /// The suffixes of [`Kind::sample_suffixes`] as a bit set (bit `Suffix as u8`), for the
    /// per-sample test.
    pub(crate) fn suffix_mask(self, format: Format) -> u16 {
        self.sample_suffixes(format)
            .iter()
            .fold(0, |m, s| m | 1 << (*s as u8))
    }

    /// The suffix the family header's name carries after the base name, in `format`.
    pub(crate) fn header_suffix(self, format: Format) -> &'static [u8] {
        match (format, self) {
            (Format::Text, Kind::Counter) => b"_total",
            (Format::Text, Kind::Info) => b"_info",
            _ => b"",
        }
    }

    /// The type word of the `# TYPE` line in `format`.
    pub(crate) fn type_word(self, format: Format) -> &'static str {
        match format {
            Format::Text => match self {
                Kind::Counter | Kind::CounterBare => "counter",
                Kind::Gauge | Kind::StateSet | Kind::Info => "gauge",
                Kind::Histogram => "histogram",
                Kind::Summary => "summary",
                Kind::Unknown => "untyped",
                // prometheus_client's rule: the buckets as a histogram, `_gcount` / `_gsum` as
                // gauges of their own (see `companion`).
                Kind::GaugeHistogram => "histogram",
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
        }
    }

    /// The family a sample with this suffix moves to when `format` has no place for it in this
    /// family: text 0.0.4 has no `_created` samples, nor `_gcount` / `_gsum`. They become gauges
    /// of their own named `<base><suffix>`, as prometheus_client writes them; no sample is lost.
    pub(crate) fn companion(self, suffix: Suffix, format: Format) -> Option<Companion> {
        if format == Format::OpenMetrics {
            return None;
        }
        match (self, suffix) {
            (Kind::Counter | Kind::Histogram | Kind::Summary, Suffix::Created) => {
                Some(Companion::Created)
            }
            (Kind::GaugeHistogram, Suffix::GCount) => Some(Companion::GCount),
            (Kind::GaugeHistogram, Suffix::GSum) => Some(Companion::GSum),
            _ => None,
        }
    }

    /// The suffixes (after the base name) of every sample name a family of this kind may hold
    /// when written in `format`: with the header's name, what the family claims in the output.
    /// OpenMetrics parsers reserve all of them (a gauge `x_created` beside a counter `x` is a
    /// clash even when the counter has no `_created` sample), and text parsers attach `x_count`
    /// to a summary or histogram `x`, so two families' claims must never overlap.
    pub(crate) fn sample_suffixes(self, format: Format) -> &'static [Suffix] {
        use Suffix::*;
        match (format, self) {
            (Format::Text, Kind::Counter) => &[Total],
            (Format::Text, Kind::Histogram) => &[Bucket, Count, Sum],
            (Format::Text, Kind::GaugeHistogram) => &[Bucket],
            (Format::Text, Kind::Summary) => &[Bare, Count, Sum],
            (Format::OpenMetrics, Kind::Counter) => &[Total, Created],
            (Format::OpenMetrics, Kind::Histogram) => &[Bucket, Count, Sum, Created],
            (Format::OpenMetrics, Kind::GaugeHistogram) => &[Bucket, GCount, GSum],
            (Format::OpenMetrics, Kind::Summary) => &[Bare, Count, Sum, Created],
            (_, Kind::Info) => &[Info],
            (_, Kind::CounterBare | Kind::Gauge | Kind::StateSet | Kind::Unknown) => &[Bare],
        }
    }

    /// The suffixes of every sample name a reader of the output attaches to this family: what
    /// [`Kind::sample_suffixes`] holds, and more where the type word says more. A gauge
    /// histogram in text is written `histogram` and holds only `_bucket` samples (its `_gcount`
    /// / `_gsum` are gauges of their own), yet a text reader gives `<base>_count` and
    /// `<base>_sum` to it: those names are taken, so no other family may hold them.
    pub(crate) fn claimed_suffixes(self, format: Format) -> &'static [Suffix] {
        match (format, self) {
            (Format::Text, Kind::GaugeHistogram) => Kind::Histogram.sample_suffixes(format),
            _ => self.sample_suffixes(format),
        }
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
    fn claims_follow_the_type_word() {
        // Every kind's claims cover what it holds, and are what its type word makes a reader
        // attach: a text gauge histogram reads back as a histogram.
        for format in [Format::Text, Format::OpenMetrics] {
            for kind in [
                Kind::Counter,
                Kind::CounterBare,
                Kind::Gauge,
                Kind::Histogram,
                Kind::GaugeHistogram,
                Kind::Summary,
                Kind::StateSet,
                Kind::Info,
                Kind::Unknown,
            ] {
                let claimed = kind.claimed_suffixes(format);
                assert!(
                    kind.sample_suffixes(format)
                        .iter()
                        .all(|s| claimed.contains(s))
                );
            }
        }
        assert_eq!(
            Kind::GaugeHistogram.claimed_suffixes(Format::Text),
            Kind::Histogram.sample_suffixes(Format::Text)
        );
    }

    #[test]
    fn sample_membership() {
        let (t, om) = (Format::Text, Format::OpenMetrics);
        assert_eq!(
            Kind::Counter.accepts(b"rq", b"rq_total", t),
            Some(Suffix::Total)
        );
        assert_eq!(Kind::Counter.accepts(b"rq", b"rq", t), None);
        // Text has no `_created` inside a counter family: prometheus_client writes a gauge.
        assert_eq!(Kind::Counter.accepts(b"rq", b"rq_created", t), None);
        assert_eq!(
            Kind::Counter.accepts(b"rq", b"rq_created", om),
            Some(Suffix::Created)
        );
        assert_eq!(
            Kind::Histogram.accepts(b"t", b"t_bucket", t),
            Some(Suffix::Bucket)
        );
        assert_eq!(Kind::Histogram.accepts(b"t", b"t_other", t), None);
        assert_eq!(Kind::Summary.accepts(b"t", b"t", t), Some(Suffix::Bare));
        assert_eq!(Kind::Gauge.accepts(b"t", b"t_sum", t), None);
        assert_eq!(
            Kind::Info.accepts(b"build", b"build_info", om),
            Some(Suffix::Info)
        );
    }

    #[test]
    fn headers_per_format() {
        assert_eq!(Kind::Counter.header_suffix(Format::Text), b"_total");
        assert_eq!(Kind::Counter.header_suffix(Format::OpenMetrics), b"");
        assert_eq!(Kind::CounterBare.type_word(Format::OpenMetrics), "unknown");
        assert_eq!(Kind::GaugeHistogram.type_word(Format::Text), "histogram");
        assert_eq!(Kind::Info.type_word(Format::Text), "gauge");
    }

    #[test]
    fn candidates() {
        let c: Vec<&[u8]> = Kind::candidate_bases(b"a_sum").collect();
        assert_eq!(c, vec![&b"a_sum"[..], &b"a"[..]]);
        let c: Vec<&[u8]> = Kind::candidate_bases(b"_sum").collect();
        assert_eq!(c, vec![&b"_sum"[..]]);
    }
}
