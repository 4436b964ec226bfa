//! Character classes of Prometheus names, as lookup tables: the scanner asks them for every byte of
//! every metric and label name, so a table load beats a chain of range comparisons.

const METRIC_START: u8 = 1;
const METRIC_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut v = 0;
        if alpha || b == b':' {
            v |= METRIC_START | METRIC_CONT;
        }
        if digit {
            v |= METRIC_CONT | LABEL_CONT;
        }
        if alpha {
            v |= LABEL_START | LABEL_CONT;
        }
        t[c] = v;
        c += 1;
    }
    t
};

/// Length of the longest prefix of `s` that is a legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
#[inline]
pub(crate) fn metric_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if CLASS[b as usize] & METRIC_START != 0 => {}
        _ => return 0,
    }
    1 + metric_name_cont_len(&s[1..])
}

/// Length of the longest prefix of `s` made of characters allowed after a metric name's first.
#[inline]
pub(crate) fn metric_name_cont_len(s: &[u8]) -> usize {
    s.iter()
        .take_while(|&&b| CLASS[b as usize] & METRIC_CONT != 0)
        .count()
}

/// Length of the longest prefix of `s` that is a legacy label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
#[inline]
pub(crate) fn label_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if CLASS[b as usize] & LABEL_START != 0 => {}
        _ => return 0,
    }
    1 + s[1..]
        .iter()
        .take_while(|&&b| CLASS[b as usize] & LABEL_CONT != 0)
        .count()
}

/// Whether `b` may follow the first character of a legacy label name.
#[inline]
pub(crate) fn is_label_cont(b: u8) -> bool {
    CLASS[b as usize] & LABEL_CONT != 0
}

/// Whether `s` is a metric name every Prometheus parser accepts unquoted.
pub(crate) fn is_legacy_metric_name(s: &[u8]) -> bool {
    !s.is_empty() && metric_name_len(s) == s.len()
}

/// Whether `s` is a label name every Prometheus parser accepts unquoted.
pub fn is_legacy_label_name(s: &[u8]) -> bool {
    !s.is_empty() && label_name_len(s) == s.len()
}

/// Writes a name, in double quotes unless it is `legacy` (the UTF-8 form `"my.metric"`).
pub(crate) fn write_name(name: &[u8], legacy: bool, out: &mut Vec<u8>) {
    if legacy {
        out.extend_from_slice(name);
    } else {
        out.push(b'"');
        out.extend_from_slice(name);
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        assert!(is_legacy_metric_name(b"envoy_cluster:rate5m"));
        assert!(is_legacy_metric_name(b"_x"));
        assert!(!is_legacy_metric_name(b"1x"));
        assert!(!is_legacy_metric_name(b"my.metric"));
        assert!(!is_legacy_metric_name(b""));
        assert_eq!(metric_name_len(b"a_b{c"), 3);
    }

    #[test]
    fn label_names() {
        assert!(is_legacy_label_name(b"envoy_cluster_name"));
        assert!(!is_legacy_label_name(b"a:b"));
        assert!(!is_legacy_label_name(b"0a"));
        assert_eq!(label_name_len(b"le=\""), 2);
    }
}
