//! The effective metrics configuration of one data plane proxy: the mesh's enabled backend with
//! defaults, then the Dataplane's `metrics`, then the Pod's annotations.
//!
//! Merge rules (SPEC §2):
//! - scalars (port, path, filterRegex, usedOnly, TLS mode): the most specific value set wins, both
//!   ways — unlike Kuma, a dataplane can turn `usedOnly` or mTLS back on;
//! - tags: union, the dataplane wins per key;
//! - aggregate: union by name; a Dataplane entry replaces the mesh's entry of the same name whole
//!   (as Kuma does); an annotation changes only the field it names; `enabled: false` removes it.

use serde_json::{Value, json};

use crate::diag::{Diagnostics, Invalid};
use crate::resources::annotations;
use crate::resources::meshmetric::{self, Backend, OpenTelemetryBackend, Policy};
use crate::resources::metrics::{PrometheusConf, TlsMode};
use crate::resources::permission::selects;
use crate::resources::reader::Ctx;
use crate::resources::{Dataplane, Resources};

pub const DEFAULT_PORT: u16 = 5670;
pub const DEFAULT_PATH: &str = "/metrics";

#[derive(Clone, Debug, PartialEq)]
pub struct App {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub path: String,
}

/// A source a TrafficPermission lets scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// `spiffe://<mesh>/<service>`.
    Service(String),
    /// `*`: any identity of the mesh.
    AnyInMesh,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    pub mesh: String,
    pub dataplane: String,
    /// The dataplane's full identity (`mesh/name`, with its namespace on Kubernetes): what
    /// things kept per dataplane (its issued certificate) are keyed by.
    pub id: String,
    pub service: String,
    /// The listener's address: the dataplane's, or every interface.
    pub address: String,
    /// 0 for a proxy that only pushes (MeshMetric with an OpenTelemetry backend alone): its
    /// listener is on loopback, on a port Envoy picks, and nothing discovers it.
    pub port: u16,
    pub path: String,
    /// Identity of the metrics endpoint (for TrafficPermission), `kuma.io/service` at least.
    pub tags: Vec<(String, String)>,
    pub tls: TlsMode,
    pub filter_regex: Option<String>,
    pub used_only: bool,
    pub apps: Vec<App>,
    /// Under mTLS, who may scrape: `None` when no TrafficPermission selects the endpoint (every
    /// identity of the mesh may), else the allowed sources.
    pub allowed: Option<Vec<Allowed>>,
    /// The dataplane's inbound tags (for discovery labels).
    pub dataplane_tags: Vec<(String, String)>,
    /// The Prometheus backend's `clientId` (MeshMetric): discovery gives this endpoint to that
    /// client only (`Some("")`: the default client). `None`: every client (the legacy form).
    pub client_id: Option<String>,
    /// More Prometheus backends (MeshMetric): one listener each, answering the same scrape.
    pub more: Vec<Endpoint>,
    /// Which of Envoy's families a scrape keeps (MeshMetric's `sidecar` rules); `None`: all.
    pub families: Option<meshmetrics_filter::config::FamilyRules>,
    /// The MeshMetric policies that made this configuration, in the order they applied (empty:
    /// the legacy `Mesh.metrics` settings did), and their merged `default`.
    pub policies: Vec<String>,
    pub policy: Option<Value>,
    /// MeshMetric's OpenTelemetry backends.
    pub otel: Vec<OpenTelemetryBackend>,
}

/// One more Prometheus listener of a proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub client_id: Option<String>,
    pub port: u16,
    pub path: String,
    pub tls: TlsMode,
}

/// The first Prometheus endpoint's listener name; the others add `_<port>`. Named here, where
/// the endpoints are, so the generator depends on the effective configuration, never the reverse.
pub const LISTENER: &str = "meshmetrics_prometheus";

impl Effective {
    /// Each Prometheus endpoint with its listener's name: this one (the first backend), then
    /// [`Effective::more`], each as this configuration with its own port, path and TLS.
    pub fn endpoints(&self) -> Vec<(String, Effective)> {
        let mut first = self.clone();
        first.more.clear();
        let mut out = vec![(LISTENER.to_owned(), first)];
        for m in &self.more {
            let mut e = self.clone();
            e.more.clear();
            e.port = m.port;
            e.path = m.path.clone();
            e.tls = m.tls;
            e.client_id = m.client_id.clone();
            out.push((format!("{}_{}", LISTENER, m.port), e));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "mesh": self.mesh,
            "dataplane": self.dataplane,
            "service": self.service,
            "address": self.address,
            "port": self.port,
            "path": self.path,
            "tags": self.tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "tls": self.tls.as_str(),
            "allowed": self.allowed.as_ref().map(|a| a.iter().map(|x| match x {
                Allowed::Service(s) => s.clone(),
                Allowed::AnyInMesh => "*".to_owned(),
            }).collect::<Vec<_>>()),
            "envoy": {"filterRegex": self.filter_regex, "usedOnly": self.used_only},
            "aggregate": self.apps.iter().map(|a| json!({
                "name": a.name, "address": a.address, "port": a.port, "path": a.path
            })).collect::<Vec<_>>(),
        });
        if !self.policies.is_empty()
            && let Value::Object(m) = &mut v
        {
            m.insert("clientId".into(), json!(self.client_id));
            m.insert(
                "moreBackends".into(),
                self.more
                    .iter()
                    .map(|b| json!({"clientId": b.client_id, "port": b.port, "path": b.path, "tls": b.tls.as_str()}))
                    .collect(),
            );
            m.insert("envoyFamilies".into(), json!(self.families));
            m.insert(
                "openTelemetry".into(),
                self.otel
                    .iter()
                    .map(|o| json!({"endpoint": o.endpoint, "refreshIntervalSeconds": o.refresh_interval.as_secs_f64()}))
                    .collect(),
            );
            m.insert(
                "meshMetric".into(),
                json!({"policies": self.policies, "merged": self.policy}),
            );
        }
        v
    }
}

fn set_tags(tags: &mut Vec<(String, String)>, with: &[(String, String)]) {
    for (k, v) in with {
        match tags.iter_mut().find(|(tk, _)| tk == k) {
            Some(t) => t.1 = v.clone(),
            None => tags.push((k.clone(), v.clone())),
        }
    }
}

/// The TLS mode a conf asks for, if it says anything.
fn mode_of(conf: &PrometheusConf) -> Option<TlsMode> {
    conf.tls_mode.or(match conf.skip_mtls {
        Some(true) => Some(TlsMode::Disabled),
        _ => None,
    })
}

/// Applies a Dataplane's `metrics.conf` over the mesh's.
fn overlay(base: &mut PrometheusConf, dp: &PrometheusConf) {
    base.port = dp.port.or(base.port);
    base.path = dp.path.clone().or(base.path.take());
    base.filter_regex = dp.filter_regex.clone().or(base.filter_regex.take());
    base.used_only = dp.used_only.or(base.used_only);
    if let Some(mode) = mode_of(dp) {
        base.tls_mode = Some(mode);
    }
    set_tags(&mut base.tags, &dp.tags);
    for a in &dp.aggregate {
        match base.aggregate.iter_mut().find(|e| e.name == a.name) {
            Some(e) => *e = a.clone(),
            None => base.aggregate.push(a.clone()),
        }
    }
}

/// Computes the effective configuration of the dataplane `selector` picks (`name`, or
/// `mesh/name` when a name is in several meshes or namespaces). Warnings that apply go into the
/// returned diagnostics; errors fail with every diagnostic.
pub fn effective(res: &Resources, selector: &str) -> Result<(Effective, Diagnostics), Invalid> {
    match res.dataplane(selector) {
        Ok(dp) => effective_for(res, dp),
        Err(why) => {
            let mut diags = Diagnostics::default();
            diags.extend(res.diagnostics.clone());
            diags.error(&format!("Dataplane {selector}"), "", why);
            Err(Invalid(diags))
        }
    }
}

/// Computes the effective configuration of one dataplane of `res`.
pub fn effective_for(
    res: &Resources,
    dp: &crate::resources::dataplane::Dataplane,
) -> Result<(Effective, Diagnostics), Invalid> {
    let mut diags = Diagnostics::default();
    diags.extend(res.diagnostics.clone());
    let result = compute(res, dp, &mut diags);
    match result {
        Some(e) if !diags.has_errors() => Ok((e, diags)),
        _ => Err(Invalid(diags)),
    }
}

/// The sources the mesh's TrafficPermissions let reach an endpoint with `tags`; `None` when none
/// selects it. Only `kuma.io/service` of a source is an identity (certificates name services): a
/// source selected by other tags alone admits no one, with a warning; a source that adds other
/// tags to its service is an error, since the RBAC could only enforce the service and would
/// admit every certificate of it, whatever its other tags (failing open).
fn allowed_sources(
    res: &Resources,
    mesh: &str,
    tags: &[(String, String)],
    ctx: &mut Ctx<'_>,
) -> Option<Vec<Allowed>> {
    let mut selected = false;
    let mut allowed = Vec::new();
    for p in res.permissions.iter().filter(|p| p.mesh == mesh) {
        if !p.destinations.iter().any(|d| selects(d, tags)) {
            continue;
        }
        selected = true;
        for (i, source) in p.sources.iter().enumerate() {
            let service = source
                .iter()
                .find(|(k, _)| k == "kuma.io/service")
                .map(|(_, v)| v.as_str());
            let others: Vec<&str> = source
                .iter()
                .filter(|(k, _)| k != "kuma.io/service")
                .map(|(k, _)| k.as_str())
                .collect();
            if service.is_some() && !others.is_empty() {
                ctx.error(
                    "metrics",
                    format!(
                        "TrafficPermission {}: sources[{i}].match: {} cannot be enforced: a certificate names only its kuma.io/service, so every certificate of that service would be admitted; select by kuma.io/service alone",
                        p.name,
                        others.join(", ")
                    ),
                );
                continue;
            }
            let a = match service {
                Some("*") => Allowed::AnyInMesh,
                Some(service) => Allowed::Service(service.to_owned()),
                None => {
                    ctx.warn(
                        "metrics",
                        format!(
                            "TrafficPermission {}: sources[{i}] selects no kuma.io/service; certificates carry only the service, so it admits no one",
                            p.name
                        ),
                    );
                    continue;
                }
            };
            if !allowed.contains(&a) {
                allowed.push(a);
            }
        }
    }
    selected.then_some(allowed)
}

fn compute(res: &Resources, dp: &Dataplane, diags: &mut Diagnostics) -> Option<Effective> {
    let mesh = res.mesh(&dp.mesh);
    let mut ctx = Ctx {
        resource: dp.resource.clone(),
        diags,
    };
    let overrides = annotations::read(&mut ctx, &dp.annotations);
    if let Some(policy) = meshmetric::merge_for(&res.meshmetrics, dp) {
        let legacy = [
            (
                mesh.and_then(|m| m.metrics.as_ref()).is_some(),
                "the mesh's metrics.enabledBackend",
            ),
            (dp.metrics.is_some(), "its own metrics"),
            (
                overrides != annotations::Overrides::default(),
                "its prometheus.metrics.kuma.io annotations",
            ),
        ];
        for (_, what) in legacy.iter().filter(|(set, _)| *set) {
            ctx.warn(
                "metrics",
                format!(
                    "{what} do not apply: {} selects this proxy",
                    policy.from.join(", ")
                ),
            );
        }
        return from_policy(res, dp, policy, &mut ctx);
    }

    let mesh_conf = mesh.and_then(|m| m.metrics.clone());
    if mesh_conf.is_none() && dp.metrics.is_none() && overrides == annotations::Overrides::default()
    {
        ctx.error(
            "metrics",
            format!("metrics are not enabled: mesh {:?} has no metrics.enabledBackend and the dataplane sets none", dp.mesh),
        );
        return None;
    }
    // Defaults belong to the mesh backend (SPEC §1); a dataplane alone starts from them too.
    let mut conf = mesh_conf.unwrap_or_default();
    conf.port = conf.port.or(Some(DEFAULT_PORT));
    conf.path = conf.path.or_else(|| Some(DEFAULT_PATH.to_owned()));
    if conf.tags.is_empty() {
        conf.tags
            .push(("kuma.io/service".into(), "dataplane-metrics".into()));
    }
    conf.tls_mode = mode_of(&conf);
    if let Some(d) = &dp.metrics {
        overlay(&mut conf, d);
    }
    overrides.apply(&mut conf);

    let port = conf.port.unwrap_or(DEFAULT_PORT);
    for i in &dp.inbound {
        if i.port == port || i.service_port == Some(port) {
            ctx.error(
                "metrics.conf.port",
                format!(
                    "{port} is also an inbound port of the dataplane: pick another metrics port"
                ),
            );
        }
    }

    let mesh_has_mtls = mesh.is_some_and(|m| m.mtls_backend.is_some());
    let tls = match conf.tls_mode.unwrap_or(TlsMode::ActiveMtlsBackend) {
        TlsMode::ActiveMtlsBackend if !mesh_has_mtls => {
            ctx.warn(
                "metrics.conf.tls.mode",
                format!("activeMTLSBackend, but mesh {:?} has no mTLS enabled: metrics are served in plaintext", dp.mesh),
            );
            TlsMode::Disabled
        }
        mode => mode,
    };

    let default_app_address = default_app_address(dp);
    let mut apps = Vec::new();
    for a in conf.aggregate.iter().filter(|a| a.enabled != Some(false)) {
        let Some(app_port) = a.port else {
            ctx.error(&format!("aggregate {:?}", a.name), "has no port");
            continue;
        };
        apps.push(App {
            name: a.name.clone(),
            address: a
                .address
                .clone()
                .unwrap_or_else(|| default_app_address.clone()),
            port: app_port,
            path: a.path.clone().unwrap_or_else(|| DEFAULT_PATH.to_owned()),
        });
    }
    // An aggregate on the metrics listener itself: every scrape would fetch itself, recursively.
    let listener = dp.address.as_deref().unwrap_or("0.0.0.0");
    for app in apps.iter().filter(|a| a.port == port) {
        let local = |addr: &str| {
            addr.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        };
        if app.address == listener || local(&app.address) || local(listener) {
            ctx.error(
                &format!("aggregate {:?}", app.name),
                format!(
                    "{}:{} is the metrics listener itself: a scrape would fetch itself",
                    app.address, app.port
                ),
            );
        }
    }
    let allowed = (tls == TlsMode::ActiveMtlsBackend)
        .then(|| allowed_sources(res, &dp.mesh, &conf.tags, &mut ctx))
        .flatten();
    Some(Effective {
        allowed,
        mesh: dp.mesh.clone(),
        dataplane: dp.name.clone(),
        id: dp.id(),
        service: dp.service().unwrap_or(&dp.name).to_owned(),
        address: listener_address(dp),
        port,
        path: conf.path.unwrap_or_else(|| DEFAULT_PATH.to_owned()),
        tags: conf.tags,
        tls,
        filter_regex: conf.filter_regex,
        used_only: conf.used_only.unwrap_or(false),
        apps,
        dataplane_tags: inbound_tags(dp, &mut ctx),
        client_id: None,
        more: Vec::new(),
        families: None,
        policies: Vec::new(),
        policy: None,
        otel: Vec::new(),
    })
}

/// The dataplane's inbound tags, the first inbound's value per name.
fn inbound_tags(dp: &Dataplane, ctx: &mut Ctx<'_>) -> Vec<(String, String)> {
    let tags: Vec<(String, String)> =
        dp.inbound
            .iter()
            .flat_map(|i| i.tags.clone())
            .fold(Vec::new(), |mut acc, t| {
                if !acc.iter().any(|(k, _)| *k == t.0) {
                    acc.push(t);
                }
                acc
            });
    if let Some(bad) = tags.iter().find(|(k, _)| k.is_empty()) {
        ctx.error(
            "networking.inbound.tags",
            format!("empty tag name for value {:?}", bad.1),
        );
    }
    tags
}

/// Where the metrics listener binds: every interface of a Pod (its own network namespace), else
/// the dataplane's address (every interface when it has none).
fn listener_address(dp: &Dataplane) -> String {
    if dp.apps_on_loopback {
        "0.0.0.0".into()
    } else {
        dp.address.clone().unwrap_or_else(|| "0.0.0.0".into())
    }
}

/// Where a dataplane's applications are by default: its own network namespace for a Pod, else
/// its address.
fn default_app_address(dp: &Dataplane) -> String {
    if dp.apps_on_loopback {
        "127.0.0.1".to_owned()
    } else {
        dp.address.clone().unwrap_or_else(|| "127.0.0.1".to_owned())
    }
}

/// The endpoint's identity for TrafficPermission under `ActiveMTLSBackend` (the legacy
/// backend's default tags).
fn endpoint_tags() -> Vec<(String, String)> {
    vec![("kuma.io/service".into(), "dataplane-metrics".into())]
}

/// A MeshMetric's TLS mode on this mesh: `ActiveMTLSBackend` needs the mesh's mTLS.
fn tls_on_mesh(mode: TlsMode, mesh_has_mtls: bool, field: &str, ctx: &mut Ctx<'_>) -> TlsMode {
    if mode == TlsMode::ActiveMtlsBackend && !mesh_has_mtls {
        ctx.warn(
            field,
            "ActiveMTLSBackend, but the mesh has no mTLS enabled: metrics are served in plaintext",
        );
        return TlsMode::Disabled;
    }
    mode
}

/// The effective configuration from a merged MeshMetric policy (SPEC §10).
fn from_policy(
    res: &Resources,
    dp: &Dataplane,
    policy: Policy,
    ctx: &mut Ctx<'_>,
) -> Option<Effective> {
    let mesh_has_mtls = res.mesh(&dp.mesh).is_some_and(|m| m.mtls_backend.is_some());
    let mut prometheus = Vec::new();
    let mut otel = Vec::new();
    for (i, b) in policy.backends.iter().enumerate() {
        match b {
            Backend::Prometheus(p) => prometheus.push(Endpoint {
                client_id: Some(p.client_id.clone().unwrap_or_default()),
                port: p.port,
                path: p.path.clone(),
                tls: tls_on_mesh(
                    p.tls,
                    mesh_has_mtls,
                    &format!("backends[{i}].prometheus.tls.mode"),
                    ctx,
                ),
            }),
            Backend::OpenTelemetry(o) => otel.push(o.clone()),
        }
    }
    // Push only (OpenTelemetry, no Prometheus backend): the filter that pushes lives on a
    // listener all the same, on loopback and a port Envoy picks; discovery leaves it out.
    let push_only = prometheus.is_empty();
    if push_only {
        if otel.is_empty() {
            ctx.error(
                "metrics",
                format!(
                    "{} selects this proxy, but names no backend: nothing would be scraped or pushed",
                    policy.from.join(", ")
                ),
            );
            return None;
        }
        prometheus.push(Endpoint {
            client_id: None,
            port: 0,
            path: DEFAULT_PATH.into(),
            tls: TlsMode::Disabled,
        });
    }
    for e in &prometheus {
        for i in &dp.inbound {
            if i.port == e.port || i.service_port == Some(e.port) {
                ctx.error(
                    "metrics",
                    format!(
                        "{} is also an inbound port of the dataplane: pick another Prometheus backend port",
                        e.port
                    ),
                );
            }
        }
    }
    let default_address = default_app_address(dp);
    let apps: Vec<App> = policy
        .applications
        .iter()
        .map(|a| App {
            name: a.name.clone().unwrap_or_else(|| format!("app-{}", a.port)),
            address: a.address.clone().unwrap_or_else(|| default_address.clone()),
            port: a.port,
            path: a.path.clone(),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for a in &apps {
        if !seen.insert(a.name.clone()) {
            ctx.error(
                "applications",
                format!(
                    "two applications are named {:?}: names label their samples and must differ",
                    a.name
                ),
            );
        }
        if prometheus.iter().any(|e| e.port == a.port) && is_local(&a.address, dp) {
            ctx.error(
                "applications",
                format!(
                    "{}:{} is a metrics listener itself: a scrape would fetch itself",
                    a.address, a.port
                ),
            );
        }
    }
    let first = prometheus.remove(0);
    let tags = endpoint_tags();
    let any_mtls = first.tls == TlsMode::ActiveMtlsBackend
        || prometheus
            .iter()
            .any(|e| e.tls == TlsMode::ActiveMtlsBackend);
    let allowed = any_mtls
        .then(|| allowed_sources(res, &dp.mesh, &tags, ctx))
        .flatten();
    let families = meshmetrics_filter::config::FamilyRules {
        profile: policy.profile,
        exclude: policy.exclude.clone(),
        include: policy.include.clone(),
    };
    Some(Effective {
        allowed,
        mesh: dp.mesh.clone(),
        dataplane: dp.name.clone(),
        id: dp.id(),
        service: dp.service().unwrap_or(&dp.name).to_owned(),
        address: if push_only {
            "127.0.0.1".into()
        } else {
            listener_address(dp)
        },
        port: first.port,
        path: first.path,
        tags,
        tls: first.tls,
        filter_regex: None,
        used_only: !policy.include_unused,
        apps,
        dataplane_tags: inbound_tags(dp, ctx),
        client_id: first.client_id,
        more: prometheus,
        families: Some(families),
        policies: policy.from,
        policy: Some(policy.merged),
        otel,
    })
}

/// Whether `address` reaches the dataplane's own listeners.
fn is_local(address: &str, dp: &Dataplane) -> bool {
    let local = |addr: &str| {
        addr.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    };
    local(address) || dp.address.as_deref() == Some(address) || dp.address.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::yaml::parse;

    fn eff(yaml: &str, dp: &str) -> Result<Effective, String> {
        let docs = parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        effective(&Resources::read(&docs), dp)
            .map(|(e, _)| e)
            .map_err(|e| e.to_string())
    }

    const MESH: &str = "type: Mesh\nname: m\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n      skipMTLS: true\n      tags: {team: a, kuma.io/service: dataplane-metrics}\n      envoy: {usedOnly: false, filterRegex: '^x'}\n      aggregate:\n      - {name: a, port: 1000, path: /a}\n      - {name: b, port: 2000, address: 10.0.0.9}\n---\n";

    fn dp(metrics: &str) -> String {
        format!(
            "{MESH}type: Dataplane\nmesh: m\nname: d\nnetworking:\n  address: 192.168.0.7\n  inbound: [{{port: 80, tags: {{kuma.io/service: web}}}}]\n{metrics}"
        )
    }

    #[test]
    fn mesh_defaults_alone() {
        let e = eff(&dp(""), "d").unwrap();
        assert_eq!(
            (e.port, e.path.as_str(), e.address.as_str()),
            (5670, "/metrics", "192.168.0.7")
        );
        assert_eq!(e.service, "web");
        assert_eq!(e.filter_regex.as_deref(), Some("^x"));
        // Aggregate address defaults to the dataplane's address.
        assert_eq!(
            e.apps[0],
            App {
                name: "a".into(),
                address: "192.168.0.7".into(),
                port: 1000,
                path: "/a".into()
            }
        );
        assert_eq!(e.apps[1].address, "10.0.0.9");
    }

    #[test]
    fn dataplane_scalars_win_both_ways_and_tags_merge() {
        let e = eff(&dp("metrics:\n  type: prometheus\n  conf:\n    port: 6000\n    tags: {team: b, zone: z1}\n    envoy: {usedOnly: true}\n"), "d").unwrap();
        assert_eq!(e.port, 6000);
        assert!(
            e.used_only,
            "a dataplane turns usedOnly back on (Kuma cannot)"
        );
        assert_eq!(
            e.filter_regex.as_deref(),
            Some("^x"),
            "not set on the dataplane: the mesh's"
        );
        assert_eq!(
            e.tags,
            [
                ("kuma.io/service".into(), "dataplane-metrics".into()),
                ("team".into(), "b".into()),
                ("zone".into(), "z1".into())
            ]
        );
    }

    #[test]
    fn dataplane_aggregate_replaces_whole_disables_and_adds() {
        let e = eff(&dp("metrics:\n  type: prometheus\n  conf:\n    aggregate:\n    - {name: a, port: 1001}\n    - {name: b, enabled: false}\n    - {name: c, port: 3000}\n"), "d").unwrap();
        let apps: Vec<(&str, u16, &str)> = e
            .apps
            .iter()
            .map(|a| (a.name.as_str(), a.port, a.path.as_str()))
            .collect();
        // `a` replaced whole: its path is the default again, not the mesh's `/a`.
        assert_eq!(apps, [("a", 1001, "/metrics"), ("c", 3000, "/metrics")]);
    }

    #[test]
    fn mtls_modes() {
        let with_mtls = dp("")
            .replace(
                "metrics:\n  enabledBackend",
                "mtls: {enabledBackend: ca}\nmetrics:\n  enabledBackend",
            )
            .replace("skipMTLS: true", "skipMTLS: false");
        let e = eff(&with_mtls, "d").unwrap();
        assert_eq!((e.tls, e.allowed), (TlsMode::ActiveMtlsBackend, None));
        // A TrafficPermission whose destination is the endpoint's tags lists who may scrape.
        let permitted = format!(
            "{with_mtls}---\ntype: TrafficPermission\nname: tp\nmesh: m\nsources: [{{match: {{kuma.io/service: prom}}}}, {{match: {{kuma.io/service: '*'}}}}]\ndestinations: [{{match: {{team: a}}}}]\n"
        );
        let e = eff(&permitted, "d").unwrap();
        assert_eq!(
            e.allowed,
            Some(vec![Allowed::Service("prom".into()), Allowed::AnyInMesh])
        );
        // No mTLS on the mesh: plaintext, with a warning.
        let no_mtls = dp("").replace("skipMTLS: true", "skipMTLS: false");
        assert_eq!(eff(&no_mtls, "d").unwrap().tls, TlsMode::Disabled);
    }

    #[test]
    fn metrics_off_is_an_error_naming_the_dataplane() {
        let yaml = "type: Mesh\nname: m\n---\ntype: Dataplane\nmesh: m\nname: d\nnetworking: {address: 1.2.3.4, inbound: [{port: 80}]}\n";
        let err = eff(yaml, "d").unwrap_err();
        assert!(
            err.contains("error: Dataplane d: metrics: metrics are not enabled"),
            "{err}"
        );
    }
}
