//! Loading the resource files, and watching them: a load that fails leaves the last good
//! configuration in place (logged, and counted on `/metrics`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{State, World};
use crate::discovery::{Assignment, Snapshot as Discovery, assignments};
use crate::resources::Resources;

/// Loads the files: the resources, and the discovery assignments they give. Any error in any
/// resource fails the whole load (a half-applied change is worse than none).
pub fn load(paths: &[PathBuf]) -> Result<(Resources, Vec<Assignment>)> {
    let res = crate::read_resources(paths)?;
    let (assignments, diags) = assignments::compute(&res);
    for w in diags.warnings() {
        eprintln!("meshmetrics control-plane: {w}");
    }
    if diags.has_errors() || res.diagnostics.has_errors() {
        let mut all = res.diagnostics.clone();
        all.merge_unique(diags);
        bail!(crate::Invalid(all));
    }
    Ok((res, assignments))
}

/// Polls the files every `every`; on a change that loads, publishes a new world (every proxy
/// stream rebuilds its snapshot and pushes only what changed for it) and new discovery.
pub async fn watch(
    paths: Vec<PathBuf>,
    every: Duration,
    state: Arc<State>,
    discovery: tokio::sync::watch::Sender<Arc<Discovery>>,
) {
    let mut seen = crate::discovery::fingerprint(&paths);
    loop {
        tokio::time::sleep(every).await;
        let now = crate::discovery::fingerprint(&paths);
        if now == seen {
            continue;
        }
        seen = now;
        let generation = state.world.borrow().generation;
        match load(&paths) {
            Ok((resources, assignments)) => {
                let generation = generation + 1;
                eprintln!(
                    "meshmetrics control-plane: generation {generation}: {} dataplanes",
                    resources.dataplanes.len()
                );
                state.stats.set_generation(generation);
                state.world.send_replace(Arc::new(World {
                    generation,
                    resources: Arc::new(resources),
                }));
                let version = discovery.borrow().version + 1;
                discovery.send_replace(Arc::new(Discovery {
                    version,
                    assignments,
                }));
            }
            Err(e) => {
                state.stats.load_error();
                eprintln!("meshmetrics control-plane: keeping generation {generation}: {e:#}");
            }
        }
    }
}

/// Polls the signing keys and the revocation list every `every`; on a change that loads,
/// publishes the new authority, and every open stream checks its token against it (a revoked
/// token's stream, or one whose key was deleted, is closed). A change that does not load keeps
/// the last good one, as the resources do.
pub async fn watch_authority(sources: crate::auth::Sources, every: Duration, state: Arc<State>) {
    let Some(tx) = &state.auth else { return };
    let mut seen = sources.fingerprint();
    loop {
        tokio::time::sleep(every).await;
        let now = sources.fingerprint();
        if now == seen {
            continue;
        }
        seen = now;
        match sources.load() {
            Ok(a) => {
                eprintln!(
                    "meshmetrics control-plane: signing keys and revocations reloaded ({} revoked)",
                    a.revoked.len()
                );
                tx.send_replace(Arc::new(a));
            }
            Err(e) => {
                state.stats.load_error();
                eprintln!(
                    "meshmetrics control-plane: keeping the last signing keys and revocations: {e:#}"
                );
            }
        }
    }
}
