//! The labels a source's samples get: rendered once per configuration, copied per sample.

use std::fmt;

use crate::exposition::read::escape::write_escaped_label_value;
use crate::exposition::read::names::is_legacy_label_name;

/// Labels added, in this order, before each sample's own labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<Box<[u8]>>,
    /// `{a="x",b="y",`, ready to copy: a sample's `{` and the comma before its own labels come
    /// with it, one copy per sample instead of three.
    framed: Vec<u8>,
}

/// A label that cannot be added to samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    InvalidName(String),
    Duplicate(String),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::InvalidName(n) => {
                write!(f, "{n:?} is not a label name (want [a-zA-Z_][a-zA-Z0-9_]*)")
            }
            LabelError::Duplicate(n) => write!(f, "label {n:?} is given twice"),
        }
    }
}

impl std::error::Error for LabelError {}

impl LabelSet {
    /// Builds the set from `(name, value)` pairs, values given unescaped.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<LabelSet, LabelError> {
        let mut set = LabelSet::default();
        set.framed.push(b'{');
        for (name, value) in pairs {
            let name = name.as_ref();
            if !is_legacy_label_name(name.as_bytes()) || name.starts_with("__") {
                return Err(LabelError::InvalidName(name.to_owned()));
            }
            if set.contains(name.as_bytes()) {
                return Err(LabelError::Duplicate(name.to_owned()));
            }
            set.framed.extend_from_slice(name.as_bytes());
            set.framed.extend_from_slice(b"=\"");
            write_escaped_label_value(value.as_ref(), &mut set.framed);
            set.framed.extend_from_slice(b"\",");
            set.names.push(name.as_bytes().into());
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Asked for each label of each sample: word compares, not wasm's byte-loop `memcmp`.
    #[inline]
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.names
            .iter()
            .any(|n| crate::exposition::read::bytes::eq(n, name))
    }

    /// `a="x",b="y"` (empty for no labels).
    #[inline]
    pub(crate) fn rendered(&self) -> &[u8] {
        self.framed
            .get(1..self.framed.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// `{a="x",b="y",`: what a sample with labels of its own gets after its name.
    #[inline]
    pub(crate) fn framed(&self) -> &[u8] {
        &self.framed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped() {
        let s = LabelSet::new([("mesh", "default"), ("service", "a\"b")]).unwrap();
        assert_eq!(s.rendered(), br#"mesh="default",service="a\"b""#);
        assert_eq!(s.framed(), br#"{mesh="default",service="a\"b","#);
        assert_eq!(LabelSet::default().rendered(), b"");
        assert!(s.contains(b"mesh") && !s.contains(b"mes"));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(
            LabelSet::new([("kuma.io/zone", "x")]),
            Err(LabelError::InvalidName("kuma.io/zone".into()))
        );
        assert!(LabelSet::new([("__name__", "x")]).is_err());
        assert_eq!(
            LabelSet::new([("a", "1"), ("a", "2")]),
            Err(LabelError::Duplicate("a".into()))
        );
    }
}
