//! Who may talk to the control plane.
//!
//! A proxy proves which dataplane it is with a **dataplane token**: a JWT naming its mesh and
//! dataplane, signed by its mesh's newest signing key ([`keys`], [`token`]). The ADS server
//! checks it when a stream opens, compares it with the node the proxy then names, and closes an
//! open stream whose token is revoked ([`revocations`]), expires, or whose key is deleted. The
//! control plane proves itself to proxies with its TLS certificate ([`server_tls`]).
//!
//! What this does not do: the proxies' mTLS keys are still made by the control plane and pushed
//! over SDS (to that proxy only); Istio's way, a CSR from the proxy, would keep them on it.

pub mod keys;
pub mod revocations;
pub mod server_tls;
pub mod token;

use std::path::{Path, PathBuf};

pub use keys::SigningKeys;
pub use revocations::Revocations;
pub use token::{Claims, Refusal};

/// Reads a file the operator gave (a key, a list, a certificate) of at most `max` bytes: a file
/// that grew past any sane size is an error naming it, not an allocation as large as the disk.
/// `what` names the flag or kind for the message.
pub fn read_bounded(path: &Path, max: u64, what: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("{what} {}: cannot read", path.display()))?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{what} {}: cannot read as text", path.display()))?;
    if text.len() as u64 > max {
        anyhow::bail!("{what} {}: over {max} bytes", path.display());
    }
    Ok(text)
}

/// What a stream's token is checked against: the signing keys and the revoked token ids, as
/// last loaded. Reloaded when either file changes; open streams check their token again then.
#[derive(Debug, Default)]
pub struct Authority {
    pub keys: SigningKeys,
    pub revoked: Revocations,
}

impl Authority {
    /// Checks `token` (the `authorization` header's value, `Bearer ` and all) now.
    pub fn verify(&self, header: Option<&str>) -> Result<Claims, Refusal> {
        let header = header.ok_or(Refusal::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Refusal::Malformed)?
            .trim();
        let claims = token::verify(&self.keys, token, token::now())?;
        if self.revoked.contains(&claims.jti) {
            return Err(Refusal::Revoked);
        }
        Ok(claims)
    }
}

/// Where the control plane reads its authority from.
#[derive(Clone, Debug)]
pub struct Sources {
    pub keys: PathBuf,
    pub revocations: Option<PathBuf>,
}

impl Sources {
    /// Loads both. A revocation file that is named but missing is an error: a typo must not
    /// silently revoke nothing.
    pub fn load(&self) -> anyhow::Result<Authority> {
        let keys = SigningKeys::load(&self.keys)?;
        let revoked = match &self.revocations {
            Some(p) => Revocations::load(p)?,
            None => Revocations::default(),
        };
        Ok(Authority { keys, revoked })
    }

    /// What changes when either changes (names, sizes, modification times), cheap to poll.
    pub fn fingerprint(&self) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        let mut out = Vec::new();
        let mut add = |p: &Path| {
            let m = std::fs::metadata(p).ok();
            out.push((
                p.to_owned(),
                m.as_ref().map_or(0, |m| m.len()),
                m.and_then(|m| m.modified().ok()),
            ));
        };
        for p in keys::files(&self.keys) {
            add(&p);
        }
        if let Some(p) = &self.revocations {
            add(p);
        }
        out
    }
}
