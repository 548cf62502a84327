//! A secret as the store keeps it: one metadata row (name, key, tags, which version holds
//! which staging label, deletion) and one row per version holding the value sealed under a
//! data key of the secret's KMS key. Both rows carry a MAC (see `store::integrity`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A secret: its metadata and its versions, by version id.
#[derive(Debug, Clone)]
pub(crate) struct Secret {
    /// `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>`: the identity.
    pub(crate) arn: String,
    /// Everything but the versions' values.
    pub(crate) meta: Arc<SecretMeta>,
    /// The versions, by `VersionId`.
    pub(crate) versions: BTreeMap<String, Arc<SecretVersion>>,
}

/// A secret's metadata row (its `body`, JSON). Members added later must default, so rows
/// written before them still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SecretMeta {
    /// The secret's name.
    pub(crate) name: String,
    /// `Description`.
    pub(crate) description: Option<String>,
    /// The KMS key as the caller named it (`KmsKeyId`); `None` for the AWS managed key
    /// `aws/secretsmanager`.
    pub(crate) kms_key_id: Option<String>,
    /// Tags, in the order given.
    pub(crate) tags: Vec<(String, String)>,
    /// Creation, ms since the epoch.
    pub(crate) created_ms: i64,
    /// Last change of metadata or value, ms.
    pub(crate) last_changed_ms: i64,
    /// When a scheduled deletion happens, ms (`DeletedDate` is the request's time; see ops).
    pub(crate) deletion_ms: Option<i64>,
    /// When deletion was requested, ms.
    pub(crate) deleted_ms: Option<i64>,
    /// Staging labels: each label names exactly one version (a map, so a label cannot sit on
    /// two versions).
    pub(crate) stages: BTreeMap<String, String>,
}

/// One version of a secret's value (its `secret_versions` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretVersion {
    /// `VersionId` (the `ClientRequestToken` that made it).
    pub(crate) version_id: String,
    /// Creation, ms.
    pub(crate) created_ms: i64,
    /// The value sealed under a data key of the secret's KMS key (the envelope's encoding is
    /// the Secrets Manager operations'; the store keeps it as bytes).
    pub(crate) sealed: Vec<u8>,
}
