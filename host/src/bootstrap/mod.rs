//! Envoy bootstraps, both from [`crate::generator`]:
//!
//! - [`bootstrap`]: static — the proxy's listener, clusters and certificate files inline, for
//!   deployments without a control plane (a change means a new file and an Envoy restart);
//! - [`control_plane`]: minimal — the node's identity, admin on loopback and the ADS cluster;
//!   everything else is pushed by `meshmetrics control-plane` and changes live.
//!
//! Both raise `http.async_response_buffer_limit` to the body cap in a static runtime layer, or a
//! large Envoy's stats (26 MB at 2,000 clusters) would reach the filter as a failed call.

use std::path::{Path, PathBuf};

use anyhow::Result;
use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, LayeredRuntime, RuntimeLayer, bootstrap, runtime_layer,
};
use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, GrpcService, Node, api_config_source, grpc_service,
};
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value};
use serde_json::Value;

use crate::effective::Effective;
pub use crate::generator::{
    ADMIN_CLUSTER, CERT_ENV, Code, Delivery, KEY_ENV, LISTENER, Options, app_cluster, filter_config,
};
use crate::generator::{cluster, generate, json, proto};

/// The ADS cluster's name in a control-plane bootstrap.
pub const CONTROL_PLANE_CLUSTER: &str = "meshmetrics_control_plane";
/// Node metadata keys naming the dataplane and its mesh.
pub const NODE_DATAPLANE: &str = "meshmetrics.dataplane";
pub const NODE_MESH: &str = "meshmetrics.mesh";
/// Node metadata key: the port of the proxy's admin endpoint (the filter reads Envoy's stats
/// there).
pub const NODE_ADMIN_PORT: &str = "meshmetrics.admin_port";
/// Node metadata key: the CA file (on the proxy's machine) the control plane's certificate
/// chains to; the control plane names it in the clusters it pushes to reach itself over TLS.
pub const NODE_CA_CERT: &str = "meshmetrics.ca_cert";

/// A generated bootstrap, and what the user should know about it.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Envoy's JSON of the bootstrap (written out as YAML).
    pub config: Value,
    pub warnings: Vec<String>,
}

fn string(s: &str) -> PbValue {
    PbValue {
        kind: Some(value::Kind::StringValue(s.to_owned())),
    }
}

fn object(fields: impl IntoIterator<Item = (&'static str, PbValue)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

fn admin(port: u16) -> Admin {
    Admin {
        address: Some(proto::socket("127.0.0.1", port)),
        ..Default::default()
    }
}

fn runtime(o: &Options) -> LayeredRuntime {
    let limit = (o.max_body_bytes + (1 << 20)) as f64;
    LayeredRuntime {
        layers: vec![RuntimeLayer {
            name: "meshmetrics".into(),
            layer_specifier: Some(runtime_layer::LayerSpecifier::StaticLayer(object([(
                "http.async_response_buffer_limit",
                PbValue {
                    kind: Some(value::Kind::NumberValue(limit)),
                },
            )]))),
        }],
    }
}

/// The static bootstrap: everything inline.
pub fn bootstrap(e: &Effective, o: &Options) -> Result<Generated> {
    let r = generate(e, o)?;
    let b = Bootstrap {
        node: Some(Node {
            id: e.dataplane.clone(),
            cluster: e.service.clone(),
            ..Default::default()
        }),
        admin: Some(admin(o.admin_port)),
        layered_runtime: Some(runtime(o)),
        static_resources: Some(bootstrap::StaticResources {
            listeners: r.listeners,
            clusters: r.clusters,
            secrets: r.secrets,
        }),
        ..Default::default()
    };
    Ok(Generated {
        config: json::message(&b)?,
        warnings: r.warnings,
    })
}

/// What a control-plane bootstrap needs to know.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// The control plane's xDS address.
    pub host: String,
    pub port: u16,
    /// The dataplane this Envoy is, and its mesh (the control plane looks it up by both).
    pub dataplane: String,
    pub mesh: Option<String>,
    pub admin_port: u16,
    pub max_body_bytes: u64,
    /// The dataplane token's file, read by Envoy for every ADS stream.
    pub token_file: Option<PathBuf>,
    /// The CA the control plane's certificate chains to: ADS (and the module's fetch) over TLS.
    pub ca_cert: Option<PathBuf>,
}

/// The ADS service when the control plane is reached over TLS: Envoy's Google gRPC client, whose
/// channel verifies the control plane's certificate against `ca` for `host` (the name or
/// address dialed), and whose file-based call credentials read the token file for every stream,
/// so a replaced token is sent on the next reconnect without restarting Envoy.
fn google_grpc(c: &ControlPlane, ca: &Path) -> GrpcService {
    use envoy_types::pb::envoy::config::core::v3::grpc_service::google_grpc::{
        CallCredentials, ChannelCredentials, SslCredentials, call_credentials,
        call_credentials::MetadataCredentialsFromPlugin,
        call_credentials::metadata_credentials_from_plugin, channel_credentials,
    };
    use envoy_types::pb::envoy::config::grpc_credential::v3::FileBasedMetadataConfig;
    let host = if c.host.contains(':') {
        format!("[{}]", c.host)
    } else {
        c.host.clone()
    };
    let call_credentials = c
        .token_file
        .iter()
        .map(|token| CallCredentials {
            credential_specifier: Some(call_credentials::CredentialSpecifier::FromPlugin(
                MetadataCredentialsFromPlugin {
                    name: FILE_BASED_METADATA.into(),
                    config_type: Some(metadata_credentials_from_plugin::ConfigType::TypedConfig(
                        proto::any(&FileBasedMetadataConfig {
                            secret_data: Some(proto::file(token.display().to_string())),
                            header_key: "authorization".into(),
                            header_prefix: "Bearer ".into(),
                        }),
                    )),
                },
            )),
        })
        .collect();
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::GoogleGrpc(
            grpc_service::GoogleGrpc {
                target_uri: format!("{host}:{}", c.port),
                stat_prefix: CONTROL_PLANE_CLUSTER.into(),
                channel_credentials: Some(ChannelCredentials {
                    credential_specifier: Some(
                        channel_credentials::CredentialSpecifier::SslCredentials(SslCredentials {
                            root_certs: Some(proto::file(ca.display().to_string())),
                            ..Default::default()
                        }),
                    ),
                }),
                credentials_factory_name: if c.token_file.is_some() {
                    FILE_BASED_METADATA.into()
                } else {
                    String::new()
                },
                call_credentials,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Envoy's gRPC credentials plugin that reads call metadata from a file.
const FILE_BASED_METADATA: &str = "envoy.grpc_credentials.file_based_metadata";

/// The minimal bootstrap of a proxy served by the control plane.
pub fn control_plane(c: &ControlPlane) -> Result<Generated> {
    // gRPC: HTTP/2 to the control plane.
    let cp = cluster::grpc(CONTROL_PLANE_CLUSTER, &c.host, c.port);
    let mut metadata = vec![
        (NODE_DATAPLANE, string(&c.dataplane)),
        (
            NODE_ADMIN_PORT,
            PbValue {
                kind: Some(value::Kind::NumberValue(c.admin_port.into())),
            },
        ),
    ];
    if let Some(mesh) = &c.mesh {
        metadata.push((NODE_MESH, string(mesh)));
    }
    if let Some(ca) = &c.ca_cert {
        metadata.push((NODE_CA_CERT, string(&ca.display().to_string())));
    }
    let (grpc_service, static_clusters) = match &c.ca_cert {
        Some(ca) => (google_grpc(c, ca), Vec::new()),
        None => (
            GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: CONTROL_PLANE_CLUSTER.into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            vec![cp],
        ),
    };
    let node_id = match &c.mesh {
        Some(mesh) => format!("{mesh}/{}", c.dataplane),
        None => c.dataplane.clone(),
    };
    let mut o = Options::new("/dev/null");
    o.max_body_bytes = c.max_body_bytes;
    let b = Bootstrap {
        node: Some(Node {
            id: node_id,
            cluster: c.dataplane.clone(),
            metadata: Some(object(metadata)),
            ..Default::default()
        }),
        admin: Some(admin(c.admin_port)),
        layered_runtime: Some(runtime(&o)),
        static_resources: Some(bootstrap::StaticResources {
            clusters: static_clusters,
            ..Default::default()
        }),
        dynamic_resources: Some(bootstrap::DynamicResources {
            ads_config: Some(ApiConfigSource {
                api_type: api_config_source::ApiType::Grpc as i32,
                transport_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3
                    as i32,
                grpc_services: vec![grpc_service],
                set_node_on_first_message_only: true,
                ..Default::default()
            }),
            lds_config: Some(proto::ads()),
            cds_config: Some(proto::ads()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Generated {
        config: json::message(&b)?,
        warnings: Vec::new(),
    })
}
