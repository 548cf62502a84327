//! The operations that write or read a secret's value: CreateSecret, PutSecretValue,
//! UpdateSecret (new versions, sealed under a fresh data key of the secret's KMS key for the
//! caller), GetSecretValue and BatchGetSecretValue (opened with KMS Decrypt for the caller).
//!
//! cloister's extension: GetSecretValue with a `Recipient` (the shape of KMS Decrypt's: a key
//! encryption algorithm and an attestation document) verifies the document, decrypts with its
//! attestation condition keys (so a key policy allowing `kms:Decrypt` only with
//! `kms:RecipientAttestation:*` conditions releases the value to that enclave only), and answers
//! `CiphertextForRecipient` (the value enveloped to the document's key, as KMS Decrypt does)
//! and `SecretKind` (`String` or `Binary`: what the value was given as) in place of
//! `SecretString` / `SecretBinary`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{
    self, MAX_DESCRIPTION, MAX_KMS_KEY_ID, TagInput, check_tag_count, find, live, secs, text_max,
    version_token,
};
use super::envelope::{self, Kind, SecretValue};
use super::list::{self, FilterInput};
use super::model::{Secret, SecretMeta, SecretVersion};
use super::names;
use super::versions::{self, labels_of};
use crate::attested::{Recipient, RecipientInput};
use crate::error::{KmsError, Result, SecretsError};
use crate::input::{Base64, Member, Structure, b64};
use crate::ops::via::ViaCall;
use crate::store::now_ms;

/// CreateSecret's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CreateSecretInput {
    name: Member<String>,
    client_request_token: Member<String>,
    description: Member<String>,
    kms_key_id: Member<String>,
    secret_binary: Member<Base64>,
    secret_string: Member<String>,
    tags: Member<Vec<TagInput>>,
    add_replica_regions: Member<Vec<serde::de::IgnoredAny>>,
}

/// GetSecretValue's input, with cloister's `Recipient`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct GetSecretValueInput {
    secret_id: Member<String>,
    version_id: Member<String>,
    version_stage: Member<String>,
    recipient: Member<Structure<RecipientInput>>,
}

/// PutSecretValue's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutSecretValueInput {
    secret_id: Member<String>,
    client_request_token: Member<String>,
    secret_binary: Member<Base64>,
    secret_string: Member<String>,
    version_stages: Member<Vec<String>>,
    rotation_token: Member<String>,
}

/// UpdateSecret's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct UpdateSecretInput {
    secret_id: Member<String>,
    client_request_token: Member<String>,
    description: Member<String>,
    kms_key_id: Member<String>,
    secret_binary: Member<Base64>,
    secret_string: Member<String>,
}

/// BatchGetSecretValue's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct BatchGetSecretValueInput {
    secret_id_list: Member<Vec<String>>,
    filters: Member<Vec<FilterInput>>,
    max_results: Member<i64>,
    next_token: Member<String>,
}

/// A version id member (`VersionId`, `MoveToVersionId`...): 32..64 characters.
pub(crate) fn version_id<'a>(
    m: &'a Member<String>,
    name: &str,
    at: &str,
) -> Result<Option<&'a str>> {
    let v = m.text(name)?;
    if let Some(s) = v
        && !(32..=64).contains(&s.chars().count())
    {
        return Err(KmsError::validation(format!(
            "Value '{s}' at '{at}' failed to satisfy constraint: Member must have length between 32 and 64"
        )));
    }
    Ok(v)
}

/// A new version of `secret` (or of a new secret) holding `value`.
struct NewVersion<'a> {
    arn: &'a str,
    version_id: &'a str,
    key_ref: &'a str,
    value: &'a SecretValue,
}

fn sealed_version(call: &mut ViaCall<'_>, n: &NewVersion<'_>, now: i64) -> Result<SecretVersion> {
    call.audit.resource_version = Some(n.version_id.to_owned());
    let (_, sealed) = envelope::seal(call, n.key_ref, n.arn, n.version_id, n.value)?;
    Ok(SecretVersion {
        version_id: n.version_id.to_owned(),
        created_ms: now,
        sealed,
    })
}

/// The versions to drop so that at most 100 remain, or LimitExceededException.
fn pruned(meta: &SecretMeta, s: Option<&Secret>, new: &SecretVersion) -> Result<Vec<String>> {
    let mut created: BTreeMap<String, i64> = s
        .map(|s| {
            s.versions
                .values()
                .map(|v| (v.version_id.clone(), v.created_ms))
                .collect()
        })
        .unwrap_or_default();
    created.insert(new.version_id.clone(), new.created_ms);
    versions::prune(&meta.stages, &created).ok_or_else(|| {
        SecretsError::LimitExceeded(format!(
            "A secret can have at most {} versions, and every version has a staging label",
            versions::MAX_VERSIONS
        ))
        .into()
    })
}

/// CreateSecret's input, checked.
pub(crate) struct CreateRequest {
    name: String,
    token: String,
    description: Option<String>,
    kms_key_id: Option<String>,
    value: Option<SecretValue>,
    tags: Vec<(String, String)>,
}

impl CreateSecretInput {
    /// Checks every member, in AWS's order (what needs no secret or key).
    pub(crate) fn parse(&self) -> Result<CreateRequest> {
        let i = self;
        let name = i.name.required("Name", names::MAX_NAME)?.to_owned();
        names::check_name(&name)?;
        let token = version_token(&i.client_request_token)?;
        let description = text_max(
            &i.description,
            "Description",
            "description",
            MAX_DESCRIPTION,
        )?
        .map(str::to_owned);
        let kms_key_id = text_max(&i.kms_key_id, "KmsKeyId", "kmsKeyId", MAX_KMS_KEY_ID)?
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        let value = common::value(&i.secret_string, &i.secret_binary)?;
        let tags = common::tags(&i.tags)?;
        check_tag_count(&tags)?;
        if !matches!(i.add_replica_regions, Member::Absent) {
            return Err(SecretsError::InvalidRequest(
                "cloister-kms does not replicate secrets to other regions (AddReplicaRegions)"
                    .into(),
            )
            .into());
        }
        Ok(CreateRequest {
            name,
            token,
            description,
            kms_key_id,
            value,
            tags,
        })
    }
}

pub(crate) async fn create_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let CreateRequest {
        name,
        token,
        description,
        kms_key_id,
        value,
        tags,
    } = call.input::<CreateSecretInput>()?.parse()?;
    let key_ref = match &value {
        Some(_) => Some(common::sealing_key(&mut call, kms_key_id.as_deref()).await?),
        None => None,
    };
    let _guard = call.app.mutate().await?;
    let existing = {
        let state = call.app.state();
        names::resolve(&state.secrets, call.region, &call.app.cfg.account, &name)
            .and_then(|a| state.secrets.get(&a).cloned())
            .filter(|s| s.meta.name == name)
    };
    if let Some(s) = existing {
        call.audit.resource_arn = Some(s.arn.clone());
        if s.meta.deletion_ms.is_some() {
            return Err(SecretsError::InvalidRequest(format!(
                "You can't create this secret because a secret with the name {name} is already scheduled for deletion."
            ))
            .into());
        }
        // A retry of the same request (same token, same value) answers as the first did.
        if let (Some(v), Some(value)) = (s.versions.get(&token), &value)
            && retry_holds(&mut call, &s.arn, v, value)
        {
            call.audit.resource_version = Some(token.clone());
            return Ok(json!({"ARN": s.arn, "Name": name, "VersionId": token}));
        }
        return Err(SecretsError::ResourceExists(format!(
            "The operation failed because the secret {name} already exists."
        ))
        .into());
    }
    let arn = names::new_arn(call.region, &call.app.cfg.account, &name)?;
    call.audit.resource_arn = Some(arn.clone());
    let now = now_ms();
    let mut meta = SecretMeta {
        name: name.clone(),
        description,
        kms_key_id,
        tags,
        created_ms: now,
        last_changed_ms: now,
        ..SecretMeta::default()
    };
    let mut new = Vec::new();
    if let (Some(value), Some(key_ref)) = (&value, &key_ref) {
        let v = sealed_version(
            &mut call,
            &NewVersion {
                arn: &arn,
                version_id: &token,
                key_ref,
                value,
            },
            now,
        )?;
        versions::attach(&mut meta.stages, &token, None);
        new.push(v);
    }
    common::write(call.app, &arn, meta, new, Vec::new()).await?;
    let mut out = json!({"ARN": arn, "Name": name});
    if value.is_some() {
        out["VersionId"] = json!(token);
    }
    Ok(out)
}

/// Whether a write naming existing version `v` of `arn` as its token is a retry of the write
/// that made it (`v` holds `value`). Asked only for a caller the key policy lets write under
/// the key `v` is sealed under (`kms:GenerateDataKey` through Secrets Manager with `v`'s
/// context): otherwise the answer (success against ResourceExistsException) would confirm
/// guesses at a value the caller may not read, and anyone may name a version (its id is
/// listed) and set the secret's key. Any other caller gets ResourceExistsException whatever
/// the value (a deviation only for a caller who cannot write this version anyway).
fn retry_holds(call: &mut ViaCall<'_>, arn: &str, v: &SecretVersion, value: &SecretValue) -> bool {
    common::may_write_version(call, arn, v).is_ok()
        && envelope::holds(call.app, arn, &v.version_id, &v.sealed, value)
}

/// Adds a version holding `value` to the secret `s` with `labels` (AWSCURRENT when `None`);
/// a version that `token` already names must hold the same value (`same_token_ok`) or the
/// write is refused. Returns the secret as stored and whether a version was added.
async fn add_version(
    call: &mut ViaCall<'_>,
    s: &Secret,
    token: &str,
    value: &SecretValue,
    labels: Option<&[String]>,
    same_token_ok: bool,
    meta_change: impl Fn(&mut SecretMeta),
) -> Result<(Secret, bool)> {
    call.audit.resource_version = Some(token.to_owned());
    // Sealed under the key the secret names now (the managed key resolved before the lock).
    let mut meta = (*s.meta).clone();
    meta_change(&mut meta);
    let key_ref = common::sealing_key(call, meta.kms_key_id.as_deref()).await?;
    let _guard = call.app.mutate().await?;
    let s = common::current(call.app, &s.arn)?;
    live(&s)?;
    if let Some(v) = s.versions.get(token) {
        if same_token_ok && retry_holds(call, &s.arn, v, value) {
            return Ok((s, false));
        }
        return Err(SecretsError::ResourceExists(format!(
            "A version with VersionId {token} already exists with another value: you can't modify an existing version, you can only create a new version."
        ))
        .into());
    }
    let now = now_ms();
    let mut meta = (*s.meta).clone();
    meta_change(&mut meta);
    let v = sealed_version(
        call,
        &NewVersion {
            arn: &s.arn,
            version_id: token,
            key_ref: &key_ref,
            value,
        },
        now,
    )?;
    versions::attach(&mut meta.stages, token, labels);
    meta.last_changed_ms = now;
    let removed = pruned(&meta, Some(&s), &v)?;
    let stored = common::write(call.app, &s.arn, meta, vec![v], removed).await?;
    Ok((stored, true))
}

/// PutSecretValue's input, checked.
pub(crate) struct PutRequest {
    token: String,
    labels: Option<Vec<String>>,
    value: SecretValue,
}

impl PutSecretValueInput {
    /// Checks every member but the secret's existence.
    pub(crate) fn parse(&self) -> Result<PutRequest> {
        let i = self;
        i.secret_id.required("SecretId", names::MAX_SECRET_ID)?;
        let token = version_token(&i.client_request_token)?;
        let labels = match &i.version_stages {
            Member::Absent => None,
            Member::Mistyped => {
                return Err(KmsError::Serialization(
                    "VersionStages must be a list of strings".into(),
                ));
            }
            Member::Given(l) => {
                versions::check_labels(l)?;
                Some(l.clone())
            }
        };
        if let Some(t) = i.rotation_token.text("RotationToken")?
            && (t.len() < 36
                || t.len() > 256
                || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(KmsError::validation(
                "Value at 'rotationToken' failed to satisfy constraint: Member must have length between 36 and 256 and satisfy regular expression pattern: ^[a-zA-Z0-9\\-]+$",
            ));
        }
        let value = common::value(&i.secret_string, &i.secret_binary)?.ok_or_else(|| {
            KmsError::from(SecretsError::InvalidParameter(
                "You must provide either SecretString or SecretBinary.".into(),
            ))
        })?;
        Ok(PutRequest {
            token,
            labels,
            value,
        })
    }
}

pub(crate) async fn put_secret_value(mut call: ViaCall<'_>) -> Result<Value> {
    let i: PutSecretValueInput = call.input()?;
    let PutRequest {
        token,
        labels,
        value,
    } = i.parse()?;
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    let (s, _) = add_version(
        &mut call,
        &s,
        &token,
        &value,
        labels.as_deref(),
        true,
        |_| {},
    )
    .await?;
    Ok(json!({
        "ARN": s.arn,
        "Name": s.meta.name,
        "VersionId": token,
        "VersionStages": labels_of(&s.meta.stages, &token),
    }))
}

/// UpdateSecret's input, checked.
pub(crate) struct UpdateRequest {
    token: String,
    description: Option<String>,
    /// `Some(None)`: back to the AWS managed key.
    kms_key_id: Option<Option<String>>,
    value: Option<SecretValue>,
}

impl UpdateSecretInput {
    /// Checks every member but the secret's existence.
    pub(crate) fn parse(&self) -> Result<UpdateRequest> {
        let i = self;
        i.secret_id.required("SecretId", names::MAX_SECRET_ID)?;
        let token = version_token(&i.client_request_token)?;
        let description = text_max(
            &i.description,
            "Description",
            "description",
            MAX_DESCRIPTION,
        )?
        .map(str::to_owned);
        // An empty KmsKeyId goes back to the AWS managed key.
        let kms_key_id = text_max(&i.kms_key_id, "KmsKeyId", "kmsKeyId", MAX_KMS_KEY_ID)?
            .map(|k| (!k.is_empty()).then(|| k.to_owned()));
        let value = common::value(&i.secret_string, &i.secret_binary)?;
        Ok(UpdateRequest {
            token,
            description,
            kms_key_id,
            value,
        })
    }
}

pub(crate) async fn update_secret(mut call: ViaCall<'_>) -> Result<Value> {
    let i: UpdateSecretInput = call.input()?;
    let UpdateRequest {
        token,
        description,
        kms_key_id,
        value,
    } = i.parse()?;
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    let change = |m: &mut SecretMeta| {
        if let Some(d) = &description {
            m.description = Some(d.clone());
        }
        if let Some(k) = &kms_key_id {
            m.kms_key_id = k.clone();
        }
    };
    let key_changed = kms_key_id.as_ref().is_some_and(|k| *k != s.meta.kms_key_id);
    if key_changed {
        common::check_writer(&mut call, &s, "UpdateSecret with a new KmsKeyId").await?;
    }
    let (s, out) = match value {
        None => {
            let s = common::update_meta(call.app, &s.arn, |_, meta| {
                change(meta);
                meta.last_changed_ms = now_ms();
                Ok(())
            })
            .await?;
            let out = json!({"ARN": s.arn, "Name": s.meta.name});
            (s, out)
        }
        Some(value) => {
            // UpdateSecret never reuses a version: AWS documents an error for a token that
            // names one.
            let (s, _) = add_version(&mut call, &s, &token, &value, None, false, change).await?;
            let out = json!({"ARN": s.arn, "Name": s.meta.name, "VersionId": token});
            (s, out)
        }
    };
    if key_changed {
        let written = call.audit.resource_version.clone();
        reencrypt(&mut call, &s, &token).await?;
        call.audit.resource_version = written;
    }
    Ok(out)
}

/// After UpdateSecret changed the secret's key: the versions labelled AWSCURRENT, AWSPENDING
/// and AWSPREVIOUS sealed again under the new key, as AWS does, each only if the caller may
/// open it under its old key and seal under the new one (AWS leaves a version under its old
/// key when the caller may not; it stays readable there). `fresh` was just sealed under the new
/// key.
async fn reencrypt(call: &mut ViaCall<'_>, s: &Secret, fresh: &str) -> Result<()> {
    let Ok(key_ref) = common::sealing_key(call, s.meta.kms_key_id.as_deref()).await else {
        return Ok(());
    };
    let _guard = call.app.mutate().await?;
    let s = common::current(call.app, &s.arn)?;
    let mut redone: Vec<SecretVersion> = Vec::new();
    for label in [versions::CURRENT, "AWSPENDING", versions::PREVIOUS] {
        let Some(v) = s.meta.stages.get(label).and_then(|id| s.versions.get(id)) else {
            continue;
        };
        if v.version_id == fresh || redone.iter().any(|r| r.version_id == v.version_id) {
            continue;
        }
        let Ok((_, value)) = envelope::open(call, &s.arn, &v.version_id, &v.sealed, None) else {
            continue;
        };
        let Ok((_, sealed)) = envelope::seal(call, &key_ref, &s.arn, &v.version_id, &value) else {
            continue;
        };
        redone.push(SecretVersion {
            version_id: v.version_id.clone(),
            created_ms: v.created_ms,
            sealed,
        });
    }
    if !redone.is_empty() {
        common::write(call.app, &s.arn, (*s.meta).clone(), redone, Vec::new()).await?;
    }
    Ok(())
}

/// The version a read names: `VersionId`, `VersionStage` (both must name the same one), or
/// AWSCURRENT.
fn chosen_version<'a>(
    s: &'a Secret,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<&'a SecretVersion> {
    let missing = |what: String| -> KmsError {
        SecretsError::ResourceNotFound(format!(
            "Secrets Manager can't find the specified secret value for {what}"
        ))
        .into()
    };
    let by_stage = |label: &str| {
        s.meta
            .stages
            .get(label)
            .and_then(|id| s.versions.get(id))
            .map(AsRef::as_ref)
            .ok_or_else(|| missing(format!("staging label: {label}")))
    };
    match (version_id, stage) {
        (Some(id), stage) => {
            let v = s
                .versions
                .get(id)
                .map(AsRef::as_ref)
                .ok_or_else(|| missing(format!("VersionId: {id}")))?;
            if let Some(label) = stage
                && s.meta.stages.get(label).map(String::as_str) != Some(id)
            {
                return Err(missing(format!(
                    "VersionId: {id} and staging label: {label}"
                )));
            }
            Ok(v)
        }
        (None, Some(label)) => by_stage(label),
        (None, None) => by_stage(versions::CURRENT),
    }
}

/// The answer's value members: `SecretString` or `SecretBinary`.
fn value_members(out: &mut Value, value: &SecretValue) -> Result<()> {
    match value.kind {
        Kind::String => {
            let s = std::str::from_utf8(&value.bytes).map_err(|_| {
                KmsError::from(SecretsError::DecryptionFailure(
                    "The stored secret string is not UTF-8".into(),
                ))
            })?;
            out["SecretString"] = json!(s);
        }
        Kind::Binary => out["SecretBinary"] = json!(b64(&value.bytes)),
    }
    Ok(())
}

/// Reads version `v` of `s` for the caller (sealed to `recipient` when there is one).
fn read(
    call: &mut ViaCall<'_>,
    s: &Secret,
    v: &SecretVersion,
    recipient: Option<&Recipient>,
) -> Result<Value> {
    call.audit.resource_arn = Some(s.arn.clone());
    call.audit.resource_version = Some(v.version_id.clone());
    let (key_arn, value) = envelope::open(call, &s.arn, &v.version_id, &v.sealed, recipient)?;
    let mut out = json!({
        "ARN": s.arn,
        "Name": s.meta.name,
        "VersionId": v.version_id,
        "VersionStages": labels_of(&s.meta.stages, &v.version_id),
        "CreatedDate": secs(v.created_ms),
    });
    match recipient {
        Some(r) => {
            out["CiphertextForRecipient"] = json!(b64(&r.seal(&value.bytes)?));
            out["SecretKind"] = json!(value.kind.name());
            // The key that opened this version's data key: the secret's key can be changed
            // (UpdateSecret KmsKeyId, which AWS allows to anyone who may call it, and here to
            // every principal) and a new version sealed under a key the caller controls, so an
            // enclave that pins the key it trusts compares it with this.
            out["KmsKeyId"] = json!(key_arn);
        }
        None => value_members(&mut out, &value)?,
    }
    Ok(out)
}

impl GetSecretValueInput {
    /// Checks every member but the secret's existence and the attestation document:
    /// (`VersionId`, `VersionStage`).
    pub(crate) fn parse(&self) -> Result<(Option<&str>, Option<&str>)> {
        self.secret_id.required("SecretId", names::MAX_SECRET_ID)?;
        let version = version_id(&self.version_id, "VersionId", "versionId")?;
        let stage = self.version_stage.text("VersionStage")?;
        if let Some(l) = stage {
            versions::check_label(l, "versionStage")?;
        }
        self.recipient.structure("Recipient")?;
        Ok((version, stage))
    }
}

pub(crate) fn get_secret_value(mut call: ViaCall<'_>) -> Result<Value> {
    let i: GetSecretValueInput = call.input()?;
    let (version, stage) = i.parse()?;
    let s = find(&mut call, &i.secret_id)?;
    live(&s)?;
    let v = chosen_version(&s, version, stage)?;
    call.audit.resource_version = Some(v.version_id.clone());
    let recipient = call.recipient(&i.recipient)?;
    read(&mut call, &s, v, recipient.as_ref())
}

/// Most secrets one BatchGetSecretValue reads.
const MAX_BATCH: usize = 20;

pub(crate) fn batch_get_secret_value(mut call: ViaCall<'_>) -> Result<Value> {
    let i: BatchGetSecretValueInput = call.input()?;
    let ids = match &i.secret_id_list {
        Member::Absent => None,
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "SecretIdList must be a list of strings".into(),
            ));
        }
        Member::Given(l) => {
            if l.is_empty() || l.len() > MAX_BATCH {
                return Err(KmsError::validation(format!(
                    "Value at 'secretIdList' failed to satisfy constraint: Member must have length between 1 and {MAX_BATCH}"
                )));
            }
            Some(l.clone())
        }
    };
    let filters = list::filters(&i.filters)?;
    let max = i.max_results.int_in("MaxResults", 1, MAX_BATCH as i64)?;
    let token = i.next_token.text("NextToken")?;
    let (arns, ids, next) = match (ids, filters) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(SecretsError::InvalidParameter(
                "You must include Filters or SecretIdList, but not both.".into(),
            )
            .into());
        }
        (Some(ids), None) => {
            if max.is_some() || token.is_some() {
                return Err(SecretsError::InvalidParameter(
                    "MaxResults and NextToken go with Filters, not with SecretIdList.".into(),
                )
                .into());
            }
            let state = call.app.state();
            let arns = ids
                .iter()
                .map(|id| names::resolve(&state.secrets, call.region, &call.app.cfg.account, id))
                .collect::<Vec<_>>();
            (arns, ids, None)
        }
        (None, Some(filters)) => {
            let matching = list::matching(&call, &filters, false);
            let limit = usize::try_from(max.unwrap_or(MAX_BATCH as i64)).unwrap_or(MAX_BATCH);
            let (page, next) = list::page(&matching, limit, token)?;
            let arns: Vec<String> = page.iter().map(|s| s.arn.clone()).collect();
            (arns.iter().cloned().map(Some).collect(), arns, next)
        }
    };
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut released = Vec::new();
    let mut refused = Vec::new();
    for (id, arn) in ids.iter().zip(arns) {
        let named = arn.clone();
        let got = arn.ok_or_else(names::not_found).and_then(|arn| {
            if let Some(refused) = call.app.secret_refused(&arn) {
                return Err(refused);
            }
            let s = common::current(call.app, &arn)?;
            live(&s)?;
            let v = chosen_version(&s, None, None)?;
            let out = read(&mut call, &s, v, None)?;
            released.push((s.arn.clone(), v.version_id.clone()));
            Ok(out)
        });
        match got {
            Ok(v) => values.push(v),
            Err(e) => {
                if let Some(arn) = named {
                    refused.push(format!("{arn} {}", e.aws_name()));
                }
                errors.push(
                    json!({"SecretId": id, "ErrorCode": e.aws_name(), "Message": e.to_string()}),
                );
            }
        }
    }
    // The request succeeds with per-secret errors, so a refused read is no error outcome: the
    // entry's reason names each existing secret whose read was refused, and why.
    call.audit.reason = (!refused.is_empty()).then(|| format!("refused: {}", refused.join(", ")));
    // One audit entry names every secret and version released, in order.
    call.audit.resource_arn = (!released.is_empty()).then(|| {
        released
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    call.audit.resource_version = (!released.is_empty()).then(|| {
        released
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut out = json!({"SecretValues": values, "Errors": errors});
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn secret() -> Secret {
        let mut meta = SecretMeta::default();
        let mut versions = BTreeMap::new();
        for id in ["v1", "v2"] {
            versions.insert(
                id.to_owned(),
                Arc::new(SecretVersion {
                    version_id: id.into(),
                    created_ms: 0,
                    sealed: Vec::new(),
                }),
            );
            versions::attach(&mut meta.stages, id, None);
        }
        Secret {
            arn: "arn".into(),
            meta: Arc::new(meta),
            versions,
        }
    }

    #[test]
    fn reads_name_a_version_by_id_label_or_both() {
        let s = secret();
        assert_eq!(chosen_version(&s, None, None).unwrap().version_id, "v2");
        assert_eq!(
            chosen_version(&s, None, Some("AWSPREVIOUS"))
                .unwrap()
                .version_id,
            "v1"
        );
        assert_eq!(
            chosen_version(&s, Some("v1"), None).unwrap().version_id,
            "v1"
        );
        assert_eq!(
            chosen_version(&s, Some("v1"), Some("AWSPREVIOUS"))
                .unwrap()
                .version_id,
            "v1"
        );
        for (id, stage) in [
            (Some("v1"), Some("AWSCURRENT")),
            (Some("v9"), None),
            (None, Some("AWSPENDING")),
        ] {
            assert_eq!(
                chosen_version(&s, id, stage).unwrap_err().aws_name(),
                "ResourceNotFoundException"
            );
        }
        let empty = Secret {
            arn: "arn".into(),
            meta: Arc::new(SecretMeta::default()),
            versions: BTreeMap::new(),
        };
        assert!(
            chosen_version(&empty, None, None)
                .unwrap_err()
                .to_string()
                .contains("AWSCURRENT")
        );
    }
}
