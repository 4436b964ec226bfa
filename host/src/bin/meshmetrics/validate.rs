//! `meshmetrics validate`: each dataplane's effective metrics configuration, or every error.

use std::path::PathBuf;

use anyhow::{Result, bail};
use meshmetrics::{Diagnostics, effective, read_resources};

use crate::args::print_warnings;

#[derive(clap::Args)]
pub struct Args {
    /// Resource files or directories (YAML, Kubernetes or Universal form).
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Only this dataplane (a Dataplane name, or a Pod as `name` or `name.namespace`).
    #[arg(long)]
    dataplane: Option<String>,
}

pub fn run(Args { files, dataplane }: Args) -> Result<()> {
    let res = read_resources(&files)?;
    // Each dataplane by its identity (mesh + name + namespace): never one twice.
    let names: Vec<String> = match dataplane {
        Some(d) => vec![d],
        None => res.dataplanes.iter().map(|d| d.id()).collect(),
    };
    if names.is_empty() {
        print_warnings(&res.diagnostics);
        if res.diagnostics.has_errors() {
            bail!(meshmetrics::Invalid(res.diagnostics.clone()));
        }
        println!("[]");
        return Ok(());
    }
    let mut out = Vec::new();
    let mut diags = Diagnostics::default();
    for name in names {
        match effective(&res, &name) {
            Ok((e, d)) => {
                out.push(e.to_json());
                diags.merge_unique(d);
            }
            Err(meshmetrics::Invalid(d)) => diags.merge_unique(d),
        }
    }
    print_warnings(&diags);
    if diags.has_errors() {
        bail!(meshmetrics::Invalid(diags));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
