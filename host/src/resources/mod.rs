//! The resources meshmetrics reads, in both of Kuma's forms:
//! - Kubernetes: `apiVersion`, `kind`, `metadata.name`, body under `spec` (`mesh` top-level for
//!   Dataplane and TrafficPermission);
//! - Universal: `type`, `name`, `mesh`, body at top level.
//!
//! Plus Kubernetes Pods and workloads, whose annotations override metrics per proxy.

pub mod annotations;
pub mod dataplane;
pub mod mesh;
pub mod meshmetric;
pub mod metrics;
pub mod names;
pub mod permission;
pub mod reader;
pub mod yaml;

use serde_json::Value;

use crate::diag::Diagnostics;
pub use dataplane::Dataplane;
pub use mesh::Mesh;
pub use permission::TrafficPermission;
use reader::{Ctx, Obj};
pub use yaml::Document;

/// Every resource read, and what was wrong with them.
#[derive(Debug, Default)]
pub struct Resources {
    pub meshes: Vec<Mesh>,
    pub dataplanes: Vec<Dataplane>,
    pub permissions: Vec<TrafficPermission>,
    pub meshmetrics: Vec<meshmetric::MeshMetric>,
    pub diagnostics: Diagnostics,
}

const WORKLOADS: [&str; 6] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

impl Resources {
    /// Reads documents; never fails: problems become diagnostics.
    pub fn read(docs: &[Document]) -> Resources {
        let mut r = Resources::default();
        for doc in docs {
            r.read_one(doc);
        }
        if r.meshes.is_empty()
            && r.dataplanes.is_empty()
            && r.permissions.is_empty()
            && r.meshmetrics.is_empty()
        {
            r.diagnostics.error(
                "resources",
                "",
                "no resources: no Mesh, Dataplane, TrafficPermission, MeshMetric or annotated workload in the files read",
            );
        }
        r.refuse_duplicates();
        for dp in &r.dataplanes {
            if !r.meshes.iter().any(|m| m.name == dp.mesh) {
                r.diagnostics.warn(
                    &dp.resource,
                    "mesh",
                    format!("mesh {:?} is not among the resources read", dp.mesh),
                );
            }
        }
        r
    }

    pub fn mesh(&self, name: &str) -> Option<&Mesh> {
        self.meshes.iter().find(|m| m.name == name)
    }

    /// The one dataplane `selector` picks (see [`Dataplane::selected_by`]); an error naming the
    /// candidates when it picks none or several (a bare name in two meshes or namespaces).
    pub fn dataplane(&self, selector: &str) -> Result<&Dataplane, String> {
        let mut found = self.dataplanes.iter().filter(|d| d.selected_by(selector));
        match (found.next(), found.next()) {
            (Some(d), None) => Ok(d),
            (None, _) => {
                // A few names help a typo; all of them would make every failed lookup (a
                // stranger's node id) a log line as long as the mesh.
                const SHOWN: usize = 5;
                let known: Vec<String> = self
                    .dataplanes
                    .iter()
                    .take(SHOWN)
                    .map(Dataplane::id)
                    .collect();
                let more = self.dataplanes.len().saturating_sub(SHOWN);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                Err(format!(
                    "no Dataplane or Pod \"{}\" among the resources (found: {known:?}{more})",
                    crate::diag::untrusted(selector)
                ))
            }
            (Some(_), Some(_)) => {
                let ids: Vec<String> = self
                    .dataplanes
                    .iter()
                    .filter(|d| d.selected_by(selector))
                    .map(Dataplane::id)
                    .collect();
                Err(format!(
                    "{selector:?} is ambiguous: it names {ids:?}; say which as <mesh>/<name>"
                ))
            }
        }
    }

    /// Two resources of the same kind and identity: which one would win is unclear, so neither
    /// does.
    fn refuse_duplicates(&mut self) {
        let mut seen = std::collections::HashSet::new();
        for m in &self.meshes {
            if !seen.insert(m.name.clone()) {
                self.diagnostics.error(
                    &format!("Mesh {}", m.name),
                    "name",
                    "is used by another Mesh",
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.meshmetrics {
            if !seen.insert((p.mesh.clone(), p.name.clone())) {
                self.diagnostics
                    .error(&p.resource, "name", "is used by another MeshMetric");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.dataplanes {
            if !seen.insert(d.id()) {
                self.diagnostics.error(
                    &d.resource,
                    "name",
                    format!("{} is used by another Dataplane", d.id()),
                );
            }
        }
    }

    fn read_one(&mut self, doc: &Document) {
        let where_ = format!("{} (document {})", doc.file.display(), doc.index + 1);
        let v = &doc.value;
        let str_at = |ptr: &str| v.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        if let Some(kind) = str_at("/kind") {
            // Kubernetes form.
            let name = str_at("/metadata/name").unwrap_or_default();
            let namespace = str_at("/metadata/namespace");
            let resource = format!("{kind} {name}");
            let mut ctx = Ctx {
                resource,
                diags: &mut self.diagnostics,
            };
            if let Some(problem) = names::name_problem(&name) {
                ctx.error("metadata.name", format!("{problem} ({where_})"));
                return;
            }
            if let Some(problem) = namespace.as_deref().and_then(names::name_problem) {
                ctx.error("metadata.namespace", format!("{problem} ({where_})"));
                return;
            }
            match kind.as_str() {
                "Mesh" => {
                    let spec = Obj::new(&mut ctx, v.get("spec"), "spec");
                    self.meshes.push(mesh::read(&mut ctx, name, spec));
                }
                "Dataplane" => {
                    let mesh = str_at("/mesh").unwrap_or_else(|| "default".into());
                    let aliases = namespace
                        .map(|ns| vec![format!("{name}.{ns}")])
                        .unwrap_or_default();
                    let spec = Obj::new(&mut ctx, v.get("spec"), "spec");
                    self.dataplanes
                        .push(dataplane::read(&mut ctx, name, aliases, mesh, spec));
                }
                "TrafficPermission" => {
                    let mesh = str_at("/mesh").unwrap_or_else(|| "default".into());
                    let spec = Obj::new(&mut ctx, v.get("spec"), "spec");
                    self.permissions
                        .push(permission::read(&mut ctx, name, mesh, spec));
                }
                "MeshMetric" => {
                    let mesh = str_at("/metadata/labels/kuma.io~1mesh")
                        .unwrap_or_else(|| "default".into());
                    ctx.resource = format!("MeshMetric {mesh}/{name}");
                    let spec = Obj::new(&mut ctx, v.get("spec"), "spec");
                    self.meshmetrics
                        .push(meshmetric::read(&mut ctx, name, mesh, spec));
                }
                k if WORKLOADS.contains(&k) => {
                    if let Some(dp) = dataplane::read_pod(&mut ctx, v, k) {
                        self.dataplanes.push(dp);
                    }
                }
                _ => ctx.warn(
                    "kind",
                    format!("{kind:?} is not a resource meshmetrics reads ({where_}); ignored"),
                ),
            }
        } else if let Some(kind) = str_at("/type") {
            // Universal form.
            let name = str_at("/name").unwrap_or_default();
            let mut ctx = Ctx {
                resource: format!("{kind} {name}"),
                diags: &mut self.diagnostics,
            };
            if let Some(problem) = names::name_problem(&name) {
                ctx.error("name", format!("{problem} ({where_})"));
                return;
            }
            let mut body = Obj::new(&mut ctx, Some(v), "");
            body.ignore(&[
                "type",
                "name",
                "mesh",
                "labels",
                "creationTime",
                "modificationTime",
            ]);
            match kind.as_str() {
                "Mesh" => self.meshes.push(mesh::read(&mut ctx, name, body)),
                "Dataplane" => {
                    let mesh = str_at("/mesh").unwrap_or_else(|| "default".into());
                    self.dataplanes
                        .push(dataplane::read(&mut ctx, name, Vec::new(), mesh, body));
                }
                "TrafficPermission" => {
                    let mesh = str_at("/mesh").unwrap_or_else(|| "default".into());
                    self.permissions
                        .push(permission::read(&mut ctx, name, mesh, body));
                }
                "MeshMetric" => {
                    let mesh = str_at("/mesh").unwrap_or_else(|| "default".into());
                    ctx.resource = format!("MeshMetric {mesh}/{name}");
                    let spec = body.obj(&mut ctx, "spec");
                    body.finish_strict(&mut ctx);
                    self.meshmetrics
                        .push(meshmetric::read(&mut ctx, name, mesh, spec));
                }
                _ => ctx.warn(
                    "type",
                    format!("{kind:?} is not a resource meshmetrics reads ({where_}); ignored"),
                ),
            }
        } else {
            self.diagnostics.warn(
                &where_,
                "",
                "neither `kind` (Kubernetes) nor `type` (Universal): ignored",
            );
        }
    }
}
