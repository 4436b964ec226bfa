//! Reading YAML files (one or many documents each, or a directory of them) into JSON values, each
//! remembering where it came from.
//!
//! Bounded, because a file is outside input: at most [`MAX_FILE_BYTES`] per file and
//! [`MAX_TOTAL_BYTES`] per load, nesting at most [`MAX_DEPTH`] deep, and at most [`MAX_NODES`]
//! nodes once aliases are expanded. yaml-rust2 expands an alias by copying its anchor's node, so
//! an 800-byte "billion laughs" document would take gigabytes: the event stream is measured
//! first, before anything is built.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

/// Largest resource file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Largest total of the files one load reads (a directory included).
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Deepest nesting of a document.
pub const MAX_DEPTH: usize = 64;
/// Most nodes of a file once its aliases are expanded.
pub const MAX_NODES: u64 = 1_000_000;

/// One YAML document and its origin.
#[derive(Clone, Debug)]
pub struct Document {
    pub file: PathBuf,
    /// 0-based index of the document in its file.
    pub index: usize,
    pub value: Value,
}

/// Reads every document of every file; a directory contributes its `.yaml`/`.yml` files (not
/// recursively), in name order.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Document>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    let mut docs = Vec::new();
    let mut total = 0u64;
    for file in files {
        let size = std::fs::metadata(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .len();
        if size > MAX_FILE_BYTES {
            bail!(
                "{}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit of a resource file",
                file.display()
            );
        }
        total += size;
        if total > MAX_TOTAL_BYTES {
            bail!(
                "{}: the files read add up to over {MAX_TOTAL_BYTES} bytes",
                file.display()
            );
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        docs.extend(parse(&text, &file)?);
    }
    Ok(docs)
}

/// Counts what a YAML text expands to, from its events, without building it.
#[derive(Default)]
struct Measure {
    /// Nodes so far, aliases counted as the nodes they copy.
    nodes: u64,
    depth: usize,
    /// Open collections: their anchor and the node count where they started.
    open: Vec<(usize, u64)>,
    /// Anchor id → the nodes its node holds.
    anchors: std::collections::HashMap<usize, u64>,
    error: Option<String>,
}

impl MarkedEventReceiver for Measure {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(_, _, anchor, _) => {
                self.nodes += 1;
                if anchor != 0 {
                    self.anchors.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                self.nodes += self.anchors.get(&anchor).copied().unwrap_or(1);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.nodes += 1;
                self.depth += 1;
                self.open.push((anchor, self.nodes));
                if self.depth > MAX_DEPTH {
                    self.error = Some(format!(
                        "line {}: nested deeper than {MAX_DEPTH} levels",
                        mark.line()
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.depth = self.depth.saturating_sub(1);
                if let Some((anchor, start)) = self.open.pop()
                    && anchor != 0
                {
                    self.anchors.insert(anchor, self.nodes - start + 1);
                }
            }
            _ => {}
        }
        if self.nodes > MAX_NODES {
            self.error = Some(format!(
                "line {}: more than {MAX_NODES} nodes once aliases are expanded (an alias bomb?)",
                mark.line()
            ));
        }
    }
}

fn measure(text: &str) -> Result<(), String> {
    let mut m = Measure::default();
    Parser::new_from_str(text)
        .load(&mut m, true)
        .map_err(|e| e.to_string())?;
    m.error.map_or(Ok(()), Err)
}

/// Parses YAML text (for `file`) into documents; empty documents are skipped.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Document>> {
    measure(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let yamls =
        YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut docs = Vec::new();
    for (index, y) in yamls.iter().enumerate() {
        if matches!(y, Yaml::Null) {
            continue;
        }
        let value =
            to_json(y).with_context(|| format!("{}: document {}", file.display(), index + 1))?;
        docs.push(Document {
            file: file.to_path_buf(),
            index,
            value,
        });
    }
    Ok(docs)
}

fn to_json(y: &Yaml) -> Result<Value> {
    Ok(match y {
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(r.clone()),
        },
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect::<Result<_>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                m.insert(key, to_json(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) => bail!("YAML aliases are not supported"),
    })
}

/// Writes a JSON value as YAML text (for the generated Envoy bootstrap).
pub fn to_yaml_text(value: &Value) -> String {
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    // Emitting into a String cannot fail.
    let _ = emitter.dump(&from_json(value));
    out.push('\n');
    out
}

fn from_json(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(from_json).collect()),
        Value::Object(m) => Yaml::Hash(
            m.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_round_trip() {
        let docs = parse("a: 1\n---\n---\nb: [x, {c: true}]\n", Path::new("t.yaml")).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        assert_eq!(docs[1].value, serde_json::json!({"b": ["x", {"c": true}]}));
        let v = serde_json::json!({"@type": "x", "n": 5, "s": "{\"json\": 1}", "l": [1.5]});
        let back = parse(&to_yaml_text(&v), Path::new("o.yaml")).unwrap();
        assert_eq!(back[0].value, v);
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = parse("a: [1\n", Path::new("bad.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }
}
