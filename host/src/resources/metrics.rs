//! The Prometheus backend `conf`, as written in a Mesh backend or a Dataplane's `metrics`.
//! Every field is optional here: defaults are applied once, in `effective`.

use meshmetrics_filter::exposition::FamilyFilter;

use super::reader::{Ctx, Obj};

/// How the metrics endpoint is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    ActiveMtlsBackend,
    ProvidedTls,
    Disabled,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::ActiveMtlsBackend => "activeMTLSBackend",
            TlsMode::ProvidedTls => "providedTLS",
            TlsMode::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrometheusConf {
    pub port: Option<u16>,
    pub path: Option<String>,
    pub tags: Vec<(String, String)>,
    pub skip_mtls: Option<bool>,
    pub tls_mode: Option<TlsMode>,
    pub filter_regex: Option<String>,
    pub used_only: Option<bool>,
    pub aggregate: Vec<AggregateConf>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregateConf {
    pub name: String,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub address: Option<String>,
    pub enabled: Option<bool>,
}

pub fn check_path(ctx: &mut Ctx<'_>, field: &str, path: &Option<String>) {
    if let Some(problem) = path.as_deref().and_then(super::names::path_problem) {
        ctx.error(field, problem);
    }
}

/// What an aggregate's name and address must be (the checks the bootstrap and Envoy would
/// otherwise make later).
pub fn check_aggregate(
    ctx: &mut Ctx<'_>,
    name_field: &str,
    address_field: &str,
    a: &AggregateConf,
) {
    if a.name.is_empty() {
        ctx.error(name_field, "is required");
    } else if a.name == super::names::ENVOY_SOURCE {
        ctx.error(
            name_field,
            "\"envoy\" names Envoy's own stats in the scrape: pick another name",
        );
    } else if let Some(problem) = super::names::name_problem(&a.name) {
        ctx.error(name_field, problem);
    }
    if let Some(problem) = a.address.as_deref().and_then(super::names::host_problem) {
        ctx.error(address_field, problem);
    }
}

/// Reads and checks a `conf` mapping.
pub fn read_conf(ctx: &mut Ctx<'_>, mut o: Obj<'_>) -> PrometheusConf {
    let mut conf = PrometheusConf {
        port: o.port(ctx, "port"),
        path: o.string(ctx, "path"),
        tags: o.string_map(ctx, "tags"),
        skip_mtls: o.bool(ctx, "skipMTLS"),
        ..PrometheusConf::default()
    };
    check_path(ctx, &o.field("path"), &conf.path);

    let mut tls = o.obj(ctx, "tls");
    if let Some(mode) = tls.string(ctx, "mode") {
        conf.tls_mode = match mode.as_str() {
            "activeMTLSBackend" => Some(TlsMode::ActiveMtlsBackend),
            "providedTLS" => Some(TlsMode::ProvidedTls),
            "disabled" => Some(TlsMode::Disabled),
            other => {
                ctx.error(
                    &tls.field("mode"),
                    format!(
                        "{other:?} is not a TLS mode (activeMTLSBackend, providedTLS, disabled)"
                    ),
                );
                None
            }
        };
    }
    if let (Some(true), Some(mode)) = (conf.skip_mtls, conf.tls_mode)
        && mode != TlsMode::Disabled
    {
        ctx.error(
            &tls.field("mode"),
            format!(
                "{} contradicts skipMTLS: true (which means disabled)",
                mode.as_str()
            ),
        );
    }
    if let (Some(false), Some(TlsMode::Disabled)) = (conf.skip_mtls, conf.tls_mode) {
        ctx.error(&tls.field("mode"), "disabled contradicts skipMTLS: false");
    }
    tls.finish(ctx);

    let mut envoy = o.obj(ctx, "envoy");
    conf.filter_regex = envoy.string(ctx, "filterRegex");
    conf.used_only = envoy.bool(ctx, "usedOnly");
    if let Some(re) = &conf.filter_regex
        && let Err(e) = FamilyFilter::new(re)
    {
        ctx.error(
            &envoy.field("filterRegex"),
            format!("{re:?} does not compile: {e}"),
        );
    }
    envoy.finish(ctx);

    let mut names = std::collections::HashSet::new();
    for mut a in o.list(ctx, "aggregate") {
        let entry = AggregateConf {
            name: a.string(ctx, "name").unwrap_or_default(),
            port: a.port(ctx, "port"),
            path: a.string(ctx, "path"),
            address: a.string(ctx, "address"),
            enabled: a.bool(ctx, "enabled"),
        };
        check_path(ctx, &a.field("path"), &entry.path);
        check_aggregate(ctx, &a.field("name"), &a.field("address"), &entry);
        if !entry.name.is_empty() && !names.insert(entry.name.clone()) {
            ctx.error(
                &a.field("name"),
                format!("{:?} is used by another aggregate entry", entry.name),
            );
        }
        if entry.port.is_none() && entry.enabled != Some(false) && a.raw("port").is_none() {
            ctx.error(
                &a.field("port"),
                "is required (the port the application serves metrics on)",
            );
        }
        a.finish(ctx);
        conf.aggregate.push(entry);
    }
    o.finish(ctx);
    conf
}
