//! The KMS's in-memory view of the store: keys with their decrypted material, aliases,
//! principals. Loaded once at start; every change is persisted first and applied after.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::policy::KeyPolicy;
use crate::rootkey::RootKey;

/// A key's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Refuses cryptographic operations (DisabledException).
    Disabled,
    /// Scheduled for deletion: refuses cryptographic operations (KMSInvalidStateException).
    PendingDeletion,
}

impl KeyState {
    /// AWS's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "Enabled" => Ok(Self::Enabled),
            "Disabled" => Ok(Self::Disabled),
            "PendingDeletion" => Ok(Self::PendingDeletion),
            other => Err(KmsError::store(format!("unknown key state {other:?}"))),
        }
    }
}

/// A KMS key (SYMMETRIC_DEFAULT).
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// UUID.
    pub key_id: String,
    /// Description.
    pub description: String,
    /// Creation, ms since epoch.
    pub created_ms: i64,
    /// State.
    pub state: KeyState,
    /// When a pending deletion happens, ms.
    pub deletion_ms: Option<i64>,
    /// The pending window chosen.
    pub pending_days: Option<i64>,
    /// Automatic rotation on.
    pub rotation_enabled: bool,
    /// Automatic rotation period.
    pub rotation_period_days: i64,
    /// Last rotation (or creation), ms.
    pub last_rotation_ms: i64,
    /// Newest key material version (1 at creation).
    pub current_version: u32,
    /// The key policy text.
    pub policy_text: String,
    /// The parsed key policy.
    pub policy: Arc<KeyPolicy>,
}

/// An alias.
#[derive(Debug, Clone)]
pub struct Alias {
    /// `alias/...`.
    pub name: String,
    /// Target key id.
    pub key_id: String,
    /// Creation, ms.
    pub created_ms: i64,
    /// Last update, ms.
    pub updated_ms: i64,
}

/// A principal that can sign requests.
#[derive(Clone)]
pub struct Principal {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret: Zeroizing<String>,
    /// Principal ARN.
    pub arn: String,
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
pub struct State {
    /// Keys by id.
    pub keys: HashMap<String, KeyRecord>,
    /// Key material by (key id, version).
    pub material: HashMap<(String, u32), Zeroizing<[u8; 32]>>,
    /// Aliases by name.
    pub aliases: BTreeMap<String, Alias>,
    /// Principals by access key id.
    pub principals: HashMap<String, Principal>,
}

/// The label binding a sealed key-material row to its identity.
pub fn material_label(key_id: &str, version: u32) -> String {
    format!("key-material/{key_id}/{version}")
}

/// The label binding a sealed principal secret to its access key.
pub fn secret_label(access_key_id: &str) -> String {
    format!("principal-secret/{access_key_id}")
}

impl State {
    /// Loads every table, opening sealed values with the root key.
    pub fn load(conn: &Connection, root: &RootKey) -> Result<Self> {
        let mut state = Self::default();
        let mut stmt = conn
            .prepare(
                "SELECT key_id, description, created_ms, state, deletion_ms, pending_days, rotation_enabled,
                        rotation_period_days, last_rotation_ms, current_version, policy FROM keys",
            )
            .map_err(KmsError::store)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, bool>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, u32>(9)?,
                    r.get::<_, String>(10)?,
                ))
            })
            .map_err(KmsError::store)?;
        for row in rows {
            let (
                key_id,
                description,
                created_ms,
                st,
                deletion_ms,
                pending_days,
                rot,
                period,
                last,
                version,
                policy_text,
            ) = row.map_err(KmsError::store)?;
            let policy = Arc::new(KeyPolicy::parse(&policy_text).map_err(KmsError::store)?);
            state.keys.insert(
                key_id.clone(),
                KeyRecord {
                    key_id,
                    description,
                    created_ms,
                    state: KeyState::parse(&st)?,
                    deletion_ms,
                    pending_days,
                    rotation_enabled: rot,
                    rotation_period_days: period,
                    last_rotation_ms: last,
                    current_version: version,
                    policy_text,
                    policy,
                },
            );
        }
        let mut stmt = conn
            .prepare("SELECT key_id, version, sealed FROM key_material")
            .map_err(KmsError::store)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(KmsError::store)?;
        for row in rows {
            let (key_id, version, sealed) = row.map_err(KmsError::store)?;
            let opened = root.open(&material_label(&key_id, version), &sealed)?;
            let mut m = Zeroizing::new([0u8; 32]);
            if opened.len() != 32 {
                return Err(KmsError::store("key material is not 32 bytes"));
            }
            m.copy_from_slice(&opened);
            state.material.insert((key_id, version), m);
        }
        let mut stmt = conn
            .prepare("SELECT name, key_id, created_ms, updated_ms FROM aliases")
            .map_err(KmsError::store)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Alias {
                    name: r.get(0)?,
                    key_id: r.get(1)?,
                    created_ms: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            })
            .map_err(KmsError::store)?;
        for row in rows {
            let a = row.map_err(KmsError::store)?;
            state.aliases.insert(a.name.clone(), a);
        }
        for p in load_principals(conn, root)? {
            state.principals.insert(p.access_key_id.clone(), p);
        }
        Ok(state)
    }
}

/// Reads every principal (also used by the CLI, while a server may be running).
pub fn load_principals(conn: &Connection, root: &RootKey) -> Result<Vec<Principal>> {
    let mut stmt = conn
        .prepare("SELECT access_key_id, sealed_secret, arn FROM principals ORDER BY created_ms")
        .map_err(KmsError::store)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(KmsError::store)?;
    let mut out = Vec::new();
    for row in rows {
        let (access_key_id, sealed, arn) = row.map_err(KmsError::store)?;
        let secret = root.open(&secret_label(&access_key_id), &sealed)?;
        let secret = Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(KmsError::store)?);
        out.push(Principal {
            access_key_id,
            secret,
            arn,
        });
    }
    Ok(out)
}
