//! Certificates for securing the metrics endpoint.
//!
//! - The mesh CA (`meshmetrics ca init`) and certificates it issues with a SPIFFE identity
//!   `spiffe://<mesh>/<service>` as URI SAN (`meshmetrics ca issue`): the dataplane's serving
//!   certificate under `activeMTLSBackend`, and Prometheus' client certificate.
//! - Checking a provided certificate and key (`providedTLS`) before Envoy is given them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

const DAY: Duration = Duration::from_secs(86_400);
/// A mesh CA's lifetime.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 86_400);
/// A certificate `meshmetrics ca issue` makes (Prometheus' identity), unless `--validity`.
pub const ISSUE_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// A dataplane's own certificate, issued by `bootstrap --mesh-ca`, unless `--validity`.
pub const DATAPLANE_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
/// Lifetime of a dataplane certificate the control plane issues and pushes over SDS: short,
/// because it is re-issued before a third of it is left, with no restart.
pub const PUSHED_VALIDITY: Duration = Duration::from_secs(86_400);
/// How far back a certificate starts: clocks of the machines involved disagree a little.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// A certificate that ends within this is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// A validity window starting a little in the past (clock skew) and lasting `validity`.
fn window(params: &mut CertificateParams, validity: Duration) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let skew = time::Duration::try_from(CLOCK_SKEW)?;
    params.not_before = now - skew;
    params.not_after = now + time::Duration::try_from(validity)?;
    Ok(())
}

/// A Go-style validity (`90d`, `24h`, `30m`, `3600s`): `--validity`.
pub fn parse_validity(s: &str) -> Result<Duration> {
    let (n, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: u64 = n
        .parse()
        .with_context(|| format!("--validity {s:?}: a number and a unit (90d, 24h, 30m, 60s)"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .filter(|&s| s > 0 && s <= 3650 * 86_400)
    .with_context(|| format!("--validity {s:?}: between 1s and 3650d, with a unit d, h, m or s"))?;
    Ok(Duration::from_secs(secs))
}

/// A warning when a certificate ending at `not_after` (seconds since the epoch) ends soon.
pub fn expiry_warning(what: &str, not_after: i64) -> Option<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let left = not_after - now;
    let limit = EXPIRY_WARNING.as_secs() as i64;
    (left < limit).then(|| {
        if left <= 0 {
            format!("{what} has expired")
        } else {
            format!(
                "{what} expires in {} days (under {} days)",
                left / DAY.as_secs() as i64,
                limit / DAY.as_secs() as i64
            )
        }
    })
}

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
    window(&mut params, CA_VALIDITY)?;
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// A certificate and its key, PEM-encoded, as issued (nothing written).
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA certificate that signed it (what a peer must trust).
    pub ca_pem: String,
}

/// Issues a certificate for `id` from the mesh CA in `ca_dir`, valid for `validity`, in memory:
/// the control plane pushes it over SDS and never writes a key to disk.
pub fn issue_pem(ca_dir: &Path, id: &Identity, validity: Duration) -> Result<Issued> {
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
    window(&mut params, validity)?;
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
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem,
    })
}

/// Issues a certificate for `id` from the mesh CA in `ca_dir`, valid for `validity`, and writes
/// it to `<out>.pem` and `<out>.key` (mode 0600).
pub fn issue(
    ca_dir: &Path,
    id: &Identity,
    out: &Path,
    validity: Duration,
) -> Result<(PathBuf, PathBuf)> {
    let issued = issue_pem(ca_dir, id, validity)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let cert_path = out.with_extension("pem");
    let key_path = out.with_extension("key");
    std::fs::write(&cert_path, &issued.cert_pem)?;
    write_private(&key_path, &issued.key_pem)?;
    Ok((cert_path, key_path))
}

/// Checks a provided certificate and key: both readable PEM, and the key is the certificate's.
/// Returns when the certificate ends (seconds since the epoch).
pub fn check_pair(cert: &Path, key: &Path) -> Result<i64> {
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
    Ok(parsed.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshmetrics-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Two dataplanes of one name (two namespaces) keep a certificate each: looking one up does
    /// not evict the other (which would re-issue, CA read and key made, on every rebuild).
    #[test]
    fn issued_certificates_are_kept_per_full_identity() {
        let ca = tmp("issued");
        init_ca(&ca, "default").unwrap();
        let certs = IssuedCerts::default();
        let id = Identity::spiffe("default", "web");
        let v = Duration::from_secs(3600);
        let a1 = certs.get("default/web.a", &ca, &id, v).unwrap();
        let b1 = certs.get("default/web.b", &ca, &id, v).unwrap();
        let a2 = certs.get("default/web.a", &ca, &id, v).unwrap();
        let b2 = certs.get("default/web.b", &ca, &id, v).unwrap();
        assert_eq!(a1.cert_pem, a2.cert_pem);
        assert_eq!(b1.cert_pem, b2.cert_pem);
        assert_ne!(a1.cert_pem, b1.cert_pem);
        assert!(certs.renewal("default/web.a").is_some());
    }

    #[test]
    fn validity_and_expiry_warnings() {
        assert_eq!(
            parse_validity("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(parse_validity("24h").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "90", "0d", "4000d", "1y", "-1d"] {
            assert!(parse_validity(bad).is_err(), "{bad:?}");
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(expiry_warning("c", now + 10 * 86_400).is_some());
        assert!(expiry_warning("c", now - 1).unwrap().contains("expired"));
        assert_eq!(expiry_warning("c", now + 60 * 86_400), None);
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
            ISSUE_VALIDITY,
        )
        .unwrap();
        let pem = std::fs::read(&cert).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let c = p.parse_x509().unwrap();
        // Bounded lifetimes, starting a little in the past for clock skew.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (from, to) = (
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
        );
        assert!(
            from < now && now - from < 600,
            "not_before {from}, now {now}"
        );
        assert!((to - now - 365 * 86_400).abs() < 600, "not_after {to}");
        let ca_pem = std::fs::read(dir.join(CA_CERT)).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
        let ca = ca.parse_x509().unwrap();
        let years = (ca.validity().not_after.timestamp() - now) / (365 * 86_400);
        assert!((9..=10).contains(&years), "CA lasts {years} years");
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert!(
            format!("{:?}", san.value.general_names).contains("spiffe://default/prometheus-server")
        );
        check_pair(&cert, &key).unwrap();
        let (_, other_key) = issue(
            &dir,
            &Identity::spiffe("default", "x"),
            &dir.join("other"),
            ISSUE_VALIDITY,
        )
        .unwrap();
        let e = check_pair(&cert, &other_key).unwrap_err().to_string();
        assert!(e.contains("does not belong to certificate"), "{e}");
        let e = check_pair(&dir.join("missing.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem: cannot read"), "{e}");
    }
}

/// The certificates the control plane issued, one per dataplane: kept while their identity is
/// the same and more than a third of their lifetime is left, so a snapshot rebuilt for another
/// reason pushes the same certificate (and the same SDS version).
#[derive(Default)]
pub struct IssuedCerts {
    /// By the dataplane's full identity (`Effective::id`): two pods of one name in two
    /// namespaces keep a certificate each.
    by_dataplane: std::sync::Mutex<std::collections::HashMap<String, Kept>>,
}

struct Kept {
    id: Identity,
    validity: Duration,
    issued: Issued,
    renew_at: std::time::Instant,
    /// When the certificate expires: past it, the entry is of no use to anyone and is dropped.
    expires: std::time::Instant,
}

impl IssuedCerts {
    /// The certificate of `dataplane` for `id`: the kept one, or a new one.
    pub fn get(
        &self,
        dataplane: &str,
        ca_dir: &Path,
        id: &Identity,
        validity: Duration,
    ) -> Result<Issued> {
        let now = std::time::Instant::now();
        {
            let map = self
                .by_dataplane
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(k) = map.get(dataplane)
                && k.id == *id
                && k.validity == validity
                && now < k.renew_at
            {
                return Ok(k.issued.clone());
            }
        }
        // Issued outside the lock (it reads the CA and makes a key): other proxies' lookups do
        // not wait for it.
        let issued = issue_pem(ca_dir, id, validity)?;
        let mut map = self
            .by_dataplane
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, k| k.expires > now);
        map.insert(
            dataplane.to_owned(),
            Kept {
                id: id.clone(),
                validity,
                issued: issued.clone(),
                renew_at: now + validity * 2 / 3,
                expires: now + validity,
            },
        );
        Ok(issued)
    }

    /// Drops `dataplane`'s certificate: the next one is issued anew (a new key).
    pub fn forget(&self, dataplane: &str) {
        self.by_dataplane
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(dataplane);
    }

    /// When `dataplane`'s certificate is due to be re-issued.
    pub fn renewal(&self, dataplane: &str) -> Option<std::time::Instant> {
        let map = self
            .by_dataplane
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(dataplane).map(|k| k.renew_at)
    }
}
