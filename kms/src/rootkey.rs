//! The root key: the one secret that protects all key material and principal secrets at rest.
//!
//! It lives in `<data-dir>/root.key` (32 random bytes, mode 0600). This file is where an HSM
//! would sit in a production deployment: whoever reads it, together with the SQLite store, has
//! every key. Records are sealed with AES-256-GCM, the record's identity bound as AAD so a sealed
//! value cannot be moved to another row.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result, SetupError};

/// File name of the root key inside the data directory.
pub(crate) const ROOT_KEY_FILE: &str = "root.key";

/// The loaded root key.
pub struct RootKey(LessSafeKey);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Loads `<dir>/root.key`, creating it (0600) on first start. Refuses a key file readable by
    /// group or others, or of the wrong size.
    pub fn load_or_create(dir: &Path) -> Result<Self, SetupError> {
        let path = dir.join(ROOT_KEY_FILE);
        let mut bytes = Zeroizing::new([0u8; 32]);
        if path.exists() {
            let meta = std::fs::metadata(&path).map_err(SetupError::io(&path))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SetupError::RootKeyMode { path, mode });
            }
            let mut buf = Zeroizing::new(Vec::new());
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(SetupError::io(&path))?;
            if buf.len() != 32 {
                return Err(SetupError::RootKeySize { path });
            }
            bytes.copy_from_slice(&buf);
        } else {
            SystemRandom::new()
                .fill(bytes.as_mut())
                .map_err(|_| KmsError::no_randomness())?;
            cloister_common::fs::write_atomically(&path, bytes.as_ref(), 0o600)
                .map_err(SetupError::io(&path))?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// A root key from raw bytes (tests).
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        // A 32-byte key is always valid for AES-256-GCM.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        Self(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` bound to `label` (e.g. `key-material/<id>/<version>`): nonce ‖ ct ‖ tag.
    pub(crate) fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KmsError::no_randomness())?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KmsError::Internal("root key seal failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`RootKey::seal`] sealed under the same label.
    pub(crate) fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let bad = || {
            KmsError::Internal(format!(
                "stored record {label} does not open under the root key"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let n = self
            .0
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut buf)
            .map_err(|_| bad())?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_is_bound_to_its_label() {
        let k = RootKey::from_bytes(&[7; 32]);
        let s = k.seal("a", b"secret").unwrap();
        assert_eq!(k.open("a", &s).unwrap().as_slice(), b"secret");
        assert!(k.open("b", &s).is_err());
        assert!(RootKey::from_bytes(&[8; 32]).open("a", &s).is_err());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = RootKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(ROOT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = a.seal("x", b"y").unwrap();
        let b = RootKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().as_slice(), b"y");
        std::fs::set_permissions(
            dir.path().join(ROOT_KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(RootKey::load_or_create(dir.path()).is_err());
    }
}
