//! The control plane's own TLS identity (`--xds-cert`, `--xds-key`): ADS is served over it by
//! tonic, the HTTP side (discovery, the module, /metrics) by rustls. Proxies verify it against
//! the CA their bootstrap names (`--ca-cert`), with the SAN matched to the address they dial.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client has to finish its TLS handshake (ADS and the HTTP side).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The certificate chain and key, read once at start.
#[derive(Clone)]
pub struct ServerIdentity {
    pub cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for ServerIdentity {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    pub fn read(cert: &Path, key: &Path) -> Result<ServerIdentity> {
        // A PEM chain or key is a few KiB; a megabyte is already generous.
        let cert_pem = super::read_bounded(cert, 1 << 20, "--xds-cert")?.into_bytes();
        let key_pem = super::read_bounded(key, 1 << 20, "--xds-key")?.into_bytes();
        let id = ServerIdentity {
            cert_pem,
            key_pem,
            cert_path: cert.to_owned(),
        };
        // Fail at start, naming the file, rather than at the first handshake.
        id.rustls().with_context(|| {
            format!(
                "--xds-cert {} / --xds-key {}",
                cert.display(),
                key.display()
            )
        })?;
        Ok(id)
    }

    /// For tonic (ADS). HTTP/2 only, as gRPC is.
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            // A client that connects and never finishes its handshake gives its place back.
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// For the HTTP side (HTTP/1.1).
    pub fn rustls(&self) -> Result<Arc<rustls::ServerConfig>> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .context("not a PEM certificate chain")?;
        if certs.is_empty() {
            bail!("no certificate in the file");
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).context("not a PEM private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the key is not the certificate's")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
