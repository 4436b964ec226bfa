//! Dataplane tokens: JWTs (RFC 7519) signed with EdDSA (Ed25519) by a mesh's signing key.
//!
//! Header `{"alg": "EdDSA", "typ": "JWT", "kid": "<mesh>/<serial>"}`; claims `mesh`, `name` (the
//! dataplane), `jti` (128 random bits, what a revocation names), `iat`, `exp`. The algorithm is
//! pinned: a token with any other `alg` (`none`, HS256 with the public key as secret...) is
//! refused before any key is used.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::SigningKeys;
use crate::resources::names::name_problem;

/// Clock skew allowed between whoever issued a token and the control plane, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// A token longer than this is not one of ours (bounds what a stranger makes us parse).
pub const MAX_TOKEN_BYTES: usize = 8 << 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub mesh: String,
    /// The dataplane.
    pub name: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a token is refused. Its [`reason`](Refusal::reason) labels the control plane's metrics;
/// nothing here quotes the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` header.
    Missing,
    /// Not a JWT, or claims of the wrong shape.
    Malformed,
    /// An `alg` other than EdDSA.
    Algorithm,
    /// No key of that mesh and serial (never issued here, or deleted).
    UnknownKey,
    /// The signature does not verify (a changed payload, another key).
    Signature,
    Expired,
    Revoked,
    /// Valid, but for another dataplane or mesh than the node names.
    WrongDataplane,
    /// Valid, but the dataplane is in no resource.
    UnknownDataplane,
    /// The node changed on an open stream.
    NodeChanged,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Algorithm => "algorithm",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Signature => "signature",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::WrongDataplane => "wrong_dataplane",
            Refusal::UnknownDataplane => "unknown_dataplane",
            Refusal::NodeChanged => "node_changed",
        }
    }

    pub const ALL: [Refusal; 10] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Algorithm,
        Refusal::UnknownKey,
        Refusal::Signature,
        Refusal::Expired,
        Refusal::Revoked,
        Refusal::WrongDataplane,
        Refusal::UnknownDataplane,
        Refusal::NodeChanged,
    ];

    /// Refused before we know who it is (gRPC `UNAUTHENTICATED`), or known but not allowed
    /// (`PERMISSION_DENIED`).
    pub fn status(self) -> tonic::Status {
        let msg = format!("dataplane token refused: {self}");
        match self {
            Refusal::WrongDataplane | Refusal::UnknownDataplane | Refusal::NodeChanged => {
                tonic::Status::permission_denied(msg)
            }
            _ => tonic::Status::unauthenticated(msg),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "no token (an `authorization: Bearer <token>` header)",
            Refusal::Malformed => "not a dataplane token",
            Refusal::Algorithm => "signed with an algorithm other than EdDSA",
            Refusal::UnknownKey => "signed by a key this control plane does not have",
            Refusal::Signature => "the signature does not verify",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::WrongDataplane => "issued for another dataplane or mesh than the node names",
            Refusal::UnknownDataplane => "its dataplane is in no resource",
            Refusal::NodeChanged => "the node changed on an open stream",
        })
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new token for `name` in `mesh`, valid for `valid_for` from now.
pub fn issue(keys: &SigningKeys, mesh: &str, name: &str, valid_for: Duration) -> Result<String> {
    issue_at(keys, mesh, name, now(), valid_for)
}

/// [`issue`] as if it were `iat` (tests make expired tokens with it).
pub fn issue_at(
    keys: &SigningKeys,
    mesh: &str,
    name: &str,
    iat: u64,
    valid_for: Duration,
) -> Result<String> {
    if let Some(p) = name_problem(mesh) {
        anyhow::bail!("--mesh: {p}");
    }
    if let Some(p) = name_problem(name) {
        anyhow::bail!("--dataplane: {p}");
    }
    let (serial, key) = keys.newest(mesh).with_context(|| {
        format!("no signing key for mesh {mesh:?} (meshmetrics generate signing-key --mesh {mesh})")
    })?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(format!("{mesh}/{serial}"));
    let claims = Claims {
        mesh: mesh.to_owned(),
        name: name.to_owned(),
        jti: jti()?,
        iat,
        exp: iat.saturating_add(valid_for.as_secs()),
    };
    jsonwebtoken::encode(&header, &claims, &key.encoding).context("signing the token")
}

/// 128 random bits, hex.
fn jti() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no randomness for the token id"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Checks `token`'s algorithm, key, signature and expiry at `now`.
pub fn verify(keys: &SigningKeys, token: &str, now: u64) -> Result<Claims, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        // `none` and other names jsonwebtoken does not know land here.
        ErrorKind::Json(_) if token_alg_is_unknown(token) => Refusal::Algorithm,
        _ => Refusal::Malformed,
    })?;
    if header.alg != Algorithm::EdDSA {
        return Err(Refusal::Algorithm);
    }
    let (mesh, serial) = header
        .kid
        .as_deref()
        .and_then(|k| k.rsplit_once('/'))
        .and_then(|(m, s)| Some((m, s.parse::<u32>().ok()?)))
        .ok_or(Refusal::Malformed)?;
    let key = keys.get(mesh, serial).ok_or(Refusal::UnknownKey)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = LEEWAY_SECS;
    v.set_required_spec_claims(&["exp"]);
    v.validate_aud = false;
    // Expiry is checked below against `now`, so tests and the stream's timer agree with it.
    v.validate_exp = false;
    let data =
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Refusal::Signature,
            ErrorKind::InvalidAlgorithm => Refusal::Algorithm,
            _ => Refusal::Malformed,
        })?;
    let c = data.claims;
    // The key is chosen by the kid's mesh; the signed claims must say the same.
    if c.mesh != mesh {
        return Err(Refusal::WrongDataplane);
    }
    if c.exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(Refusal::Expired);
    }
    Ok(c)
}

/// Whether the header parses as JSON but names an `alg` jsonwebtoken has no variant for.
fn token_alg_is_unknown(token: &str) -> bool {
    use jsonwebtoken::jwk::KeyAlgorithm;
    let Some(h) = token.split('.').next() else {
        return false;
    };
    use base64::Engine;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h) else {
        return false;
    };
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    serde_json::from_slice::<Alg>(&bytes)
        .map(|a| a.alg.parse::<KeyAlgorithm>().is_err() || a.alg == "none")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn keys(name: &str, meshes: &[&str]) -> (std::path::PathBuf, SigningKeys) {
        let dir = std::env::temp_dir().join(format!("mm-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for m in meshes {
            super::super::keys::generate(&dir, m).unwrap();
        }
        let k = SigningKeys::load(&dir).unwrap();
        (dir, k)
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let (dir, k) = keys("ok", &["default"]);
        let t = issue(&k, "default", "backend-1", DAY).unwrap();
        let c = verify(&k, &t, now()).unwrap();
        assert_eq!((c.mesh.as_str(), c.name.as_str()), ("default", "backend-1"));
        assert_eq!(c.jti.len(), 32);
        assert_eq!(c.exp - c.iat, 86_400);
        let other = verify(&k, &issue(&k, "default", "backend-1", DAY).unwrap(), now()).unwrap();
        assert_ne!(c.jti, other.jti, "every token has its own id");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusals() {
        let (dir, k) = keys("refusals", &["default", "other"]);
        let t = issue(&k, "default", "backend-1", DAY).unwrap();
        // Expired, past the leeway.
        let old = issue_at(
            &k,
            "default",
            "backend-1",
            now() - 100,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(verify(&k, &old, now()), Err(Refusal::Expired));
        // Another control plane's keys (same mesh name, other key).
        let (dir2, k2) = keys("refusals-2", &["default"]);
        assert_eq!(verify(&k2, &t, now()), Err(Refusal::Signature));
        // A kid naming a serial that is not there.
        let (dir3, k3) = keys("refusals-3", &["other"]);
        assert_eq!(verify(&k3, &t, now()), Err(Refusal::UnknownKey));
        // A payload swapped for another dataplane's, signature kept.
        let parts: Vec<&str> = t.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["name"] = "victim".into();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(verify(&k, &swapped, now()), Err(Refusal::Signature));
        // The kid switched to another mesh: that mesh's key does not verify it.
        let header = r#"{"alg":"EdDSA","typ":"JWT","kid":"other/1"}"#;
        let moved = format!("{}.{}.{}", B64.encode(header), parts[1], parts[2]);
        assert_eq!(verify(&k, &moved, now()), Err(Refusal::Signature));
        // alg: none, no signature.
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT","kid":"default/1"}"#),
            parts[1]
        );
        assert_eq!(verify(&k, &none, now()), Err(Refusal::Algorithm));
        // HS256 (the public key as an HMAC secret is the classic confusion).
        let hs = format!(
            "{}.{}.{}",
            B64.encode(r#"{"alg":"HS256","typ":"JWT","kid":"default/1"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(verify(&k, &hs, now()), Err(Refusal::Algorithm));
        // exp as a string (the type confusion of GHSA-h395-gr6q-cpjc) does not pass as valid.
        claims["name"] = "backend-1".into();
        claims["exp"] = "99999999999".into();
        let typed = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims.to_string()),
            parts[2]
        );
        assert!(verify(&k, &typed, now()).is_err());
        for garbage in ["", "a.b.c", "Bearer", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert_eq!(
                verify(&k, garbage, now()),
                Err(Refusal::Malformed),
                "{garbage:.20}"
            );
        }
        for d in [dir, dir2, dir3] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
