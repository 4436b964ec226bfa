//! The control plane's xDS side: per-proxy snapshots of typed resources and the ADS server
//! that pushes them (state of the world over one gRPC stream per proxy).
//!
//! Modelled on go-control-plane's snapshot cache: a proxy's [`Snapshot`] is immutable and
//! versioned per resource type by the hash of its content, so rebuilding it for an unrelated
//! change gives the same versions and pushes nothing; a change is pushed to a proxy only when
//! its own resources changed.

pub mod ads;
pub mod snapshot;
pub mod state;
pub mod stats;

pub use snapshot::Snapshot;

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The order pushes go in after a change: clusters before the listener that may name them
/// (a new app's cluster exists before the filter dispatches to it), secrets last (Envoy asks
/// for them when a listener names them).
pub const PUSH_ORDER: [&str; 3] = [CLUSTER, LISTENER, SECRET];

/// A short name for a type URL, for logs and metrics.
pub fn short(type_url: &str) -> &str {
    match type_url {
        CLUSTER => "cds",
        LISTENER => "lds",
        SECRET => "sds",
        _ => "other",
    }
}
