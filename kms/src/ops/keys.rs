//! Keys: CreateKey, DescribeKey, ListKeys (of the request's region), EnableKey, DisableKey,
//! UpdateKeyDescription, and the key metadata that several operations return.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{
    Call, KeyIdInput, MAX_KEY_ID, PageInput, material_id, page, paged, persist_key, secs,
};
use super::tags::{self, TagInput};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::keymaterial;
use crate::keyspec::{KeyAttrs, KeySpec, KeyUsage, MaterialInfo, MultiRegion, Origin};
use crate::policy::KeyPolicy;
use crate::state::{KeyRecord, KeyState};
use crate::store::now_ms;

/// CreateKey's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct CreateKeyInput {
    description: Member<String>,
    key_usage: Member<String>,
    key_spec: Member<String>,
    customer_master_key_spec: Member<String>,
    origin: Member<String>,
    multi_region: Member<bool>,
    policy: Member<String>,
    bypass_policy_lockout_safety_check: Member<bool>,
    tags: Member<Vec<TagInput>>,
    custom_key_store_id: Member<String>,
    xks_key_id: Member<String>,
}

/// AWS's `KeyUsageType` enum.
const USAGES: [&str; 5] = [
    "ENCRYPT_DECRYPT",
    "SIGN_VERIFY",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
    "ENCAPSULATE_DECAPSULATE",
];

/// AWS's `KeySpec` enum.
const SPECS: [&str; 17] = [
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
];

/// AWS's `OriginType` enum.
const ORIGINS: [&str; 4] = ["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

/// The spec, usage and origin CreateKey's input asks for, checked against AWS's rules
/// (`keyspec`'s header): an unknown name is a ValidationException naming AWS's enum; a spec or
/// origin AWS has and this KMS does not (SM2, ML-DSA, Ed25519, custom key stores) is
/// UnsupportedOperationException.
fn kind(i: &CreateKeyInput) -> Result<(KeySpec, KeyUsage, Origin)> {
    let usage = i.key_usage.one_of("KeyUsage", &USAGES)?;
    let spec = i.key_spec.one_of("KeySpec", &SPECS)?;
    let cmk_spec = i
        .customer_master_key_spec
        .one_of("CustomerMasterKeySpec", &SPECS)?;
    let spec_name = match (spec, cmk_spec) {
        (Some(_), Some(_)) => {
            return Err(KmsError::validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.",
            ));
        }
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => "SYMMETRIC_DEFAULT",
    };
    let spec = KeySpec::parse(spec_name).ok_or_else(|| {
        KmsError::Unsupported(format!(
            "KeySpec {spec_name} is not supported by cloister-kms"
        ))
    })?;
    let usage = match usage {
        None if spec == KeySpec::SymmetricDefault => KeyUsage::EncryptDecrypt,
        // AWS: KeyUsage "is optional when you are creating a symmetric encryption KMS key;
        // otherwise, it is required".
        None => {
            return Err(KmsError::validation(format!(
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys (KeySpec {spec_name})."
            )));
        }
        Some(u) => KeyUsage::parse(u).ok_or_else(|| {
            KmsError::Unsupported(format!("KeyUsage {u} is not supported by cloister-kms"))
        })?,
    };
    if !spec.usages().contains(&usage) {
        return Err(KmsError::validation(format!(
            "KeyUsage {} is not compatible with KeySpec {spec_name}",
            usage.as_str()
        )));
    }
    let origin = match i.origin.one_of("Origin", &ORIGINS)? {
        None | Some("AWS_KMS") => Origin::AwsKms,
        Some("EXTERNAL") => Origin::External,
        Some(o) => {
            return Err(KmsError::Unsupported(format!(
                "Origin {o} needs a custom key store, which cloister-kms does not have"
            )));
        }
    };
    if i.custom_key_store_id.text("CustomKeyStoreId")?.is_some()
        || i.xks_key_id.text("XksKeyId")?.is_some()
    {
        return Err(KmsError::Unsupported(
            "custom key stores are not supported by cloister-kms".into(),
        ));
    }
    Ok((spec, usage, origin))
}

/// A new key id: a UUID, or `mrk-` and 32 hex digits for a Multi-Region key (36 characters
/// either way, as the ciphertext format requires).
pub(super) fn new_key_id(multi_region: bool) -> String {
    let id = uuid::Uuid::new_v4();
    if multi_region {
        format!("mrk-{}", id.simple())
    } else {
        id.to_string()
    }
}

/// A key's `KeyMetadata`.
pub(super) fn metadata(app: &App, k: &KeyRecord) -> Value {
    let a = &k.attrs;
    let spec = a.key_spec;
    let mut m = json!({
        "AWSAccountId": app.cfg.account,
        "KeyId": app.public_id(&k.key_id),
        "Arn": app.key_arn(&k.key_id),
        "CreationDate": secs(k.created_ms),
        "Enabled": k.state == KeyState::Enabled,
        "Description": k.description,
        "KeyUsage": a.key_usage.as_str(),
        "KeyState": k.state.as_str(),
        "Origin": a.origin.as_str(),
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": spec.as_str(),
        "KeySpec": spec.as_str(),
        "MultiRegion": a.multi_region.is_some(),
    });
    match a.key_usage {
        KeyUsage::EncryptDecrypt => {
            m["EncryptionAlgorithms"] = json!(spec.encryption_algorithms());
        }
        KeyUsage::SignVerify => m["SigningAlgorithms"] = json!(spec.signing_algorithms()),
        KeyUsage::GenerateVerifyMac => m["MacAlgorithms"] = json!(spec.mac_algorithms()),
        KeyUsage::KeyAgreement => m["KeyAgreementAlgorithms"] = json!(["ECDH"]),
    }
    if let Some(mr) = &a.multi_region {
        m["MultiRegionConfiguration"] = multi_region_configuration(app, k, mr);
    }
    if let Some(current) = a.materials.last() {
        m["CurrentKeyMaterialId"] = json!(current.material_id);
    }
    super::import::metadata(&mut m, k);
    if let (Some(d), Some(days)) = (k.deletion_ms, k.pending_days) {
        m["DeletionDate"] = json!(secs(d));
        m["PendingDeletionWindowInDays"] = json!(days);
    } else if let (KeyState::PendingReplicaDeletion, Some(days)) = (k.state, k.pending_days) {
        // AWS: a primary waiting for its replicas' deletion shows its window, no date yet.
        m["PendingDeletionWindowInDays"] = json!(days);
    }
    m
}

/// A Multi-Region key's `MultiRegionConfiguration`: whether this key is the primary or a
/// replica, the primary's ARN and region, and the replicas' (AWS's `MultiRegionConfiguration`
/// data type).
fn multi_region_configuration(app: &App, k: &KeyRecord, mr: &MultiRegion) -> Value {
    let (region, id) = app.split_storage_id(&k.key_id);
    let arn_in = |r: &str| app.key_arn(&app.storage_id(r, id));
    json!({
        "MultiRegionKeyType": if mr.primary_region == region { "PRIMARY" } else { "REPLICA" },
        "PrimaryKey": {"Arn": arn_in(&mr.primary_region), "Region": mr.primary_region},
        "ReplicaKeys": mr
            .replica_regions
            .iter()
            .map(|r| json!({"Arn": arn_in(r), "Region": r}))
            .collect::<Vec<_>>(),
    })
}

/// What a new key is made of; [`new_record`] adds the rest.
pub(super) struct NewKey {
    pub(super) key_id: String,
    pub(super) description: String,
    pub(super) policy_text: String,
    pub(super) policy: KeyPolicy,
    /// Without material versions (added here).
    pub(super) attrs: KeyAttrs,
    /// Whether it is made with material (version 1), or waits for an import.
    pub(super) with_material: bool,
}

/// A new key's record, created now: Enabled with material version 1 when it has material,
/// else PendingImport; automatic rotation off, its period a year.
pub(super) fn new_record(n: NewKey) -> Result<KeyRecord> {
    let now = now_ms();
    let mut attrs = n.attrs;
    if n.with_material {
        attrs.materials = vec![MaterialInfo {
            version: 1,
            material_id: material_id()?,
            created_ms: now,
            rotation_type: String::new(),
        }];
    }
    Ok(KeyRecord {
        key_id: n.key_id,
        description: n.description,
        created_ms: now,
        state: if n.with_material {
            KeyState::Enabled
        } else {
            KeyState::PendingImport
        },
        deletion_ms: None,
        pending_days: None,
        rotation_enabled: false,
        rotation_period_days: 365,
        last_rotation_ms: now,
        current_version: u32::from(n.with_material),
        policy_text: n.policy_text.into(),
        policy: Arc::new(n.policy),
        attrs: Arc::new(attrs),
    })
}

pub(super) async fn create_key(call: Call<'_>) -> Result<Value> {
    let i: CreateKeyInput = call.input()?;
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
    let (spec, usage, origin) = kind(&i)?;
    let multi_region = i.multi_region.flag("MultiRegion")?;
    let tags = tags::from_input(&i.tags)?;
    let key_id = call.app.storage_id(call.region, &new_key_id(multi_region));
    let (policy_text, policy) = match i.policy.text("Policy")? {
        Some(text) => {
            let bypass = i
                .bypass_policy_lockout_safety_check
                .flag("BypassPolicyLockoutSafetyCheck")?;
            let p = call
                .app
                .checked_policy(text, call.principal, bypass, &key_id)?;
            (text.to_owned(), p)
        }
        None => {
            let text = KeyPolicy::default_text(&call.app.cfg.account);
            let p = KeyPolicy::parse(&text)?;
            (text, p)
        }
    };
    let material = match origin {
        Origin::AwsKms => Some((1, keymaterial::generate_async(spec).await?)),
        Origin::External => None,
    };
    let attrs = KeyAttrs {
        key_spec: spec,
        key_usage: usage,
        origin,
        tags,
        region: (call.region != call.app.cfg.region).then(|| call.region.to_owned()),
        multi_region: multi_region.then(|| MultiRegion {
            primary_region: call.region.to_owned(),
            replica_regions: Vec::new(),
        }),
        ..KeyAttrs::default()
    };
    let key = new_record(NewKey {
        key_id: key_id.clone(),
        description,
        policy_text,
        policy,
        attrs,
        with_material: material.is_some(),
    })?;
    call.audit.key_id = Some(key_id);
    call.audit.key_version = material.as_ref().map(|(v, _)| *v);
    persist_key(call.app, key.clone(), material).await?;
    Ok(json!({ "KeyMetadata": metadata(call.app, &key) }))
}

pub(super) fn describe_key(mut call: Call<'_>) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:DescribeKey", HashMap::new())?;
    Ok(json!({ "KeyMetadata": metadata(call.app, &key) }))
}

pub(super) fn list_keys(call: Call<'_>) -> Result<Value> {
    let i: PageInput = call.input()?;
    let mut ids: Vec<String> = call
        .app
        .state()
        .keys
        .keys()
        .filter(|id| call.app.split_storage_id(id).0 == call.region)
        .cloned()
        .collect();
    ids.sort();
    let items = ids
        .into_iter()
        .map(|id| {
            let public = call.app.public_id(&id).to_owned();
            (
                public.clone(),
                json!({"KeyId": public, "KeyArn": call.app.key_arn(&id)}),
            )
        })
        .collect();
    let (items, next) = page(items, &i)?;
    Ok(paged("Keys", items, next))
}

/// UpdateKeyDescription's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DescriptionInput {
    key_id: Member<String>,
    description: Member<String>,
}

/// UpdateKeyDescription: KeyId is "key ID or key ARN"; Description is required, up to 8192
/// characters (AWS API reference, UpdateKeyDescription).
pub(super) async fn update_description(mut call: Call<'_>) -> Result<Value> {
    let i: DescriptionInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let description = i.description.required("Description", 8192)?.to_owned();
    let _guard = call.app.mutate().await?;
    let mut key = call.key_id_for(key_ref, "kms:UpdateKeyDescription")?;
    call.app.refuse_pending(&key)?;
    key.description = description;
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

/// EnableKey and DisableKey.
pub(super) async fn set_state(mut call: Call<'_>, action: &str, to: KeyState) -> Result<Value> {
    let i: KeyIdInput = call.input()?;
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_id_for(key_ref, action)?;
    call.app.refuse_pending(&key)?;
    key.state = to;
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ops::testkit::Kms;

    #[tokio::test]
    async fn create_describe_list_enable_disable() {
        let kms = Kms::new();
        let created = kms
            .ok("CreateKey", json!({"Description": "first", "Unknown": 1}))
            .await;
        let md = &created["KeyMetadata"];
        let id = md["KeyId"].as_str().unwrap().to_owned();
        assert_eq!(md["Description"], "first");
        assert_eq!(md["KeyState"], "Enabled");
        assert_eq!(md["Arn"], kms.key_arn(&id));
        let d = kms
            .ok("DescribeKey", json!({"KeyId": kms.key_arn(&id)}))
            .await;
        assert_eq!(d["KeyMetadata"]["KeyId"], id.as_str());

        kms.ok("DisableKey", json!({"KeyId": id})).await;
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
        assert_eq!(d["KeyMetadata"]["Enabled"], false);
        kms.ok("EnableKey", json!({"KeyId": id})).await;
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");

        kms.ok("CreateKey", json!({})).await;
        kms.ok("CreateKey", json!({})).await;
        let first = kms.ok("ListKeys", json!({"Limit": 2})).await;
        assert_eq!(first["Keys"].as_array().unwrap().len(), 2);
        assert_eq!(first["Truncated"], true);
        let rest = kms
            .ok(
                "ListKeys",
                json!({"Limit": 2, "Marker": first["NextMarker"]}),
            )
            .await;
        assert_eq!(rest["Keys"].as_array().unwrap().len(), 1);
        assert_eq!(rest["Truncated"], false);
        // The audit entry names the key.
        assert_eq!(kms.last_audit().key_id.as_deref(), None);
        kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(kms.last_audit().key_id.as_deref(), Some(id.as_str()));
    }

    #[tokio::test]
    async fn create_key_refuses_what_aws_refuses_and_what_it_does_not_support() {
        let kms = Kms::new();
        let cases = [
            // AWS: KeyUsage is required for every key but a symmetric encryption key.
            (
                json!({"KeyUsage": "SIGN_VERIFY"}),
                "ValidationException",
                400,
            ),
            (json!({"KeySpec": "RSA_2048"}), "ValidationException", 400),
            (
                json!({"KeySpec": "HMAC_256", "KeyUsage": "ENCRYPT_DECRYPT"}),
                "ValidationException",
                400,
            ),
            (
                json!({"KeySpec": "ECC_SECG_P256K1", "KeyUsage": "KEY_AGREEMENT"}),
                "ValidationException",
                400,
            ),
            (json!({"KeyUsage": "NOPE"}), "ValidationException", 400),
            // An unknown KeySpec is AWS's enum ValidationException, not unsupported.
            (json!({"KeySpec": "AES_128"}), "ValidationException", 400),
            (
                json!({"KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT"}),
                "ValidationException",
                400,
            ),
            (
                json!({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"}),
                "UnsupportedOperationException",
                400,
            ),
            (
                json!({"Origin": "AWS_CLOUDHSM"}),
                "UnsupportedOperationException",
                400,
            ),
            (
                json!({"Tags": [{"TagKey": "aws:owner", "TagValue": "x"}]}),
                "TagException",
                400,
            ),
            (json!({"MultiRegion": "yes"}), "SerializationException", 400),
            (
                json!({"Description": "x".repeat(8193)}),
                "ValidationException",
                400,
            ),
            (
                json!({"Policy": "{}"}),
                "MalformedPolicyDocumentException",
                400,
            ),
        ];
        for (input, name, status) in cases {
            let (got_status, body) = kms.call("CreateKey", input.clone()).await;
            assert_eq!(
                (got_status, body["__type"].as_str().unwrap()),
                (status, name),
                "{input}"
            );
        }
        let (status, body) = kms.call("DescribeKey", json!({})).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["message"],
            "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
        );
        let (status, body) = kms
            .call(
                "DescribeKey",
                json!({"KeyId": "00000000-0000-4000-8000-000000000000"}),
            )
            .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "NotFoundException")
        );
        let (_, body) = kms.call("ListKeys", json!({"Marker": "nope"})).await;
        assert_eq!(body["__type"], "InvalidMarkerException");
        assert_eq!(kms.key_count(), 0);
    }
}
