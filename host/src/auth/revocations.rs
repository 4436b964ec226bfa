//! Revoked dataplane tokens, by `jti`: a file of token ids separated by newlines, commas or
//! blanks (`#` starts a comment), watched like the resources. Kuma checks its list only when a
//! proxy connects; here an open stream whose token is revoked is closed within a poll.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

/// A list longer than this is not a revocation list.
const MAX_FILE: u64 = 16 << 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Revocations(HashSet<String>);

impl Revocations {
    pub fn load(path: &Path) -> Result<Revocations> {
        let text = super::read_bounded(path, MAX_FILE, "--revocations")?;
        Ok(Revocations::parse(&text))
    }

    pub fn parse(text: &str) -> Revocations {
        Revocations(
            text.lines()
                .map(|l| l.split_once('#').map_or(l, |(before, _)| before))
                .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.0.contains(jti)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_by_line_comma_or_blank_and_comments_ignored() {
        let r = Revocations::parse("a1, b2\n# c3\nd4 e5 # f6\n\n");
        for id in ["a1", "b2", "d4", "e5"] {
            assert!(r.contains(id), "{id}");
        }
        assert!(!r.contains("c3") && !r.contains("f6") && !r.contains(""));
        assert_eq!(r.len(), 4);
    }
}
