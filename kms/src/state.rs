//! The KMS's in-memory view of the store: keys with their decrypted material, aliases,
//! principals, and the stored rows that failed their integrity check. Loaded once at start (by
//! [`crate::store::Store::load`]); every change is persisted first and applied after.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{KmsError, Result, StoreError};
use crate::keyspec::KeyAttrs;
use crate::policy::KeyPolicy;
use crate::secrets::model::Secret;
use crate::ssm::model::Parameter;

/// A key's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Usable.
    Enabled,
    /// Refuses cryptographic operations (DisabledException).
    Disabled,
    /// Scheduled for deletion: refuses cryptographic operations (KMSInvalidStateException).
    PendingDeletion,
    /// A Multi-Region primary key scheduled for deletion while it still has replicas: refuses
    /// cryptographic operations and replication; its waiting period begins when its last
    /// replica is deleted (KMSInvalidStateException).
    PendingReplicaDeletion,
    /// Origin EXTERNAL, no material imported yet (or it expired or was deleted): refuses
    /// cryptographic operations (KMSInvalidStateException).
    PendingImport,
}

impl KeyState {
    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::PendingReplicaDeletion => "PendingReplicaDeletion",
            Self::PendingImport => "PendingImport",
        }
    }

    /// The state AWS's name names.
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "Enabled" => Ok(Self::Enabled),
            "Disabled" => Ok(Self::Disabled),
            "PendingDeletion" => Ok(Self::PendingDeletion),
            "PendingReplicaDeletion" => Ok(Self::PendingReplicaDeletion),
            "PendingImport" => Ok(Self::PendingImport),
            other => Err(StoreError::UnknownState(other.to_owned())),
        }
    }
}

/// A KMS key.
#[derive(Debug, Clone)]
pub(crate) struct KeyRecord {
    /// UUID.
    pub(crate) key_id: String,
    /// Description.
    pub(crate) description: String,
    /// Creation, ms since epoch.
    pub(crate) created_ms: i64,
    /// State.
    pub(crate) state: KeyState,
    /// When a pending deletion happens, ms.
    pub(crate) deletion_ms: Option<i64>,
    /// The pending window chosen.
    pub(crate) pending_days: Option<i64>,
    /// Automatic rotation on.
    pub(crate) rotation_enabled: bool,
    /// Automatic rotation period.
    pub(crate) rotation_period_days: i64,
    /// Last rotation (or creation), ms.
    pub(crate) last_rotation_ms: i64,
    /// Newest key material version (1 at creation).
    pub(crate) current_version: u32,
    /// The key policy text.
    pub(crate) policy_text: Arc<str>,
    /// The parsed key policy.
    pub(crate) policy: Arc<KeyPolicy>,
    /// Spec, usage, origin, tags, region, multi-Region configuration, material versions.
    pub(crate) attrs: Arc<KeyAttrs>,
}

/// A version of a key's material, opened: 32 bytes for SYMMETRIC_DEFAULT keys, the HMAC key for
/// HMAC keys, the PKCS #8 private key for asymmetric keys. Shared, not copied, by requests.
pub(crate) type Material = Arc<Zeroizing<Vec<u8>>>;

/// A grant, as stored: its identity, its key, and its body (JSON, decoded by the grants
/// operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantRow {
    /// `GrantId`.
    pub(crate) grant_id: String,
    /// The key it is on.
    pub(crate) key_id: String,
    /// Everything else, as JSON.
    pub(crate) body: String,
    /// Creation, ms.
    pub(crate) created_ms: i64,
}

/// An alias.
#[derive(Debug, Clone)]
pub(crate) struct Alias {
    /// `alias/...`.
    pub(crate) name: String,
    /// Target key id.
    pub(crate) key_id: String,
    /// Creation, ms.
    pub(crate) created_ms: i64,
    /// Last update, ms.
    pub(crate) updated_ms: i64,
}

/// A principal that can sign requests.
#[derive(Clone)]
pub struct Principal {
    /// Access key id.
    pub(crate) access_key_id: String,
    /// Secret access key.
    pub(crate) secret: Zeroizing<String>,
    /// Principal ARN.
    pub(crate) arn: String,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("access_key_id", &self.access_key_id)
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

/// Everything the KMS serves from memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Keys by id.
    pub(crate) keys: HashMap<String, KeyRecord>,
    /// Key material by (key id, version).
    pub(crate) material: HashMap<(String, u32), Material>,
    /// Aliases by name.
    pub(crate) aliases: BTreeMap<String, Alias>,
    /// Principals by access key id.
    pub(crate) principals: HashMap<String, Principal>,
    /// Grants by grant id.
    pub(crate) grants: BTreeMap<String, GrantRow>,
    /// Secrets Manager's secrets by ARN (of every region: the ARN names it).
    pub(crate) secrets: BTreeMap<String, Secret>,
    /// Parameter Store's parameters by ARN.
    pub(crate) parameters: BTreeMap<String, Parameter>,
    /// Stored rows that failed their integrity check, and why: none of them is in the maps
    /// above, and a request naming one is refused (see `App::tampered`).
    pub(crate) tampered: HashMap<RowId, Flaw>,
}

/// A stored row, by what names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RowId {
    /// A key (its `keys` row, or one of its `key_material` rows), by key id.
    Key(String),
    /// An `aliases` row, by alias name.
    Alias(String),
    /// A `principals` row, by access key id.
    Principal(String),
    /// A `grants` row, by grant id.
    Grant(String),
    /// A `secrets` row, by ARN.
    Secret(String),
    /// A `secret_versions` row, by its secret's ARN (the whole secret is set aside).
    SecretVersion(String),
    /// A `parameters` row, by ARN.
    Parameter(String),
}

/// Why a stored row failed its integrity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// The row has no MAC (written past the store's integrity, or its MAC was removed).
    NoMac,
    /// The row's MAC does not match its contents: a column was changed, or the row was copied
    /// from another identity.
    BadMac,
    /// The principal's sealed secret does not open under the root key for its access key.
    SecretSeal,
    /// This version of the key's material does not open under the root key for its identity.
    MaterialSeal(u32),
}

impl Flaw {
    /// The table holding the flawed row named `row`.
    pub(crate) fn table(self, row: &RowId) -> &'static str {
        match (self, row) {
            (Self::MaterialSeal(_), _) => "key_material",
            (_, RowId::Key(_)) => "keys",
            (_, RowId::Alias(_)) => "aliases",
            (_, RowId::Principal(_)) => "principals",
            (_, RowId::Grant(_)) => "grants",
            (_, RowId::Secret(_)) => "secrets",
            (_, RowId::SecretVersion(_)) => "secret_versions",
            (_, RowId::Parameter(_)) => "parameters",
        }
    }
}

impl std::fmt::Display for Flaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoMac => f.write_str("it has no MAC"),
            Self::BadMac => f.write_str("its MAC does not match its contents"),
            Self::SecretSeal => f.write_str("its sealed secret does not open under the root key"),
            Self::MaterialSeal(v) => write!(
                f,
                "key material version {v} does not open under the root key"
            ),
        }
    }
}

/// The label binding a sealed key-material row to its identity.
pub(crate) fn material_label(key_id: &str, version: u32) -> String {
    format!("key-material/{key_id}/{version}")
}

/// The label binding a sealed principal secret to its access key.
pub(crate) fn secret_label(access_key_id: &str) -> String {
    format!("principal-secret/{access_key_id}")
}

fn random_string(alphabet: &[u8], len: usize) -> Result<String> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KmsError::no_randomness())?;
    Ok(bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}

impl Principal {
    /// A principal named `arn` with fresh credentials (not yet stored).
    pub(crate) fn generate(arn: &str) -> Result<Self> {
        let access_key_id = format!(
            "AKIA{}",
            random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)?
        );
        let mut raw = Zeroizing::new([0u8; 30]);
        SystemRandom::new()
            .fill(raw.as_mut())
            .map_err(|_| KmsError::no_randomness())?;
        let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw));
        Ok(Self {
            access_key_id,
            secret,
            arn: arn.to_owned(),
        })
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The principal's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }
}
