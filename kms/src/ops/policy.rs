//! Key policies: GetKeyPolicy, PutKeyPolicy and ListKeyPolicies. A new policy must parse and, unless the caller
//! bypasses the check, still let the caller put a policy (AWS's lockout safety check).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{Call, MAX_KEY_ID, persist_key};
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::policy::MAX_POLICY_LEN;

/// GetKeyPolicy's and PutKeyPolicy's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct PolicyInput {
    key_id: Member<String>,
    policy_name: Member<String>,
    policy: Member<String>,
    bypass_policy_lockout_safety_check: Member<bool>,
}

fn policy_name(i: &PolicyInput) -> Result<()> {
    match i.policy_name.text("PolicyName")? {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "Policy {other} does not exist; the only policy name is \"default\""
        ))),
    }
}

pub(super) async fn put_policy(mut call: Call<'_>) -> Result<Value> {
    let i: PolicyInput = call.input()?;
    policy_name(&i)?;
    let text = i.policy.required("Policy", MAX_POLICY_LEN)?.to_owned();
    let bypass = i
        .bypass_policy_lockout_safety_check
        .flag("BypassPolicyLockoutSafetyCheck")?;
    let _guard = call.app.mutate().await?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let mut key = call.key_id_for(key_ref, "kms:PutKeyPolicy")?;
    let policy = call
        .app
        .checked_policy(&text, call.principal, bypass, &key.key_id)?;
    key.policy_text = text.into();
    key.policy = Arc::new(policy);
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

pub(super) fn get_policy(mut call: Call<'_>) -> Result<Value> {
    let i: PolicyInput = call.input()?;
    policy_name(&i)?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_id_for(key_ref, "kms:GetKeyPolicy")?;
    Ok(json!({"Policy": &*key.policy_text, "PolicyName": "default"}))
}

/// ListKeyPolicies: a key has one policy, `default` (AWS's API reference, ListKeyPolicies).
pub(super) fn list_policies(mut call: Call<'_>) -> Result<Value> {
    let i: PageInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    i.limit.int_in("Limit", 1, 1000)?;
    call.key_id_for(key_ref, "kms:ListKeyPolicies")?;
    Ok(json!({"PolicyNames": ["default"], "Truncated": false}))
}

/// ListKeyPolicies's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct PageInput {
    key_id: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ops::testkit::{ADMIN, Kms};

    #[tokio::test]
    async fn get_put_and_the_lockout_check() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let got = kms.ok("GetKeyPolicy", json!({"KeyId": id})).await;
        assert_eq!(got["PolicyName"], "default");
        assert!(got["Policy"].as_str().unwrap().contains(ADMIN));
        let (status, body) = kms
            .call("GetKeyPolicy", json!({"KeyId": id, "PolicyName": "other"}))
            .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "NotFoundException")
        );

        let other = "arn:aws:iam::111122223333:role/other";
        let lockout = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": other},
            "Action": "kms:*", "Resource": "*"}})
        .to_string();
        let (_, body) = kms
            .call("PutKeyPolicy", json!({"KeyId": id, "Policy": lockout}))
            .await;
        assert_eq!(body["__type"], "MalformedPolicyDocumentException");
        assert_eq!(
            body["message"],
            "The new key policy will not allow you to update the key policy in the future."
        );
        let (_, body) = kms
            .call(
                "PutKeyPolicy",
                json!({"KeyId": id, "Policy": "{\"Statement\": 5}"}),
            )
            .await;
        assert_eq!(body["__type"], "MalformedPolicyDocumentException");
        let (_, body) = kms.call("PutKeyPolicy", json!({"KeyId": id})).await;
        assert_eq!(body["__type"], "ValidationException");

        let narrow = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy"], "Resource": "*"}
        ]})
        .to_string();
        kms.ok("PutKeyPolicy", json!({"KeyId": id, "Policy": narrow}))
            .await;
        let got = kms.ok("GetKeyPolicy", json!({"KeyId": id})).await;
        assert_eq!(got["Policy"], narrow.as_str());
        // The admin may no longer describe the key.
        let (_, body) = kms.call("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(body["__type"], "AccessDeniedException");

        // With the bypass, a policy that locks the caller out is accepted.
        kms.ok(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": lockout, "BypassPolicyLockoutSafetyCheck": true}),
        )
        .await;
        let (_, body) = kms.call("GetKeyPolicy", json!({"KeyId": id})).await;
        assert_eq!(body["__type"], "AccessDeniedException");
    }
}
