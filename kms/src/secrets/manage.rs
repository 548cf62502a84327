//! The operations on a secret's metadata, which need no KMS key: DescribeSecret,
//! ListSecretVersionIds, UpdateSecretVersionStage, DeleteSecret (a recovery window of 7..30
//! days, 30 by default, or ForceDeleteWithoutRecovery), RestoreSecret, TagResource,
//! UntagResource, RotateSecret (answered as unsupported), and the housekeeping that deletes
//! secrets whose recovery window has passed.
//!
//! cloister-kms has no IAM: these are open to every authenticated principal of the account,
//! as they would be to one whose IAM policy allows `secretsmanager:*`. What guards a secret is
//! its KMS key's policy, which every read and write of a value goes through.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{self, TagInput, check_tag_count, find, live, merge_tag, secs};
use super::envelope;
use super::list::{self, metadata};
use super::names;
use super::values::version_id;
use super::versions::{self, labels_of};
use crate::app::App;
use crate::error::{KmsError, Result, SecretsError};
use crate::input::Member;
use crate::ops::via::ViaCall;
use crate::store::now_ms;

const DAY_MS: i64 = 86_400_000;

/// The input of the operations that take only a `SecretId`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct SecretIdInput {
    secret_id: Member<String>,
}

/// ListSecretVersionIds's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ListVersionsInput {
    secret_id: Member<String>,
    max_results: Member<i64>,
    next_token: Member<String>,
    include_deprecated: Member<bool>,
}

/// UpdateSecretVersionStage's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct UpdateStageInput {
    secret_id: Member<String>,
    version_stage: Member<String>,
    remove_from_version_id: Member<String>,
    move_to_version_id: Member<String>,
}

/// DeleteSecret's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DeleteSecretInput {
    secret_id: Member<String>,
    recovery_window_in_days: Member<i64>,
    force_delete_without_recovery: Member<bool>,
}

/// TagResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TagInputs {
    secret_id: Member<String>,
    tags: Member<Vec<TagInput>>,
}

/// UntagResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct UntagInput {
    secret_id: Member<String>,
    tag_keys: Member<Vec<String>>,
}

/// RotateSecret's input (only what is checked before the refusal).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RotateInput {
    secret_id: Member<String>,
    client_request_token: Member<String>,
    rotation_lambda_arn: Member<String>,
    rotate_immediately: Member<bool>,
}

pub(crate) fn describe_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let i: SecretIdInput = call.input()?;
    let s = find(&mut call, &i.secret_id)?;
    Ok(metadata(&s, "VersionIdsToStages"))
}

pub(crate) fn list_secret_version_ids(mut call: ViaCall<'_>) -> Result<Value> {
    let i: ListVersionsInput = call.input()?;
    let limit = i.max_results.int_in("MaxResults", 1, 100)?.unwrap_or(100);
    let next = list::next_token(&i.next_token)?;
    let deprecated = i.include_deprecated.flag("IncludeDeprecated")?;
    let s = find(&mut call, &i.secret_id)?;
    let mut all: Vec<_> = s
        .versions
        .values()
        .filter(|v| deprecated || !labels_of(&s.meta.stages, &v.version_id).is_empty())
        .collect();
    // Newest first.
    all.sort_by(|a, b| (b.created_ms, &b.version_id).cmp(&(a.created_ms, &a.version_id)));
    let (items, next) = list::page(&all, usize::try_from(limit).unwrap_or(100), next)?;
    let region = names::arn_region(&s.arn);
    let versions: Vec<Value> = items
        .iter()
        .map(|v| {
            let mut e = json!({"VersionId": v.version_id, "CreatedDate": secs(v.created_ms)});
            let labels = labels_of(&s.meta.stages, &v.version_id);
            if !labels.is_empty() {
                e["VersionStages"] = json!(labels);
            }
            if let Ok(h) = envelope::data_key_blob(&v.sealed).and_then(crate::blob::header) {
                e["KmsKeyIds"] = json!([format!(
                    "arn:aws:kms:{region}:{}:key/{}",
                    call.app.cfg.account, h.key_id
                )]);
            }
            e
        })
        .collect();
    let mut out = json!({"Versions": versions, "ARN": s.arn, "Name": s.meta.name});
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) async fn update_secret_version_stage(mut call: ViaCall<'_>) -> Result<Value> {
    let i: UpdateStageInput = call.input()?;
    let label = i.version_stage.required("VersionStage", 256)?.to_owned();
    let remove = version_id(
        &i.remove_from_version_id,
        "RemoveFromVersionId",
        "removeFromVersionId",
    )?
    .map(str::to_owned);
    let move_to =
        version_id(&i.move_to_version_id, "MoveToVersionId", "moveToVersionId")?.map(str::to_owned);
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    common::check_writer(&mut call, &s, "UpdateSecretVersionStage").await?;
    call.audit.resource_version = move_to.clone().or_else(|| remove.clone());
    let s = common::update_meta(call.app, &s.arn, |s, meta| {
        let ids: BTreeSet<String> = s.versions.keys().cloned().collect();
        versions::update_stage(
            &mut meta.stages,
            &ids,
            &label,
            remove.as_deref(),
            move_to.as_deref(),
        )?;
        meta.last_changed_ms = now_ms();
        Ok(())
    })
    .await?;
    Ok(json!({"ARN": s.arn, "Name": s.meta.name}))
}

pub(crate) async fn delete_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let i: DeleteSecretInput = call.input()?;
    let window = i
        .recovery_window_in_days
        .int_in("RecoveryWindowInDays", i64::MIN, i64::MAX)?;
    let force = i
        .force_delete_without_recovery
        .flag("ForceDeleteWithoutRecovery")?;
    if force && window.is_some() {
        return Err(SecretsError::InvalidParameter(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
                .into(),
        )
        .into());
    }
    if let Some(w) = window
        && !(7..=30).contains(&w)
    {
        return Err(SecretsError::InvalidParameter(
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).".into(),
        )
        .into());
    }
    let now = now_ms();
    let s = match find(&mut call, &i.secret_id) {
        Ok(s) => s,
        // AWS: forcing the deletion of a secret that does not exist is no error.
        Err(e) if force && e.aws_name() == "ResourceNotFoundException" => {
            let id = i.secret_id.required("SecretId", names::MAX_SECRET_ID)?;
            return Ok(json!({"Name": id, "DeletionDate": secs(now)}));
        }
        Err(e) => return Err(e),
    };
    let _guard = call.app.mutate().await?;
    let s = common::current(call.app, &s.arn)?;
    if force {
        common::remove(call.app, &s.arn).await?;
        return Ok(json!({"ARN": s.arn, "Name": s.meta.name, "DeletionDate": secs(now)}));
    }
    if s.meta.deletion_ms.is_some() {
        return Err(SecretsError::InvalidRequest(
            "You can't perform this operation on the secret because it was already scheduled for deletion."
                .into(),
        )
        .into());
    }
    let when = now + window.unwrap_or(30) * DAY_MS;
    let mut meta = (*s.meta).clone();
    meta.deletion_ms = Some(when);
    meta.deleted_ms = Some(now);
    common::write(call.app, &s.arn, meta, Vec::new(), Vec::new()).await?;
    Ok(json!({"ARN": s.arn, "Name": s.meta.name, "DeletionDate": secs(when)}))
}

pub(crate) async fn restore_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let i: SecretIdInput = call.input()?;
    let s = find(&mut call, &i.secret_id)?;
    let _guard = call.app.mutate().await?;
    let s = common::current(call.app, &s.arn)?;
    if s.meta.deletion_ms.is_some() {
        let mut meta = (*s.meta).clone();
        meta.deletion_ms = None;
        meta.deleted_ms = None;
        meta.last_changed_ms = now_ms();
        common::write(call.app, &s.arn, meta, Vec::new(), Vec::new()).await?;
    }
    Ok(json!({"ARN": s.arn, "Name": s.meta.name}))
}

pub(crate) async fn tag_resource(mut call: ViaCall<'_>) -> Result<Value> {
    let i: TagInputs = call.input()?;
    if matches!(i.tags, Member::Absent) {
        return Err(KmsError::validation(
            "Value null at 'tags' failed to satisfy constraint: Member must not be null",
        ));
    }
    let tags = common::tags(&i.tags)?;
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    common::update_meta(call.app, &s.arn, |_, meta| {
        for (k, v) in &tags {
            merge_tag(&mut meta.tags, k, v);
        }
        check_tag_count(&meta.tags)
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn untag_resource(mut call: ViaCall<'_>) -> Result<Value> {
    let i: UntagInput = call.input()?;
    let keys = match &i.tag_keys {
        Member::Given(k) => k.clone(),
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "TagKeys must be a list of strings".into(),
            ));
        }
        Member::Absent => {
            return Err(KmsError::validation(
                "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    if let Some(k) = keys
        .iter()
        .find(|k| k.is_empty() || k.chars().count() > 128)
    {
        return Err(KmsError::validation(format!(
            "Value '{k}' at 'tagKeys.member' failed to satisfy constraint: Member must have length between 1 and 128"
        )));
    }
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    common::update_meta(call.app, &s.arn, |_, meta| {
        meta.tags.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) fn rotate_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let i: RotateInput = call.input()?;
    common::version_token(&i.client_request_token)?;
    i.rotation_lambda_arn.text("RotationLambdaARN")?;
    i.rotate_immediately.flag("RotateImmediately")?;
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    Err(SecretsError::InvalidRequest(
        "cloister-kms does not rotate secrets (it runs no rotation functions). An external rotator can: PutSecretValue with VersionStages [\"AWSPENDING\"], test the new value, then UpdateSecretVersionStage to move AWSCURRENT to it."
            .into(),
    )
    .into())
}

/// Deletes the secrets whose recovery window ended by `now` (ms); how many.
pub(crate) async fn housekeeping(app: &App, now: i64) -> Result<usize> {
    let due: Vec<String> = app
        .state()
        .secrets
        .values()
        .filter(|s| s.meta.deletion_ms.is_some_and(|d| now >= d))
        .map(|s| s.arn.clone())
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let _guard = app.mutate().await?;
    let mut n = 0;
    for arn in due {
        // Restored meanwhile: kept.
        let still_due = app
            .state()
            .secrets
            .get(&arn)
            .is_some_and(|s| s.meta.deletion_ms.is_some_and(|d| now >= d));
        if !still_due {
            continue;
        }
        common::remove(app, &arn).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testkit::Kms;
    use crate::secrets::model::SecretMeta;
    use crate::store::Store;

    #[tokio::test]
    async fn housekeeping_deletes_the_secrets_whose_window_ended() {
        let kms = Kms::new();
        let arn =
            |n: &str| format!("arn:aws:secretsmanager:us-east-1:111122223333:secret:{n}-AbCdEf");
        for (name, deletion) in [("due", Some(1_000)), ("later", Some(5_000)), ("kept", None)] {
            let meta = SecretMeta {
                name: name.into(),
                deletion_ms: deletion,
                deleted_ms: deletion.map(|d| d - 100),
                ..SecretMeta::default()
            };
            common::write(&kms.app, &arn(name), meta, Vec::new(), Vec::new())
                .await
                .unwrap();
        }
        assert_eq!(housekeeping(&kms.app, 999).await.unwrap(), 0);
        assert_eq!(housekeeping(&kms.app, 2_000).await.unwrap(), 1);
        let left: Vec<String> = kms.app.state().secrets.keys().cloned().collect();
        assert_eq!(left, [arn("kept"), arn("later")]);
        // Gone from the store too.
        let (root, store) = Store::init(kms.dir(), "111122223333").unwrap();
        let stored = store.load(&root).unwrap();
        assert!(!stored.secrets.contains_key(&arn("due")));
        assert!(stored.secrets.contains_key(&arn("later")));
        assert_eq!(housekeeping(&kms.app, 10_000).await.unwrap(), 1);
        assert_eq!(kms.app.state().secrets.len(), 1);
    }
}
