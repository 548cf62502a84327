//! Signed tree heads: the KMS's Ed25519 signature over its audit log's size and Merkle root.
//!
//! Whoever can write the SQLite file can rewrite the log and recompute every hash, but not sign
//! a tree head: the signing key sits in `<data-dir>/audit-signing.key`, sealed under the root
//! key (label `audit-signing-key/v1`), and is created on first use. The key owner keeps the
//! public key (`cloister-kms audit public-key`) and checkpoints; with them a rewrite or a cut-off
//! tail is caught even if the database and its stored heads were replaced.
//!
//! A head signs exactly these 74 bytes (fixed layout, so no two heads share an encoding):
//!
//! ```text
//! "cloister-kms tree head v1\n" (26 bytes) ‖ tree_size (u64 BE) ‖ timestamp_ms (u64 BE) ‖ root_hash (32)
//! ```
//!
//! Its JSON form (a checkpoint) is `{"format":"cloister-kms tree head v1","tree_size":N,
//! "timestamp_ms":T,"root_hash":"<64 hex>","signature":"<128 hex>"}`, parsed strictly.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result, SetupError};
use crate::merkle::Hash;
use crate::rootkey::RootKey;
use crate::store::now_ms;

/// File name of the sealed tree-head signing key inside the data directory.
pub(crate) const SIGNING_KEY_FILE: &str = "audit-signing.key";

/// The root key label the signing key is sealed under.
const SIGNING_KEY_LABEL: &str = "audit-signing-key/v1";

/// What every signed head starts with: the domain and the layout's version.
pub(crate) const TREE_HEAD_PREFIX: &[u8] = b"cloister-kms tree head v1\n";

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the key's 32 bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The largest PEM public key file accepted.
const MAX_PEM_BYTES: usize = 4096;

/// A signed tree head: the log's size and root at a time, signed by the KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// How many entries the tree covers (entries 1..=tree_size).
    pub tree_size: u64,
    /// When it was signed, ms since the epoch.
    pub timestamp_ms: u64,
    /// The Merkle root of the first `tree_size` entries.
    pub root_hash: Hash,
    /// Ed25519 over [`SignedTreeHead::signed_bytes`].
    pub signature: [u8; 64],
}

impl SignedTreeHead {
    /// The bytes the signature covers (see the module header).
    pub fn signed_bytes(tree_size: u64, timestamp_ms: u64, root_hash: &Hash) -> Vec<u8> {
        let mut m = Vec::with_capacity(TREE_HEAD_PREFIX.len() + 48);
        m.extend_from_slice(TREE_HEAD_PREFIX);
        m.extend_from_slice(&tree_size.to_be_bytes());
        m.extend_from_slice(&timestamp_ms.to_be_bytes());
        m.extend_from_slice(root_hash);
        m
    }

    /// The checkpoint JSON (one line).
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&TreeHeadJson::from(self)).unwrap_or_default()
    }
}

/// The JSON form of a [`SignedTreeHead`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TreeHeadJson {
    format: TreeHeadFormat,
    tree_size: u64,
    timestamp_ms: u64,
    root_hash: HexHash,
    signature: HexSignature,
}

/// The only `format` a tree head has.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum TreeHeadFormat {
    #[serde(rename = "cloister-kms tree head v1")]
    V1,
}

impl From<&SignedTreeHead> for TreeHeadJson {
    fn from(h: &SignedTreeHead) -> Self {
        Self {
            format: TreeHeadFormat::V1,
            tree_size: h.tree_size,
            timestamp_ms: h.timestamp_ms,
            root_hash: HexHash(h.root_hash),
            signature: HexSignature(h.signature),
        }
    }
}

impl From<TreeHeadJson> for SignedTreeHead {
    fn from(j: TreeHeadJson) -> Self {
        Self {
            tree_size: j.tree_size,
            timestamp_ms: j.timestamp_ms,
            root_hash: j.root_hash.0,
            signature: j.signature.0,
        }
    }
}

/// Lower-case hex of exactly `N` bytes, nothing else.
fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A hash in JSON: 64 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HexHash(pub(crate) Hash);

impl Serialize for HexHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_hex(&s)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("a hash must be 64 lower-case hex digits"))
    }
}

/// A signature in JSON: 128 lower-case hex digits.
#[derive(Debug, Clone, Copy)]
struct HexSignature([u8; 64]);

impl Serialize for HexSignature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for HexSignature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_hex(&s).map(Self).ok_or_else(|| {
            serde::de::Error::custom("a signature must be 128 lower-case hex digits")
        })
    }
}

/// The public half of the tree-head signing key: what checks heads, checkpoints and proofs.
#[derive(Clone, PartialEq, Eq)]
pub struct TreeKey([u8; 32]);

impl std::fmt::Debug for TreeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TreeKey({})", hex::encode(self.0))
    }
}

/// A public key file that is not an Ed25519 `PUBLIC KEY` PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 public key PEM: {0}")]
pub struct KeyFormatError(&'static str);

impl TreeKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding an Ed25519 key, strictly.
    pub fn from_pem(pem: &[u8]) -> std::result::Result<Self, KeyFormatError> {
        if pem.len() > MAX_PEM_BYTES {
            return Err(KeyFormatError("file too large"));
        }
        let text = std::str::from_utf8(pem).map_err(|_| KeyFormatError("not UTF-8"))?;
        let body = text
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|t| t.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or(KeyFormatError("no BEGIN/END PUBLIC KEY lines"))?;
        let b64: String = body.split_ascii_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| KeyFormatError("bad base64"))?;
        let key = der
            .strip_prefix(&ED25519_SPKI_PREFIX)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(KeyFormatError("not an Ed25519 SubjectPublicKeyInfo"))?;
        Ok(Self(key))
    }

    /// The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Whether `head`'s signature is this key's.
    pub fn verifies(&self, head: &SignedTreeHead) -> bool {
        let msg = SignedTreeHead::signed_bytes(head.tree_size, head.timestamp_ms, &head.root_hash);
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&msg, &head.signature)
            .is_ok()
    }
}

/// The KMS's tree-head signing key.
pub struct TreeSigner {
    pair: Ed25519KeyPair,
    public: TreeKey,
}

impl std::fmt::Debug for TreeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TreeSigner").field(&self.public).finish()
    }
}

impl TreeSigner {
    /// A new random key, in memory only.
    pub fn generate() -> Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KmsError::no_randomness())?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| {
            KmsError::Internal(format!("the tree-head signing key does not parse: {e}"))
        })?;
        let der = pair
            .public_key()
            .as_der()
            .map_err(|_| KmsError::Internal("cannot encode the tree-head public key".into()))?;
        let public = der
            .as_ref()
            .strip_prefix(&ED25519_SPKI_PREFIX)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(TreeKey)
            .ok_or_else(|| KmsError::Internal("unexpected Ed25519 public key encoding".into()))?;
        Ok(Self { pair, public })
    }

    /// Loads `<dir>/audit-signing.key` and opens it under `root`; None if there is none yet.
    pub fn load(dir: &Path, root: &RootKey) -> Result<Option<Self>, SetupError> {
        let path = dir.join(SIGNING_KEY_FILE);
        let mut sealed = Vec::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                let mode = f
                    .metadata()
                    .map_err(SetupError::io(&path))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SetupError::RootKeyMode {
                        path,
                        mode: mode & 0o777,
                    });
                }
                f.take(4096)
                    .read_to_end(&mut sealed)
                    .map_err(SetupError::io(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SetupError::io(&path)(e)),
        }
        let pkcs8 = root.open(SIGNING_KEY_LABEL, &sealed)?;
        Ok(Some(Self::from_pkcs8(&pkcs8)?))
    }

    /// Loads the signing key, creating it (0600, sealed under `root`) on first use. Two
    /// processes creating it at once end with the same key: the file is linked into place only
    /// if it does not exist yet.
    pub fn load_or_create(dir: &Path, root: &RootKey) -> Result<Self, SetupError> {
        if let Some(s) = Self::load(dir, root)? {
            return Ok(s);
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KmsError::no_randomness())?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let sealed = root.seal(SIGNING_KEY_LABEL, &pkcs8)?;
        let path = dir.join(SIGNING_KEY_FILE);
        let mut nonce = [0u8; 8];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KmsError::no_randomness())?;
        let tmp = dir.join(format!("{SIGNING_KEY_FILE}.{}.new", hex::encode(nonce)));
        cloister_common::fs::write_atomically(&tmp, &sealed, 0o600)
            .map_err(SetupError::io(&tmp))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                cloister_common::fs::sync_dir(dir).map_err(SetupError::io(dir))?;
                tracing::info!("created the audit log's tree-head signing key");
                Ok(Self::from_pkcs8(&pkcs8)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load(dir, root)?.ok_or_else(|| SetupError::io(&path)(e))
            }
            Err(e) => Err(SetupError::io(&path)(e)),
        }
    }

    /// A new key, sealed under `root` (to be kept where every node of a shared store finds it).
    pub(crate) fn new_sealed(root: &RootKey) -> Result<Vec<u8>> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KmsError::no_randomness())?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        root.seal(SIGNING_KEY_LABEL, &pkcs8)
    }

    /// The key `sealed` holds, opened under `root`.
    pub(crate) fn from_sealed(root: &RootKey, sealed: &[u8]) -> Result<Self> {
        let pkcs8 = root.open(SIGNING_KEY_LABEL, sealed)?;
        Self::from_pkcs8(&pkcs8)
    }

    /// Whether `dir` holds a signing key file.
    pub fn exists(dir: &Path) -> bool {
        dir.join(SIGNING_KEY_FILE).exists()
    }

    /// The public key.
    pub fn public_key(&self) -> &TreeKey {
        &self.public
    }

    /// Signs the head of a tree of `tree_size` entries with root `root_hash`, at `timestamp_ms`.
    pub fn sign(&self, tree_size: u64, root_hash: Hash, timestamp_ms: u64) -> SignedTreeHead {
        let msg = SignedTreeHead::signed_bytes(tree_size, timestamp_ms, &root_hash);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(&msg).as_ref());
        SignedTreeHead {
            tree_size,
            timestamp_ms,
            root_hash,
            signature,
        }
    }

    /// Signs the head of a tree of `tree_size` entries with root `root_hash`, now.
    pub fn sign_now(&self, tree_size: u64, root_hash: Hash) -> SignedTreeHead {
        self.sign(tree_size, root_hash, u64::try_from(now_ms()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_verify_only_under_their_key_and_for_their_contents() {
        let a = TreeSigner::generate().unwrap();
        let b = TreeSigner::generate().unwrap();
        let h = a.sign(7, [3; 32], 1_700_000_000_000);
        assert!(a.public_key().verifies(&h));
        assert!(!b.public_key().verifies(&h));
        for changed in [
            SignedTreeHead {
                tree_size: 8,
                ..h.clone()
            },
            SignedTreeHead {
                timestamp_ms: 1,
                ..h.clone()
            },
            SignedTreeHead {
                root_hash: [4; 32],
                ..h.clone()
            },
        ] {
            assert!(!a.public_key().verifies(&changed));
        }
        assert_eq!(SignedTreeHead::signed_bytes(7, 1, &[3; 32]).len(), 74);
    }

    #[test]
    fn public_key_pem_round_trips_and_is_strict() {
        let s = TreeSigner::generate().unwrap();
        let pem = s.public_key().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        assert_eq!(&TreeKey::from_pem(pem.as_bytes()).unwrap(), s.public_key());
        // The same SPKI aws-lc-rs writes.
        let der = s.pair.public_key().as_der().unwrap();
        let ours = base64::engine::general_purpose::STANDARD
            .decode(pem.lines().nth(1).unwrap())
            .unwrap();
        assert_eq!(der.as_ref(), ours.as_slice());
        for bad in [
            String::new(),
            pem.replace("PUBLIC KEY", "PRIVATE KEY"),
            pem.replace("MCow", "MCox"),
            pem.replace("MCow", "!Cow"),
            "x".repeat(5000),
        ] {
            assert!(TreeKey::from_pem(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_file_is_sealed_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::from_bytes(&[1; 32]);
        assert!(TreeSigner::load(dir.path(), &root).unwrap().is_none());
        let a = TreeSigner::load_or_create(dir.path(), &root).unwrap();
        let b = TreeSigner::load_or_create(dir.path(), &root).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let path = dir.path().join(SIGNING_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Another root key cannot open it.
        let other = RootKey::from_bytes(&[2; 32]);
        assert!(TreeSigner::load(dir.path(), &other).is_err());
    }

    #[test]
    fn checkpoint_json_is_strict() {
        let s = TreeSigner::generate().unwrap();
        let h = s.sign(3, [0xab; 32], 5);
        let json = h.to_json();
        let back: TreeHeadJson = serde_json::from_str(&json).unwrap();
        assert_eq!(SignedTreeHead::from(back), h);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (field, value) in [
            ("format", serde_json::json!("cloister-kms tree head v2")),
            ("root_hash", serde_json::json!("AB".repeat(32))),
            ("root_hash", serde_json::json!("ab".repeat(31))),
            ("signature", serde_json::json!("00")),
            ("tree_size", serde_json::json!(-1)),
            ("extra", serde_json::json!(1)),
        ] {
            let mut bad = v.clone();
            bad[field] = value;
            assert!(
                serde_json::from_value::<TreeHeadJson>(bad).is_err(),
                "{field}"
            );
        }
    }
}
