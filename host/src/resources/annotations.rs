//! `prometheus.metrics.kuma.io/*` pod annotations, read into metrics overrides.
//!
//! - `port`, `path`: the endpoint's port and path;
//! - `aggregate-<name>-port|path|enabled|address`: add or change the aggregate entry `<name>`
//!   (`<name>` is `[a-zA-Z0-9-]+`). Each annotation sets one field; fields not given keep the value
//!   the mesh or Dataplane gave the entry (path defaults to `/metrics`).

use super::dataplane::ANNOTATION_PREFIX;
use super::metrics::{AggregateConf, PrometheusConf, check_path};
use super::reader::{Ctx, parse_port};

/// Overrides read from annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub port: Option<u16>,
    pub path: Option<String>,
    /// Per entry name: the fields the annotations set.
    pub aggregate: Vec<AggregateConf>,
}

fn parse_enabled(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "enabled" => Some(true),
        "false" | "no" | "disabled" => Some(false),
        _ => None,
    }
}

/// Reads the annotations; each bad value is an error naming the annotation.
pub fn read(ctx: &mut Ctx<'_>, annotations: &[(String, String)]) -> Overrides {
    let mut o = Overrides::default();
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let field = format!("metadata.annotations[{key:?}]");
        let port = |ctx: &mut Ctx<'_>| {
            let p = parse_port(&serde_json::Value::String(value.clone()));
            if p.is_none() {
                ctx.error(&field, format!("{value:?} is not a port (1-65535)"));
            }
            p
        };
        match rest {
            "port" => o.port = port(ctx),
            "path" => {
                o.path = Some(value.clone());
                check_path(ctx, &field, &o.path);
            }
            _ => {
                let parsed = rest.strip_prefix("aggregate-").and_then(|r| {
                    let (name, attr) = r.rsplit_once('-')?;
                    let valid = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    valid.then_some((name, attr))
                });
                let Some((name, attr)) = parsed else {
                    ctx.warn(&field, "unknown annotation, ignored (port, path, aggregate-<name>-port|path|enabled|address)");
                    continue;
                };
                let idx = match o.aggregate.iter().position(|a| a.name == name) {
                    Some(i) => i,
                    None if name == super::names::ENVOY_SOURCE => {
                        ctx.error(
                            &field,
                            "\"envoy\" names Envoy's own stats in the scrape: pick another name",
                        );
                        continue;
                    }
                    None => {
                        o.aggregate.push(AggregateConf {
                            name: name.to_owned(),
                            ..AggregateConf::default()
                        });
                        o.aggregate.len() - 1
                    }
                };
                match attr {
                    "port" => o.aggregate[idx].port = port(ctx),
                    "path" => {
                        o.aggregate[idx].path = Some(value.clone());
                        check_path(ctx, &field, &o.aggregate[idx].path);
                    }
                    "address" => {
                        if let Some(problem) = super::names::host_problem(value) {
                            ctx.error(&field, problem);
                        }
                        o.aggregate[idx].address = Some(value.clone());
                    }
                    "enabled" => match parse_enabled(value) {
                        Some(b) => o.aggregate[idx].enabled = Some(b),
                        None => ctx.error(&field, format!("{value:?} is not a boolean (true/yes/enabled, false/no/disabled)")),
                    },
                    other => ctx.warn(&field, format!("unknown aggregate attribute {other:?}, ignored (port, path, enabled, address)")),
                }
            }
        }
    }
    o
}

impl Overrides {
    /// Applies these overrides on top of a conf, field by field.
    pub fn apply(&self, conf: &mut PrometheusConf) {
        if self.port.is_some() {
            conf.port = self.port;
        }
        if self.path.is_some() {
            conf.path.clone_from(&self.path);
        }
        for a in &self.aggregate {
            match conf.aggregate.iter_mut().find(|e| e.name == a.name) {
                Some(e) => {
                    e.port = a.port.or(e.port);
                    e.path = a.path.clone().or(e.path.take());
                    e.address = a.address.clone().or(e.address.take());
                    e.enabled = a.enabled.or(e.enabled);
                }
                None => conf.aggregate.push(a.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diagnostics;

    fn read_all(pairs: &[(&str, &str)]) -> (Overrides, Vec<String>) {
        let mut diags = Diagnostics::default();
        let mut ctx = Ctx {
            resource: "Pod web.shop".into(),
            diags: &mut diags,
        };
        let a: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let o = read(&mut ctx, &a);
        (o, diags.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn reads_each_kind() {
        let (o, errs) = read_all(&[
            ("prometheus.metrics.kuma.io/port", "1234"),
            ("prometheus.metrics.kuma.io/path", "/stats"),
            ("prometheus.metrics.kuma.io/aggregate-my-app-port", "8080"),
            ("prometheus.metrics.kuma.io/aggregate-my-app-enabled", "yes"),
            (
                "prometheus.metrics.kuma.io/aggregate-sidecar-enabled",
                "disabled",
            ),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(o.port, Some(1234));
        assert_eq!(o.path.as_deref(), Some("/stats"));
        assert_eq!(o.aggregate[0].name, "my-app");
        assert_eq!(
            (o.aggregate[0].port, o.aggregate[0].enabled),
            (Some(8080), Some(true))
        );
        assert_eq!(o.aggregate[1].enabled, Some(false));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let (_, errs) = read_all(&[
            ("prometheus.metrics.kuma.io/port", "http"),
            ("prometheus.metrics.kuma.io/aggregate-app-enabled", "maybe"),
            ("prometheus.metrics.kuma.io/aggregate-app-path", "metrics"),
        ]);
        assert_eq!(
            errs,
            [
                "error: Pod web.shop: metadata.annotations[\"prometheus.metrics.kuma.io/port\"]: \"http\" is not a port (1-65535)",
                "error: Pod web.shop: metadata.annotations[\"prometheus.metrics.kuma.io/aggregate-app-enabled\"]: \"maybe\" is not a boolean (true/yes/enabled, false/no/disabled)",
                "error: Pod web.shop: metadata.annotations[\"prometheus.metrics.kuma.io/aggregate-app-path\"]: \"metrics\" does not start with '/'",
            ]
        );
    }
}
