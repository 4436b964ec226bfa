//! The resource loader on arbitrary YAML: no panic, nothing unbounded (aliases, nesting), and
//! every dataplane whose configuration is accepted yields a filter configuration the filter
//! accepts (what validate accepts must not fail later).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use meshmetrics::Resources;
use meshmetrics::bootstrap::{Options, filter_config};
use meshmetrics::effective::effective_for;
use meshmetrics::resources::yaml::parse;
use meshmetrics_filter::config::FilterConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(docs) = parse(&text, Path::new("fuzz.yaml")) else {
        return;
    };
    let res = Resources::read(&docs);
    let opts = Options::new("/meshmetrics_filter.wasm");
    for dp in &res.dataplanes {
        if let Ok((e, _)) = effective_for(&res, dp) {
            let config = filter_config(&e, &opts);
            if let Err(err) = FilterConfig::from_json(config.to_json().as_bytes()) {
                panic!("accepted by validate, refused by the filter: {err}");
            }
        }
    }
});
