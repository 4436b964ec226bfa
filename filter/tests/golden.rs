//! Golden tests: each folder under `tests/golden/` holds source bodies (`.prom` is text 0.0.4,
//! `.om` OpenMetrics), a `sources` file naming them in scrape order with the labels each gets, an
//! optional `filter` regex, and the merged output expected in both formats (`expected.prom`,
//! `expected.om`). `BLESS=1 cargo test --test golden` rewrites the expected files; review the diff.

mod support;

use std::fs;

use meshmetrics_filter::exposition::Format;
use support::{assert_well_formed, cases, run_case};

#[test]
fn golden_outputs() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        for (format, file) in [
            (Format::Text, "expected.prom"),
            (Format::OpenMetrics, "expected.om"),
        ] {
            let got = run_case(&case, format);
            assert_well_formed(&got, format);
            let path = case.join(file);
            if bless {
                fs::write(&path, &got).expect("write expected");
                continue;
            }
            let want = fs::read_to_string(&path).unwrap_or_default();
            if got != want {
                failures.push(format!(
                    "{}:\n--- want\n{want}\n--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
