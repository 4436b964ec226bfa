//! `docs/merging.md` carries the engine's rule tables for users; the code's copy is the module
//! documentation of `src/exposition/mod.rs`. They must say the same.

mod support;

use support::workspace_root;

#[test]
fn merging_doc_matches_the_engines_own() {
    let code = std::fs::read_to_string(workspace_root().join("filter/src/exposition/mod.rs"))
        .expect("read mod.rs");
    let doc: Vec<&str> = code
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let doc = doc.join("\n");
    let from = doc
        .find("# Families in the output")
        .expect("mod.rs documents the families");
    let code_rules = doc[from..]
        .trim()
        .replace("\n# Conversions", "\n## Conversions")
        .replace("\n# Samples that", "\n## Samples that")
        .replace("\n# A streamed lead", "\n## A streamed lead")
        .replace("\n# Limits", "\n## Limits");
    let md = std::fs::read_to_string(workspace_root().join("docs/merging.md"))
        .expect("read docs/merging.md");
    let start = md.find("<!-- rules:begin -->\n").expect("begin marker") + 21;
    let end = md.find("\n<!-- rules:end -->").expect("end marker");
    let md_rules = md[start..end]
        .trim()
        .replacen("## Families", "# Families", 1);
    assert_eq!(
        md_rules, code_rules,
        "docs/merging.md and filter/src/exposition/mod.rs disagree: copy the tables across"
    );
}
