//! `docs/configuration.md` checked against the code: every documented field and annotation is
//! read (no "unknown field" warning, no error) and changes the effective configuration.

use std::path::Path;

use meshmetrics::resources::yaml::{parse, to_yaml_text};
use meshmetrics::{Resources, effective};
use serde_json::{Value, json};

fn page() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("read docs/configuration.md")
}

/// The table rows between `<!-- reference:<name> -->` markers, as cells without backticks.
fn rows(page: &str, name: &str) -> Vec<Vec<String>> {
    let start = page
        .find(&format!("<!-- reference:{name} -->"))
        .expect("start marker");
    let end = page
        .find(&format!("<!-- /reference:{name} -->"))
        .expect("end marker");
    page[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

/// A YAML flow value (`9100`, `{team: a}`, `"false"`) as JSON.
fn value(example: &str) -> Value {
    let docs = parse(&format!("v: {example}\n"), Path::new("example")).expect("example parses");
    docs[0].value["v"].clone()
}

/// The effective configuration of dataplane `dp`, failing on any diagnostic.
fn effective_json(docs: &[Value]) -> Value {
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", to_yaml_text(d)))
        .collect();
    let res = Resources::read(&parse(&text, Path::new("reference.yaml")).expect("YAML"));
    assert!(res.diagnostics.0.is_empty(), "{}\n{text}", res.diagnostics);
    let (e, diags) = effective(&res, "dp").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(diags.0.is_empty(), "{diags}\n{text}");
    e.to_json()
}

fn mesh(conf: Value) -> Value {
    json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]},
        "metrics": {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus", "conf": conf}]}})
}

const DATAPLANE: &str = r#"{"type": "Dataplane", "mesh": "default", "name": "dp",
    "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}}"#;

#[test]
fn every_documented_conf_field_is_read_and_matters() {
    let rows = rows(&page(), "conf");
    assert!(rows.len() >= 10, "{rows:?}");
    let dataplane: Value = serde_json::from_str(DATAPLANE).expect("JSON");
    for row in rows {
        let (field, example) = (&row[0], value(&row[3]));
        let (base, with) = match field.strip_prefix("aggregate[].") {
            Some(key) => {
                let entry = json!({"name": "app", "port": 9000});
                let mut changed = entry.clone();
                changed[key] = example;
                (
                    json!({"aggregate": [entry]}),
                    json!({"aggregate": [changed]}),
                )
            }
            None => {
                let mut with = json!({});
                let mut at = &mut with;
                let parts: Vec<&str> = field.split('.').collect();
                for p in &parts[..parts.len() - 1] {
                    at = &mut at[*p];
                    *at = json!({});
                }
                at[parts[parts.len() - 1]] = example;
                (json!({}), with)
            }
        };
        let a = effective_json(&[mesh(base), dataplane.clone()]);
        let b = effective_json(&[mesh(with.clone()), dataplane.clone()]);
        assert_ne!(a, b, "documented {field} ({with}) changes nothing");
        // The same field in a Dataplane's own metrics is read as well.
        let mut dp = dataplane.clone();
        dp["metrics"] = json!({"type": "prometheus", "conf": with});
        effective_json(&[
            mesh(json!({"aggregate": [{"name": "app", "port": 9000}]})),
            dp,
        ]);
    }
}

#[test]
fn every_documented_annotation_is_read_and_matters() {
    let rows = rows(&page(), "annotations");
    assert_eq!(rows.len(), 6, "{rows:?}");
    let pod = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "dp", "namespace": "ns", "annotations": annotations},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
            "status": {"podIP": "10.0.0.1"}})
    };
    let base_mesh = mesh(json!({"aggregate": [{"name": "app", "port": 9000}]}));
    let base = effective_json(&[base_mesh.clone(), pod(json!({}))]);
    for row in rows {
        let name = row[0].replace("<name>", "app");
        let example = value(&row[1]);
        let changed = effective_json(&[base_mesh.clone(), pod(json!({ name.clone(): example }))]);
        assert_ne!(base, changed, "documented {name} changes nothing");
    }
}
