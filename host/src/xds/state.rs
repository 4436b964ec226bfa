//! What every ADS stream shares: the resources as last loaded ([`World`]), how a node names
//! its dataplane, and how its snapshot is made ([`State`]). The ADS server (`ads.rs`) reads it;
//! the `control-plane` command (`crate::controlplane`) fills it: dependencies point from the
//! command to here, never back.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value;

use super::{Snapshot, stats::Stats};
use crate::auth::{Authority, Refusal};
use crate::bootstrap::{NODE_ADMIN_PORT, NODE_DATAPLANE, NODE_MESH};
use crate::effective::Effective;
use crate::generator::{self, Options};
use crate::resources::Resources;

/// The cluster through which proxies fetch the filter's module from the control plane.
pub const HTTP_CLUSTER: &str = "meshmetrics_control_plane_http";

/// The resources as last loaded without an error.
pub struct World {
    /// Counts the loads that changed something.
    pub generation: u64,
    pub resources: Arc<Resources>,
}

/// The control plane's HTTP side as proxies reach it.
pub(crate) struct HttpEndpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Served over TLS: the cluster verifies it against the CA the proxy's bootstrap names.
    pub(crate) tls: bool,
}

impl HttpEndpoint {
    /// The cluster `node` reaches it through.
    fn cluster(&self, node: &Node) -> Result<Cluster> {
        let mut c = generator::cluster::single(HTTP_CLUSTER, &self.host, self.port);
        if self.tls {
            let ca = metadata_string(node, crate::bootstrap::NODE_CA_CERT).context(
                "the control plane serves its module over TLS, and this proxy's bootstrap \
                     names no CA for it (meshmetrics bootstrap --ca-cert)",
            )?;
            c.transport_socket = Some(generator::tls::upstream(ca, &self.host));
        }
        Ok(c)
    }
}

/// What every proxy stream shares.
pub struct State {
    pub world: tokio::sync::watch::Sender<Arc<World>>,
    pub stats: Arc<Stats>,
    pub(crate) options: Options,
    /// Where proxies fetch the filter's module: the control plane's HTTP side, if it serves it.
    pub(crate) http_endpoint: Option<HttpEndpoint>,
    /// The signing keys and revocations streams are checked against; `None` only under
    /// `--insecure` without `--keys`.
    pub auth: Option<tokio::sync::watch::Sender<Arc<Authority>>>,
}

/// The mesh and dataplane a node names in its metadata (what `meshmetrics bootstrap
/// --control-plane` writes), both as strings; what a dataplane token is compared with.
pub fn node_dataplane(node: &Node) -> Option<(String, String)> {
    Some((
        metadata_string(node, NODE_MESH)?.to_owned(),
        metadata_string(node, NODE_DATAPLANE)?.to_owned(),
    ))
}

/// A string value of the node's metadata (a number or anything else is not one).
fn metadata_string<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    match &node.metadata.as_ref()?.fields.get(key)?.kind {
        Some(value::Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The dataplane whose full identity is `id` (`<mesh>/<name>`), and no other.
fn exact_dataplane<'a>(
    res: &'a crate::resources::Resources,
    id: &str,
) -> Result<&'a crate::resources::dataplane::Dataplane> {
    res.dataplanes
        .iter()
        .find(|d| d.id() == id)
        .with_context(|| format!("no dataplane is exactly {}", crate::diag::untrusted(id)))
}

/// The name a proxy is looked up by: `<mesh>/<dataplane>` from its node metadata (what
/// `meshmetrics bootstrap --control-plane` writes), else its node id.
pub fn selector(node: &Node) -> String {
    let field = |key: &str| {
        node.metadata
            .as_ref()
            .and_then(|m| m.fields.get(key))
            .and_then(|v| match &v.kind {
                Some(value::Kind::StringValue(s)) => Some(s.clone()),
                Some(value::Kind::NumberValue(n)) => Some(n.to_string()),
                _ => None,
            })
    };
    match (field(NODE_MESH), field(NODE_DATAPLANE)) {
        (Some(mesh), Some(dp)) => format!("{mesh}/{dp}"),
        (None, Some(dp)) => dp,
        _ => node.id.clone(),
    }
}

fn admin_port(node: &Node) -> Option<u16> {
    let v = node.metadata.as_ref()?.fields.get(NODE_ADMIN_PORT)?;
    match &v.kind {
        Some(value::Kind::NumberValue(n)) if (1.0..=65535.0).contains(n) => Some(*n as u16),
        Some(value::Kind::StringValue(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|n| (1.0..=65535.0).contains(n) && n.fract() == 0.0)
            .map(|n| n as u16),
        _ => None,
    }
}

impl State {
    /// This proxy's effective configuration under `world`.
    ///
    /// With tokens, the node is looked up by its exact identity (`<mesh>/<name>`, a pod's name
    /// as `name.namespace`), never by a short name or alias: a token for `default/web` whose pod
    /// is gone must not resolve to another namespace's `web`, and with it that proxy's key.
    pub fn effective(&self, world: &World, node: &Node) -> Result<Effective> {
        let dp = self.dataplane(&world.resources, &selector(node))?;
        crate::effective::effective_for(&world.resources, dp)
            .map(|(e, _)| e)
            .map_err(|crate::Invalid(d)| anyhow!("{d}"))
    }

    /// The dataplane `selector` names: with tokens, only its exact identity (see
    /// [`State::effective`]); without, as the CLI resolves it (a short name, an alias).
    pub fn dataplane<'a>(
        &self,
        res: &'a crate::resources::Resources,
        selector: &str,
    ) -> Result<&'a crate::resources::dataplane::Dataplane> {
        if self.auth.is_some() {
            exact_dataplane(res, selector)
        } else {
            res.dataplane(selector)
                .map_err(|why| anyhow!("Dataplane {}: {why}", crate::diag::untrusted(selector)))
        }
    }

    /// Forgets the certificate issued for `id`: a proxy whose stream was closed for its token
    /// (revoked, its key deleted, expired) must not get the same key back, nor keep using it.
    pub fn forget_certificate(&self, id: &str) {
        if let Some(c) = &self.options.certs {
            c.forget(id);
        }
    }

    /// This proxy's snapshot for `e`.
    pub fn snapshot(&self, e: &Effective, node: &Node) -> Result<Arc<Snapshot>> {
        let mut o = self.options.clone();
        if let Some(port) = admin_port(node) {
            o.admin_port = port;
        }
        let r = generator::generate(e, &o)?;
        for w in &r.warnings {
            eprintln!("meshmetrics control-plane: warning: {w}");
        }
        let extra = match &self.http_endpoint {
            Some(h) => vec![h.cluster(node)?],
            None => Vec::new(),
        };
        Ok(Arc::new(Snapshot::new(&r, &extra)))
    }

    /// Logs and counts a refused or closed stream. `who` is ours to say (a peer address or a
    /// node's mesh/name), never the token.
    pub fn refused(&self, who: &str, refusal: Refusal) {
        self.stats.refused(refusal);
        eprintln!(
            "meshmetrics control-plane: refused {}: {refusal} ({})",
            crate::diag::untrusted(who),
            refusal.reason()
        );
    }

    /// When `dataplane`'s pushed certificate is due to be re-issued.
    pub fn renewal(&self, dataplane: &str) -> Option<Instant> {
        self.options.certs.as_ref()?.renewal(dataplane)
    }
}
