//! The `Mesh` resource: its mTLS backend (for securing metrics) and its metrics backends.

use super::metrics::{PrometheusConf, read_conf};
use super::reader::{Ctx, Obj};

#[derive(Clone, Debug, PartialEq)]
pub struct Mesh {
    pub name: String,
    /// `mtls.enabledBackend`, when mTLS is on.
    pub mtls_backend: Option<String>,
    /// `metrics.enabledBackend`'s conf, when a prometheus backend is enabled.
    pub metrics: Option<PrometheusConf>,
    /// Where `metrics` sits in the document (`spec.metrics` or `metrics`).
    pub metrics_path: String,
}

/// Reads a Mesh body (the `spec` in Kubernetes form, the document in Universal form).
pub fn read(ctx: &mut Ctx<'_>, name: String, mut body: Obj<'_>) -> Mesh {
    let mut mtls = body.obj(ctx, "mtls");
    let mtls_backend = mtls.string(ctx, "enabledBackend");
    mtls.ignore(&["backends"]);
    mtls.finish(ctx);

    let mut metrics = body.obj(ctx, "metrics");
    let metrics_path = metrics.path.clone();
    let enabled = metrics.string(ctx, "enabledBackend");
    let mut backends: Vec<(String, PrometheusConf)> = Vec::new();
    for mut b in metrics.list(ctx, "backends") {
        let name = b.string(ctx, "name").unwrap_or_default();
        let kind = b.string(ctx, "type");
        if name.is_empty() {
            ctx.error(&b.field("name"), "is required");
        } else if backends.iter().any(|(n, _)| *n == name) {
            ctx.error(
                &b.field("name"),
                format!("{name:?} is used by another backend"),
            );
        }
        match kind.as_deref() {
            Some("prometheus") => {}
            Some(other) => ctx.error(
                &b.field("type"),
                format!("{other:?} is not a known backend type (prometheus)"),
            ),
            None => ctx.error(&b.field("type"), "is required (prometheus)"),
        }
        let conf_obj = b.obj(ctx, "conf");
        let conf = read_conf(ctx, conf_obj);
        b.finish(ctx);
        backends.push((name, conf));
    }
    let field = metrics.field("enabledBackend");
    let conf = match &enabled {
        Some(e) => match backends.iter().find(|(n, _)| n == e) {
            Some((_, conf)) => Some(conf.clone()),
            None => {
                let names: Vec<&str> = backends.iter().map(|(n, _)| n.as_str()).collect();
                ctx.error(
                    &field,
                    format!("{e:?} is not one of the backends {names:?}"),
                );
                None
            }
        },
        None => {
            if !backends.is_empty() {
                ctx.warn(
                    &field,
                    "not set: metrics are off for this mesh unless a dataplane enables them",
                );
            }
            None
        }
    };
    metrics.finish(ctx);
    body.ignore(&[
        "logging",
        "tracing",
        "networking",
        "routing",
        "constraints",
        "skipCreatingInitialPolicies",
        "meshServices",
    ]);
    body.finish(ctx);
    Mesh {
        name,
        mtls_backend,
        metrics: conf,
        metrics_path,
    }
}
