//! Writes the descriptor set `src/generator/envoy-descriptors.bin`: the part of the one
//! `envoy-types` ships (`src/generated/types.bin`, every message its Rust types were generated
//! from) that the bootstrap and the SDS files can hold, without comments.
//!
//! Why a committed file: `envoy-types` does not export the bytes, and a build script cannot ask
//! cargo where a dependency's sources are without `cargo metadata`, which needs every package of
//! the lock file (all platforms) in the cargo cache or the network. A build must not depend on
//! either. `scripts/update-envoy-descriptors` runs this after a bump of `envoy-types`; the
//! renderer refuses a message with fields the set does not know (`generator::json`), so a stale
//! set fails loudly in the tests rather than dropping a field.
//!
//! `cargo run -p meshmetrics --example envoy_descriptors -- <types.bin> <out.bin>`
use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result, bail};
use prost::Message;
use prost_reflect::prost_types::FileDescriptorSet;

/// Packages whose files (and everything they import) the renderer may meet: the bootstrap and
/// every extension a typed config can name.
const ROOTS: &[&str] = &[
    "envoy.config.",
    "envoy.extensions.",
    "envoy.service.discovery.",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: envoy_descriptors <types.bin> <out.bin>");
    };
    let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let mut set = FileDescriptorSet::decode(bytes.as_slice()).context("not a descriptor set")?;
    let by_name: HashMap<String, usize> = set
        .file
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().to_owned(), i))
        .collect();
    let mut keep = BTreeSet::new();
    let mut todo: Vec<usize> = set
        .file
        .iter()
        .enumerate()
        .filter(|(_, f)| ROOTS.iter().any(|r| f.package().starts_with(r)))
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = todo.pop() {
        if keep.insert(i) {
            for dep in &set.file[i].dependency {
                let &d = by_name.get(dep).with_context(|| {
                    format!("{} imports {dep}, not in the set", set.file[i].name())
                })?;
                todo.push(d);
            }
        }
    }
    // The input is in dependency order (protoc's); keeping that order keeps it valid.
    let mut files = std::mem::take(&mut set.file);
    let mut i = 0;
    files.retain(|_| {
        i += 1;
        keep.contains(&(i - 1))
    });
    for f in &mut files {
        f.source_code_info = None;
    }
    let trimmed = FileDescriptorSet { file: files };
    prost_reflect::DescriptorPool::from_file_descriptor_set(trimmed.clone())
        .context("the trimmed set does not resolve")?;
    std::fs::write(output, trimmed.encode_to_vec()).with_context(|| format!("writing {output}"))?;
    eprintln!(
        "{output}: {} of {} files, {} bytes",
        trimmed.file.len(),
        by_name.len(),
        std::fs::metadata(output)?.len()
    );
    Ok(())
}
