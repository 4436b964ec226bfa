//! One proxy's resources at one moment, ready to send.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

use crate::generator::{ProxyResources, proto};

/// The resources of one type, and their version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Typed {
    /// The first 16 hex digits of the SHA-256 of every resource's type, name and bytes: the
    /// same resources give the same version in any control-plane process.
    pub version: String,
    /// By name.
    pub resources: BTreeMap<String, Any>,
}

impl Typed {
    fn new(resources: BTreeMap<String, Any>) -> Typed {
        let mut hash = Sha256::new();
        for (name, any) in &resources {
            hash.update(any.type_url.as_bytes());
            hash.update([0]);
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update((any.value.len() as u64).to_le_bytes());
            hash.update(&any.value);
        }
        let digest = hash.finalize();
        let version = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Typed { version, resources }
    }

    /// The resources a request names (all of them when it names none: a wildcard).
    pub fn select(&self, names: &[String]) -> Vec<Any> {
        if names.is_empty() {
            return self.resources.values().cloned().collect();
        }
        names
            .iter()
            .filter_map(|n| self.resources.get(n).cloned())
            .collect()
    }
}

/// A proxy's snapshot: its resources by type URL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub types: BTreeMap<&'static str, Typed>,
}

impl Snapshot {
    /// The snapshot of `r`, with `extra` clusters (the control plane's own, which the static
    /// bootstrap has no need for).
    pub fn new(
        r: &ProxyResources,
        extra: &[envoy_types::pb::envoy::config::cluster::v3::Cluster],
    ) -> Snapshot {
        let clusters = r
            .clusters
            .iter()
            .chain(extra)
            .map(|c| (c.name.clone(), proto::any(c)))
            .collect();
        let listeners = r
            .listeners
            .iter()
            .map(|l| (l.name.clone(), proto::any(l)))
            .collect();
        let secrets = r
            .secrets
            .iter()
            .map(|s| (s.name.clone(), proto::any(s)))
            .collect();
        Snapshot {
            types: BTreeMap::from([
                (super::CLUSTER, Typed::new(clusters)),
                (super::LISTENER, Typed::new(listeners)),
                (super::SECRET, Typed::new(secrets)),
            ]),
        }
    }

    pub fn version(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url).map(|t| t.version.as_str())
    }
}
