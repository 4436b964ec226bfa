//! meshmetrics host: from Mesh / Dataplane / Pod resources to each proxy's effective metrics
//! configuration and its Envoy bootstrap.

pub mod accept;
pub mod auth;
pub mod bootstrap;
pub mod controlplane;
pub mod diag;
pub mod discovery;
pub mod duration;
pub mod effective;
pub mod generator;
mod http;
pub mod resources;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod serve;
pub mod tls;
pub mod xds;

use std::path::PathBuf;

use anyhow::Result;

pub use diag::{Diagnostic, Diagnostics, Invalid};
pub use effective::{Effective, effective};
pub use resources::Resources;

/// Reads the resources in `paths` (files or directories).
pub fn read_resources(paths: &[PathBuf]) -> Result<Resources> {
    let docs = resources::yaml::load(paths)?;
    Ok(Resources::read(&docs))
}
