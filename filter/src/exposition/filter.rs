//! Choosing families by name: one regex, compiled once, asked once per family (never per line).

/// Keeps the families whose name the regex matches anywhere (unanchored, the way Envoy's admin
/// `filter` parameter matches stat names). The name is the one text 0.0.4 gives the family: for
/// a counter, the sample name with `_total`, even when the scrape is answered in OpenMetrics.
#[derive(Clone, Debug)]
pub struct FamilyFilter {
    regex: regex_lite::Regex,
    pattern: String,
}

impl FamilyFilter {
    pub fn new(pattern: &str) -> Result<FamilyFilter, regex_lite::Error> {
        Ok(FamilyFilter {
            regex: regex_lite::Regex::new(pattern)?,
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
}
