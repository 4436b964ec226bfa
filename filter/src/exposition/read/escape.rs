//! Escaping rules that differ between the formats, for the few strings we cannot copy verbatim.
//!
//! Label values escape `\\`, `\"` and `\n` in both formats, so they normally pass through as the
//! source wrote them. Two cases need work: an escape no parser agrees on (`\t`), which we keep as the
//! literal backslash Prometheus would have stored; and `# HELP` text, whose escapes differ (text:
//! `\\`, `\n`; OpenMetrics adds `\"`).

use crate::exposition::read::Format;

/// Appends a label value (raw, as between its quotes) with every escape that is not `\\`, `\"` or
/// `\n` turned into an escaped backslash followed by the character.
pub(crate) fn write_repaired_label_value(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\\' {
            match raw.get(i + 1) {
                Some(&e @ (b'\\' | b'"' | b'n')) => {
                    out.extend_from_slice(&[b'\\', e]);
                    i += 2;
                    continue;
                }
                _ => out.extend_from_slice(b"\\\\"),
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// Appends a label value given as plain (unescaped) text, escaped for either format.
pub(crate) fn write_escaped_label_value(value: &str, out: &mut Vec<u8>) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Appends HELP text read in `from` and written for `to`.
pub(crate) fn write_help(raw: &[u8], from: Format, to: Format, out: &mut Vec<u8>) {
    // A carriage return cannot be escaped in either format, and one before the newline reads as
    // a CRLF line end: help text is metadata, so CRs are left out of it.
    let needs_work = raw
        .iter()
        .any(|&b| b == b'\\' || b == b'\r' || (b == b'"' && to == Format::OpenMetrics));
    if !needs_work {
        out.extend_from_slice(raw);
        return;
    }
    let mut i = 0;
    while i < raw.len() {
        // Decode one character of the source's escaping.
        let (ch, used) = match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(b'\\')) => (b'\\', 2),
            (b'\\', Some(b'n')) => (b'\n', 2),
            (b'\\', Some(b'"')) if from == Format::OpenMetrics => (b'"', 2),
            (b, _) => (b, 1),
        };
        i += used;
        match ch {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if to == Format::OpenMetrics => out.extend_from_slice(b"\\\""),
            b'\r' => {}
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn help_loses_carriage_returns() {
        let mut out = Vec::new();
        write_help(b"a\rb\r\r", Format::Text, Format::Text, &mut out);
        assert_eq!(s(out), "ab");
    }

    #[test]
    fn repairs_only_unknown_escapes() {
        let mut out = Vec::new();
        write_repaired_label_value(br#"a\tb\\c\"d\ne"#, &mut out);
        assert_eq!(s(out), r#"a\\tb\\c\"d\ne"#);
    }

    #[test]
    fn escapes_plain_values() {
        let mut out = Vec::new();
        write_escaped_label_value("a\"b\\c\nd", &mut out);
        assert_eq!(s(out), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn help_between_formats() {
        let mut out = Vec::new();
        write_help(
            br#"say "hi" \\ \n"#,
            Format::Text,
            Format::OpenMetrics,
            &mut out,
        );
        assert_eq!(s(out), r#"say \"hi\" \\ \n"#);
        let mut out = Vec::new();
        write_help(
            br#"say \"hi\""#,
            Format::OpenMetrics,
            Format::Text,
            &mut out,
        );
        assert_eq!(s(out), r#"say "hi""#);
        let mut out = Vec::new();
        write_help(br"odd \t", Format::Text, Format::Text, &mut out);
        assert_eq!(s(out), r"odd \\t");
    }
}
