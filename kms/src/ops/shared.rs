//! What the operation families share: the request being served, key lookup with its policy
//! check, the encryption context's condition keys, persisting a key, the input shapes several
//! operations use, paging, randomness.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::app::App;
use crate::audit::AuditEntry;
use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result};
use crate::input::{Body, Member};
use crate::state::{KeyRecord, Principal, material_label};

/// A day in milliseconds.
pub(super) const DAY_MS: i64 = 86_400_000;
/// Longest key id, key ARN, alias name or alias ARN.
pub(super) const MAX_KEY_ID: usize = 2048;

/// One request being served.
#[derive(Debug)]
pub(super) struct Call<'a> {
    /// The application.
    pub(super) app: &'a App,
    /// The authenticated caller.
    pub(super) principal: &'a Principal,
    /// The region the request was signed for (one this deployment serves): it sees that
    /// region's keys and aliases only.
    pub(super) region: &'a str,
    /// The request body.
    pub(super) body: Body,
    /// The audit entry for this request.
    pub(super) audit: &'a mut AuditEntry,
    /// `kms:ViaService` when another service (Secrets Manager, Parameter Store) calls the KMS
    /// for the caller (see `via`); `None` for a KMS request.
    pub(super) via: Option<String>,
}

/// The input of operations that name only a key.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct KeyIdInput {
    pub(super) key_id: Member<String>,
}

/// The paging members of the List operations.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct PageInput {
    pub(super) limit: Member<i64>,
    pub(super) marker: Member<String>,
}

impl Call<'_> {
    /// The body as the operation's input shape.
    pub(super) fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.body.decode()
    }

    /// Resolves `key_ref` (key id, key ARN, alias name or alias ARN) in the request's region,
    /// records the key in the audit entry, and authorizes `action`.
    pub(super) fn key_for(
        &mut self,
        key_ref: &str,
        action: &str,
        conditions: HashMap<String, Vec<String>>,
    ) -> Result<KeyRecord> {
        let key_id = self.app.resolve_in(self.region, key_ref, true)?;
        self.authorized(&key_id, action, conditions)
    }

    /// As [`Call::key_for`], for operations whose KeyId is "key ID or key ARN": an alias is
    /// refused as AWS refuses it (NotFoundException, `Invalid keyId '<alias>'`).
    pub(super) fn key_id_for(&mut self, key_ref: &str, action: &str) -> Result<KeyRecord> {
        let key_id = self.app.resolve_in(self.region, key_ref, false)?;
        self.authorized(&key_id, action, HashMap::new())
    }

    /// The key stored as `key_id`, recorded in the audit entry, `action` authorized.
    fn authorized(
        &mut self,
        key_id: &str,
        action: &str,
        conditions: HashMap<String, Vec<String>>,
    ) -> Result<KeyRecord> {
        let key = self.app.key(key_id)?;
        self.audit.key_id = Some(key.key_id.clone());
        self.authorize(action, &key, conditions)?;
        Ok(key)
    }

    /// Authorizes `action` on `key` for the caller, with `conditions` and, when another service
    /// calls for the caller, `kms:ViaService`.
    pub(super) fn authorize(
        &self,
        action: &str,
        key: &KeyRecord,
        mut conditions: HashMap<String, Vec<String>>,
    ) -> Result<()> {
        if let Some(via) = &self.via {
            conditions.insert("kms:viaservice".into(), vec![via.clone()]);
        }
        self.app.authorize(self.principal, action, key, conditions)
    }

    /// Resolves `key_ref` in the request's region to a key's storage id, without authorizing.
    pub(super) fn resolve(&self, key_ref: &str) -> Result<String> {
        self.app.resolve_in(self.region, key_ref, true)
    }

    /// The key whose public id is `key_id` in the request's region (a ciphertext names its key
    /// so).
    pub(super) fn key_by_id(&self, key_id: &str) -> Result<KeyRecord> {
        self.app.key(&self.app.storage_id(self.region, key_id))
    }
}

/// Seconds since the epoch, as AWS's dates are sent.
pub(super) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `n` random bytes.
pub(super) fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| KmsError::no_randomness())?;
    Ok(v)
}

/// Fresh SYMMETRIC_DEFAULT key material.
pub(super) fn new_material() -> Result<Zeroizing<Vec<u8>>> {
    random_bytes(32)
}

/// Condition keys of an encryption context: `kms:encryptioncontext:<key>` for each pair, and the
/// multi-valued `kms:encryptioncontextkeys`. Condition key names are case-insensitive, so keys
/// that differ only in case (`Purpose`, `purpose`) give one condition key all their values, none
/// dropped; the policy then reads them as alternatives (see `policy`'s header).
pub(super) fn ec_conditions(ec: &EncryptionContext) -> HashMap<String, Vec<String>> {
    let mut c: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in ec.iter() {
        c.entry(format!("kms:encryptioncontext:{}", k.to_ascii_lowercase()))
            .or_default()
            .push(v.clone());
    }
    c.insert(
        "kms:encryptioncontextkeys".into(),
        ec.keys().cloned().collect(),
    );
    c
}

/// A fresh `KeyMaterialId`: 64 hex digits, as AWS's.
pub(super) fn material_id() -> Result<String> {
    Ok(hex::encode(random_bytes(32)?.as_slice()))
}

/// Persists a key row (and a new key material version, sealed under the root key), then applies
/// both to the in-memory state.
pub(super) async fn persist_key(
    app: &App,
    key: KeyRecord,
    new_material: Option<(u32, Zeroizing<Vec<u8>>)>,
) -> Result<()> {
    persist_keys(
        app,
        vec![KeyWrite {
            key,
            material: new_material.into_iter().collect(),
        }],
    )
    .await
}

/// A key row to persist, with the new material versions it gains.
pub(super) struct KeyWrite {
    /// The key row.
    pub(super) key: KeyRecord,
    /// New material versions (sealed under the root key when written).
    pub(super) material: Vec<(u32, Zeroizing<Vec<u8>>)>,
}

/// Persists several key rows and their new material in one durable step, all or none (a
/// Multi-Region key's members, which must not be seen half changed after a crash), then
/// applies them to the in-memory state.
pub(super) async fn persist_keys(app: &App, writes: Vec<KeyWrite>) -> Result<()> {
    let mut rows = Vec::with_capacity(writes.len());
    for w in &writes {
        let sealed = w
            .material
            .iter()
            .map(|(v, m)| {
                Ok((
                    *v,
                    app.root
                        .seal(&material_label(&w.key.key_id, *v), m.as_ref())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push((w.key.clone(), sealed));
    }
    app.writer.put_keys(rows).await?;
    app.apply(|s| {
        for w in writes {
            for (v, m) in w.material {
                s.material.insert((w.key.key_id.clone(), v), Arc::new(m));
            }
            s.keys.insert(w.key.key_id.clone(), w.key);
        }
    });
    Ok(())
}

/// One page of `items` (sorted by their marker) after `Marker`, at most `Limit` long.
pub(super) fn page<T: Clone>(
    items: Vec<(String, T)>,
    input: &PageInput,
) -> Result<(Vec<T>, Option<String>)> {
    let limit =
        usize::try_from(input.limit.int_in("Limit", 1, 1000)?.unwrap_or(100)).unwrap_or(100);
    let start = match input.marker.text("Marker")? {
        None => 0,
        Some(m) => items
            .iter()
            .position(|(k, _)| k == m)
            .ok_or_else(|| KmsError::InvalidMarker(format!("Marker '{m}' is not valid")))?,
    };
    let rest = &items[start..];
    let next = rest.get(limit).map(|(k, _)| k.clone());
    Ok((
        rest.iter().take(limit).map(|(_, v)| v.clone()).collect(),
        next,
    ))
}

/// A List operation's output.
pub(super) fn paged(list_name: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut out = json!({ list_name: items, "Truncated": next.is_some() });
    if let Some(n) = next {
        out["NextMarker"] = json!(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differing_in_case_keep_every_value() {
        let ec: EncryptionContext = [("Purpose", "a"), ("purpose", "b"), ("other", "c")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = ec_conditions(&ec);
        let mut purpose = c["kms:encryptioncontext:purpose"].clone();
        purpose.sort();
        assert_eq!(purpose, ["a", "b"]);
        assert_eq!(c["kms:encryptioncontext:other"], ["c"]);
        assert_eq!(
            c["kms:encryptioncontextkeys"],
            ["Purpose", "other", "purpose"]
        );
    }
}
