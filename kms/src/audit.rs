//! The audit log: every request, appended to a hash chain.
//!
//! Each entry is stored as canonical JSON with `hash = SHA-256(prev_hash ‖ "\n" ‖ entry)`, so
//! changing, removing or reordering any entry breaks every hash after it. `cloister-kms audit
//! verify` walks the chain. Entries never hold key material or plaintext.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{KmsError, Result};
use crate::store::WriterState;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Server time, ms since the epoch.
    pub time_ms: i64,
    /// Caller principal ARN, or `anonymous` when authentication failed.
    pub principal: String,
    /// Operation name (`Decrypt`), or the raw target when unknown.
    pub operation: String,
    /// Key id the request used, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_id: Option<String>,
    /// Key material version used, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_version: Option<u32>,
    /// Encryption context, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_context: Option<std::collections::BTreeMap<String, String>>,
    /// `ok` or `error`.
    pub outcome: String,
    /// AWS error name when the outcome is `error`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Why (error message), when refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// For requests carrying an attestation document: its module id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub module_id: Option<String>,
    /// For requests carrying an attestation document: its PCR0 (hex).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pcr0: Option<String>,
}

fn chain_hash(prev: &str, entry_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(entry_json.as_bytes());
    hex::encode(h.finalize())
}

/// Appends `entry` inside the writer's transaction, extending the chain.
pub fn append(tx: &Connection, state: &mut WriterState, entry: &AuditEntry) -> Result<()> {
    let json = serde_json::to_string(entry).map_err(KmsError::store)?;
    let hash = chain_hash(&state.audit_head, &json);
    let seq = state.audit_seq + 1;
    tx.execute(
        "INSERT INTO audit (seq, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)",
        params![seq, json, state.audit_head, hash],
    )
    .map_err(KmsError::store)?;
    state.audit_seq = seq;
    state.audit_head = hash;
    Ok(())
}

/// A stored entry with its chain fields.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Sequence number, from 1.
    pub seq: i64,
    /// The entry JSON as stored.
    pub json: String,
    /// Previous hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The last `n` entries, oldest first.
pub fn tail(conn: &Connection, n: usize) -> Result<Vec<StoredEntry>> {
    let mut stmt = conn
        .prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?1")
        .map_err(KmsError::store)?;
    let rows = stmt
        .query_map([i64::try_from(n).unwrap_or(i64::MAX)], |r| {
            Ok(StoredEntry {
                seq: r.get(0)?,
                json: r.get(1)?,
                prev_hash: r.get(2)?,
                hash: r.get(3)?,
            })
        })
        .map_err(KmsError::store)?;
    let mut out = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(KmsError::store)?;
    out.reverse();
    Ok(out)
}

/// Walks the whole chain. `Ok(count)` when intact, `Err((seq, reason))` at the first bad entry.
pub fn verify(conn: &Connection) -> Result<std::result::Result<i64, (i64, String)>> {
    let mut stmt = conn
        .prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq")
        .map_err(KmsError::store)?;
    let mut rows = stmt.query([]).map_err(KmsError::store)?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    while let Some(r) = rows.next().map_err(KmsError::store)? {
        let (seq, json, prev_hash, hash): (i64, String, String, String) = (
            r.get(0).map_err(KmsError::store)?,
            r.get(1).map_err(KmsError::store)?,
            r.get(2).map_err(KmsError::store)?,
            r.get(3).map_err(KmsError::store)?,
        );
        if seq != expected_seq {
            return Ok(Err((seq, format!("sequence gap: expected {expected_seq}"))));
        }
        if prev_hash != prev {
            return Ok(Err((
                seq,
                "prev_hash does not match the previous entry's hash".into(),
            )));
        }
        if chain_hash(&prev, &json) != hash {
            return Ok(Err((
                seq,
                "hash does not match the entry's contents".into(),
            )));
        }
        if serde_json::from_str::<AuditEntry>(&json).is_err() {
            return Ok(Err((seq, "entry is not a valid audit record".into())));
        }
        prev = hash;
        expected_seq += 1;
    }
    Ok(Ok(expected_seq - 1))
}
