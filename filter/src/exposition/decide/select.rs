//! Which of Envoy's families a scrape keeps: MeshMetric's `sidecar` rules (a profile, then
//! `exclude`, then `include`), decided once per family by its name, never per line.
//!
//! The name asked about is the one text 0.0.4 gives the family (a counter's with `_total`),
//! as Kuma's profiles see it. Every kind of matcher of a list is asked at once: the `Contains`
//! patterns through one Aho–Corasick automaton, the `Regex` ones as one alternation, `Exact` in a
//! set, `Prefix` in a short list; Kuma's Basic profile is such a list too.

use std::collections::HashSet;

use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};

use crate::exposition::decide::filter::{FamilyFilter, FilterError};

/// MeshMetric's rules on Envoy's families: the profile keeps a set, `exclude` drops from it,
/// `include` adds back (whatever the profile and `exclude` said), by the family's text name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyRules {
    pub profile: Profile,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Matcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Matcher>,
}

/// Kuma's profiles of Envoy's families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// Every family.
    All,
    /// Kuma's list of the families worth a dashboard ([`BASIC_CONTAINS`], [`BASIC_EXACT`], [`BASIC_PREFIXES`]).
    Basic,
    /// No family (`include` adds some back).
    None,
}

/// One `exclude` / `include` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(rename = "type")]
    pub kind: MatchKind,
    #[serde(rename = "match")]
    pub pattern: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchKind {
    Regex,
    Prefix,
    Exact,
    Contains,
}

/// Kuma's Basic profile: a family whose name contains one of these is kept.
pub const BASIC_CONTAINS: [&str; 29] = [
    "rq_time",
    "cx_length_ms",
    "cx_count",
    "_rq",
    "bytes",
    "timeout",
    "health_check",
    "lb_healthy_panic",
    "cx_destroy",
    "error",
    "fail",
    "reset",
    "eject",
    "overflow",
    "cancelled",
    "max_duration_reached",
    "no_cluster",
    "no_route",
    "no_filter_chain",
    "reject",
    "denied",
    "days_until_first_cert_expiring",
    "rbac",
    "cx_active",
    "cx_connect",
    "circuit_breakers",
    "cx_total",
    "ssl_handshake",
    "ssl_context_update_by_sds",
];
/// Kuma's Basic profile: these families, exactly.
pub const BASIC_EXACT: [&str; 4] = [
    "envoy_cluster_membership_degraded",
    "envoy_cluster_membership_healthy",
    "envoy_cluster_ssl_handshake",
    "envoy_cluster_membership_total",
];
/// Kuma's Basic profile: families under these prefixes.
pub const BASIC_PREFIXES: [&str; 4] = [
    "envoy_server",
    "envoy_control_plane",
    "envoy_dns_filter",
    "envoy_dns_cares",
];

/// A list of matchers, asked all at once.
#[derive(Clone, Debug, Default)]
pub struct Matchers {
    contains: Option<AhoCorasick>,
    regex: Option<FamilyFilter>,
    exact: HashSet<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
}

impl Matchers {
    /// The matchers of `list`; a `Regex` that does not compile (or passes the limits a
    /// scraper's `filter` has) is an error naming its index.
    pub fn new(list: &[Matcher]) -> Result<Matchers, (usize, FilterError)> {
        let mut contains = Vec::new();
        let mut regexes = Vec::new();
        let mut m = Matchers::default();
        for (i, x) in list.iter().enumerate() {
            match x.kind {
                MatchKind::Contains => contains.push(x.pattern.as_str()),
                MatchKind::Exact => {
                    m.exact.insert(x.pattern.as_bytes().to_vec());
                }
                MatchKind::Prefix => m.prefixes.push(x.pattern.as_bytes().to_vec()),
                MatchKind::Regex => {
                    // Each one alone first, so an error names the one at fault.
                    FamilyFilter::new(&x.pattern).map_err(|e| (i, e))?;
                    regexes.push(format!("(?:{})", x.pattern));
                }
            }
        }
        if !contains.is_empty() {
            // Patterns are at most a few hundred short strings: the automaton cannot fail to
            // build within aho-corasick's default limits, but if it did, it is an error, not a
            // panic.
            m.contains = Some(AhoCorasick::new(&contains).map_err(|_| {
                (
                    0,
                    FilterError::TooLong(contains.iter().map(|c| c.len()).sum()),
                )
            })?);
        }
        if !regexes.is_empty() {
            let first = list
                .iter()
                .position(|x| x.kind == MatchKind::Regex)
                .unwrap_or(0);
            m.regex = Some(FamilyFilter::new(&regexes.join("|")).map_err(|e| (first, e))?);
        }
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self.contains.is_none()
            && self.regex.is_none()
            && self.exact.is_empty()
            && self.prefixes.is_empty()
    }

    /// Whether any matcher of the list matches `name`.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.exact.contains(name)
            || self.prefixes.iter().any(|p| name.starts_with(p))
            || self.contains.as_ref().is_some_and(|a| a.is_match(name))
            || self.regex.as_ref().is_some_and(|r| r.keeps(name))
    }
}

/// The rules of one scrape's Envoy families, compiled.
#[derive(Clone, Debug)]
pub struct FamilySelection {
    profile: Profile,
    basic: Option<Matchers>,
    exclude: Matchers,
    include: Matchers,
}

/// A rule that cannot be compiled: which list, which item, why.
#[derive(Debug)]
pub struct SelectionError {
    pub field: String,
    pub error: FilterError,
}

impl std::fmt::Display for SelectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.error)
    }
}

impl FamilySelection {
    pub fn new(rules: &FamilyRules) -> Result<FamilySelection, SelectionError> {
        let list = |name: &str, l: &[Matcher]| {
            Matchers::new(l).map_err(|(i, error)| SelectionError {
                field: format!("{name}[{i}].match"),
                error,
            })
        };
        let basic = (rules.profile == Profile::Basic).then(basic_profile);
        Ok(FamilySelection {
            profile: rules.profile,
            basic,
            exclude: list("exclude", &rules.exclude)?,
            include: list("include", &rules.include)?,
        })
    }

    /// Whether the family named `name` (its text 0.0.4 name) is kept: the profile keeps it and
    /// `exclude` does not drop it, or `include` adds it back.
    pub fn keeps(&self, name: &[u8]) -> bool {
        let by_profile = match self.profile {
            Profile::All => true,
            Profile::None => false,
            Profile::Basic => self.basic.as_ref().is_some_and(|b| b.matches(name)),
        };
        (by_profile && !self.exclude.matches(name)) || self.include.matches(name)
    }

    /// Keeps everything (the All profile, nothing excluded): no need to ask.
    pub fn keeps_all(&self) -> bool {
        self.profile == Profile::All && self.exclude.is_empty()
    }
}

/// A regex on Envoy's stat names (its admin's `filter`) that every stat whose family `rules`
/// could keep matches: Envoy then renders only those, and the engine keeps exactly what the
/// rules keep. `None` when no such narrowing is known (the All profile: `exclude` cannot be
/// said as a regex RE2 runs; or a rule with no literal to require).
///
/// A family's name is `envoy_` + the stat's name with its tag values taken out and `.` written
/// `_`. So a literal a family name must hold, split at `_`, is a sequence of tokens the stat's
/// name holds in the same order, maybe with tag values between them: `cluster.*upstream.*rq`
/// for `envoy_cluster_upstream_rq_.*`. A token that could be part of the `envoy_` prefix is not
/// required (a `Contains` may start in it).
pub fn envoy_filter(rules: &FamilyRules) -> Option<String> {
    let mut alternatives = Vec::new();
    match rules.profile {
        Profile::All => return None,
        Profile::None => {}
        Profile::Basic => {
            for c in BASIC_CONTAINS {
                alternatives.push(stat_pattern(MatchKind::Contains, c)?);
            }
            for e in BASIC_EXACT {
                alternatives.push(stat_pattern(MatchKind::Exact, e)?);
            }
            for p in BASIC_PREFIXES {
                alternatives.push(stat_pattern(MatchKind::Prefix, p)?);
            }
        }
    }
    for m in &rules.include {
        alternatives.push(stat_pattern(m.kind, &m.pattern)?);
    }
    if alternatives.is_empty() {
        // Nothing of Envoy's is kept: a stat name is never empty.
        return Some("^$".into());
    }
    alternatives.sort();
    alternatives.dedup();
    Some(alternatives.join("|"))
}

/// The stat-name regex one rule needs (see [`envoy_filter`]); `None`: it needs nothing known.
fn stat_pattern(kind: MatchKind, pattern: &str) -> Option<String> {
    let (literal, anchored) = match kind {
        MatchKind::Prefix | MatchKind::Exact => (pattern, true),
        MatchKind::Contains => (pattern, false),
        MatchKind::Regex => regex_literal(pattern)?,
    };
    // Not anchored in the stat name, even when the rule is in the family's: a tag extractor may
    // take out the stat's leading segment (`<prefix>.rbac.allowed` is `envoy_rbac_allowed`).
    // A rule on names without `envoy_` (a custom stat namespace, rendered without it) narrows
    // nothing known.
    let literal = match (anchored, literal.strip_prefix("envoy_")) {
        (true, Some(rest)) => rest,
        (true, None) => return None,
        (false, _) => literal,
    };
    let tokens: Vec<&str> = literal
        .split('_')
        .filter(|t| !t.is_empty())
        // A token that could be part of the `envoy_` prefix is not required.
        .filter(|t| anchored || !"envoy".contains(t))
        .collect();
    if tokens.is_empty()
        || tokens
            .iter()
            .any(|t| !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'))
    {
        return None;
    }
    Some(tokens.join(".*"))
}

/// The literal a regex's every match starts with, and whether it is anchored at the start;
/// `None` when it has alternatives (a `|`) or no literal start.
fn regex_literal(pattern: &str) -> Option<(&str, bool)> {
    if pattern.contains('|') {
        return None;
    }
    let (rest, anchored) = match pattern.strip_prefix('^') {
        Some(r) => (r, true),
        None => (pattern, false),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    // A quantifier after the literal makes its last character optional.
    let end = match rest[end..].chars().next() {
        Some('*' | '?' | '{') => end.saturating_sub(1),
        _ => end,
    };
    (end > 0).then(|| (&rest[..end], anchored))
}

fn basic_profile() -> Matchers {
    let list = |kind: MatchKind, patterns: &[&str]| {
        patterns
            .iter()
            .map(move |p| Matcher {
                kind,
                pattern: (*p).to_owned(),
            })
            .collect::<Vec<_>>()
    };
    let mut all = list(MatchKind::Contains, &BASIC_CONTAINS);
    all.extend(list(MatchKind::Exact, &BASIC_EXACT));
    all.extend(list(MatchKind::Prefix, &BASIC_PREFIXES));
    // Fixed patterns, no regex: nothing here can fail (the automaton of 29 short strings).
    Matchers::new(&all).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: MatchKind, pattern: &str) -> Matcher {
        Matcher {
            kind,
            pattern: pattern.into(),
        }
    }

    fn rules(profile: Profile, exclude: Vec<Matcher>, include: Vec<Matcher>) -> FamilySelection {
        FamilySelection::new(&FamilyRules {
            profile,
            exclude,
            include,
        })
        .unwrap()
    }

    #[test]
    fn basic_keeps_kumas_list_and_nothing_else() {
        let s = rules(Profile::Basic, vec![], vec![]);
        for kept in [
            "envoy_cluster_upstream_rq_total",
            "envoy_cluster_upstream_rq_time",
            "envoy_server_live",
            "envoy_cluster_membership_healthy",
            "envoy_listener_downstream_cx_total",
            "envoy_cluster_upstream_cx_connect_fail",
        ] {
            assert!(s.keeps(kept.as_bytes()), "{kept}");
        }
        for dropped in [
            "envoy_cluster_lb_subsets_active",
            "envoy_cluster_version",
            "envoy_runtime_load_success",
            "envoy_cluster_membership_change",
        ] {
            assert!(!s.keeps(dropped.as_bytes()), "{dropped}");
        }
    }

    #[test]
    fn exclude_then_include_wins() {
        // Kuma's docs example: Basic, exclude `envoy_cluster_` by Regex, include one back.
        let s = rules(
            Profile::Basic,
            vec![m(MatchKind::Regex, "envoy_cluster_.*")],
            vec![m(
                MatchKind::Exact,
                "envoy_cluster_default_total_match_count",
            )],
        );
        assert!(!s.keeps(b"envoy_cluster_upstream_rq_total"));
        assert!(s.keeps(b"envoy_cluster_default_total_match_count"));
        assert!(s.keeps(b"envoy_server_live"));
        // None: only what include adds.
        let s = rules(
            Profile::None,
            vec![],
            vec![
                m(MatchKind::Prefix, "envoy_cluster_upstream_rq"),
                m(MatchKind::Contains, "cx_active"),
            ],
        );
        assert!(s.keeps(b"envoy_cluster_upstream_rq_total"));
        assert!(s.keeps(b"envoy_http_downstream_cx_active"));
        assert!(!s.keeps(b"envoy_server_live"));
        // All minus exclude.
        let s = rules(Profile::All, vec![m(MatchKind::Contains, "bytes")], vec![]);
        assert!(!s.keeps(b"envoy_cluster_upstream_cx_rx_bytes_total"));
        assert!(s.keeps(b"envoy_cluster_version"));
        assert!(!s.keeps_all());
    }

    #[test]
    fn many_contains_patterns_and_regexes_at_once() {
        let include: Vec<Matcher> = (0..200)
            .map(|i| m(MatchKind::Contains, &format!("family_{i:03}_")))
            .chain([m(MatchKind::Regex, "^a+$"), m(MatchKind::Regex, "b{2}c")])
            .collect();
        let s = rules(Profile::None, vec![], include);
        assert!(s.keeps(b"envoy_family_199_x"));
        assert!(!s.keeps(b"envoy_family_200_x"));
        assert!(s.keeps(b"aaa"));
        assert!(s.keeps(b"xbbcx"));
        assert!(!s.keeps(b"bc"));
    }

    #[test]
    fn envoy_renders_only_what_the_rules_can_keep() {
        let none = |include: Vec<Matcher>| FamilyRules {
            profile: Profile::None,
            exclude: vec![],
            include,
        };
        assert_eq!(
            envoy_filter(&none(vec![m(
                MatchKind::Regex,
                "envoy_cluster_upstream_rq_.*"
            )]))
            .as_deref(),
            Some("cluster.*upstream.*rq")
        );
        assert_eq!(
            envoy_filter(&none(vec![
                m(MatchKind::Prefix, "envoy_server_"),
                m(MatchKind::Contains, "voy_http_downstream"),
                m(MatchKind::Exact, "envoy_cluster_upstream_cx_total"),
            ]))
            .as_deref(),
            Some("cluster.*upstream.*cx.*total|http.*downstream|server")
        );
        // Nothing of Envoy's: a stat name is never empty.
        assert_eq!(envoy_filter(&none(vec![])).as_deref(), Some("^$"));
        // Stats of a custom namespace are rendered without `envoy_`: nothing is known.
        assert_eq!(
            envoy_filter(&none(vec![m(MatchKind::Prefix, "app_")])),
            None
        );
        // A tag extractor may take out a stat's leading segment: never anchored.
        let rbac = envoy_filter(&none(vec![m(MatchKind::Prefix, "envoy_rbac_")])).unwrap();
        assert!(
            regex_lite::Regex::new(&rbac)
                .unwrap()
                .is_match("my_rbac_prefix.rbac.allowed"),
            "{rbac}"
        );
        // What cannot be said: All (exclude only), an alternation, no literal.
        for include in [
            m(MatchKind::Regex, "a|b"),
            m(MatchKind::Regex, ".*rq"),
            m(MatchKind::Prefix, "env"),
            m(MatchKind::Contains, "envoy_"),
        ] {
            assert_eq!(
                envoy_filter(&none(vec![include.clone()])),
                None,
                "{include:?}"
            );
        }
        assert_eq!(
            envoy_filter(&FamilyRules {
                profile: Profile::All,
                exclude: vec![m(MatchKind::Contains, "x")],
                include: vec![],
            }),
            None
        );
        // Basic: Kuma's list, as stat-name literals.
        let basic = envoy_filter(&FamilyRules {
            profile: Profile::Basic,
            exclude: vec![],
            include: vec![],
        })
        .unwrap();
        assert!(
            basic.contains("server") && basic.contains("rq.*time"),
            "{basic}"
        );
        let re = regex_lite::Regex::new(&basic).unwrap();
        for stat in [
            "cluster.backend.upstream_rq_time",
            "server.live",
            "cluster.backend.membership_healthy",
            "http.ingress.downstream_cx_active",
        ] {
            assert!(re.is_match(stat), "{stat}");
        }
    }

    #[test]
    fn a_bad_regex_is_named_by_its_index() {
        let e = FamilySelection::new(&FamilyRules {
            profile: Profile::All,
            exclude: vec![m(MatchKind::Prefix, "x"), m(MatchKind::Regex, "(")],
            include: vec![],
        })
        .unwrap_err();
        assert_eq!(e.field, "exclude[1].match");
    }
}
