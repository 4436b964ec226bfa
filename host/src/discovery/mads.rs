//! The MADS wire format (Kuma's Monitoring Assignment Discovery Service, v3 REST): a JSON
//! `DiscoveryRequest` in, a `DiscoveryResponse` out, long-polled. Field names are snake_case as
//! protobuf JSON writes them; camelCase (what Go's protojson sends by default) is accepted too.

use std::time::Duration;

use serde_json::{Value, json};

use super::assignments::{Assignment, TYPE_URL};

/// What a client asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryRequest {
    /// The version the client has; equal to ours means "answer when it changes".
    pub version_info: String,
    pub node_id: String,
    /// Only these meshes (empty: all). Kuma's client sends none. A set: a request that lists
    /// 200,000 names costs one lookup per assignment, not names × assignments.
    pub resource_names: std::collections::HashSet<String>,
}

fn field<'a>(v: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    v.get(snake).or_else(|| v.get(camel))
}

impl DiscoveryRequest {
    pub fn parse(body: &[u8]) -> Result<DiscoveryRequest, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DiscoveryRequest::default());
        }
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if !v.is_object() {
            return Err("the body must be a JSON object (a DiscoveryRequest)".into());
        }
        if let Some(t) = field(&v, "type_url", "typeUrl").and_then(Value::as_str)
            && !t.is_empty()
            && t != TYPE_URL
        {
            return Err(format!(
                "type_url {t:?} is not served here (want {TYPE_URL})"
            ));
        }
        let version_info = match field(&v, "version_info", "versionInfo") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("version_info must be a string, not {other}")),
        };
        let node_id = field(&v, "node", "node")
            .and_then(|n| n.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let resource_names = field(&v, "resource_names", "resourceNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(DiscoveryRequest {
            version_info,
            node_id,
            resource_names,
        })
    }
}

/// The answer for `version` with these assignments, for the client `client` (its node id).
pub fn response(
    version: &str,
    assignments: &[Assignment],
    meshes: &std::collections::HashSet<String>,
    client: &str,
) -> Value {
    let resources: Vec<Value> = assignments
        .iter()
        .filter(|a| a.for_client(client))
        .filter(|a| meshes.is_empty() || meshes.contains(&a.mesh))
        .map(Assignment::to_mads)
        .collect();
    json!({
        "version_info": version,
        "resources": resources,
        "type_url": TYPE_URL,
        "nonce": version,
    })
}

/// The longest a MADS long-poll is held (`fetch-timeout`); longer is refused (400).
pub const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// A Go-style duration (`30s`, `1m`, `500ms`, `1m30s`), as Prometheus writes `fetch-timeout`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let total = crate::duration::parse(s)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 1m, 500ms)"))?;
    if total > MAX_FETCH_TIMEOUT {
        return Err(format!("{s:?} is longer than the 5m a long-poll may hold"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("11m").is_err());
    }
}
