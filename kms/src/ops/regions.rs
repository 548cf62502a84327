//! Multi-Region keys across the regions one deployment serves: ReplicateKey and
//! UpdatePrimaryRegion (AWS API reference, both pages).
//!
//! A Multi-Region key is one `mrk-` key id in several regions: a primary and its replicas, each
//! its own key record (stored as `<region>/<mrk id>` outside the home region, see
//! `App::storage_id`), each with its own policy, description, tags, aliases and state, and a copy
//! of the same material versions, so a ciphertext (which names the `mrk-` id and the version)
//! decrypts in every region of the key. Every member records the whole configuration (which
//! region holds the primary, which hold replicas); both operations rewrite it in each.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::metadata;
use super::lifecycle::is_replica;
use super::shared::{Call, KeyWrite, MAX_KEY_ID, persist_keys};
use super::tags::{self, TagInput};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::keyspec::MultiRegion;
use crate::policy::KeyPolicy;
use crate::state::{KeyRecord, KeyState};
use crate::store::now_ms;

/// ReplicateKey's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ReplicateInput {
    key_id: Member<String>,
    replica_region: Member<String>,
    policy: Member<String>,
    bypass_policy_lockout_safety_check: Member<bool>,
    description: Member<String>,
    tags: Member<Vec<TagInput>>,
}

/// UpdatePrimaryRegion's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct PrimaryRegionInput {
    key_id: Member<String>,
    primary_region: Member<String>,
}

/// A region id as AWS's `RegionType` allows it (1 to 32 characters, `^([a-z]+-){2,3}\d+$`):
/// ValidationException otherwise; a well-formed region this deployment does not serve is
/// UnsupportedOperationException.
fn served_region<'a>(app: &App, member: &'a Member<String>, field: &str) -> Result<&'a str> {
    let region = member.required(field, 32)?;
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = (3..=4).contains(&parts.len())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        let name = field[..1].to_ascii_lowercase() + &field[1..];
        return Err(KmsError::validation(format!(
            "Value '{region}' at '{name}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){{2,3}}\\d+$"
        )));
    }
    if !app.serves(region) {
        return Err(KmsError::Unsupported(format!(
            "Region {region} is not served by this cloister-kms deployment (serve --region / --replica-region)"
        )));
    }
    Ok(region)
}

/// The Multi-Region configuration of a primary key `key`, or UnsupportedOperationException for
/// a single-Region key or a replica (both operations take the primary key).
fn primary_config(app: &App, key: &KeyRecord, op: &str) -> Result<MultiRegion> {
    let arn = app.key_arn(&key.key_id);
    match &key.attrs.multi_region {
        None => Err(KmsError::Unsupported(format!(
            "{arn} is not a multi-Region key; {op} needs a multi-Region primary key."
        ))),
        Some(_) if is_replica(app, key) => Err(KmsError::Unsupported(format!(
            "{arn} is a multi-Region replica key; {op} needs the multi-Region primary key."
        ))),
        Some(mr) => Ok(mr.clone()),
    }
}

/// Every member of a Multi-Region key (by its public `mrk-` id) as stored now: primary first.
fn members(app: &App, id: &str, mr: &MultiRegion) -> Result<Vec<KeyRecord>> {
    std::iter::once(&mr.primary_region)
        .chain(&mr.replica_regions)
        .map(|r| app.key(&app.storage_id(r, id)))
        .collect()
}

pub(super) async fn replicate_key(mut call: Call<'_>) -> Result<Value> {
    let i: ReplicateInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let region = served_region(call.app, &i.replica_region, "ReplicaRegion")?.to_owned();
    let description = i
        .description
        .text("Description")?
        .unwrap_or_default()
        .to_owned();
    if description.chars().count() > 8192 {
        return Err(KmsError::validation(
            "Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    let tags = tags::from_input(&i.tags)?;
    let _guard = call.app.mutate().await?;
    let primary = call.key_id_for(key_ref, "kms:ReplicateKey")?;
    let mr = primary_config(call.app, &primary, "ReplicateKey")?;
    call.app.refuse_pending(&primary)?;
    let id = call.app.public_id(&primary.key_id).to_owned();
    let replica_id = call.app.storage_id(&region, &id);
    if region == mr.primary_region
        || mr.replica_regions.contains(&region)
        || call.app.state().keys.contains_key(&replica_id)
    {
        return Err(KmsError::AlreadyExists(format!(
            "Key {} already exists",
            call.app.key_arn(&replica_id)
        )));
    }
    let (policy_text, policy) = match i.policy.text("Policy")? {
        Some(text) => {
            let bypass = i
                .bypass_policy_lockout_safety_check
                .flag("BypassPolicyLockoutSafetyCheck")?;
            let p = call
                .app
                .checked_policy(text, call.principal, bypass, &replica_id)?;
            (text.to_owned(), p)
        }
        None => {
            let text = KeyPolicy::default_text(&call.app.cfg.account);
            let p = KeyPolicy::parse(&text)?;
            (text, p)
        }
    };
    let existing = members(call.app, &id, &mr)?;
    let mut config = mr;
    config.replica_regions.push(region.clone());
    let mut attrs = (*primary.attrs).clone();
    attrs.tags = tags;
    attrs.region = (region != call.app.cfg.region).then(|| region.clone());
    attrs.multi_region = Some(config.clone());
    let replica = KeyRecord {
        key_id: replica_id.clone(),
        description,
        created_ms: now_ms(),
        state: if primary.current_version == 0 {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        },
        deletion_ms: None,
        pending_days: None,
        rotation_enabled: primary.rotation_enabled,
        rotation_period_days: primary.rotation_period_days,
        last_rotation_ms: primary.last_rotation_ms,
        current_version: primary.current_version,
        policy_text: policy_text.clone().into(),
        policy: Arc::new(policy),
        attrs: Arc::new(attrs),
    };
    // The replica gets a copy of every material version, sealed under its own identity, and
    // every other member the new configuration: one durable step, all or none.
    let mut material = Vec::new();
    for version in 1..=primary.current_version {
        let m = call.app.key_material(&primary.key_id, version)?;
        material.push((version, zeroize::Zeroizing::new(m.to_vec())));
    }
    let mut writes = vec![KeyWrite {
        key: replica,
        material,
    }];
    for mut member in existing {
        Arc::make_mut(&mut member.attrs).multi_region = Some(config.clone());
        writes.push(KeyWrite {
            key: member,
            material: Vec::new(),
        });
    }
    persist_keys(call.app, writes).await?;
    let replica = call.app.key(&replica_id)?;
    let tags: Vec<Value> = replica
        .attrs
        .tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    Ok(json!({
        "ReplicaKeyMetadata": metadata(call.app, &replica),
        "ReplicaPolicy": policy_text,
        "ReplicaTags": tags,
    }))
}

pub(super) async fn update_primary_region(mut call: Call<'_>) -> Result<Value> {
    let i: PrimaryRegionInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let region = served_region(call.app, &i.primary_region, "PrimaryRegion")?.to_owned();
    let _guard = call.app.mutate().await?;
    let primary = call.key_id_for(key_ref, "kms:UpdatePrimaryRegion")?;
    let mr = primary_config(call.app, &primary, "UpdatePrimaryRegion")?;
    call.app.refuse_pending(&primary)?;
    if region == mr.primary_region {
        return Ok(json!({}));
    }
    let id = call.app.public_id(&primary.key_id).to_owned();
    if !mr.replica_regions.contains(&region) {
        return Err(KmsError::NotFound(format!(
            "Key '{}' does not exist",
            call.app.key_arn(&call.app.storage_id(&region, &id))
        )));
    }
    // AWS authorizes kms:UpdatePrimaryRegion on the replica that becomes the primary too.
    let new_primary = call.app.key(&call.app.storage_id(&region, &id))?;
    call.authorize(
        "kms:UpdatePrimaryRegion",
        &new_primary,
        std::collections::HashMap::new(),
    )?;
    call.app.refuse_pending(&new_primary)?;
    let config = MultiRegion {
        primary_region: region.clone(),
        replica_regions: mr
            .replica_regions
            .iter()
            .map(|r| if *r == region { &mr.primary_region } else { r })
            .cloned()
            .collect(),
    };
    let mut writes = Vec::new();
    for mut member in members(call.app, &id, &mr)? {
        Arc::make_mut(&mut member.attrs).multi_region = Some(config.clone());
        writes.push(KeyWrite {
            key: member,
            material: Vec::new(),
        });
    }
    persist_keys(call.app, writes).await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ops::testkit::Kms;

    /// AWS API reference: CreateKey (MultiRegion), ReplicateKey, DescribeKey
    /// (MultiRegionConfiguration), UpdatePrimaryRegion.
    #[tokio::test]
    async fn a_replica_shares_id_and_material_and_the_configuration_follows() {
        let kms = Kms::new();
        let created = kms
            .ok(
                "CreateKey",
                json!({"MultiRegion": true, "Description": "p"}),
            )
            .await;
        let id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        assert!(id.starts_with("mrk-"));
        let primary_arn = kms.key_arn(&id);
        let west_arn = format!("arn:aws:kms:us-west-2:111122223333:key/{id}");
        let cfg = &created["KeyMetadata"]["MultiRegionConfiguration"];
        assert_eq!(cfg["MultiRegionKeyType"], "PRIMARY");
        assert_eq!(cfg["ReplicaKeys"], json!([]));

        let r = kms
            .ok(
                "ReplicateKey",
                json!({"KeyId": id, "ReplicaRegion": "us-west-2", "Description": "r",
                       "Tags": [{"TagKey": "k", "TagValue": "v"}]}),
            )
            .await;
        let md = &r["ReplicaKeyMetadata"];
        assert_eq!(md["KeyId"], id.as_str());
        assert_eq!(md["Arn"], west_arn.as_str());
        assert_eq!(md["Description"], "r");
        assert_eq!(
            md["MultiRegionConfiguration"]["MultiRegionKeyType"],
            "REPLICA"
        );
        assert_eq!(
            md["MultiRegionConfiguration"]["PrimaryKey"],
            json!({"Arn": primary_arn, "Region": "us-east-1"})
        );
        assert_eq!(r["ReplicaTags"], json!([{"TagKey": "k", "TagValue": "v"}]));
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(
            d["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"],
            json!([{"Arn": west_arn, "Region": "us-west-2"}])
        );
        assert_eq!(d["KeyMetadata"]["Description"], "p");

        // Encrypted in one region, decrypted in the other.
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": "aGVsbG8="}))
            .await;
        let p = kms
            .ok_in(
                "us-west-2",
                "Decrypt",
                json!({"CiphertextBlob": ct["CiphertextBlob"]}),
            )
            .await;
        assert_eq!(p["Plaintext"], "aGVsbG8=");
        assert_eq!(p["KeyId"], west_arn.as_str());

        // A second replica in the same region is refused; so is replicating a replica.
        let (_, body) = kms
            .call(
                "ReplicateKey",
                json!({"KeyId": id, "ReplicaRegion": "us-west-2"}),
            )
            .await;
        assert_eq!(body["__type"], "AlreadyExistsException");
        let (_, body) = kms
            .call_in(
                "us-west-2",
                "ReplicateKey",
                json!({"KeyId": id, "ReplicaRegion": "eu-west-1"}),
            )
            .await;
        assert_eq!(body["__type"], "UnsupportedOperationException");

        // Rotating the primary rotates the replica: a ciphertext of the new version decrypts
        // in the replica's region.
        kms.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
        let ct2 = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": "d29ybGQ="}))
            .await;
        assert_eq!(
            crate::blob::header(&Kms::blob(&ct2["CiphertextBlob"]))
                .unwrap()
                .version,
            2
        );
        let p = kms
            .ok_in(
                "us-west-2",
                "Decrypt",
                json!({"CiphertextBlob": ct2["CiphertextBlob"]}),
            )
            .await;
        assert_eq!(p["Plaintext"], "d29ybGQ=");
        let west = kms
            .ok_in("us-west-2", "DescribeKey", json!({"KeyId": id}))
            .await;
        assert_eq!(
            west["KeyMetadata"]["CurrentKeyMaterialId"],
            kms.ok("DescribeKey", json!({"KeyId": id})).await["KeyMetadata"]["CurrentKeyMaterialId"]
        );

        // UpdatePrimaryRegion swaps the roles in every member's configuration.
        kms.ok(
            "UpdatePrimaryRegion",
            json!({"KeyId": id, "PrimaryRegion": "us-west-2"}),
        )
        .await;
        let east = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        let cfg = &east["KeyMetadata"]["MultiRegionConfiguration"];
        assert_eq!(cfg["MultiRegionKeyType"], "REPLICA");
        assert_eq!(cfg["PrimaryKey"]["Region"], "us-west-2");
        assert_eq!(
            cfg["ReplicaKeys"],
            json!([{"Arn": primary_arn, "Region": "us-east-1"}])
        );
        let west = kms
            .ok_in("us-west-2", "DescribeKey", json!({"KeyId": id}))
            .await;
        assert_eq!(
            west["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"],
            "PRIMARY"
        );
        // The replica in us-east-1 no longer rotates on its own.
        let (_, body) = kms.call("RotateKeyOnDemand", json!({"KeyId": id})).await;
        assert_eq!(body["__type"], "UnsupportedOperationException");
    }

    /// AWS API reference, ScheduleKeyDeletion: "KMS will not delete a multi-Region primary key
    /// with existing replica keys" (PendingReplicaDeletion until the last replica is deleted).
    #[tokio::test]
    async fn a_primary_waits_for_its_replicas_deletion() {
        use crate::ops::lifecycle::housekeeping;
        use crate::ops::shared::DAY_MS;
        use crate::store::now_ms;

        let kms = Kms::new();
        let created = kms.ok("CreateKey", json!({"MultiRegion": true})).await;
        let id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        kms.ok(
            "ReplicateKey",
            json!({"KeyId": id, "ReplicaRegion": "eu-west-1"}),
        )
        .await;
        let s = kms
            .ok(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": 7}),
            )
            .await;
        assert_eq!(s["KeyState"], "PendingReplicaDeletion");
        assert!(s.get("DeletionDate").is_none());
        let md = &kms.ok("DescribeKey", json!({"KeyId": id})).await["KeyMetadata"];
        assert_eq!(md["PendingDeletionWindowInDays"], 7);
        assert!(md.get("DeletionDate").is_none());
        let (_, body) = kms
            .call("Encrypt", json!({"KeyId": id, "Plaintext": "AA=="}))
            .await;
        assert_eq!(body["__type"], "KMSInvalidStateException");
        // Not deleted however long it waits while the replica lives.
        let later = now_ms() + 40 * DAY_MS;
        assert_eq!(housekeeping(&kms.app, later).await.unwrap(), (0, 0));

        kms.ok_in(
            "eu-west-1",
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        let day8 = now_ms() + 8 * DAY_MS;
        assert_eq!(housekeeping(&kms.app, day8).await.unwrap(), (0, 1));
        let md = &kms.ok("DescribeKey", json!({"KeyId": id})).await["KeyMetadata"];
        assert_eq!(md["KeyState"], "PendingDeletion");
        assert_eq!(md["MultiRegionConfiguration"]["ReplicaKeys"], json!([]));
        let (_, body) = kms
            .call_in("eu-west-1", "DescribeKey", json!({"KeyId": id}))
            .await;
        assert_eq!(body["__type"], "NotFoundException");
        assert_eq!(
            housekeeping(&kms.app, day8 + 8 * DAY_MS).await.unwrap(),
            (0, 1)
        );
        assert_eq!(kms.key_count(), 0);
    }

    #[tokio::test]
    async fn keys_and_aliases_live_in_their_region() {
        let kms = Kms::new();
        let east = kms.new_key().await;
        let west = kms.ok_in("us-west-2", "CreateKey", json!({})).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let listed = |v: &serde_json::Value| -> Vec<String> {
            v["Keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["KeyId"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            listed(&kms.ok("ListKeys", json!({})).await),
            [east.as_str()]
        );
        assert_eq!(
            listed(&kms.ok_in("us-west-2", "ListKeys", json!({})).await),
            [west.as_str()]
        );
        // AWS: a key of another region is not found there, by id or by ARN.
        let (status, body) = kms
            .call_in("us-west-2", "DescribeKey", json!({"KeyId": east}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["__type"], "NotFoundException");
        let (_, body) = kms
            .call_in(
                "us-west-2",
                "DescribeKey",
                json!({"KeyId": kms.key_arn(&east)}),
            )
            .await;
        assert_eq!(body["message"], "Invalid arn us-east-1");

        for (region, key) in [("us-east-1", &east), ("us-west-2", &west)] {
            kms.ok_in(
                region,
                "CreateAlias",
                json!({"AliasName": "alias/app", "TargetKeyId": key}),
            )
            .await;
        }
        for (region, key) in [("us-east-1", &east), ("us-west-2", &west)] {
            let d = kms
                .ok_in(region, "DescribeKey", json!({"KeyId": "alias/app"}))
                .await;
            assert_eq!(d["KeyMetadata"]["KeyId"], key.as_str());
            let a = kms.ok_in(region, "ListAliases", json!({})).await;
            assert_eq!(
                a["Aliases"],
                json!([{
                    "AliasName": "alias/app",
                    "AliasArn": format!("arn:aws:kms:{region}:111122223333:alias/app"),
                    "TargetKeyId": key,
                    "CreationDate": a["Aliases"][0]["CreationDate"],
                    "LastUpdatedDate": a["Aliases"][0]["LastUpdatedDate"],
                }])
            );
        }
        kms.ok_in(
            "us-west-2",
            "DeleteAlias",
            json!({"AliasName": "alias/app"}),
        )
        .await;
        kms.ok("DescribeKey", json!({"KeyId": "alias/app"})).await;
        // A region this deployment does not serve is refused at the signature check.
        let (status, body) = kms.call_in("ap-south-1", "ListKeys", json!({})).await;
        assert_eq!(status, 400);
        assert_eq!(body["__type"], "InvalidSignatureException");
    }
}
