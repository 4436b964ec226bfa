//! Walking a resource's fields: typed getters that record a diagnostic (resource, field path,
//! reason) instead of failing, and a check that warns about fields we do not know — the typo
//! `usedonly` for `usedOnly` is silently ignored by Kuma and costs its users hours.

use serde_json::{Map, Value};

use crate::diag::Diagnostics;

/// Reads one object of a resource, remembering which keys were asked for.
pub struct Obj<'a> {
    pub map: Option<&'a Map<String, Value>>,
    pub path: String,
    known: Vec<&'static str>,
}

/// Where diagnostics go, and the resource they are about.
pub struct Ctx<'d> {
    pub resource: String,
    pub diags: &'d mut Diagnostics,
}

impl Ctx<'_> {
    pub fn error(&mut self, field: &str, reason: impl Into<String>) {
        self.diags.error(&self.resource, field, reason);
    }
    pub fn warn(&mut self, field: &str, reason: impl Into<String>) {
        self.diags.warn(&self.resource, field, reason);
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl<'a> Obj<'a> {
    /// Reads `v` as an object at `path`; an absent (null) value is an empty object.
    pub fn new(ctx: &mut Ctx<'_>, v: Option<&'a Value>, path: &str) -> Obj<'a> {
        let map = match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                ctx.error(path, format!("must be a mapping, not {}", kind_of(other)));
                None
            }
        };
        Obj {
            map,
            path: path.to_owned(),
            known: Vec::new(),
        }
    }

    pub fn is_present(&self) -> bool {
        self.map.is_some()
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key`, marking it known.
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map?.get(key).filter(|v| !v.is_null())
    }

    pub fn obj(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Obj<'a> {
        let v = self.raw(key);
        Obj::new(ctx, v, &self.field(key))
    }

    pub fn string(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                ctx.error(
                    &self.field(key),
                    format!("must be a string, not {}", kind_of(other)),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                ctx.error(
                    &self.field(key),
                    format!("must be true or false, not {other}"),
                );
                None
            }
        }
    }

    /// A TCP port: 1..65535, as a number or a numeric string.
    pub fn port(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<u16> {
        let v = self.raw(key)?;
        let field = self.field(key);
        parse_port(v).or_else(|| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ctx.error(&field, format!("{shown} is not a port (1-65535)"));
            None
        })
    }

    /// A list of objects.
    pub fn list(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Vec<Obj<'a>> {
        let field = self.field(key);
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Obj::new(ctx, Some(item), &format!("{field}[{i}]")))
                .collect(),
            Some(other) => {
                ctx.error(&field, format!("must be a list, not {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    /// A mapping of strings to strings (tags, labels, annotations).
    pub fn string_map(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Vec<(String, String)> {
        let field = self.field(key);
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Some((k.clone(), v.to_string())),
                    other => {
                        ctx.error(
                            &join(&field, k),
                            format!("must be a string, not {}", kind_of(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                ctx.error(&field, format!("must be a mapping, not {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    /// Marks keys as known without reading them (fields of other products in the same resource).
    pub fn ignore(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    /// An error for every key that was not asked for (resources whose every field we know,
    /// where a misplaced field silently changes what the resource means).
    pub fn finish_strict(self, ctx: &mut Ctx<'_>) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !self.known.contains(&key.as_str()) {
                ctx.error(&join(&self.path, key), "unknown field");
            }
        }
    }

    /// Warns about every key that was not asked for.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if self.known.contains(&key.as_str()) {
                continue;
            }
            let hint = self
                .known
                .iter()
                .find(|k| {
                    k.eq_ignore_ascii_case(key)
                        || k.replace('_', "")
                            .eq_ignore_ascii_case(&key.replace(['_', '-'], ""))
                })
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            ctx.warn(
                &join(&self.path, key),
                format!("unknown field, ignored{hint}"),
            );
        }
    }
}

pub fn parse_port(v: &Value) -> Option<u16> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_errors_and_unknown_fields() {
        let mut diags = Diagnostics::default();
        let mut ctx = Ctx {
            resource: "Mesh default".into(),
            diags: &mut diags,
        };
        let v = json!({"port": 70000, "usedonly": true, "path": 5, "flag": "yes"});
        let mut o = Obj::new(&mut ctx, Some(&v), "spec.conf");
        assert_eq!(o.port(&mut ctx, "port"), None);
        assert_eq!(o.bool(&mut ctx, "flag"), None);
        assert_eq!(o.string(&mut ctx, "path").as_deref(), Some("5"));
        o.raw("usedOnly");
        o.finish(&mut ctx);
        let text: Vec<String> = diags.0.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "error: Mesh default: spec.conf.port: 70000 is not a port (1-65535)",
                "error: Mesh default: spec.conf.flag: must be true or false, not \"yes\"",
                "warning: Mesh default: spec.conf.usedonly: unknown field, ignored (did you mean \"usedOnly\"?)",
            ]
        );
    }
}
