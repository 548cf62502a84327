//! The audit log's entries, their hash chain and their Merkle leaves (the store keeps them; see
//! `store`).
//!
//! Each entry is stored as canonical JSON with `hash = SHA-256(prev_hash ‖ "\n" ‖ entry)`, so
//! changing, removing or reordering any entry breaks every hash after it, for whoever cannot
//! recompute the hashes. Against whoever can write the database, each entry is also a leaf of a
//! Merkle tree (`merkle`) whose heads the KMS signs (`tree_head`); `cloister-kms audit verify`
//! checks the chain, the tree and the signed heads. Entries never hold key material or
//! plaintext. What an attestation
//! document says is recorded as verified (`module_id`, `pcr0`, `trust_root_sha256`) only when it
//! verified; a refused document's claims go to `claimed_*` fields.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::StoredEntry;

/// The `prev_hash` of the first entry.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditEntry {
    /// Server time, ms since the epoch.
    pub(crate) time_ms: i64,
    /// Caller principal ARN, or `anonymous` when authentication failed.
    pub(crate) principal: String,
    /// Operation name (`Decrypt`), or the raw target when unknown.
    pub(crate) operation: String,
    /// Key id the request used, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) key_id: Option<String>,
    /// Key material version used, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) key_version: Option<u32>,
    /// The Secrets Manager secret or Parameter Store parameter the request named (its ARN).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) resource_arn: Option<String>,
    /// The secret's `VersionId` or the parameter's version the request read or wrote.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) resource_version: Option<String>,
    /// Encryption context, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) encryption_context: Option<std::collections::BTreeMap<String, String>>,
    /// `ok` or `error`.
    pub(crate) outcome: String,
    /// AWS error name when the outcome is `error`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) error: Option<String>,
    /// Why (error message), when refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) reason: Option<String>,
    /// For requests carrying an attestation document that verified: its module id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) module_id: Option<String>,
    /// For requests carrying an attestation document that verified: its PCR0 (hex).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) pcr0: Option<String>,
    /// For requests carrying an attestation document that verified: SHA-256 (hex) of the trust
    /// root its chain starts with.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) trust_root_sha256: Option<String>,
    /// For a refused attestation document: the module id it *claims*, unverified (anyone can
    /// write any value into a document that does not verify).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) claimed_module_id: Option<String>,
    /// For a refused attestation document: the PCR0 it *claims* (hex), unverified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) claimed_pcr0: Option<String>,
}

/// The hash of an entry stored after `prev`.
pub(crate) fn chain_hash(prev: &str, entry_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(entry_json.as_bytes());
    hex::encode(h.finalize())
}

/// Checks that `entry` follows the entry whose hash is `prev` and is an audit record.
pub(crate) fn check_link(prev: &str, entry: &StoredEntry) -> Result<(), &'static str> {
    if entry.prev_hash != prev {
        return Err("prev_hash does not match the previous entry's hash");
    }
    if chain_hash(prev, &entry.json) != entry.hash {
        return Err("hash does not match the entry's contents");
    }
    if serde_json::from_str::<AuditEntry>(&entry.json).is_err() {
        return Err("entry is not a valid audit record");
    }
    Ok(())
}
