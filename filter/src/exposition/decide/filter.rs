//! Choosing families by name: one regex, compiled once, asked once per family (never per line).

/// Keeps the families whose name the regex matches anywhere (unanchored, the way Envoy's admin
/// `filter` parameter matches stat names). The name is the one text 0.0.4 gives the family: for
/// a counter, the sample name with `_total`, even when the scrape is answered in OpenMetrics.
#[derive(Clone, Debug)]
pub struct FamilyFilter {
    regex: regex_lite::Regex,
    pattern: String,
}

/// The longest pattern accepted (a scraper's `?filter=` is a stranger's input).
pub const MAX_PATTERN_BYTES: usize = 1024;
/// The largest compiled program accepted, in regex-lite's accounting (about bytes). regex-lite
/// matches in time linear in the program and the name (a PikeVM: no backtracking), so this
/// bounds what one family name can cost: `(?:[a-z_]?){75000}X`, which took ~77 ms per name under
/// regex-lite's default limit, is refused here.
pub const MAX_COMPILED_BYTES: usize = 16 << 10;
/// The deepest nesting accepted.
pub const MAX_NEST: u32 = 32;

/// Why a pattern is refused.
#[derive(Debug)]
pub enum FilterError {
    TooLong(usize),
    Regex(regex_lite::Error),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::TooLong(n) => {
                write!(f, "the pattern is {n} bytes, over {MAX_PATTERN_BYTES}")
            }
            FilterError::Regex(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FilterError {}

impl FamilyFilter {
    pub fn new(pattern: &str) -> Result<FamilyFilter, FilterError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(FilterError::TooLong(pattern.len()));
        }
        let regex = regex_lite::RegexBuilder::new(pattern)
            .size_limit(MAX_COMPILED_BYTES)
            .nest_limit(MAX_NEST)
            .build()
            .map_err(FilterError::Regex)?;
        Ok(FamilyFilter {
            regex,
            pattern: pattern.to_owned(),
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub(crate) fn keeps(&self, family: &[u8]) -> bool {
        std::str::from_utf8(family).is_ok_and(|name| self.regex.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_match() {
        let f = FamilyFilter::new("upstream_rq").unwrap();
        assert!(f.keeps(b"envoy_cluster_upstream_rq_total"));
        assert!(!f.keeps(b"envoy_server_live"));
        let f = FamilyFilter::new("^envoy_server_").unwrap();
        assert!(f.keeps(b"envoy_server_live"));
        assert!(FamilyFilter::new("(").is_err());
    }

    #[test]
    fn a_pattern_whose_cost_has_no_bound_is_refused() {
        for hostile in [
            "(?:[a-z_]?){75000}X".to_owned(),
            "(?:a?){5000}a{5000}".to_owned(),
            format!("{}x{}", "(".repeat(40), ")".repeat(40)),
            "a|".repeat(600),
        ] {
            assert!(FamilyFilter::new(&hostile).is_err(), "{hostile:.40}");
        }
        // What operators write still compiles.
        let f = FamilyFilter::new("upstream_rq_(2xx|5xx)|cx_active|^envoy_server_(live|uptime)$")
            .unwrap();
        assert!(f.keeps(b"envoy_cluster_upstream_rq_5xx"));
    }

    /// The worst a pattern within the limits costs on one family name, measured (printed with
    /// `--nocapture`): what a scraper can make one family cost. Not a timed assertion.
    #[test]
    fn worst_case_cost_per_family_within_the_limits() {
        let mut worst = String::from("(?:[a-z_]?)");
        let mut n = 1;
        while FamilyFilter::new(&format!("{worst}{{{}}}X", n * 2)).is_ok() {
            n *= 2;
        }
        worst = format!("{worst}{{{n}}}X");
        let f = FamilyFilter::new(&worst).unwrap();
        let name = b"envoy_cluster_upstream_cx_connect_ms_bucket_with_a_long_cluster_name_here";
        let start = std::time::Instant::now();
        let rounds = 50;
        for _ in 0..rounds {
            assert!(!f.keeps(name));
        }
        println!(
            "worst accepted {worst}: {:?} per family name",
            start.elapsed() / rounds
        );
    }
}
