//! What names, addresses and paths may be: whatever `validate` accepts must also be accepted by
//! the bootstrap, the filter and Envoy, and no file path is ever built from an unchecked name.

use std::net::IpAddr;

/// Longest resource name (a DNS subdomain, as Kubernetes and Kuma allow).
const MAX_NAME: usize = 253;

/// The source name the filter gives Envoy's own stats: no aggregate may take it.
pub const ENVOY_SOURCE: &str = "envoy";

/// Why `name` cannot name a Mesh, Dataplane, TrafficPermission or namespace (Kuma's rules: a
/// DNS-subdomain-like name), or `None` when it can. Such names end up in file names, Envoy
/// cluster names and label values: `/`, `..`, blanks and control characters never pass.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_NAME {
        return Some(format!("is {} characters, over {MAX_NAME}", name.len()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if let Some(c) = name.chars().find(|&c| !ok_char(c)) {
        return Some(format!(
            "{name:?} has {c:?}: a name is letters, digits, '-', '.' and '_'"
        ));
    }
    if name.contains("..") || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(format!(
            "{name:?} must start with a letter or digit and not contain \"..\""
        ));
    }
    None
}

/// Why `address` cannot be an aggregate's address (an IP, or a DNS name Envoy resolves), or
/// `None`. A URL (`http://x/y`) or anything with a port or path is refused.
pub fn host_problem(address: &str) -> Option<String> {
    if address.parse::<IpAddr>().is_ok() {
        return None;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if address.len() <= MAX_NAME && address.split('.').all(label_ok) {
        return None;
    }
    Some(format!(
        "{address:?} is neither an IP address nor a host name (no scheme, port or path)"
    ))
}

/// Why `address` cannot be a dataplane's address: the metrics listener binds to it, so it must
/// be an IP (Envoy refuses to bind a name).
pub fn ip_problem(address: &str) -> Option<String> {
    match address.parse::<IpAddr>() {
        Ok(_) => None,
        Err(_) => Some(format!(
            "{address:?} is not an IP address (the metrics listener binds to it)"
        )),
    }
}

/// Why `path` cannot be an HTTP path of the metrics endpoint or an app, or `None`.
pub fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("{path:?} does not start with '/'"));
    }
    if path.len() > 1024 {
        return Some(format!("is {} characters, over 1024", path.len()));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
    {
        return Some(format!(
            "{path:?} has {c:?}: a path has no blanks, control characters, query or fragment"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_problem("backend-1.default_x"), None);
        for bad in [
            "",
            "../../escaped",
            "a/b",
            "a..b",
            ".hidden",
            "a b",
            "a\nb",
            "é",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(name_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn hosts_and_ips() {
        for ok in ["10.0.0.1", "::1", "app.default.svc", "localhost"] {
            assert_eq!(host_problem(ok), None, "{ok}");
        }
        for bad in ["http://x/y", "x:80", "a..b", "-a", ""] {
            assert!(host_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(ip_problem("192.168.0.1"), None);
        assert!(ip_problem("backend.local").is_some());
    }

    #[test]
    fn paths() {
        assert_eq!(path_problem("/metrics/prometheus"), None);
        for bad in ["metrics", "/a\nb", "/a b", "/m?x=1", "/m#f"] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }
}
