//! The root key: the one secret that protects the store at rest, and where its file lives.
//!
//! It is 32 random bytes in one file, mode 0600: `<data-dir>/root.key` by default, or wherever
//! `--root-key <FILE>` says ([`RootKeyFile`]). This file is where an HSM would sit in a
//! production deployment: whoever reads it, together with the SQLite store, has every key, so it
//! belongs outside the data directory (another volume, a secrets mount), where a copy of the data
//! directory (a backup, a replica) does not take it along.
//!
//! Two keys come from it. Records (key material, principal secrets) are sealed with AES-256-GCM
//! under the root key itself, the record's identity bound as AAD so a sealed value cannot be
//! moved to another row. Rows (keys, aliases, principals) are authenticated with HMAC-SHA256
//! under [`RowKey`], derived from the root key with HKDF-SHA256 and the fixed label
//! [`ROW_MAC_LABEL`], so the MAC key is never the sealing key.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result, SetupError};

/// File name of the root key inside the data directory, when `--root-key` is not given.
pub(crate) const ROOT_KEY_FILE: &str = "root.key";

/// The HKDF info that derives the row MAC key from the root key. Changing it changes every MAC.
pub(crate) const ROW_MAC_LABEL: &str = "cloister-kms row-mac v1";

/// Where the root key lives: `--root-key <FILE>`, or `<data-dir>/root.key` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyFile(PathBuf);

impl RootKeyFile {
    /// The root key for data directory `data_dir`: `explicit` if given (`--root-key`), else
    /// `<data_dir>/root.key`.
    pub fn new(data_dir: &Path, explicit: Option<&Path>) -> Self {
        Self(explicit.map_or_else(|| data_dir.join(ROOT_KEY_FILE), Path::to_owned))
    }

    /// The default place: `<data_dir>/root.key`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir, None)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Whether the file exists.
    pub fn exists(&self) -> bool {
        self.0.exists()
    }

    /// Loads the key from the file, which must exist, be 0600 (no group or other bits) and hold
    /// exactly 32 bytes.
    pub fn load(&self) -> Result<RootKey, SetupError> {
        let path = &self.0;
        let meta = std::fs::metadata(path).map_err(SetupError::io(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SetupError::RootKeyMode {
                path: path.clone(),
                mode,
            });
        }
        let mut buf = Zeroizing::new(Vec::new());
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(SetupError::io(path))?;
        let bytes: &[u8; 32] = buf
            .as_slice()
            .try_into()
            .map_err(|_| SetupError::RootKeySize { path: path.clone() })?;
        Ok(RootKey::from_bytes(bytes))
    }

    /// Creates a new random key in the file (0600); its directory must exist.
    pub(crate) fn create(&self) -> Result<RootKey, SetupError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| KmsError::no_randomness())?;
        cloister_common::fs::write_atomically(&self.0, bytes.as_ref(), 0o600)
            .map_err(SetupError::io(&self.0))?;
        Ok(RootKey::from_bytes(&bytes))
    }
}

/// The loaded root key.
pub struct RootKey {
    /// Seals records (AES-256-GCM).
    aead: LessSafeKey,
    /// Authenticates rows (HMAC-SHA256), derived.
    rows: RowKey,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Loads `<dir>/root.key`, creating it (0600) if it does not exist. Refuses a key file
    /// readable by group or others, or of the wrong size. (`Store::init` decides itself whether
    /// creating a key is safe: it never creates one beside a store sealed under another.)
    pub fn load_or_create(dir: &Path) -> Result<Self, SetupError> {
        let file = RootKeyFile::in_data_dir(dir);
        if file.exists() {
            file.load()
        } else {
            file.create()
        }
    }

    /// A root key from raw bytes.
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        // A 32-byte key is always valid for AES-256-GCM.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        Self {
            aead: LessSafeKey::new(unbound),
            rows: RowKey::derive(bytes),
        }
    }

    /// The key that authenticates the store's rows.
    pub(crate) fn rows(&self) -> &RowKey {
        &self.rows
    }

    /// Seals `plaintext` bound to `label` (e.g. `key-material/<id>/<version>`): nonce ‖ ct ‖ tag.
    pub(crate) fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KmsError::no_randomness())?;
        let mut buf = plaintext.to_vec();
        self.aead
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
            .aead
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut buf)
            .map_err(|_| bad())?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// The HMAC-SHA256 key that authenticates stored rows: HKDF-SHA256 of the root key (no salt),
/// info [`ROW_MAC_LABEL`].
#[derive(Clone)]
pub(crate) struct RowKey(hmac::Key);

impl std::fmt::Debug for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowKey(..)")
    }
}

impl RowKey {
    fn derive(root: &[u8; 32]) -> Self {
        let prk = Salt::new(HKDF_SHA256, &[]).extract(root);
        let info = [ROW_MAC_LABEL.as_bytes()];
        // 32 bytes is far below HKDF's limit of 255 hash lengths.
        let okm = prk
            .expand(&info, hmac::HMAC_SHA256)
            .unwrap_or_else(|_| unreachable!());
        Self(hmac::Key::from(okm))
    }

    /// The MAC of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.0, message).as_ref().to_vec()
    }

    /// Whether `tag` is the MAC of `message` (constant time).
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, message, tag).is_ok()
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
    fn row_key_is_derived_not_the_sealing_key() {
        let k = RootKey::from_bytes(&[7; 32]);
        let tag = k.rows().sign(b"row");
        assert_eq!(tag.len(), 32);
        assert!(k.rows().verify(b"row", &tag));
        assert!(!k.rows().verify(b"rox", &tag));
        assert!(!RootKey::from_bytes(&[8; 32]).rows().verify(b"row", &tag));
        // Not HMAC under the raw root key: the MAC key is HKDF's output.
        let raw = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        assert_ne!(hmac::sign(&raw, b"row").as_ref(), tag.as_slice());
        // The derivation is fixed: the same root key gives the same MACs after a restart.
        assert_eq!(RootKey::from_bytes(&[7; 32]).rows().sign(b"row"), tag);
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

    #[test]
    fn the_file_is_the_data_dirs_unless_given() {
        let data = Path::new("/srv/kms");
        assert_eq!(
            RootKeyFile::new(data, None).path(),
            Path::new("/srv/kms/root.key")
        );
        assert_eq!(
            RootKeyFile::new(data, Some(Path::new("/run/secrets/kms.key"))).path(),
            Path::new("/run/secrets/kms.key")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = RootKeyFile::new(dir.path(), Some(&dir.path().join("elsewhere.key")));
        assert!(!file.exists());
        let created = file.create().unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(created.rows().sign(b"r"), loaded.rows().sign(b"r"));
        std::fs::write(file.path(), [1u8; 31]).unwrap();
        assert!(matches!(file.load(), Err(SetupError::RootKeySize { .. })));
    }
}
