//! The engine's layout is its pipeline (ARCHITECTURE.md): `read` ← `decide` ← `write` ← `merge`.
//! A file may use its own layer and the ones before it, never a later one, and the files' uses
//! form no circle. Read from the sources, so a move that breaks the direction fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 4] = ["read", "decide", "write", "merge"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/exposition")
}

/// Every engine file under a layer, by its path from `src/exposition`, without its tests.
fn files() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for layer in LAYERS {
        let dir = root().join(layer);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                let name = format!("{layer}/{}", path.file_name().unwrap().to_string_lossy());
                out.insert(name, code);
            }
        }
    }
    out
}

/// The engine files `code` uses: `crate::exposition::<layer>::<file>` paths (an item a layer's
/// `mod.rs` re-exports counts as a use of that `mod.rs`).
fn uses(code: &str, files: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::exposition::") {
        let rest = &code[at + "crate::exposition::".len()..];
        let mut parts = rest.split("::");
        let layer = parts.next().unwrap_or("");
        let layer: String = layer
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !LAYERS.contains(&layer.as_str()) {
            continue;
        }
        let next: String = parts
            .next()
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let file = format!("{layer}/{next}.rs");
        out.insert(if files.contains_key(&file) {
            file
        } else {
            format!("{layer}/mod.rs")
        });
    }
    out
}

/// Whether `code` names an item through `crate::exposition::` itself rather than a layer.
fn uses_root(code: &str) -> bool {
    code.match_indices("crate::exposition::").any(|(at, _)| {
        let rest = &code[at + "crate::exposition::".len()..];
        !LAYERS.iter().any(|l| {
            rest.strip_prefix(l).is_some_and(|r| {
                r.starts_with("::") || r.starts_with(|c: char| !c.is_alphanumeric() && c != '_')
            })
        })
    })
}

fn layer_of(file: &str) -> usize {
    let layer = file.split('/').next().unwrap_or("");
    LAYERS
        .iter()
        .position(|l| *l == layer)
        .expect("a known layer")
}

#[test]
fn every_use_points_to_an_earlier_layer_or_its_own() {
    let files = files();
    let mut wrong = Vec::new();
    for (file, code) in &files {
        for used in uses(code, &files) {
            if layer_of(&used) > layer_of(file) {
                wrong.push(format!("{file} uses {used}"));
            }
        }
        // A path the check could not follow: `super::` (write `crate::exposition::<layer>::…`),
        // or the root's re-exports, which may lead to any layer (only `merge/`, the last, may).
        if code.contains("super::") {
            wrong.push(format!(
                "{file} uses a super:: path: write crate::exposition::<layer>::… out"
            ));
        }
        if !file.starts_with("merge/") && uses_root(code) {
            wrong.push(format!(
                "{file} uses the root's re-exports (crate::exposition::<item>)"
            ));
        }
        if code.contains("crate::config") || code.contains("crate::proxy") {
            wrong.push(format!(
                "{file} uses the configuration or the proxy: the engine reads neither"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the pipeline:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_circle_between_files() {
    let files = files();
    let graph: BTreeMap<&String, BTreeSet<String>> = files
        .iter()
        .map(|(f, code)| {
            let mut u = uses(code, &files);
            u.remove(f);
            (f, u)
        })
        .collect();
    // Depth-first, three colours: a grey file met again is a circle.
    fn visit<'a>(
        f: &'a str,
        graph: &'a BTreeMap<&String, BTreeSet<String>>,
        colour: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<String> {
        match colour.get(f) {
            Some(2) => return None,
            Some(1) => return Some(format!("{} -> {f}", path.join(" -> "))),
            _ => {}
        }
        colour.insert(f, 1);
        path.push(f);
        if let Some(next) = graph.get(&f.to_owned()) {
            for n in next {
                if let Some(circle) = visit(n, graph, colour, path) {
                    return Some(circle);
                }
            }
        }
        path.pop();
        colour.insert(f, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for f in graph.keys() {
        let mut path = Vec::new();
        if let Some(circle) = visit(f, &graph, &mut colour, &mut path) {
            panic!("a circle between engine files: {circle}");
        }
    }
}

#[test]
fn the_check_sees_the_engine() {
    // Guards the two tests above against reading nothing: the layers have files, and the
    // merger's file is seen using the other three layers.
    let files = files();
    assert!(
        LAYERS
            .iter()
            .all(|l| files.keys().any(|f| f.starts_with(l)))
    );
    let merge = uses(&files["merge/mod.rs"], &files);
    for l in ["read", "decide", "write"] {
        assert!(
            merge.iter().any(|u| u.starts_with(l)),
            "merge/mod.rs uses {l}"
        );
    }
}
