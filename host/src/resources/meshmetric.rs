//! `MeshMetric`, Kuma's successor to `Mesh.metrics` (SPEC §10): what it says, checked as Kuma
//! checks it (its messages, field path first), and stricter where Kuma is silent (an unknown
//! field is an error: Kuma's own docs once put `backends` under `targetRef`, and the policy then
//! selected the whole mesh with no backend).
//!
//! A policy's `default` is kept as written (validated): the policies that select a proxy are
//! merged as JSON merge patches of it ([`merge_for`]), and only the merged result is turned
//! into a [`Policy`].

use std::time::Duration;

use serde_json::{Map, Value};

use super::dataplane::Dataplane;
use super::metrics::TlsMode;
use super::reader::{Ctx, Obj, kind_of};

pub const DEFAULT_PORT: u16 = 5670;
pub const DEFAULT_PATH: &str = "/metrics";
/// Kuma's default `refreshInterval` of an OpenTelemetry backend.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// The shortest `refreshInterval` accepted.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// What a policy selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRef {
    Mesh,
    MeshSubset(Vec<(String, String)>),
    MeshService(String),
    MeshServiceSubset(String, Vec<(String, String)>),
    Dataplane(String),
}

impl TargetRef {
    /// How specific: the least specific applies first.
    pub fn rank(&self) -> u8 {
        match self {
            TargetRef::Mesh => 0,
            TargetRef::MeshSubset(_) => 1,
            TargetRef::MeshService(_) => 2,
            TargetRef::MeshServiceSubset(..) => 3,
            TargetRef::Dataplane(_) => 4,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TargetRef::Mesh => "Mesh",
            TargetRef::MeshSubset(_) => "MeshSubset",
            TargetRef::MeshService(_) => "MeshService",
            TargetRef::MeshServiceSubset(..) => "MeshServiceSubset",
            TargetRef::Dataplane(_) => "Dataplane",
        }
    }

    /// Whether it selects `dp` (of the policy's mesh). Tags match when one inbound carries them
    /// all; a service is the `kuma.io/service` tag of an inbound.
    pub fn selects(&self, dp: &Dataplane) -> bool {
        let has_tags = |tags: &[(String, String)], service: Option<&str>| {
            dp.inbound.iter().any(|i| {
                service.is_none_or(|s| i.tags.iter().any(|(k, v)| k == "kuma.io/service" && v == s))
                    && tags.iter().all(|t| i.tags.contains(t))
            })
        };
        match self {
            TargetRef::Mesh => true,
            TargetRef::MeshSubset(tags) => has_tags(tags, None),
            TargetRef::MeshService(name) => has_tags(&[], Some(name)),
            TargetRef::MeshServiceSubset(name, tags) => has_tags(tags, Some(name)),
            TargetRef::Dataplane(name) => dp.answers_to(name),
        }
    }
}

/// One MeshMetric as read.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshMetric {
    pub name: String,
    pub mesh: String,
    /// `MeshMetric <mesh>/<name>`, for diagnostics.
    pub resource: String,
    pub target: TargetRef,
    /// `spec.default` as written (a mapping; validated).
    pub default: Value,
}

/// The merged `default` of the policies that select one proxy, made typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The policies merged, in the order they applied (`MeshMetric <mesh>/<name>`).
    pub from: Vec<String>,
    pub include_unused: bool,
    /// The broadest of the appended profiles (Basic when none).
    pub profile: meshmetrics_filter::config::Profile,
    pub exclude: Vec<meshmetrics_filter::config::Matcher>,
    pub include: Vec<meshmetrics_filter::config::Matcher>,
    pub applications: Vec<Application>,
    pub backends: Vec<Backend>,
    /// The merged `default`, as JSON (what `validate` shows).
    pub merged: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    pub name: Option<String>,
    pub path: String,
    pub port: u16,
    pub address: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    Prometheus(PrometheusBackend),
    OpenTelemetry(OpenTelemetryBackend),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusBackend {
    pub client_id: Option<String>,
    pub port: u16,
    pub path: String,
    pub tls: TlsMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTelemetryBackend {
    /// `host:port`.
    pub endpoint: String,
    pub refresh_interval: Duration,
}

const PROFILE_NAMES: [&str; 3] = ["All", "Basic", "None"];
const MATCH_TYPES: &str = "'Regex', 'Prefix', 'Exact', 'Contains' are supported";

/// Reads a MeshMetric's `spec` (both forms put it there).
pub fn read(ctx: &mut Ctx<'_>, name: String, mesh: String, mut spec: Obj<'_>) -> MeshMetric {
    let target_ref = spec.obj(ctx, "targetRef");
    let target = read_target(ctx, target_ref);
    let default = spec.raw("default").cloned().unwrap_or(Value::Null);
    if !spec.is_present() {
        ctx.error("spec", "is required");
    }
    let default = match default {
        Value::Null => {
            ctx.error("spec.default", "is required");
            Value::Object(Map::new())
        }
        v @ Value::Object(_) => {
            check_default(ctx, &v, "spec.default");
            v
        }
        other => {
            ctx.error(
                "spec.default",
                format!("must be a mapping, not {}", kind_of(&other)),
            );
            Value::Object(Map::new())
        }
    };
    // `from` / `to` / `rules` are other policies' shapes: here they are mistakes.
    spec.finish_strict(ctx);
    MeshMetric {
        resource: ctx.resource.clone(),
        name,
        mesh,
        target: target.unwrap_or(TargetRef::Mesh),
        default,
    }
}

fn read_target(ctx: &mut Ctx<'_>, mut t: Obj<'_>) -> Option<TargetRef> {
    if !t.is_present() {
        // Omitted: the whole mesh (Kuma's default).
        return Some(TargetRef::Mesh);
    }
    let kind = t.string(ctx, "kind");
    let name = t.string(ctx, "name");
    let tags = t.string_map(ctx, "tags");
    // Fields Kuma's newer targetRefs carry that do not change what a sidecar policy selects.
    t.ignore(&["proxyTypes"]);
    let field = t.field("kind");
    let need_name = |ctx: &mut Ctx<'_>, name: Option<String>| {
        if name.is_none() {
            ctx.error(&t.field("name"), "is required");
        }
        name
    };
    let target = match kind.as_deref() {
        None => {
            ctx.error(&field, "is required");
            None
        }
        Some("Mesh") => Some(TargetRef::Mesh),
        Some("MeshSubset") => Some(TargetRef::MeshSubset(tags)),
        Some("MeshService") => need_name(ctx, name).map(TargetRef::MeshService),
        Some("MeshServiceSubset") => {
            need_name(ctx, name).map(|n| TargetRef::MeshServiceSubset(n, tags))
        }
        Some("Dataplane") => need_name(ctx, name).map(TargetRef::Dataplane),
        Some(other) => {
            ctx.error(
                &field,
                format!(
                    "value is not supported: {other:?} (Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane)"
                ),
            );
            None
        }
    };
    t.finish_strict(ctx);
    target
}

/// Checks a `default` as Kuma does, and for unknown fields.
fn check_default(ctx: &mut Ctx<'_>, v: &Value, path: &str) {
    let mut d = Obj::new(ctx, Some(v), path);
    let mut sidecar = d.obj(ctx, "sidecar");
    sidecar.bool(ctx, "includeUnused");
    let mut profiles = sidecar.obj(ctx, "profiles");
    for mut p in profiles.list(ctx, "appendProfiles") {
        match p.string(ctx, "name") {
            Some(n) if PROFILE_NAMES.contains(&n.as_str()) => {}
            Some(_) => ctx.error(&p.field("name"), "unrecognized profile name"),
            None => ctx.error(&p.field("name"), "is required"),
        }
        p.finish_strict(ctx);
    }
    for list in ["exclude", "include"] {
        let items = if list == "exclude" {
            profiles.list(ctx, "exclude")
        } else {
            profiles.list(ctx, "include")
        };
        for item in items {
            read_matcher(ctx, item);
        }
    }
    profiles.finish_strict(ctx);
    sidecar.finish_strict(ctx);

    for mut a in d.list(ctx, "applications") {
        a.string(ctx, "name");
        if let Some(p) = a.string(ctx, "path")
            && !p.starts_with('/')
        {
            ctx.error(&a.field("path"), format!("{p:?} must start with '/'"));
        }
        port_required(ctx, &mut a);
        if let Some(addr) = a.string(ctx, "address")
            && let Some(problem) = super::names::ip_problem(&addr)
        {
            ctx.error(&a.field("address"), problem);
        }
        a.finish_strict(ctx);
    }

    let mut ports: Vec<(u16, String)> = Vec::new();
    for mut b in d.list(ctx, "backends") {
        let kind = b.string(ctx, "type");
        let mut prom = b.obj(ctx, "prometheus");
        let mut otel = b.obj(ctx, "openTelemetry");
        match kind.as_deref() {
            Some("Prometheus") => {
                if otel.is_present() {
                    ctx.error(&otel.path, "must not be set with type Prometheus");
                }
                prom.string(ctx, "clientId");
                let port = if prom.raw("port").is_some() {
                    port_of(ctx, &mut prom)
                } else {
                    Some(DEFAULT_PORT)
                };
                if let Some(p) = prom.string(ctx, "path")
                    && !p.starts_with('/')
                {
                    ctx.error(&prom.field("path"), format!("{p:?} must start with '/'"));
                }
                let mut tls = prom.obj(ctx, "tls");
                if let Some(mode) = tls.string(ctx, "mode")
                    && tls_mode(&mode).is_none()
                {
                    ctx.error(
                        &tls.field("mode"),
                        format!(
                            "unrecognized mode {mode:?} - 'Disabled', 'ProvidedTLS', 'ActiveMTLSBackend' are supported"
                        ),
                    );
                }
                tls.finish_strict(ctx);
                if let Some(port) = port {
                    match ports.iter().find(|(p, _)| *p == port) {
                        Some((_, other)) => ctx.error(
                            &prom.field("port"),
                            format!("{port} is also the port of {other}: each Prometheus backend has its own listener"),
                        ),
                        None => ports.push((port, b.path.clone())),
                    }
                }
            }
            Some("OpenTelemetry") => {
                if prom.is_present() {
                    ctx.error(&prom.path, "must not be set with type OpenTelemetry");
                }
                if !otel.is_present() {
                    ctx.error(&otel.path, "is required with type OpenTelemetry");
                }
                match otel.string(ctx, "endpoint") {
                    None => ctx.error(&otel.field("endpoint"), "is required"),
                    Some(e) if endpoint_problem(&e).is_some() => ctx.error(
                        &otel.field("endpoint"),
                        endpoint_problem(&e).unwrap_or_default(),
                    ),
                    Some(_) => {}
                }
                if let Some(i) = otel.string(ctx, "refreshInterval") {
                    match parse_duration(&i) {
                        None => ctx.error(
                            &otel.field("refreshInterval"),
                            format!("{i:?} is not a positive duration (such as 30s, 1m, 1m30s)"),
                        ),
                        // The filter pushes on a one-second tick.
                        Some(d) if d < MIN_REFRESH => ctx.error(
                            &otel.field("refreshInterval"),
                            format!("{i:?} is under 1s, the shortest interval a push may have"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            Some(other) => ctx.error(
                &b.field("type"),
                format!(
                    "unrecognized type {other:?} - 'Prometheus', 'OpenTelemetry' are supported"
                ),
            ),
            None => ctx.error(&b.field("type"), "is required"),
        }
        prom.finish_strict(ctx);
        otel.finish_strict(ctx);
        b.finish_strict(ctx);
    }
    d.finish_strict(ctx);
}

fn read_matcher(ctx: &mut Ctx<'_>, mut m: Obj<'_>) {
    let kind = m.string(ctx, "type");
    let pattern = m.string(ctx, "match");
    match kind.as_deref() {
        Some("Regex") => {
            if let Some(p) = &pattern
                && let Err(e) = meshmetrics_filter::exposition::FamilyFilter::new(p)
            {
                ctx.error(&m.field("match"), format!("invalid regex: {e}"));
            }
        }
        Some("Prefix" | "Exact" | "Contains") => {}
        Some(other) => ctx.error(
            &m.field("type"),
            format!("unrecognized type '{other}' - {MATCH_TYPES}"),
        ),
        None => ctx.error(&m.field("type"), "is required"),
    }
    if pattern.is_none() {
        ctx.error(&m.field("match"), "is required");
    }
    m.finish_strict(ctx);
}

fn port_of(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) -> Option<u16> {
    let raw = o.raw("port")?;
    match super::reader::parse_port(raw) {
        Some(p) => Some(p),
        None => {
            let shown = match raw {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ctx.error(
                &o.field("port"),
                format!("{shown} is not a port: port must be a valid (1-65535)"),
            );
            None
        }
    }
}

fn port_required(ctx: &mut Ctx<'_>, o: &mut Obj<'_>) {
    if o.raw("port").is_none() {
        ctx.error(&o.field("port"), "is required");
    } else {
        port_of(ctx, o);
    }
}

pub fn tls_mode(s: &str) -> Option<TlsMode> {
    match s {
        "Disabled" => Some(TlsMode::Disabled),
        "ProvidedTLS" => Some(TlsMode::ProvidedTls),
        "ActiveMTLSBackend" => Some(TlsMode::ActiveMtlsBackend),
        _ => None,
    }
}

/// Why `e` is not `host:port`, if it is not.
fn endpoint_problem(e: &str) -> Option<String> {
    if e.contains("://") {
        return Some("must be in host:port format, not a URL".into());
    }
    let bad = || Some(format!("{e:?} must be in host:port format"));
    let (host, port) = match e.rsplit_once(':') {
        Some(hp) => hp,
        None => return bad(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host.contains(['/', ' ', '?', '#', '@'])
        || super::reader::parse_port(&Value::String(port.into())).is_none()
    {
        return bad();
    }
    None
}

/// A Go duration (`30s`, `1m`, `1h30m`, `500ms`), positive.
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse(s).filter(|d| !d.is_zero())
}

/// RFC 7396: `patch` applied to `target`; `null` removes a key, a non-object replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The policies of `policies` that select `dp`, least specific first (same kind: by name).
pub fn selecting<'a>(policies: &'a [MeshMetric], dp: &Dataplane) -> Vec<&'a MeshMetric> {
    let mut s: Vec<&MeshMetric> = policies
        .iter()
        .filter(|p| p.mesh == dp.mesh && p.target.selects(dp))
        .collect();
    s.sort_by(|a, b| (a.target.rank(), &a.name).cmp(&(b.target.rank(), &b.name)));
    s
}

/// The merged policy of `dp`, if any MeshMetric selects it: each `default` applied as a JSON
/// merge patch, least specific first; lists are replaced whole, except `appendProfiles`, which
/// add up.
pub fn merge_for(policies: &[MeshMetric], dp: &Dataplane) -> Option<Policy> {
    let selected = selecting(policies, dp);
    if selected.is_empty() {
        return None;
    }
    let mut merged = Value::Object(Map::new());
    let mut profiles: Vec<Value> = Vec::new();
    for p in &selected {
        let mut patch = p.default.clone();
        if let Some(list) = patch
            .pointer_mut("/sidecar/profiles/appendProfiles")
            .map(Value::take)
            && let Value::Array(items) = list
        {
            profiles.extend(items);
        }
        merge_patch(&mut merged, &patch);
    }
    if !profiles.is_empty() {
        let sidecar = merged
            .as_object_mut()
            .map(|m| m.entry("sidecar").or_insert(Value::Object(Map::new())));
        if let Some(Value::Object(s)) = sidecar {
            let p = s.entry("profiles").or_insert(Value::Object(Map::new()));
            if let Value::Object(p) = p {
                p.insert("appendProfiles".into(), Value::Array(profiles));
            }
        }
    }
    // `appendProfiles: null` left behind by the taking above.
    if let Some(Value::Object(p)) = merged.pointer_mut("/sidecar/profiles") {
        p.retain(|_, v| !v.is_null());
    }
    Some(typed(
        &merged,
        selected.iter().map(|p| p.resource.clone()).collect(),
    ))
}

/// The typed form of a merged (already validated) `default`.
fn typed(v: &Value, from: Vec<String>) -> Policy {
    use meshmetrics_filter::config::{MatchKind, Matcher, Profile};
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let list = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let port = |v: &Value| v.get("port").and_then(super::reader::parse_port);
    let profile = list("/sidecar/profiles/appendProfiles")
        .iter()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .map(|n| match n {
            "All" => Profile::All,
            "None" => Profile::None,
            _ => Profile::Basic,
        })
        .max_by_key(|p| match p {
            Profile::None => 0,
            Profile::Basic => 1,
            Profile::All => 2,
        })
        .unwrap_or(Profile::Basic);
    let matchers = |p: &str| {
        list(p)
            .iter()
            .filter_map(|m| {
                let kind = match m.get("type")?.as_str()? {
                    "Regex" => MatchKind::Regex,
                    "Prefix" => MatchKind::Prefix,
                    "Exact" => MatchKind::Exact,
                    "Contains" => MatchKind::Contains,
                    _ => return None,
                };
                Some(Matcher {
                    kind,
                    pattern: m.get("match")?.as_str()?.to_owned(),
                })
            })
            .collect()
    };
    let applications = list("/applications")
        .iter()
        .filter_map(|a| {
            Some(Application {
                name: s(a, "/name"),
                path: s(a, "/path").unwrap_or_else(|| DEFAULT_PATH.into()),
                port: port(a)?,
                address: s(a, "/address"),
            })
        })
        .collect();
    let backends = list("/backends")
        .iter()
        .filter_map(|b| match b.get("type")?.as_str()? {
            "Prometheus" => {
                let p = b.get("prometheus").cloned().unwrap_or(Value::Null);
                Some(Backend::Prometheus(PrometheusBackend {
                    client_id: s(&p, "/clientId").filter(|c| !c.is_empty()),
                    port: port(&p).unwrap_or(DEFAULT_PORT),
                    path: s(&p, "/path").unwrap_or_else(|| DEFAULT_PATH.into()),
                    tls: s(&p, "/tls/mode")
                        .and_then(|m| tls_mode(&m))
                        .unwrap_or(TlsMode::Disabled),
                }))
            }
            "OpenTelemetry" => {
                let o = b.get("openTelemetry")?;
                Some(Backend::OpenTelemetry(OpenTelemetryBackend {
                    endpoint: s(o, "/endpoint")?,
                    refresh_interval: s(o, "/refreshInterval")
                        .and_then(|i| parse_duration(&i))
                        .unwrap_or(DEFAULT_REFRESH),
                }))
            }
            _ => None,
        })
        .collect();
    Policy {
        from,
        include_unused: v
            .pointer("/sidecar/includeUnused")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        profile,
        exclude: matchers("/sidecar/profiles/exclude"),
        include: matchers("/sidecar/profiles/include"),
        applications,
        backends,
        merged: v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use crate::resources::yaml::parse;

    fn read(yaml: &str) -> Resources {
        Resources::read(&parse(yaml, std::path::Path::new("t.yaml")).unwrap())
    }

    fn errors(yaml: &str) -> Vec<String> {
        read(yaml)
            .diagnostics
            .errors()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), None, "not positive");
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn kumas_messages_with_the_field_path_first() {
        let e = errors(
            "type: MeshMetric\nname: bad\nmesh: default\nspec:\n  default:\n    sidecar:\n      profiles:\n        appendProfiles: [{name: Most}]\n        exclude: [{type: Regex, match: '('}]\n        include: [{type: Glob, match: x}]\n    applications: [{port: 0}]\n    backends:\n    - type: Prometheus\n      prometheus: {port: 70000}\n    - type: OpenTelemetry\n      openTelemetry: {endpoint: 'http://collector:4317', refreshInterval: soon}\n    - type: OpenTelemetry\n      openTelemetry: {endpoint: 'collector:4317', refreshInterval: 500ms}\n    - type: Graphite\n",
        );
        let want = [
            "MeshMetric default/bad: spec.default.sidecar.profiles.appendProfiles[0].name: unrecognized profile name",
            "MeshMetric default/bad: spec.default.sidecar.profiles.exclude[0].match: invalid regex",
            "MeshMetric default/bad: spec.default.sidecar.profiles.include[0].type: unrecognized type 'Glob' - 'Regex', 'Prefix', 'Exact', 'Contains' are supported",
            "MeshMetric default/bad: spec.default.applications[0].port: 0 is not a port: port must be a valid (1-65535)",
            "MeshMetric default/bad: spec.default.backends[0].prometheus.port: 70000 is not a port: port must be a valid (1-65535)",
            "MeshMetric default/bad: spec.default.backends[1].openTelemetry.endpoint: must be in host:port format, not a URL",
            "MeshMetric default/bad: spec.default.backends[1].openTelemetry.refreshInterval: \"soon\" is not a positive duration",
            "MeshMetric default/bad: spec.default.backends[2].openTelemetry.refreshInterval: \"500ms\" is under 1s",
            "MeshMetric default/bad: spec.default.backends[3].type: unrecognized type \"Graphite\"",
        ];
        for w in want {
            assert!(e.iter().any(|x| x.contains(w)), "{w}\nnot in:\n{e:#?}");
        }
    }

    #[test]
    fn an_unknown_field_is_an_error_even_where_kumas_docs_put_it() {
        // One of Kuma's docs examples nests `backends` under `targetRef`.
        let e = errors(
            "apiVersion: kuma.io/v1alpha1\nkind: MeshMetric\nmetadata:\n  name: metrics-default\n  namespace: kuma-system\n  labels: {kuma.io/mesh: default}\nspec:\n  targetRef:\n    kind: Mesh\n    backends:\n    - type: Prometheus\n  default: {}\n",
        );
        assert_eq!(
            e,
            ["error: MeshMetric default/metrics-default: spec.targetRef.backends: unknown field"]
        );
        let e = errors(
            "type: MeshMetric\nname: x\nmesh: default\nspec:\n  targetRef: {kind: MeshGateway, name: g}\n  default:\n    backends:\n    - {type: Prometheus, prometheus: {port: 5670}}\n    - {type: Prometheus, prometheus: {port: 5670, clientId: b}}\n",
        );
        assert!(
            e[0].contains("spec.targetRef.kind: value is not supported"),
            "{e:?}"
        );
        assert!(
            e[1].contains("spec.default.backends[1].prometheus.port: 5670 is also the port of"),
            "{e:?}"
        );
    }

    const DP: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound: [{port: 80, tags: {kuma.io/service: web, version: v2}}]\n";

    #[test]
    fn policies_merge_least_specific_first_lists_replaced_profiles_appended() {
        let yaml = format!(
            "{DP}---\ntype: MeshMetric\nname: z-mesh\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  default:\n    sidecar:\n      includeUnused: true\n      profiles:\n        appendProfiles: [{{name: None}}]\n        include: [{{type: Prefix, match: envoy_server}}]\n    applications: [{{port: 8080}}]\n    backends: [{{type: Prometheus, prometheus: {{port: 5670}}}}]\n---\ntype: MeshMetric\nname: a-svc\nmesh: default\nspec:\n  targetRef: {{kind: MeshService, name: web}}\n  default:\n    sidecar:\n      profiles:\n        appendProfiles: [{{name: Basic}}]\n        include: [{{type: Contains, match: rq}}]\n---\ntype: MeshMetric\nname: subset\nmesh: default\nspec:\n  targetRef: {{kind: MeshSubset, tags: {{version: v2}}}}\n  default:\n    applications: [{{name: api, port: 9090, path: /stats}}]\n---\ntype: MeshMetric\nname: other\nmesh: default\nspec:\n  targetRef: {{kind: MeshService, name: db}}\n  default:\n    sidecar: {{includeUnused: false}}\n"
        );
        let r = read(&yaml);
        assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
        let p = merge_for(&r.meshmetrics, &r.dataplanes[0]).unwrap();
        assert_eq!(
            p.from,
            [
                "MeshMetric default/z-mesh",
                "MeshMetric default/subset",
                "MeshMetric default/a-svc"
            ]
        );
        assert!(p.include_unused, "the db policy does not select web");
        assert_eq!(
            p.profile,
            meshmetrics_filter::config::Profile::Basic,
            "None + Basic: the broadest"
        );
        assert_eq!(p.include.len(), 1, "the service's list replaced the mesh's");
        assert_eq!(p.include[0].pattern, "rq");
        assert_eq!(
            p.applications,
            [Application {
                name: Some("api".into()),
                path: "/stats".into(),
                port: 9090,
                address: None
            }]
        );
        assert_eq!(p.backends.len(), 1);
    }
}
