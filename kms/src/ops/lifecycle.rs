//! A key's life: ScheduleKeyDeletion, CancelKeyDeletion, automatic and on-demand rotation, and
//! the periodic housekeeping that rotates keys when due and deletes them when their window ends.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{Call, DAY_MS, KeyIdInput, MAX_KEY_ID, new_material, persist_key, secs};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::input::Member;
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
    let _guard = call.app.mutate.lock().await;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_for(key_ref, "kms:ScheduleKeyDeletion", HashMap::new())?;
    call.app.refuse_pending(&key)?;
    let when = now_ms() + days * DAY_MS;
    key.state = KeyState::PendingDeletion;
    key.deletion_ms = Some(when);
    key.pending_days = Some(days);
    let arn = call.app.key_arn(&key.key_id);
    persist_key(call.app, key, None).await?;
    Ok(
        json!({"KeyId": arn, "DeletionDate": secs(when), "KeyState": "PendingDeletion", "PendingWindowInDays": days}),
    )
}

pub(super) async fn cancel_deletion(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let _guard = call.app.mutate.lock().await;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_for(key_ref, "kms:CancelKeyDeletion", HashMap::new())?;
    if key.state != KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is not pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    key.state = KeyState::Disabled;
    key.deletion_ms = None;
    key.pending_days = None;
    let arn = call.app.key_arn(&key.key_id);
    persist_key(call.app, key, None).await?;
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
    let _guard = call.app.mutate.lock().await;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_for(key_ref, action, HashMap::new())?;
    call.app.check_usable(&key)?;
    key.rotation_enabled = enable;
    if let Some(p) = period {
        key.rotation_period_days = p;
    }
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

pub(super) fn rotation_status(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:GetKeyRotationStatus", HashMap::new())?;
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

/// Adds a new key material version; ciphertexts under older versions still decrypt.
async fn rotate(app: &App, mut key: KeyRecord) -> Result<u32> {
    let version = key.current_version + 1;
    key.current_version = version;
    key.last_rotation_ms = now_ms();
    persist_key(app, key, Some((version, new_material()?))).await?;
    Ok(version)
}

pub(super) async fn rotate_on_demand(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let _guard = call.app.mutate.lock().await;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:RotateKeyOnDemand", HashMap::new())?;
    call.app.check_usable(&key)?;
    let arn = call.app.key_arn(&key.key_id);
    let version = rotate(call.app, key).await?;
    call.audit.key_version = Some(version);
    Ok(json!({"KeyId": arn}))
}

/// Periodic housekeeping at time `now` (ms): rotates keys whose automatic rotation is due and
/// deletes keys whose deletion date has passed. Returns (rotated, deleted).
pub(crate) async fn housekeeping(app: &App, now: i64) -> Result<(usize, usize)> {
    super::import::expire(app, now).await?;
    let (due, expired): (Vec<KeyRecord>, Vec<KeyRecord>) = {
        let s = app.state();
        (
            s.keys
                .values()
                .filter(|k| {
                    k.state == KeyState::Enabled
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
    let _guard = app.mutate.lock().await;
    for k in &due {
        rotate(app, k.clone()).await?;
    }
    for k in &expired {
        app.writer.delete_key(k.key_id.clone()).await?;
        app.apply(|s| {
            s.keys.remove(&k.key_id);
            s.material.retain(|(id, _), _| *id != k.key_id);
            s.aliases.retain(|_, a| a.key_id != k.key_id);
        });
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
}
