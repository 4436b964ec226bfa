//! Reading YAML files (one or many documents each, or a directory of them) into JSON values, each
//! remembering where it came from.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

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
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        docs.extend(parse(&text, &file)?);
    }
    Ok(docs)
}

/// Parses YAML text (for `file`) into documents; empty documents are skipped.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Document>> {
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
