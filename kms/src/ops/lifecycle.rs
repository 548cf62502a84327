//! A key's life: ScheduleKeyDeletion, CancelKeyDeletion, automatic and on-demand rotation
//! (EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand,
//! ListKeyRotations), and the periodic housekeeping that rotates keys when due and deletes them
//! when their window ends.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use super::shared::{
    Call, DAY_MS, KeyIdInput, KeyWrite, MAX_KEY_ID, PageInput, material_id, new_material, page,
    paged, persist_key, persist_keys, secs,
};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::keyspec::{KeySpec, MaterialInfo, Origin};
use crate::state::{KeyRecord, KeyState};
use crate::store::now_ms;

/// ScheduleKeyDeletion's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ScheduleInput {
    key_id: Member<String>,
    pending_window_in_days: Member<i64>,
}

/// EnableKeyRotation's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct RotationInput {
    key_id: Member<String>,
    rotation_period_in_days: Member<i64>,
}

pub(super) async fn schedule_deletion(mut call: Call<'_>) -> Result<Value> {
    let i: ScheduleInput = call.input()?;
    let days = i
        .pending_window_in_days
        .int_in("PendingWindowInDays", 7, 30)?
        .unwrap_or(30);
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_id_for(key_ref, "kms:ScheduleKeyDeletion")?;
    call.app.refuse_pending(&key)?;
    let arn = call.app.key_arn(&key.key_id);
    key.pending_days = Some(days);
    if !replicas(call.app, &key).is_empty() {
        // AWS (ScheduleKeyDeletion): "KMS will not delete a multi-Region primary key with
        // existing replica keys": it waits in PendingReplicaDeletion, and its waiting period
        // begins when its last replica is deleted (no DeletionDate until then).
        key.state = KeyState::PendingReplicaDeletion;
        key.deletion_ms = None;
        persist_key(call.app, key, None).await?;
        return Ok(
            json!({"KeyId": arn, "KeyState": "PendingReplicaDeletion", "PendingWindowInDays": days}),
        );
    }
    let when = now_ms() + days * DAY_MS;
    key.state = KeyState::PendingDeletion;
    key.deletion_ms = Some(when);
    persist_key(call.app, key, None).await?;
    Ok(
        json!({"KeyId": arn, "DeletionDate": secs(when), "KeyState": "PendingDeletion", "PendingWindowInDays": days}),
    )
}

pub(super) async fn cancel_deletion(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_id_for(key_ref, "kms:CancelKeyDeletion")?;
    if !matches!(
        key.state,
        KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
    ) {
        return Err(KmsError::InvalidState(format!(
            "{} is not pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    key.deletion_ms = None;
    key.pending_days = None;
    let arn = call.app.key_arn(&key.key_id);
    // AWS (CancelKeyDeletion): the key returns Disabled, or PendingImport when it has no
    // imported material (never imported, deleted, or expired while pending deletion).
    if key.attrs.origin == Origin::External
        && (key.current_version == 0 || super::import::expired(&key, now_ms()))
    {
        super::import::drop_material(call.app, key).await?;
    } else {
        key.state = KeyState::Disabled;
        persist_key(call.app, key, None).await?;
    }
    Ok(json!({"KeyId": arn}))
}

/// EnableKeyRotation and DisableKeyRotation.
pub(super) async fn set_rotation(mut call: Call<'_>, enable: bool) -> Result<Value> {
    let i: RotationInput = call.input()?;
    let period = if enable {
        i.rotation_period_in_days
            .int_in("RotationPeriodInDays", 90, 2560)?
    } else {
        None
    };
    let action = if enable {
        "kms:EnableKeyRotation"
    } else {
        "kms:DisableKeyRotation"
    };
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_id_for(key_ref, action)?;
    rotatable(call.app, &key)?;
    call.app.check_usable(&key)?;
    if enable && !key.rotation_enabled {
        // AWS: the first automatic rotation comes RotationPeriodInDays after rotation is
        // enabled.
        key.last_rotation_ms = now_ms();
    }
    key.rotation_enabled = enable;
    if let Some(p) = period {
        key.rotation_period_days = p;
    }
    // A Multi-Region key's replicas share its automatic rotation status.
    let mut writes = Vec::new();
    for mut replica in replicas(call.app, &key) {
        replica.rotation_enabled = key.rotation_enabled;
        replica.rotation_period_days = key.rotation_period_days;
        replica.last_rotation_ms = key.last_rotation_ms;
        writes.push(KeyWrite {
            key: replica,
            material: Vec::new(),
        });
    }
    writes.push(KeyWrite {
        key,
        material: Vec::new(),
    });
    persist_keys(call.app, writes).await?;
    Ok(json!({}))
}

/// GetKeyRotationStatus. Keys that cannot rotate automatically answer `false` (AWS: "The key
/// rotation status of these KMS keys is always false"). `OnDemandRotationStartDate` is AWS's for
/// an on-demand rotation in progress; here one completes before RotateKeyOnDemand answers, so it
/// never appears.
pub(super) fn rotation_status(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_id_for(key_ref, "kms:GetKeyRotationStatus")?;
    let mut out =
        json!({"KeyRotationEnabled": key.rotation_enabled, "KeyId": call.app.key_arn(&key.key_id)});
    if key.rotation_enabled {
        out["RotationPeriodInDays"] = json!(key.rotation_period_days);
        out["NextRotationDate"] = json!(secs(
            key.last_rotation_ms + key.rotation_period_days * DAY_MS
        ));
    }
    Ok(out)
}

/// How many times a key may be rotated on demand (AWS's on-demand rotation resource quota,
/// not adjustable: "You can perform on-demand key rotation a maximum of 25 times per KMS key",
/// AWS KMS Developer Guide, "Perform on-demand key rotation").
pub(super) const MAX_ON_DEMAND_ROTATIONS: usize = 25;

/// Refuses rotation (automatic or on demand) of keys AWS does not rotate: asymmetric and HMAC
/// keys, keys with imported material (UnsupportedOperationException), and Multi-Region replicas,
/// which rotate with their primary (AWS API reference, EnableKeyRotation and RotateKeyOnDemand).
fn rotatable(app: &App, key: &KeyRecord) -> Result<()> {
    let arn = app.key_arn(&key.key_id);
    if key.attrs.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::Unsupported(format!(
            "{arn} key spec is {}; only symmetric encryption keys can be rotated.",
            key.attrs.key_spec.as_str()
        )));
    }
    if key.attrs.origin != Origin::AwsKms {
        return Err(KmsError::Unsupported(format!(
            "{arn} origin is {} which is not valid for this operation.",
            key.attrs.origin.as_str()
        )));
    }
    if is_replica(app, key) {
        return Err(KmsError::Unsupported(format!(
            "{arn} is a multi-Region replica key; rotate its primary key."
        )));
    }
    Ok(())
}

/// Whether `key` is a Multi-Region replica (not its primary).
pub(super) fn is_replica(app: &App, key: &KeyRecord) -> bool {
    key.attrs
        .multi_region
        .as_ref()
        .is_some_and(|mr| mr.primary_region != app.split_storage_id(&key.key_id).0)
}

/// The replicas of a Multi-Region primary key, as stored now (none for other keys).
pub(super) fn replicas(app: &App, key: &KeyRecord) -> Vec<KeyRecord> {
    let Some(mr) = &key.attrs.multi_region else {
        return Vec::new();
    };
    if is_replica(app, key) {
        return Vec::new();
    }
    let id = app.public_id(&key.key_id);
    let state = app.state();
    mr.replica_regions
        .iter()
        .filter_map(|r| state.keys.get(&app.storage_id(r, id)).cloned())
        .collect()
}

/// Adds a new key material version (`rotation_type` `AUTOMATIC` or `ON_DEMAND`), to a
/// Multi-Region primary's replicas too; ciphertexts under older versions still decrypt. Only an
/// automatic rotation moves the automatic schedule (AWS: on-demand rotations "do not change
/// existing automatic rotation schedules").
async fn rotate(app: &App, mut key: KeyRecord, rotation_type: &str) -> Result<u32> {
    let now = now_ms();
    if key.attrs.materials.is_empty() && key.current_version >= 1 {
        // A key from before material versions were recorded: its current one gets an id now.
        Arc::make_mut(&mut key.attrs).materials.push(MaterialInfo {
            version: key.current_version,
            material_id: material_id()?,
            created_ms: key.last_rotation_ms,
            rotation_type: String::new(),
        });
    }
    let version = key.current_version + 1;
    key.current_version = version;
    if rotation_type == "AUTOMATIC" {
        key.last_rotation_ms = now;
    }
    Arc::make_mut(&mut key.attrs).materials.push(MaterialInfo {
        version,
        material_id: material_id()?,
        created_ms: now,
        rotation_type: rotation_type.to_owned(),
    });
    let material = new_material()?;
    let mut writes = Vec::new();
    for mut replica in replicas(app, &key) {
        replica.current_version = version;
        replica.last_rotation_ms = key.last_rotation_ms;
        Arc::make_mut(&mut replica.attrs).materials = key.attrs.materials.clone();
        writes.push(KeyWrite {
            key: replica,
            material: vec![(version, material.clone())],
        });
    }
    writes.push(KeyWrite {
        key,
        material: vec![(version, material)],
    });
    persist_keys(app, writes).await?;
    Ok(version)
}

pub(super) async fn rotate_on_demand(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_id_for(key_ref, "kms:RotateKeyOnDemand")?;
    rotatable(call.app, &key)?;
    call.app.check_usable(&key)?;
    let arn = call.app.key_arn(&key.key_id);
    let on_demand = key
        .attrs
        .materials
        .iter()
        .filter(|m| m.rotation_type == "ON_DEMAND")
        .count();
    if on_demand >= MAX_ON_DEMAND_ROTATIONS {
        return Err(KmsError::LimitExceeded(format!(
            "{arn} has been rotated on demand {MAX_ON_DEMAND_ROTATIONS} times, the most a KMS key can be."
        )));
    }
    let version = rotate(call.app, key, "ON_DEMAND").await?;
    call.audit.key_version = Some(version);
    Ok(json!({"KeyId": arn}))
}

/// After a Multi-Region replica `gone` was deleted: the other members of its key no longer list
/// its region, and a primary waiting in PendingReplicaDeletion for it as its last replica starts
/// its waiting period (AWS, ScheduleKeyDeletion).
async fn forget_replica(app: &App, gone: &KeyRecord, now: i64) -> Result<()> {
    let Some(mr) = &gone.attrs.multi_region else {
        return Ok(());
    };
    let (region, id) = app.split_storage_id(&gone.key_id);
    if mr.primary_region == region {
        return Ok(());
    }
    let mut config = mr.clone();
    config.replica_regions.retain(|r| r != region);
    let members: Vec<KeyRecord> = {
        let s = app.state();
        std::iter::once(&config.primary_region)
            .chain(&config.replica_regions)
            .filter_map(|r| s.keys.get(&app.storage_id(r, id)).cloned())
            .collect()
    };
    let mut writes = Vec::new();
    for mut member in members {
        Arc::make_mut(&mut member.attrs).multi_region = Some(config.clone());
        if member.state == KeyState::PendingReplicaDeletion && config.replica_regions.is_empty() {
            let days = member.pending_days.unwrap_or(30);
            member.state = KeyState::PendingDeletion;
            member.deletion_ms = Some(now + days * DAY_MS);
        }
        writes.push(KeyWrite {
            key: member,
            material: Vec::new(),
        });
    }
    persist_keys(app, writes).await?;
    Ok(())
}

/// ListKeyRotations's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListRotationsInput {
    key_id: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
}

/// ListKeyRotations: every completed rotation of the key's material, oldest first (the first
/// version, which no rotation made, is not listed), with its KeyMaterialId, RotationDate and
/// RotationType (AWS API reference, ListKeyRotations).
pub(super) fn list_rotations(mut call: Call<'_>) -> Result<Value> {
    let i: ListRotationsInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_id_for(key_ref, "kms:ListKeyRotations")?;
    let id = call.app.public_id(&key.key_id).to_owned();
    let items = key
        .attrs
        .materials
        .iter()
        .filter(|m| !m.rotation_type.is_empty())
        .map(|m| {
            (
                m.material_id.clone(),
                json!({
                    "KeyId": id,
                    "KeyMaterialId": m.material_id,
                    "RotationDate": secs(m.created_ms),
                    "RotationType": m.rotation_type,
                }),
            )
        })
        .collect();
    let paging = PageInput {
        limit: i.limit,
        marker: i.marker,
    };
    let (items, next) = page(items, &paging)?;
    Ok(paged("Rotations", items, next))
}

/// Periodic housekeeping at time `now` (ms): rotates keys whose automatic rotation is due and
/// deletes keys whose deletion date has passed. Returns (rotated, deleted).
pub(crate) async fn housekeeping(app: &App, now: i64) -> Result<(usize, usize)> {
    super::import::expire(app, now).await?;
    // What is due is read under the lock: on a shared store another node may have done it.
    let _guard = app.mutate().await?;
    let (due, expired): (Vec<KeyRecord>, Vec<KeyRecord>) = {
        let s = app.state();
        (
            s.keys
                .values()
                .filter(|k| {
                    k.state == KeyState::Enabled
                        && !is_replica(app, k)
                        && k.rotation_enabled
                        && now >= k.last_rotation_ms + k.rotation_period_days * DAY_MS
                })
                .cloned()
                .collect(),
            s.keys
                .values()
                .filter(|k| {
                    k.state == KeyState::PendingDeletion && k.deletion_ms.is_some_and(|d| now >= d)
                })
                .cloned()
                .collect(),
        )
    };
    for k in &due {
        rotate(app, k.clone(), "AUTOMATIC").await?;
    }
    for k in &expired {
        app.writer.delete_key(k.key_id.clone()).await?;
        app.apply(|s| {
            s.keys.remove(&k.key_id);
            s.material.retain(|(id, _), _| *id != k.key_id);
            s.aliases.retain(|_, a| a.key_id != k.key_id);
            // The store deleted them with the key: a key made later under the same storage id
            // (a replica made again in its region) must not inherit them.
            s.grants.retain(|_, g| g.key_id != k.key_id);
        });
        forget_replica(app, k, now).await?;
    }
    Ok((due.len(), expired.len()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::testkit::Kms;

    #[tokio::test]
    async fn schedule_and_cancel_deletion() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let (_, body) = kms
            .call(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": 6}),
            )
            .await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Member must have value greater than or equal to 7")
        );
        let (status, body) = kms.call("CancelKeyDeletion", json!({"KeyId": id})).await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "KMSInvalidStateException")
        );
        let s = kms
            .ok(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": 7}),
            )
            .await;
        assert_eq!(s["KeyState"], "PendingDeletion");
        assert_eq!(s["PendingWindowInDays"], 7);
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["PendingDeletionWindowInDays"], 7);
        let (_, body) = kms
            .call("Encrypt", json!({"KeyId": id, "Plaintext": "AA=="}))
            .await;
        assert_eq!(body["__type"], "KMSInvalidStateException");
        kms.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
        assert!(d["KeyMetadata"].get("DeletionDate").is_none());
    }

    #[tokio::test]
    async fn housekeeping_deletes_expired_keys_and_rotates_due_ones() {
        let kms = Kms::new();
        let doomed = kms.new_key().await;
        let rotating = kms.new_key().await;
        kms.ok(
            "CreateAlias",
            json!({"AliasName": "alias/doomed", "TargetKeyId": doomed}),
        )
        .await;
        kms.ok(
            "CreateGrant",
            json!({"KeyId": doomed, "GranteePrincipal": "arn:aws:iam::111122223333:role/app", "Operations": ["Decrypt"]}),
        )
        .await;
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": doomed, "PendingWindowInDays": 7}),
        )
        .await;
        kms.ok(
            "EnableKeyRotation",
            json!({"KeyId": rotating, "RotationPeriodInDays": 90}),
        )
        .await;
        let st = kms
            .ok("GetKeyRotationStatus", json!({"KeyId": rotating}))
            .await;
        assert_eq!(st["KeyRotationEnabled"], true);
        assert_eq!(housekeeping(&kms.app, now_ms()).await.unwrap(), (0, 0));
        let later = now_ms() + 91 * DAY_MS;
        assert_eq!(housekeeping(&kms.app, later).await.unwrap(), (1, 1));
        let (status, _) = kms.call("DescribeKey", json!({"KeyId": doomed})).await;
        assert_eq!(status, 400);
        assert_eq!(kms.ok("ListAliases", json!({})).await["Aliases"], json!([]));
        // Its grants go with it, from memory as from the store.
        assert!(kms.app.state().grants.is_empty());
        let ct = kms
            .ok("Encrypt", json!({"KeyId": rotating, "Plaintext": "AA=="}))
            .await;
        let raw = Kms::blob(&ct["CiphertextBlob"]);
        assert_eq!(crate::blob::header(&raw).unwrap().version, 2);
    }

    #[tokio::test]
    async fn rotation_on_demand_keeps_old_versions() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let old = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": "b2xk"}))
            .await;
        kms.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
        assert_eq!(kms.last_audit().key_version, Some(2));
        let p = kms
            .ok("Decrypt", json!({"CiphertextBlob": old["CiphertextBlob"]}))
            .await;
        assert_eq!(p["Plaintext"], "b2xk");
        let (_, body) = kms
            .call(
                "EnableKeyRotation",
                json!({"KeyId": id, "RotationPeriodInDays": 89}),
            )
            .await;
        assert_eq!(body["__type"], "ValidationException");
        kms.ok("DisableKey", json!({"KeyId": id})).await;
        let (status, body) = kms.call("RotateKeyOnDemand", json!({"KeyId": id})).await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "DisabledException")
        );
        kms.ok("EnableKey", json!({"KeyId": id})).await;
        kms.ok("DisableKeyRotation", json!({"KeyId": id})).await;
        let st = kms.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
        assert_eq!(st["KeyRotationEnabled"], false);
        assert!(st.get("NextRotationDate").is_none());
    }

    /// AWS API reference: RotateKeyOnDemand ("On-demand rotations do not change existing
    /// automatic rotation schedules"), ListKeyRotations, GetKeyRotationStatus; Developer Guide,
    /// "Perform on-demand key rotation" (25 per key).
    #[tokio::test]
    async fn on_demand_rotations_are_listed_limited_and_leave_the_schedule() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let first = kms.ok("DescribeKey", json!({"KeyId": id})).await["KeyMetadata"]
            ["CurrentKeyMaterialId"]
            .clone();
        kms.ok("EnableKeyRotation", json!({"KeyId": id})).await;
        let next =
            kms.ok("GetKeyRotationStatus", json!({"KeyId": id})).await["NextRotationDate"].clone();
        for _ in 0..MAX_ON_DEMAND_ROTATIONS {
            kms.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
        }
        let (_, body) = kms.call("RotateKeyOnDemand", json!({"KeyId": id})).await;
        assert_eq!(body["__type"], "LimitExceededException");
        let st = kms.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
        assert_eq!(st["NextRotationDate"], next);
        assert_eq!(st["RotationPeriodInDays"], 365);
        let current = kms.ok("DescribeKey", json!({"KeyId": id})).await["KeyMetadata"]
            ["CurrentKeyMaterialId"]
            .clone();
        assert_ne!(current, first);
        let page = kms
            .ok("ListKeyRotations", json!({"KeyId": id, "Limit": 20}))
            .await;
        assert_eq!(page["Rotations"].as_array().unwrap().len(), 20);
        let rest = kms
            .ok(
                "ListKeyRotations",
                json!({"KeyId": id, "Marker": page["NextMarker"]}),
            )
            .await;
        let rest = rest["Rotations"].as_array().unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[4]["KeyMaterialId"], current);
        assert_eq!(rest[4]["RotationType"], "ON_DEMAND");
        // Automatic rotation moves the schedule and is listed as AUTOMATIC.
        let due = now_ms() + 366 * DAY_MS;
        assert_eq!(housekeeping(&kms.app, due).await.unwrap(), (1, 0));
        let st = kms.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
        assert_ne!(st["NextRotationDate"], next);
        let all = kms
            .ok("ListKeyRotations", json!({"KeyId": id, "Limit": 100}))
            .await;
        assert_eq!(all["Rotations"][25]["RotationType"], "AUTOMATIC");
    }

    /// AWS API reference: the KeyId of these operations is "key ID or key ARN"; AWS's answer for
    /// what is not a key id (issue 10): NotFoundException, `Invalid keyId '<id>'`.
    #[tokio::test]
    async fn key_id_only_operations_refuse_aliases_and_keys_of_other_kinds_do_not_rotate() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        kms.ok(
            "CreateAlias",
            json!({"AliasName": "alias/k", "TargetKeyId": id}),
        )
        .await;
        for op in [
            "EnableKeyRotation",
            "DisableKeyRotation",
            "GetKeyRotationStatus",
            "RotateKeyOnDemand",
            "ListKeyRotations",
            "ListKeyPolicies",
            "GetKeyPolicy",
            "EnableKey",
            "DisableKey",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
        ] {
            for alias in ["alias/k", "arn:aws:kms:us-east-1:111122223333:alias/k"] {
                let (status, body) = kms.call(op, json!({"KeyId": alias})).await;
                assert_eq!(status, 400, "{op}");
                assert_eq!(body["__type"], "NotFoundException", "{op}");
                assert_eq!(body["message"], format!("Invalid keyId '{alias}'"), "{op}");
            }
        }
        let (_, body) = kms
            .call("DescribeKey", json!({"KeyId": "fake-key-id"}))
            .await;
        assert_eq!(body["message"], "Invalid keyId 'fake-key-id'");
        for input in [
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
            json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
            json!({"Origin": "EXTERNAL"}),
        ] {
            let k = kms.ok("CreateKey", input.clone()).await["KeyMetadata"]["KeyId"].clone();
            for op in ["EnableKeyRotation", "RotateKeyOnDemand"] {
                let (_, body) = kms.call(op, json!({"KeyId": k})).await;
                assert_eq!(
                    body["__type"], "UnsupportedOperationException",
                    "{op} {input}"
                );
            }
        }
    }
}
