//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use meshmetrics_filter::exposition::{FamilyFilter, Format, LabelSet, Merger, SourceStats};

/// One source of a scrape: body, its format, labels to add.
pub struct Src<'a> {
    pub body: &'a [u8],
    pub format: Format,
    pub labels: &'a [(&'a str, &'a str)],
}

pub fn text<'a>(body: &'a str, labels: &'a [(&'a str, &'a str)]) -> Src<'a> {
    Src {
        body: body.as_bytes(),
        format: Format::Text,
        labels,
    }
}

pub fn om<'a>(body: &'a str, labels: &'a [(&'a str, &'a str)]) -> Src<'a> {
    Src {
        body: body.as_bytes(),
        format: Format::OpenMetrics,
        labels,
    }
}

/// Runs one scrape over `sources` and returns the body and each source's stats.
pub fn merge(out: Format, filter: Option<&str>, sources: &[Src<'_>]) -> (String, Vec<SourceStats>) {
    let mut m = Merger::new();
    m.begin(
        out,
        filter.map(|f| FamilyFilter::new(f).expect("test regex compiles")),
    );
    let mut stats: Vec<SourceStats> = sources
        .iter()
        .map(|s| {
            m.add_source(
                s.body,
                s.format,
                &LabelSet::new(s.labels.iter().copied()).unwrap(),
            )
        })
        .collect();
    let body = String::from_utf8(m.finish().to_vec()).expect("output is UTF-8");
    // True conflicts are judged when the scrape ends, in priority order.
    for (i, s) in stats.iter_mut().enumerate() {
        s.type_conflicts += m.conflicts(i as u16);
        s.unrepresentable += m.invalid(i as u16);
    }
    (body, stats)
}

/// Checks the structure every output must have, independently of the engine: each family
/// header once, samples of a family contiguous, `# EOF` exactly once and last in OpenMetrics.
pub fn assert_well_formed(body: &str, format: Format) {
    use std::collections::HashSet;
    let mut lines: Vec<&str> = body.split_terminator('\n').collect();
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "output ends without newline"
    );
    if format == Format::OpenMetrics {
        assert_eq!(
            lines.pop(),
            Some("# EOF"),
            "OpenMetrics output must end with # EOF"
        );
    }
    assert!(!lines.contains(&"# EOF"), "# EOF before the end");
    let (mut helps, mut types) = (HashSet::new(), HashSet::new());
    let mut done: HashSet<String> = HashSet::new();
    // The family being read: its header name and type word.
    let mut family: Option<(String, String)> = None;
    for line in lines {
        assert!(!line.is_empty(), "blank line in output");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = header_name(rest);
            assert!(helps.insert(name.clone()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = header_name(rest);
            assert!(types.insert(name.clone()), "second TYPE for {name}");
            assert!(!done.contains(&name), "family {name} resumed");
            let word = rest.rsplit(' ').next().unwrap().to_owned();
            if let Some((prev, _)) = family.replace((name, word)) {
                done.insert(prev);
            }
        } else if line.starts_with('#') {
            assert!(line.starts_with("# UNIT "), "unexpected comment {line:?}");
        } else {
            let bare = without_quoted(line);
            assert!(
                !bare.contains("  ") && !bare.ends_with(' '),
                "non-canonical {line:?}"
            );
            assert!(
                !bare.contains(",}") && !bare.contains("{,"),
                "non-canonical {line:?}"
            );
            let sample = sample_name(line);
            let fits = family
                .as_ref()
                .is_some_and(|(f, word)| belongs(sample, f, word));
            if !fits {
                // An implicit family (no header), named after the sample.
                assert!(!done.contains(sample), "samples of {sample} not contiguous");
                if let Some((prev, _)) = family.replace((sample.to_owned(), "untyped".into())) {
                    done.insert(prev);
                }
            }
        }
    }
}

/// The line with the contents of every quoted string removed (quotes kept).
fn without_quoted(line: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => {
                quoted = false;
                out.push(c);
            }
            (true, false, _) => {}
            (false, _, '"') => {
                quoted = true;
                out.push(c);
            }
            (false, _, _) => out.push(c),
        }
    }
    out
}

fn header_name(rest: &str) -> String {
    if let Some(q) = rest.strip_prefix('"') {
        return q[..q.find('"').unwrap()].to_owned();
    }
    rest.split(' ').next().unwrap().to_owned()
}

/// Whether a sample called `sample` is part of family `family` of type `word` (either format).
fn belongs(sample: &str, family: &str, word: &str) -> bool {
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    let allowed: &[&str] = match word {
        "counter" => &["", "_total", "_created"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    };
    allowed.contains(&suffix)
}

fn sample_name(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("{\"") {
        return &rest[..rest.find('"').unwrap()];
    }
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// The golden case folders, sorted.
pub fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    cases
}

/// Runs a case and returns its output in `format`.
/// Runs a golden case and returns its output in `format`.
pub fn run_case(case: &Path, format: Format) -> String {
    let manifest = fs::read_to_string(case.join("sources")).expect("case has a sources file");
    let filter = fs::read_to_string(case.join("filter"))
        .ok()
        .map(|f| FamilyFilter::new(f.trim()).expect("case filter compiles"));
    let mut merger = Merger::new();
    merger.begin(format, filter);
    for line in manifest
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        let file = words.next().expect("a file name");
        let labels = LabelSet::new(words.map(|w| w.split_once('=').expect("label is name=value")))
            .expect("valid labels");
        let body = fs::read(case.join(file)).expect("source file exists");
        let input = if file.ends_with(".om") {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        merger.add_source(&body, input, &labels);
    }
    String::from_utf8(merger.finish().to_vec()).expect("output is UTF-8")
}

/// The workspace root (tools installed by `scripts/install-deps` live there).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate in a workspace")
        .to_path_buf()
}

/// Runs `program args` with `input` on stdin; returns (exit code, stdout + stderr).
pub fn run_with_stdin(program: &Path, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/install-deps first",
                program.display()
            )
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for child");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `promtool` (Debian package `prometheus`), from `PROMTOOL` or the PATH.
pub fn promtool() -> PathBuf {
    std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "promtool".into())
}

/// The Python with `prometheus_client`: `MESHMETRICS_PYTHON`, or the workspace's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("MESHMETRICS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Parses with prometheus_client and prints one line per family: name, type, sample count.
const PY_PARSE: &str = r#"
import sys
from prometheus_client import parser as text
from prometheus_client.openmetrics import parser as om
fams = (om if sys.argv[1] == "om" else text).text_string_to_metric_families(sys.stdin.read())
for f in fams:
    print(f.name, f.type, len(f.samples))
"#;

pub fn python_parses(body: &str, format: Format) -> String {
    let which = if format == Format::OpenMetrics {
        "om"
    } else {
        "text"
    };
    let (code, out) = run_with_stdin(&python(), &["-c", PY_PARSE, which], body);
    assert_eq!(
        code, 0,
        "prometheus_client {which} parser rejected:\n{out}\n--- input\n{body}"
    );
    out
}

/// Runs promtool; parse errors fail, lint findings are returned (one per line).
pub fn promtool_lint(body: &str) -> Vec<String> {
    let (code, out) = run_with_stdin(&promtool(), &["check", "metrics"], body);
    assert!(
        code == 0 || code == 3,
        "promtool failed to parse (exit {code}):\n{out}\n--- input\n{body}"
    );
    out.lines().map(str::to_owned).collect()
}
