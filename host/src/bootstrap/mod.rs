//! The Envoy bootstrap for one proxy's metrics endpoint, and the filter configuration inside it.
//!
//! - admin on loopback only (never on the metrics port);
//! - a listener on `<address>:<port>`: HTTP connection manager → the meshmetrics wasm filter →
//!   the router, whose only route answers 404 (the filter answers the metrics path itself);
//! - a cluster for the admin endpoint and one per aggregate entry;
//! - the static runtime raising `http.async_response_buffer_limit` to the body cap, or a large
//!   Envoy's stats (26 MB at 2,000 clusters) would reach the filter as a failed call.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use meshmetrics_filter::config::{FilterConfig, Label, Source, SourceKind};
use serde_json::{Value, json};

use crate::effective::{Allowed, Effective};
use crate::resources::metrics::TlsMode;
use crate::tls;

/// Environment variables naming the `providedTLS` certificate and key (as in Kuma).
pub const CERT_ENV: &str = "KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH";
pub const KEY_ENV: &str = "KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH";

pub const ADMIN_CLUSTER: &str = "meshmetrics_envoy_admin";
pub const LISTENER: &str = "meshmetrics_prometheus";

/// Choices that are not in the resources.
#[derive(Clone, Debug)]
pub struct Options {
    /// Absolute path of the filter's `.wasm`.
    pub wasm: std::path::PathBuf,
    /// Port of Envoy's admin endpoint (bound to 127.0.0.1).
    pub admin_port: u16,
    /// Per-source timeout.
    pub timeout_ms: u64,
    /// Largest body read from one source.
    pub max_body_bytes: u64,
    /// Largest output of one source in one scrape.
    pub max_source_bytes: u64,
    /// Largest output of one scrape.
    pub max_scrape_bytes: u64,
    /// Also label Envoy's own samples with mesh/dataplane/service. Off by default: Envoy's samples
    /// are the many (a 26 MB scrape grows to 45 MB), and Prometheus adds the same labels from
    /// discovery as target labels.
    pub envoy_labels: bool,
    /// `providedTLS`: the certificate and key files (flags, or the `KUMA_…_PATH` variables).
    pub provided_tls: Option<(PathBuf, PathBuf)>,
    /// `providedTLS` without a usable certificate: serve plaintext (Kuma's silent behaviour, here
    /// with a warning) instead of refusing.
    pub allow_plaintext_fallback: bool,
    /// `activeMTLSBackend`: the mesh CA directory (`meshmetrics ca init`).
    pub mesh_ca: Option<PathBuf>,
    /// Where the files the bootstrap refers to are written: the SDS file naming the listener's
    /// certificate (so Envoy reloads it on rotation) and, under mTLS, the issued certificate.
    pub certs_dir: PathBuf,
    /// Lifetime of the dataplane certificate issued under mTLS (`tls::DATAPLANE_VALIDITY`).
    pub validity: Option<std::time::Duration>,
}

/// A generated bootstrap, and what the user should know about it.
#[derive(Clone, Debug)]
pub struct Generated {
    pub config: Value,
    pub warnings: Vec<String>,
}

impl Options {
    pub fn new(wasm: impl AsRef<Path>) -> Options {
        Options {
            wasm: wasm.as_ref().to_path_buf(),
            admin_port: 9901,
            timeout_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MS,
            max_body_bytes: meshmetrics_filter::config::DEFAULT_MAX_BODY_BYTES,
            max_source_bytes: meshmetrics_filter::config::DEFAULT_MAX_SOURCE_BYTES,
            max_scrape_bytes: meshmetrics_filter::config::DEFAULT_MAX_SCRAPE_BYTES,
            envoy_labels: false,
            provided_tls: None,
            allow_plaintext_fallback: false,
            mesh_ca: None,
            certs_dir: PathBuf::from("."),
            validity: None,
        }
    }
}

pub fn app_cluster(name: &str) -> String {
    format!("meshmetrics_app_{name}")
}

fn identity(e: &Effective) -> Vec<Label> {
    vec![
        Label::new("mesh", &e.mesh),
        Label::new("dataplane", &e.dataplane),
        Label::new("service", &e.service),
    ]
}

/// The filter's configuration for this proxy.
pub fn filter_config(e: &Effective, o: &Options) -> FilterConfig {
    let mut sources = vec![Source {
        name: "envoy".into(),
        kind: SourceKind::EnvoyAdmin,
        cluster: ADMIN_CLUSTER.into(),
        authority: format!("127.0.0.1:{}", o.admin_port),
        path: "/stats/prometheus".into(),
        timeout_ms: o.timeout_ms,
        labels: if o.envoy_labels {
            identity(e)
        } else {
            Vec::new()
        },
        used_only: e.used_only,
        filter_regex: e.filter_regex.clone(),
    }];
    for app in &e.apps {
        let mut labels = identity(e);
        labels.push(Label::new("aggregate", &app.name));
        sources.push(Source {
            name: app.name.clone(),
            kind: SourceKind::App,
            cluster: app_cluster(&app.name),
            authority: format!("{}:{}", app.address, app.port),
            path: app.path.clone(),
            timeout_ms: o.timeout_ms,
            labels,
            used_only: false,
            filter_regex: None,
        });
    }
    FilterConfig {
        path: e.path.clone(),
        sources,
        self_labels: Vec::new(),
        max_body_bytes: o.max_body_bytes,
        max_source_bytes: o.max_source_bytes,
        max_scrape_bytes: o.max_scrape_bytes,
        timeout_margin_ms: meshmetrics_filter::config::DEFAULT_TIMEOUT_MARGIN_MS,
    }
}

fn cluster(name: &str, address: &str, port: u16) -> Value {
    // An IP needs no resolver; a host name is resolved (and re-resolved) by Envoy.
    let kind = if address.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    json!({
        "name": name,
        "type": kind,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": address, "port_value": port
            }}}}]}]
        }
    })
}

fn tls_socket(context: Value) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": context,
    })
}

/// The listener's TLS (none when plaintext), and warnings.
fn transport_socket(
    e: &Effective,
    o: &Options,
    warnings: &mut Vec<String>,
) -> Result<Option<Value>> {
    const DOWNSTREAM: &str =
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
    match e.tls {
        TlsMode::Disabled => Ok(None),
        TlsMode::ProvidedTls => {
            let checked = match &o.provided_tls {
                None => Err(anyhow::anyhow!(
                    "providedTLS needs a certificate and key: set {CERT_ENV} and {KEY_ENV} (or --metrics-cert / --metrics-key)"
                )),
                Some((cert, key)) => tls::check_pair(cert, key).map(|not_after| {
                    let what = format!("the provided certificate {}", cert.display());
                    warnings.extend(tls::expiry_warning(&what, not_after));
                    (cert.clone(), key.clone())
                }),
            };
            match checked {
                Ok((cert, key)) => Ok(Some(tls_socket(json!({
                    "@type": DOWNSTREAM,
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [sds_secret(e, o, &cert, &key)?],
                    }
                })))),
                Err(why) if o.allow_plaintext_fallback => {
                    warnings.push(format!(
                        "{why:#}; serving metrics in PLAINTEXT (--allow-plaintext-fallback)"
                    ));
                    Ok(None)
                }
                Err(why) => Err(why.context(format!(
                    "Dataplane {}: metrics.conf.tls.mode providedTLS",
                    e.dataplane
                ))),
            }
        }
        TlsMode::ActiveMtlsBackend => {
            let Some(ca) = &o.mesh_ca else {
                bail!(
                    "Dataplane {}: activeMTLSBackend needs mesh {:?}'s CA: --mesh-ca <dir> (create it with `meshmetrics ca init`)",
                    e.dataplane,
                    e.mesh
                );
            };
            let mut id = tls::Identity::spiffe(&e.mesh, &e.service);
            id.dns.push("localhost".into());
            if let Ok(ip) = e.address.parse::<std::net::IpAddr>()
                && !ip.is_unspecified()
            {
                id.ips.push(ip);
            }
            let validity = o.validity.unwrap_or(tls::DATAPLANE_VALIDITY);
            if validity < tls::EXPIRY_WARNING {
                warnings.push(format!(
                    "Dataplane {}: its certificate is issued for {} s only (--validity): renew it before then",
                    e.dataplane,
                    validity.as_secs()
                ));
            }
            let (cert, key) = tls::issue(ca, &id, &o.certs_dir.join(&e.dataplane), validity)
                .with_context(|| format!("issuing the certificate of dataplane {}", e.dataplane))?;
            Ok(Some(tls_socket(json!({
                "@type": DOWNSTREAM,
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [sds_secret(e, o, &cert, &key)?],
                    // A client must hold a certificate of this mesh's CA naming an identity of
                    // this mesh; which identities may scrape is the RBAC filter's business.
                    "validation_context": {
                        "trusted_ca": {"filename": absolute(&ca.join(tls::CA_CERT))?},
                        "match_typed_subject_alt_names": [{
                            "san_type": "URI",
                            "matcher": {"prefix": format!("spiffe://{}/", e.mesh)},
                        }],
                    },
                },
            }))))
        }
    }
}

/// The listener's certificate through SDS from a file, not inline: Envoy watches the directories
/// of the certificate and key files named by an SDS secret and reloads them when they are
/// replaced (renamed over, as Kubernetes secret volumes and cert-manager do), with no restart.
/// Inline `filename`s in the bootstrap are read once.
fn sds_secret(e: &Effective, o: &Options, cert: &Path, key: &Path) -> Result<Value> {
    let name = format!("meshmetrics_{}_metrics_cert", e.dataplane);
    let secret = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "tls_certificate": {
            "certificate_chain": {"filename": absolute(cert)?},
            "private_key": {"filename": absolute(key)?},
        }
    }]});
    std::fs::create_dir_all(&o.certs_dir)
        .with_context(|| format!("creating {}", o.certs_dir.display()))?;
    let file = o
        .certs_dir
        .join(format!("{}-metrics-sds.yaml", e.dataplane));
    std::fs::write(&file, crate::resources::yaml::to_yaml_text(&secret))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(json!({
        "name": name,
        "sds_config": {"path_config_source": {"path": absolute(&file)?}, "resource_api_version": "V3"},
    }))
}

fn absolute(p: &Path) -> Result<String> {
    Ok(std::fs::canonicalize(p)
        .with_context(|| format!("{}: no such file", p.display()))?
        .display()
        .to_string())
}

/// Envoy's RBAC filter for the TrafficPermissions that select the endpoint: only the permitted
/// identities pass; others get 403.
fn rbac(e: &Effective) -> Option<Value> {
    let allowed = e.allowed.as_ref()?;
    let principals: Vec<Value> = allowed
        .iter()
        .map(|a| {
            let matcher = match a {
                Allowed::Service(s) => json!({"exact": format!("spiffe://{}/{s}", e.mesh)}),
                Allowed::AnyInMesh => json!({"prefix": format!("spiffe://{}/", e.mesh)}),
            };
            json!({"authenticated": {"principal_name": matcher}})
        })
        .collect();
    // An ALLOW rule set with no policy admits no one (a policy needs one principal at least).
    let policies = if principals.is_empty() {
        json!({})
    } else {
        json!({"traffic-permissions": {"permissions": [{"any": true}], "principals": principals}})
    };
    Some(json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": policies}
        }
    }))
}

/// The HTTP connection manager of one filter chain: [RBAC →] the meshmetrics wasm filter → router.
fn http_manager(config: &FilterConfig, wasm_file: &Path, rbac: Option<Value>) -> Value {
    let wasm = json!({
        "name": "meshmetrics",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "meshmetrics",
                "root_id": "meshmetrics",
                // Any other type reaches the filter as raw protobuf bytes.
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_json(),
                },
                // A VM that fails (a trap, an allocation failure) is reloaded, with a backoff,
                // instead of answering 503 until Envoy restarts. Not fail open: a scrape
                // passed to the router would get its 404.
                "failure_policy": "FAIL_RELOAD",
                "reload_config": {"backoff": {"base_interval": "0.1s", "max_interval": "5s"}},
                "vm_config": {
                    // Both chains name the same VM: one module instance per worker.
                    "vm_id": "meshmetrics",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_file.display().to_string()}}
                }
            }
        }
    });
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "meshmetrics",
            "route_config": {
                "name": "meshmetrics",
                "virtual_hosts": [{
                    "name": "meshmetrics",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}}}]
                }]
            },
            "http_filters": rbac.into_iter().chain([
                wasm,
                json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
            ]).collect::<Vec<_>>()
        }
    })
}

/// Source ranges that count as "the dataplane itself": loopback and the listener's own address.
fn own_addresses(e: &Effective) -> Vec<Value> {
    let mut ranges = vec![
        json!({"address_prefix": "127.0.0.1", "prefix_len": 32}),
        json!({"address_prefix": "::1", "prefix_len": 128}),
    ];
    if let Ok(ip) = e.address.parse::<std::net::IpAddr>()
        && !ip.is_unspecified()
        && !ip.is_loopback()
    {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        ranges.push(json!({"address_prefix": ip.to_string(), "prefix_len": len}));
    }
    ranges
}

/// The whole bootstrap, as a JSON value (written out as YAML).
pub fn bootstrap(e: &Effective, o: &Options) -> Result<Generated> {
    // Files are named after the dataplane (its certificate, its SDS file): never from a name
    // that could leave the directory, whatever built this `Effective`.
    if let Some(problem) = crate::resources::names::name_problem(&e.dataplane) {
        anyhow::bail!("dataplane name {problem}: no file is named after it");
    }
    let mut warnings = Vec::new();
    let socket = transport_socket(e, o, &mut warnings)?;
    let config = filter_config(e, o);
    let mut clusters = vec![cluster(ADMIN_CLUSTER, "127.0.0.1", o.admin_port)];
    clusters.extend(
        e.apps
            .iter()
            .map(|a| cluster(&app_cluster(&a.name), &a.address, a.port)),
    );
    let mut listener = json!({
        "name": LISTENER,
        "address": {"socket_address": {"address": e.address, "port_value": e.port}},
    });
    match socket {
        None => {
            listener["filter_chains"] = json!([{"filters": [http_manager(&config, &o.wasm, None)]}])
        }
        Some(socket) if e.tls == TlsMode::ActiveMtlsBackend => {
            // mTLS for everyone; plaintext only from the dataplane itself (Kuma's rule), told
            // apart by the TLS inspector. Plaintext from elsewhere matches no chain: closed.
            listener["listener_filters"] = json!([{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
            }]);
            listener["filter_chains"] = json!([
                {
                    "name": "mtls",
                    "filter_chain_match": {"transport_protocol": "tls"},
                    "filters": [http_manager(&config, &o.wasm, rbac(e))],
                    "transport_socket": socket,
                },
                {
                    "name": "plaintext-from-self",
                    "filter_chain_match": {"transport_protocol": "raw_buffer", "source_prefix_ranges": own_addresses(e)},
                    "filters": [http_manager(&config, &o.wasm, None)],
                },
            ]);
        }
        Some(socket) => {
            listener["filter_chains"] = json!([{
                "filters": [http_manager(&config, &o.wasm, None)],
                "transport_socket": socket,
            }]);
        }
    }
    let config = json!({
        "node": {"id": e.dataplane, "cluster": e.service},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": o.admin_port}}},
        "layered_runtime": {"layers": [{"name": "meshmetrics", "static_layer": {
            "http.async_response_buffer_limit": o.max_body_bytes + (1 << 20)
        }}]},
        "static_resources": {
            "listeners": [listener],
            "clusters": clusters
        }
    });
    Ok(Generated { config, warnings })
}
