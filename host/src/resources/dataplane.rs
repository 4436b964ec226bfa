//! Data plane proxies: the `Dataplane` resource, or a Kubernetes Pod (or a workload's pod
//! template) standing for one, whose `prometheus.metrics.kuma.io/*` annotations override metrics.

use super::metrics::{PrometheusConf, read_conf};
use super::reader::{Ctx, Obj};

#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub port: u16,
    pub service_port: Option<u16>,
    pub tags: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataplane {
    pub name: String,
    /// Other names it answers to (`name.namespace` for Kubernetes resources).
    pub aliases: Vec<String>,
    pub mesh: String,
    /// `networking.address`; for a Pod, `status.podIP` when known.
    pub address: Option<String>,
    pub inbound: Vec<Inbound>,
    /// The dataplane's own `metrics.conf`.
    pub metrics: Option<PrometheusConf>,
    /// `prometheus.metrics.kuma.io/*` annotations (Pods only), in document order.
    pub annotations: Vec<(String, String)>,
    /// Where the proxy's applications live: for a Pod, its own network namespace (127.0.0.1).
    pub apps_on_loopback: bool,
    /// `Dataplane x` or `Pod x.ns`, for diagnostics.
    pub resource: String,
}

impl Dataplane {
    /// The service: the first inbound's `kuma.io/service` tag.
    pub fn service(&self) -> Option<&str> {
        self.inbound
            .iter()
            .flat_map(|i| &i.tags)
            .find(|(k, _)| k == "kuma.io/service")
            .map(|(_, v)| v.as_str())
    }

    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }

    /// Its identity: `<mesh>/<name>`, the name qualified with its namespace on Kubernetes
    /// (`<mesh>/<name>.<namespace>`). Two dataplanes never share one.
    pub fn id(&self) -> String {
        let name = self.aliases.first().unwrap_or(&self.name);
        format!("{}/{name}", self.mesh)
    }

    /// Whether `selector` (`name`, `name.namespace`, `mesh/name`, `mesh/name.namespace`) picks it.
    pub fn selected_by(&self, selector: &str) -> bool {
        match selector.split_once('/') {
            Some((mesh, name)) => self.mesh == mesh && self.answers_to(name),
            None => self.answers_to(selector),
        }
    }
}

/// Reads a Dataplane body.
pub fn read(
    ctx: &mut Ctx<'_>,
    name: String,
    aliases: Vec<String>,
    mesh: String,
    mut body: Obj<'_>,
) -> Dataplane {
    let mut net = body.obj(ctx, "networking");
    let address = net.string(ctx, "address");
    if let Some(problem) = address.as_deref().and_then(super::names::ip_problem) {
        ctx.error("networking.address", problem);
    }
    let mut inbound = Vec::new();
    for mut i in net.list(ctx, "inbound") {
        let port = i.port(ctx, "port");
        if port.is_none() && i.raw("port").is_none() {
            ctx.error(&i.field("port"), "is required");
        }
        let service_port = i.port(ctx, "servicePort");
        let tags = i.string_map(ctx, "tags");
        i.ignore(&[
            "serviceAddress",
            "address",
            "health",
            "serviceProbe",
            "state",
            "name",
        ]);
        i.finish(ctx);
        if let Some(port) = port {
            inbound.push(Inbound {
                port,
                service_port,
                tags,
            });
        }
    }
    net.ignore(&[
        "outbound",
        "gateway",
        "transparentProxying",
        "admin",
        "advertisedAddress",
    ]);
    net.finish(ctx);

    let mut m = body.obj(ctx, "metrics");
    let metrics = if m.is_present() {
        match m.string(ctx, "type").as_deref() {
            Some("prometheus") | None => {}
            Some(other) => ctx.error(
                &m.field("type"),
                format!("{other:?} is not a known backend type (prometheus)"),
            ),
        }
        m.ignore(&["name"]);
        let conf = m.obj(ctx, "conf");
        Some(read_conf(ctx, conf))
    } else {
        None
    };
    m.finish(ctx);
    body.ignore(&["probes"]);
    body.finish(ctx);
    Dataplane {
        resource: ctx.resource.clone(),
        name,
        aliases,
        mesh,
        address,
        inbound,
        metrics,
        annotations: Vec::new(),
        apps_on_loopback: false,
    }
}

/// The annotation prefix Kuma's metrics overrides use.
pub const ANNOTATION_PREFIX: &str = "prometheus.metrics.kuma.io/";

/// Reads a Pod, or a workload (Deployment, StatefulSet...) through its pod template.
pub fn read_pod(ctx: &mut Ctx<'_>, doc: &serde_json::Value, kind: &str) -> Option<Dataplane> {
    let meta = doc.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_owned();
    let namespace = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default")
        .to_owned();
    let (pod_meta, pod_spec) = if kind == "Pod" {
        (Some(meta), doc.get("spec"))
    } else {
        let template = doc.get("spec").and_then(|s| s.get("template"));
        (
            template.and_then(|t| t.get("metadata")),
            template.and_then(|t| t.get("spec")),
        )
    };
    let annotations: Vec<(String, String)> = pod_meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.as_object())
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let label = |key: &str| {
        pod_meta
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let annotation = |key: &str| {
        annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mesh = annotation("kuma.io/mesh")
        .or_else(|| label("kuma.io/mesh"))
        .unwrap_or_else(|| "default".into());
    let ports: Vec<u16> = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(|p| p.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.get("containerPort").and_then(super::reader::parse_port))
        .collect();
    // Kuma names a Kubernetes service's dataplane tag `<service>_<namespace>_svc_<port>`; without
    // the Service at hand, the `app` label (or the workload's name) stands for the service.
    let app = label("app").unwrap_or_else(|| name.clone());
    let service = match ports.first() {
        Some(p) => format!("{app}_{namespace}_svc_{p}"),
        None => format!("{app}_{namespace}_svc"),
    };
    let inbound = ports
        .iter()
        .map(|&port| Inbound {
            port,
            service_port: None,
            tags: vec![("kuma.io/service".into(), service.clone())],
        })
        .collect();
    let address = doc
        .get("status")
        .and_then(|s| s.get("podIP"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let _ = ctx;
    Some(Dataplane {
        resource: format!("{kind} {name}.{namespace}"),
        aliases: vec![format!("{name}.{namespace}")],
        name,
        mesh,
        address,
        inbound,
        metrics: None,
        annotations: annotations
            .into_iter()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .collect(),
        apps_on_loopback: true,
    })
}
