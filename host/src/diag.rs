//! Diagnostics: every problem found in the resources, each naming the resource, the field and the
//! reason (`Mesh default: spec.metrics.backends[0].conf.port: 70000 is not a port`). Validation
//! collects them all instead of stopping at the first.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `Mesh default`, `Dataplane backend-1`, `Pod web-0.shop`...
    pub resource: String,
    /// Field path as written in the document, e.g. `spec.metrics.backends[0].conf.port`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.field.is_empty() {
            write!(f, "{level}: {}: {}", self.resource, self.reason)
        } else {
            write!(
                f,
                "{level}: {}: {}: {}",
                self.resource, self.field, self.reason
            )
        }
    }
}

/// A list of diagnostics, and whether any is an error.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(
        &mut self,
        severity: Severity,
        resource: &str,
        field: &str,
        reason: impl Into<String>,
    ) {
        self.0.push(Diagnostic {
            severity,
            resource: resource.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        });
    }

    pub fn error(&mut self, resource: &str, field: &str, reason: impl Into<String>) {
        self.push(Severity::Error, resource, field, reason);
    }

    pub fn warn(&mut self, resource: &str, field: &str, reason: impl Into<String>) {
        self.push(Severity::Warning, resource, field, reason);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Adds the diagnostics not already present (several dataplanes share their mesh's).
    pub fn merge_unique(&mut self, other: Diagnostics) {
        for d in other.0 {
            if !self.0.contains(&d) {
                self.0.push(d);
            }
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The resources had errors; carries every diagnostic (warnings too) for the report.
#[derive(Debug)]
pub struct Invalid(pub Diagnostics);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.errors().count();
        writeln!(
            f,
            "{n} error{} in the resources:",
            if n == 1 { "" } else { "s" }
        )?;
        for d in self.0.errors() {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// The longest piece of a stranger's string a log line quotes.
pub const UNTRUSTED_LOG_CHARS: usize = 128;

/// A string a client sent (a node id, a NACK's message), fit for one log line: control
/// characters and quotes escaped, at most [`UNTRUSTED_LOG_CHARS`] characters, and how much was
/// cut. A newline in a node id cannot forge a second log line, nor 4 MiB of metadata fill the log.
pub fn untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(UNTRUSTED_LOG_CHARS) + 16);
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == UNTRUSTED_LOG_CHARS {
            out.push_str(&format!("…(+{} bytes)", s.len() - i));
            return out;
        }
        // Control characters, quotes, and what makes a line read other than it is: line and
        // paragraph separators, bidirectional overrides and isolates, zero-width marks.
        let deceptive = matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        );
        if c.is_control() || deceptive || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod untrusted_tests {
    use super::*;

    #[test]
    fn escapes_and_bounds_a_strangers_string() {
        assert_eq!(untrusted("default/backend-1"), "default/backend-1");
        assert_eq!(
            untrusted("a\nFAKE LINE\r\"x\\"),
            "a\\nFAKE LINE\\r\\\"x\\\\"
        );
        assert_eq!(
            untrusted("ok\u{202e}kcab\u{2028}x"),
            "ok\\u{202e}kcab\\u{2028}x"
        );
        let long = "x".repeat(4 << 20);
        let u = untrusted(&long);
        assert!(
            u.len() < 200 && u.ends_with(&format!("…(+{} bytes)", (4 << 20) - 128)),
            "{u}"
        );
    }
}
