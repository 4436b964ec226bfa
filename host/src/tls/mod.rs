//! Certificates for securing the metrics endpoint.
//!
//! - The mesh CA (`meshmetrics ca init`) and certificates it issues with a SPIFFE identity
//!   `spiffe://<mesh>/<service>` as URI SAN (`meshmetrics ca issue`): the dataplane's serving
//!   certificate under `activeMTLSBackend`, and Prometheus' client certificate.
//! - Checking a provided certificate and key (`providedTLS`) before Envoy is given them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// Creates a mesh CA in `dir` (`ca.pem`, `ca.key`); refuses to overwrite one.
pub fn init_ca(dir: &Path, mesh: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert_path = dir.join(CA_CERT);
    if cert_path.exists() {
        bail!(
            "{} exists already: a mesh CA is never replaced silently",
            cert_path.display()
        );
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("meshmetrics CA of mesh {mesh}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    std::fs::write(&cert_path, cert.pem())?;
    write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
    Ok(cert_path)
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// What a certificate is for, and who it names.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// `spiffe://<mesh>/<service>` when set.
    pub spiffe: Option<(String, String)>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Identity {
    pub fn spiffe(mesh: &str, service: &str) -> Identity {
        Identity {
            spiffe: Some((mesh.to_owned(), service.to_owned())),
            ..Identity::default()
        }
    }
}

/// Issues a certificate signed by the CA in `ca_dir`; writes `<out>.pem` and `<out>.key`.
pub fn issue(ca_dir: &Path, id: &Identity, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let ca_pem = std::fs::read_to_string(ca_dir.join(CA_CERT)).with_context(|| {
        format!(
            "reading the mesh CA {} (create it with `meshmetrics ca init`)",
            ca_dir.join(CA_CERT).display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join(CA_KEY))?)
        .context("reading the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("reading the CA certificate")?;
    let mut params = CertificateParams::new(id.dns.clone())?;
    if let Some((mesh, service)) = &id.spiffe {
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://{mesh}/{service}").try_into()?,
        ));
        params
            .distinguished_name
            .push(DnType::CommonName, service.clone());
    }
    params
        .subject_alt_names
        .extend(id.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let cert_path = out.with_extension("pem");
    let key_path = out.with_extension("key");
    std::fs::write(&cert_path, cert.pem())?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok((cert_path, key_path))
}

/// Checks a provided certificate and key: both readable PEM, and the key is the certificate's.
pub fn check_pair(cert: &Path, key: &Path) -> Result<()> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("certificate {}: cannot read", cert.display()))?;
    let key_pem = std::fs::read_to_string(key)
        .with_context(|| format!("key {}: cannot read", key.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert_pem).map_err(|e| {
        anyhow::anyhow!(
            "certificate {}: not a PEM certificate ({e})",
            cert.display()
        )
    })?;
    if pem.label != "CERTIFICATE" {
        bail!(
            "certificate {}: not a PEM certificate (it holds a {})",
            cert.display(),
            pem.label
        );
    }
    let parsed = pem.parse_x509().map_err(|e| {
        anyhow::anyhow!(
            "certificate {}: not a valid X.509 certificate ({e})",
            cert.display()
        )
    })?;
    let key_pair = KeyPair::from_pem(&key_pem)
        .map_err(|e| anyhow::anyhow!("key {}: not a PEM private key ({e})", key.display()))?;
    if parsed.public_key().raw != key_pair.subject_public_key_info().as_slice() {
        bail!(
            "key {} does not belong to certificate {}",
            key.display(),
            cert.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshmetrics-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ca_issues_spiffe_certificates_and_pairs_check() {
        let dir = tmp("ca");
        init_ca(&dir, "default").unwrap();
        assert!(
            init_ca(&dir, "default")
                .unwrap_err()
                .to_string()
                .contains("exists already")
        );
        let (cert, key) = issue(
            &dir,
            &Identity::spiffe("default", "prometheus-server"),
            &dir.join("prom"),
        )
        .unwrap();
        let pem = std::fs::read(&cert).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let c = p.parse_x509().unwrap();
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert!(
            format!("{:?}", san.value.general_names).contains("spiffe://default/prometheus-server")
        );
        check_pair(&cert, &key).unwrap();
        let (_, other_key) =
            issue(&dir, &Identity::spiffe("default", "x"), &dir.join("other")).unwrap();
        let e = check_pair(&cert, &other_key).unwrap_err().to_string();
        assert!(e.contains("does not belong to certificate"), "{e}");
        let e = check_pair(&dir.join("missing.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem: cannot read"), "{e}");
    }
}
