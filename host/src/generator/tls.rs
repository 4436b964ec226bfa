//! The metrics listener's TLS: `providedTLS` (the operator's certificate) or
//! `activeMTLSBackend` (a certificate from the mesh CA, clients must hold one too).
//!
//! The certificate always reaches Envoy through SDS, never inline in the listener, so it can
//! change without touching the listener (no drain):
//! - static bootstrap: an SDS *file* Envoy watches ([`Delivery::Files`]); replacing the files
//!   (as Kubernetes secret volumes and cert-manager do) reloads it;
//! - control plane: a `Secret` pushed over ADS ([`Delivery::Ads`]), issued in memory by the
//!   control plane with a short lifetime and re-issued before it runs out.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, common_tls_context, secret, subject_alt_name_matcher,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::{CERT_ENV, Delivery, KEY_ENV, Options, proto};
use crate::effective::Effective;
use crate::resources::metrics::TlsMode;
use crate::tls;

/// The listener's TLS, and the secrets it names (pushed over SDS under [`Delivery::Ads`]).
pub struct Tls {
    pub socket: TransportSocket,
    pub secrets: Vec<Secret>,
}

/// The name of the listener certificate's SDS secret.
pub fn secret_name(e: &Effective) -> String {
    format!("meshmetrics_{}_metrics_cert", e.dataplane)
}

/// The identity a dataplane's certificate names under `activeMTLSBackend`.
pub fn identity(e: &Effective) -> tls::Identity {
    let mut id = tls::Identity::spiffe(&e.mesh, &e.service);
    id.dns.push("localhost".into());
    if let Ok(ip) = e.address.parse::<std::net::IpAddr>()
        && !ip.is_unspecified()
    {
        id.ips.push(ip);
    }
    id
}

/// The listener's TLS (none when plaintext); `warnings` gets what the user should know.
pub fn downstream(e: &Effective, o: &Options, warnings: &mut Vec<String>) -> Result<Option<Tls>> {
    match e.tls {
        TlsMode::Disabled => Ok(None),
        TlsMode::ProvidedTls => provided(e, o, warnings),
        TlsMode::ActiveMtlsBackend => mesh_mtls(e, o, warnings).map(Some),
    }
}

fn provided(e: &Effective, o: &Options, warnings: &mut Vec<String>) -> Result<Option<Tls>> {
    let checked = match &o.provided_tls {
        // Pushed by the control plane, the paths are on the proxies' machines, not its own:
        // Envoy reads them, and refuses (a NACK, logged with its reason) a pair it cannot load.
        Some((cert, key)) if o.delivery == Delivery::Ads => Ok((cert.clone(), key.clone())),
        None => Err(anyhow!(
            "providedTLS needs a certificate and key: set {CERT_ENV} and {KEY_ENV} (or --metrics-cert / --metrics-key)"
        )),
        Some((cert, key)) => tls::check_pair(cert, key).map(|not_after| {
            let what = format!("the provided certificate {}", cert.display());
            warnings.extend(tls::expiry_warning(&what, not_after));
            (cert.clone(), key.clone())
        }),
    };
    match checked {
        Ok((cert, key)) => {
            let secret = file_secret(e, o, &cert, &key)?;
            let (config, secrets) = deliver(e, o, secret)?;
            Ok(Some(Tls {
                socket: socket(DownstreamTlsContext {
                    common_tls_context: Some(CommonTlsContext {
                        tls_certificate_sds_secret_configs: vec![config],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                secrets,
            }))
        }
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

fn mesh_mtls(e: &Effective, o: &Options, warnings: &mut Vec<String>) -> Result<Tls> {
    let Some(ca) = &o.mesh_ca else {
        bail!(
            "Dataplane {}: activeMTLSBackend needs mesh {:?}'s CA: --mesh-ca <dir> (create it with `meshmetrics ca init`)",
            e.dataplane,
            e.mesh
        );
    };
    let id = identity(e);
    let validity = o.validity.unwrap_or(match o.delivery {
        Delivery::Files => tls::DATAPLANE_VALIDITY,
        Delivery::Ads => tls::PUSHED_VALIDITY,
    });
    if o.delivery == Delivery::Files && validity < tls::EXPIRY_WARNING {
        warnings.push(format!(
            "Dataplane {}: its certificate is issued for {} s only (--validity): renew it before then",
            e.dataplane,
            validity.as_secs()
        ));
    }
    let (secret, trusted_ca) = match o.delivery {
        Delivery::Files => {
            let (cert, key) = tls::issue(ca, &id, &o.certs_dir.join(&e.dataplane), validity)
                .with_context(|| format!("issuing the certificate of dataplane {}", e.dataplane))?;
            let trusted = proto::file(absolute(&ca.join(tls::CA_CERT))?);
            (file_secret(e, o, &cert, &key)?, trusted)
        }
        Delivery::Ads => {
            let issued = o
                .certs
                .as_ref()
                .context("the control plane keeps the issued certificates")?
                .get(&e.id, ca, &id, validity)
                .with_context(|| format!("issuing the certificate of dataplane {}", e.dataplane))?;
            let secret = Secret {
                name: secret_name(e),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(proto::inline(issued.cert_pem.clone())),
                    private_key: Some(proto::inline(issued.key_pem.clone())),
                    ..Default::default()
                })),
            };
            (secret, proto::inline(issued.ca_pem.clone()))
        }
    };
    let (config, secrets) = deliver(e, o, secret)?;
    Ok(Tls {
        socket: socket(DownstreamTlsContext {
            require_client_certificate: Some(BoolValue { value: true }),
            common_tls_context: Some(CommonTlsContext {
                tls_certificate_sds_secret_configs: vec![config],
                // A client must hold a certificate of this mesh's CA naming an identity of this
                // mesh; which identities may scrape is the RBAC filter's business.
                validation_context_type: Some(
                    common_tls_context::ValidationContextType::ValidationContext(
                        CertificateValidationContext {
                            trusted_ca: Some(trusted_ca),
                            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                san_type: subject_alt_name_matcher::SanType::Uri as i32,
                                matcher: Some(proto::prefix(format!("spiffe://{}/", e.mesh))),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }),
        secrets,
    })
}

/// A secret naming the certificate and key files (on the proxy's machine). Made absolute where
/// they are on this machine (a static bootstrap); as given when the control plane pushes them.
fn file_secret(e: &Effective, o: &Options, cert: &Path, key: &Path) -> Result<Secret> {
    let path = |p: &Path| match o.delivery {
        Delivery::Files => absolute(p),
        Delivery::Ads => Ok(p.display().to_string()),
    };
    Ok(Secret {
        name: secret_name(e),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(proto::file(path(cert)?)),
            private_key: Some(proto::file(path(key)?)),
            ..Default::default()
        })),
    })
}

/// How the listener names `secret`: from an SDS file written next to the bootstrap (Envoy
/// watches the directories of the files it names and reloads them when replaced), or over ADS.
fn deliver(e: &Effective, o: &Options, secret: Secret) -> Result<(SdsSecretConfig, Vec<Secret>)> {
    match o.delivery {
        Delivery::Ads => Ok((
            SdsSecretConfig {
                name: secret.name.clone(),
                sds_config: Some(proto::ads()),
            },
            vec![secret],
        )),
        Delivery::Files => {
            std::fs::create_dir_all(&o.certs_dir)
                .with_context(|| format!("creating {}", o.certs_dir.display()))?;
            let file = o
                .certs_dir
                .join(format!("{}-metrics-sds.yaml", e.dataplane));
            let response =
                serde_json::json!({"resources": [super::json::to_json(&proto::any(&secret))?]});
            std::fs::write(&file, crate::resources::yaml::to_yaml_text(&response))
                .with_context(|| format!("writing {}", file.display()))?;
            Ok((
                SdsSecretConfig {
                    name: secret.name,
                    sds_config: Some(proto::path_source(absolute(&file)?)),
                },
                Vec::new(),
            ))
        }
    }
}

fn socket(context: DownstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(proto::any(
            &context,
        ))),
    }
}

fn absolute(p: &Path) -> Result<String> {
    Ok(std::fs::canonicalize(p)
        .with_context(|| format!("{}: no such file", p.display()))?
        .display()
        .to_string())
}

/// TLS to a server Envoy must verify: its certificate chains to `ca_file` (a path on the
/// proxy's machine) and names `host` (an IP SAN for an address, a DNS SAN for a name, which is
/// also sent as SNI). What the proxy uses to reach the control plane's HTTP side.
pub fn upstream(ca_file: &str, host: &str) -> TransportSocket {
    upstream_alpn(ca_file, host, &[])
}

/// [`upstream`], offering `alpn` (gRPC servers want `h2` negotiated).
pub fn upstream_alpn(ca_file: &str, host: &str, alpn: &[&str]) -> TransportSocket {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let san_type = if host.parse::<std::net::IpAddr>().is_ok() {
        subject_alt_name_matcher::SanType::IpAddress
    } else {
        subject_alt_name_matcher::SanType::Dns
    };
    let context = UpstreamTlsContext {
        sni: if san_type == subject_alt_name_matcher::SanType::Dns {
            host.to_owned()
        } else {
            String::new()
        },
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(proto::file(ca_file)),
                        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                            san_type: san_type as i32,
                            matcher: Some(proto::exact(host)),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ),
            ),
            alpn_protocols: alpn.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(proto::any(
            &context,
        ))),
    }
}
