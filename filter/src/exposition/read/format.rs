//! The two wire formats, and choosing one from a scraper's `Accept` header.

/// Wire format of an exposition, read or written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    #[default]
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` we answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a source answered in, from its `Content-Type`; `None` for a type the filter
    /// does not read (protobuf, JSON, HTML...). An absent `Content-Type` is read as text, the
    /// format every exporter speaks (small apps often send none).
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let mut params = content_type.split(';');
        let media = params.next().unwrap_or("").trim();
        let version = params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("version")
                .then(|| v.trim().trim_matches('"'))
        });
        if media.is_empty() || media.eq_ignore_ascii_case("text/plain") {
            // Text 0.0.4; 1.0.0 is the same grammar with quoted UTF-8 names (prometheus_client
            // >= 0.22 answers it), which the scanner reads; unversioned (Envoy's admin) too.
            matches!(version, None | Some("0.0.4" | "1.0.0")).then_some(Format::Text)
        } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
            matches!(version, None | Some("1.0.0" | "0.0.1")).then_some(Format::OpenMetrics)
        } else {
            None
        }
    }

    /// The `Accept` the filter sends an app when the scrape is answered in this format: only
    /// what the filter reads (never protobuf, whatever the scraper asked), the output's format
    /// first so that nothing needs converting.
    pub fn accept_for_sources(self) -> &'static str {
        match self {
            Format::OpenMetrics => {
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            }
            Format::Text => {
                "text/plain;version=0.0.4,application/openmetrics-text;version=1.0.0;q=0.5,\
                 */*;q=0.1"
            }
        }
    }

    /// The format to answer a scraper with, from its `Accept` header.
    ///
    /// OpenMetrics is chosen when the scraper accepts `application/openmetrics-text` (version 1.0.0
    /// or 0.0.1, or none given) with a quality at least as high as the best text/plain or wildcard
    /// range; anything else, including no header at all, gets text 0.0.4, which every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best_om = 0.0f32;
        let mut best_text = 0.0f32;
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            let mut version_ok = true;
            for p in params {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") {
                    q = v.parse().unwrap_or(0.0);
                } else if k.eq_ignore_ascii_case("version") {
                    version_ok = matches!(v, "1.0.0" | "0.0.1");
                }
            }
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                if version_ok {
                    best_om = best_om.max(q);
                }
            } else if media.eq_ignore_ascii_case("text/plain")
                || media == "*/*"
                || media.eq_ignore_ascii_case("text/*")
            {
                best_text = best_text.max(q);
            }
        }
        if best_om > 0.0 && best_om >= best_text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_gets_openmetrics() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn text_when_preferred_or_absent() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn content_type_of_sources() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Some(Format::OpenMetrics)
        );
        assert_eq!(
            Format::from_content_type("text/plain; charset=UTF-8"),
            Some(Format::Text)
        );
        assert_eq!(
            Format::from_content_type(
                "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
            ),
            Some(Format::Text)
        );
        assert_eq!(Format::from_content_type(""), Some(Format::Text));
        assert_eq!(
            Format::from_content_type("text/plain; version=1.0.0; charset=utf-8"),
            Some(Format::Text)
        );
        // What client_golang answers a Prometheus with native histograms enabled.
        let protobuf = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
        assert_eq!(Format::from_content_type(protobuf), None);
        assert_eq!(Format::from_content_type("application/json"), None);
        assert_eq!(Format::from_content_type("text/html; charset=utf-8"), None);
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=2.0.0"),
            None
        );
    }

    #[test]
    fn sources_are_asked_only_for_what_the_filter_reads() {
        for format in [Format::Text, Format::OpenMetrics] {
            let accept = format.accept_for_sources();
            assert!(!accept.contains("protobuf"));
            assert_eq!(Format::negotiate(Some(accept)), format, "{accept}");
        }
    }
}
