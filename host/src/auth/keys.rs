//! Per-mesh signing keys for dataplane tokens, in a directory the operator keeps:
//! `<dir>/<mesh>/signing-key-<serial>.pem`, each an Ed25519 private key (PKCS#8 PEM, mode 0600).
//!
//! Rotation, as Kuma's: `generate signing-key` adds a key with the next serial, new tokens are
//! signed by the newest, tokens of every key still present verify, and deleting a key's file
//! ends its tokens (open streams included, within a poll). A mesh's keys never verify another
//! mesh's tokens: the key is chosen by the mesh the token's `kid` names, and the mesh in its
//! signed claims must be the same.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::resources::names::name_problem;

const PREFIX: &str = "signing-key-";
const SUFFIX: &str = ".pem";
/// A key file is a few hundred bytes; anything larger is not one.
const MAX_KEY_FILE: u64 = 16 << 10;
/// More keys than any rotation needs: bounds what one directory can make the server load.
const MAX_KEYS: usize = 1024;

pub struct Key {
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

/// Every mesh's keys by serial.
#[derive(Default)]
pub struct SigningKeys {
    meshes: BTreeMap<String, BTreeMap<u32, Key>>,
}

impl fmt::Debug for SigningKeys {
    // Never the keys themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m: BTreeMap<_, Vec<_>> = self
            .meshes
            .iter()
            .map(|(mesh, k)| (mesh, k.keys().collect()))
            .collect();
        f.debug_struct("SigningKeys").field("serials", &m).finish()
    }
}

/// The serial a key file's name carries, if it is one.
fn serial(file_name: &str) -> Option<u32> {
    let s = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Every key file below `dir` (for change detection).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(meshes) = std::fs::read_dir(dir) else {
        return out;
    };
    for m in meshes.flatten() {
        if let Ok(keys) = std::fs::read_dir(m.path()) {
            out.extend(
                keys.flatten()
                    .filter(|k| serial(&k.file_name().to_string_lossy()).is_some())
                    .map(|k| k.path()),
            );
        }
    }
    out.sort();
    out.truncate(MAX_KEYS);
    out
}

impl SigningKeys {
    /// Loads every mesh's keys from `dir`. A file that is not an Ed25519 key is an error naming
    /// it (a half-written key must not be skipped silently: its tokens would stop working).
    pub fn load(dir: &Path) -> Result<SigningKeys> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("--keys {}: cannot read the directory", dir.display()))?;
        let mut meshes = BTreeMap::new();
        let mut count = 0;
        for m in entries.flatten() {
            let mesh = m.file_name().to_string_lossy().into_owned();
            if !m.path().is_dir() || name_problem(&mesh).is_some() {
                continue;
            }
            let mut keys = BTreeMap::new();
            for k in std::fs::read_dir(m.path())?.flatten() {
                let Some(serial) = serial(&k.file_name().to_string_lossy()) else {
                    continue;
                };
                count += 1;
                if count > MAX_KEYS {
                    bail!("--keys {}: more than {MAX_KEYS} keys", dir.display());
                }
                let path = k.path();
                keys.insert(serial, read_key(&path)?);
            }
            if !keys.is_empty() {
                meshes.insert(mesh, keys);
            }
        }
        Ok(SigningKeys { meshes })
    }

    /// The mesh's newest key and its serial.
    pub fn newest(&self, mesh: &str) -> Option<(u32, &Key)> {
        self.meshes
            .get(mesh)?
            .iter()
            .next_back()
            .map(|(s, k)| (*s, k))
    }

    pub fn get(&self, mesh: &str, serial: u32) -> Option<&Key> {
        self.meshes.get(mesh)?.get(&serial)
    }

    pub fn meshes(&self) -> impl Iterator<Item = &str> {
        self.meshes.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.meshes.is_empty()
    }
}

fn read_key(path: &Path) -> Result<Key> {
    let pem = super::read_bounded(path, MAX_KEY_FILE, "signing key")?;
    let pair = rcgen::KeyPair::from_pem(&pem)
        .ok()
        .filter(|k| k.algorithm() == &rcgen::PKCS_ED25519)
        .with_context(|| {
            format!(
                "{}: not an Ed25519 private key (PKCS#8 PEM)",
                path.display()
            )
        })?;
    let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
        .with_context(|| format!("{}: not an Ed25519 private key", path.display()))?;
    let decoding = DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes())
        .with_context(|| format!("{}: its public key cannot be read", path.display()))?;
    Ok(Key { encoding, decoding })
}

/// Adds a new key for `mesh` in `dir`, with the next serial; returns its path.
pub fn generate(dir: &Path, mesh: &str) -> Result<PathBuf> {
    if let Some(p) = name_problem(mesh) {
        bail!("--mesh: {p}");
    }
    let mesh_dir = dir.join(mesh);
    create_private_dir(dir)?;
    create_private_dir(&mesh_dir)?;
    let next = std::fs::read_dir(&mesh_dir)?
        .flatten()
        .filter_map(|k| serial(&k.file_name().to_string_lossy()))
        .max()
        .map_or(Some(1), |s| s.checked_add(1))
        .context("no serial left")?;
    let pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).context("generating an Ed25519 key")?;
    let path = mesh_dir.join(format!("{PREFIX}{next}{SUFFIX}"));
    write_private(&path, pair.serialize_pem().as_bytes())?;
    Ok(path)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a new file readable by its owner only; never replaces one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_come_from_file_names_only() {
        assert_eq!(serial("signing-key-1.pem"), Some(1));
        assert_eq!(serial("signing-key-42.pem"), Some(42));
        for bad in [
            "signing-key-.pem",
            "signing-key-1.pem.bak",
            "signing-key--1.pem",
            "x.pem",
        ] {
            assert_eq!(serial(bad), None, "{bad}");
        }
    }

    #[test]
    fn generate_adds_the_next_serial_and_load_reads_them_per_mesh() {
        let dir = std::env::temp_dir().join(format!("mm-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = generate(&dir, "default").unwrap();
        let b = generate(&dir, "default").unwrap();
        generate(&dir, "other").unwrap();
        assert!(a.ends_with("default/signing-key-1.pem") && b.ends_with("signing-key-2.pem"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let keys = SigningKeys::load(&dir).unwrap();
        assert_eq!(keys.newest("default").map(|(s, _)| s), Some(2));
        assert_eq!(keys.newest("other").map(|(s, _)| s), Some(1));
        assert!(keys.newest("third").is_none());
        assert!(!format!("{keys:?}").contains("PRIVATE"));
        std::fs::write(dir.join("default/signing-key-3.pem"), "not a key").unwrap();
        let e = SigningKeys::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("signing-key-3.pem: not an Ed25519 private key"),
            "{e}"
        );
        assert!(generate(&dir, "../x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
