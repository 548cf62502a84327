//! What the Secrets Manager operations share: finding the secret a `SecretId` names (and
//! naming it in the audit entry), the refusal for a secret scheduled for deletion, the
//! members every value-writing operation validates (`ClientRequestToken`, `SecretString` /
//! `SecretBinary`, `Tags`), the KMS key a new version is sealed under, and writing a secret.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::envelope::{Kind, SecretValue};
use super::model::{Secret, SecretMeta, SecretVersion};
use super::names;
use crate::app::App;
use crate::error::{KmsError, Result, SecretsError};
use crate::input::{Base64, Member};
use crate::ops::via::{ViaCall, kms_refusal};

/// Largest value, in bytes (`SecretStringType`, `SecretBinaryType`).
pub(crate) const MAX_VALUE: usize = 65_536;
/// Longest description.
pub(crate) const MAX_DESCRIPTION: usize = 2048;
/// Longest `KmsKeyId`.
pub(crate) const MAX_KMS_KEY_ID: usize = 2048;
/// Most tags on a secret (AWS's quota).
const MAX_TAGS: usize = 50;

/// Seconds since the epoch, as the service's timestamps are written.
pub(crate) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The secret `SecretId` names in the request's region; its ARN goes to the audit entry. A
/// secret whose stored rows failed their integrity check is refused.
pub(crate) fn find(call: &mut ViaCall<'_>, id: &Member<String>) -> Result<Secret> {
    let id = id.required("SecretId", names::MAX_SECRET_ID)?;
    let arn = {
        let state = call.app.state();
        names::resolve(&state.secrets, call.region, &call.app.cfg.account, id)
    };
    let arn = arn.ok_or_else(names::not_found)?;
    call.audit.resource_arn = Some(arn.clone());
    if let Some(refused) = call.app.secret_refused(&arn) {
        return Err(refused);
    }
    current(call.app, &arn)
}

/// The secret `arn` as the state holds it now.
pub(crate) fn current(app: &App, arn: &str) -> Result<Secret> {
    app.state()
        .secrets
        .get(arn)
        .cloned()
        .ok_or_else(names::not_found)
}

/// The refusal for reading or changing a secret scheduled for deletion.
pub(crate) fn live(s: &Secret) -> Result<()> {
    if s.meta.deletion_ms.is_some() {
        return Err(SecretsError::InvalidRequest(
            "You can't perform this operation on the secret because it was marked for deletion."
                .into(),
        )
        .into());
    }
    Ok(())
}

/// `ClientRequestToken` (32..64 characters), or a fresh UUID when absent (what SDKs send).
pub(crate) fn version_token(token: &Member<String>) -> Result<String> {
    Ok(
        super::values::version_id(token, "ClientRequestToken", "clientRequestToken")?
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
    )
}

/// An optional string member of at most `max` characters (`at` is its name in messages).
pub(crate) fn text_max<'a>(
    m: &'a Member<String>,
    name: &str,
    at: &str,
    max: usize,
) -> Result<Option<&'a str>> {
    let v = m.text(name)?;
    if let Some(s) = v
        && s.chars().count() > max
    {
        return Err(KmsError::validation(format!(
            "Value at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(v)
}

/// `SecretString` xor `SecretBinary`, each 1..65536 bytes; `None` when neither is given.
pub(crate) fn value(s: &Member<String>, b: &Member<Base64>) -> Result<Option<SecretValue>> {
    let string = s.text("SecretString")?;
    let binary = b.blob("SecretBinary", 1, MAX_VALUE)?.map(Zeroizing::new);
    match (string, binary) {
        (Some(_), Some(_)) => Err(SecretsError::InvalidParameter(
            "You can't specify both a binary secret value and a string secret value in the same secret."
                .into(),
        )
        .into()),
        (Some(s), None) => {
            if s.is_empty() || s.len() > MAX_VALUE {
                return Err(KmsError::validation(format!(
                    "Value at 'secretString' failed to satisfy constraint: Member must have length between 1 and {MAX_VALUE}"
                )));
            }
            Ok(Some(SecretValue {
                kind: Kind::String,
                bytes: Zeroizing::new(s.as_bytes().to_vec()),
            }))
        }
        (None, Some(bytes)) => Ok(Some(SecretValue {
            kind: Kind::Binary,
            bytes,
        })),
        (None, None) => Ok(None),
    }
}

/// One `Tag`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TagInput {
    key: Member<String>,
    value: Member<String>,
}

/// `Tags`: keys 1..128 characters not starting with `aws:`, values 0..256; later tags with a
/// key already given replace its value.
pub(crate) fn tags(m: &Member<Vec<TagInput>>) -> Result<Vec<(String, String)>> {
    let list = match m {
        Member::Absent => return Ok(Vec::new()),
        Member::Mistyped => return Err(KmsError::Serialization("Tags must be a list".into())),
        Member::Given(l) => l,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for t in list {
        let k = t.key.required("Key", 128)?;
        let v = text_max(&t.value, "Value", "tags.member.value", 256)?.unwrap_or_default();
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SecretsError::InvalidParameter(format!(
                "The tag key {k} uses the reserved prefix aws:"
            ))
            .into());
        }
        merge_tag(&mut out, k, v);
    }
    Ok(out)
}

/// Adds or replaces a tag, keeping the order tags were first given.
pub(crate) fn merge_tag(tags: &mut Vec<(String, String)>, k: &str, v: &str) {
    match tags.iter_mut().find(|(key, _)| key == k) {
        Some(t) => t.1 = v.to_owned(),
        None => tags.push((k.to_owned(), v.to_owned())),
    }
}

/// Refuses more than 50 tags on a secret.
pub(crate) fn check_tag_count(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(SecretsError::InvalidParameter(format!(
            "A secret can have at most {MAX_TAGS} tags"
        ))
        .into());
    }
    Ok(())
}

/// `Tags` as answered.
pub(crate) fn tags_json(tags: &[(String, String)]) -> Value {
    json!(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect::<Vec<_>>()
    )
}

/// The KMS key new versions of a secret are sealed under: `kms_key_id` as the caller named it,
/// or the AWS managed key `aws/secretsmanager` (made on first use) as an ARN. Resolve it
/// before taking `app.mutate`: making the managed key takes that lock.
pub(crate) async fn sealing_key(
    call: &mut ViaCall<'_>,
    kms_key_id: Option<&str>,
) -> Result<String> {
    match kms_key_id {
        Some(k) => Ok(k.to_owned()),
        None => call
            .key_arn(None)
            .await
            .map_err(|e| kms_refusal(e, |m| SecretsError::EncryptionFailure(m).into())),
    }
}

/// Whether the caller may write version `v` of `arn`: `kms:GenerateDataKey` through Secrets
/// Manager under the key `v` is sealed under, with `v`'s encryption context.
pub(crate) fn may_write_version(
    call: &mut ViaCall<'_>,
    arn: &str,
    v: &SecretVersion,
) -> Result<()> {
    let header = super::envelope::data_key_blob(&v.sealed).and_then(crate::blob::header)?;
    let ec = super::envelope::context(arn, &v.version_id);
    call.generate_data_key(&header.key_id, &ec).map(drop)
}

/// Refuses a change of which value a secret holds (its KMS key, its staging labels) by a caller
/// who may not write its value: `kms:GenerateDataKey` through Secrets Manager under the key the
/// AWSCURRENT version is sealed under, with that version's context (or, for a secret without
/// one, under the key new versions are sealed under). AWS leaves this to IAM; cloister-kms has
/// none, so the key policy that guards writing the value guards choosing it too: otherwise
/// whoever may call the API could point AWSCURRENT back at an older version, or move the secret
/// to a key of its own and seal a value there that an enclave then takes for the owner's.
pub(crate) async fn check_writer(call: &mut ViaCall<'_>, s: &Secret, op: &str) -> Result<()> {
    let current = s
        .meta
        .stages
        .get(super::versions::CURRENT)
        .and_then(|id| s.versions.get(id));
    let allowed = match current {
        Some(v) => may_write_version(call, &s.arn, v),
        None => {
            let key = sealing_key(call, s.meta.kms_key_id.as_deref()).await?;
            let ec = [("SecretARN".to_owned(), s.arn.clone())]
                .into_iter()
                .collect();
            call.generate_data_key(&key, &ec).map(drop)
        }
    };
    allowed.map_err(|e| match e {
        KmsError::AccessDenied(_) => KmsError::AccessDenied(format!(
            "{op} changes which value the secret holds: the caller must be allowed \
             kms:GenerateDataKey through Secrets Manager on the key of its current value"
        )),
        other => kms_refusal(other, |m| SecretsError::EncryptionFailure(m).into()),
    })
}

/// Changes the metadata of the secret `arn` as the state holds it under `app.mutate` (it must
/// not be scheduled for deletion), and stores it; `change` may refuse.
pub(crate) async fn update_meta(
    app: &App,
    arn: &str,
    change: impl FnOnce(&Secret, &mut SecretMeta) -> Result<()>,
) -> Result<Secret> {
    let _guard = app.mutate().await?;
    let s = current(app, arn)?;
    live(&s)?;
    let mut meta = (*s.meta).clone();
    change(&s, &mut meta)?;
    write(app, arn, meta, Vec::new(), Vec::new()).await
}

/// Deletes the secret `arn` with every version from the store, then from the state (durable
/// when it returns). The caller holds `app.mutate`.
pub(crate) async fn remove(app: &App, arn: &str) -> Result<()> {
    app.writer.delete_secret(arn.to_owned()).await?;
    app.apply(|s| {
        s.secrets.remove(arn);
    });
    Ok(())
}

/// Stores a secret's metadata with its new versions and without `removed`, then applies the
/// change to the state (all or none; durable when it returns).
pub(crate) async fn write(
    app: &App,
    arn: &str,
    meta: SecretMeta,
    new_versions: Vec<SecretVersion>,
    removed: Vec<String>,
) -> Result<Secret> {
    let meta = Arc::new(meta);
    let new_versions: Vec<Arc<SecretVersion>> = new_versions.into_iter().map(Arc::new).collect();
    app.writer
        .put_secret(
            arn.to_owned(),
            meta.clone(),
            new_versions.clone(),
            removed.clone(),
        )
        .await?;
    let mut out = None;
    app.apply(|s| {
        let secret = s.secrets.entry(arn.to_owned()).or_insert_with(|| Secret {
            arn: arn.to_owned(),
            meta: meta.clone(),
            versions: Default::default(),
        });
        secret.meta = meta;
        for v in new_versions {
            secret.versions.insert(v.version_id.clone(), v);
        }
        for r in &removed {
            secret.versions.remove(r);
        }
        out = Some(secret.clone());
    });
    out.ok_or_else(|| KmsError::Internal("a secret was not stored".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Body;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct Shape {
        secret_string: Member<String>,
        secret_binary: Member<Base64>,
        client_request_token: Member<String>,
        tags: Member<Vec<TagInput>>,
    }

    fn shape(v: Value) -> Shape {
        Body::parse(v.to_string().as_bytes())
            .unwrap()
            .decode()
            .unwrap()
    }

    #[test]
    fn a_value_is_a_string_or_a_binary_not_both() {
        let s = shape(json!({"SecretString": "pw"}));
        let v = value(&s.secret_string, &s.secret_binary).unwrap().unwrap();
        assert_eq!((v.kind, v.bytes.as_slice()), (Kind::String, &b"pw"[..]));
        let b = shape(json!({"SecretBinary": "AAE="}));
        let v = value(&b.secret_string, &b.secret_binary).unwrap().unwrap();
        assert_eq!((v.kind, v.bytes.as_slice()), (Kind::Binary, &[0u8, 1][..]));
        let both = shape(json!({"SecretString": "pw", "SecretBinary": "AAE="}));
        assert_eq!(
            value(&both.secret_string, &both.secret_binary)
                .unwrap_err()
                .aws_name(),
            "InvalidParameterException"
        );
        let none = shape(json!({}));
        assert!(
            value(&none.secret_string, &none.secret_binary)
                .unwrap()
                .is_none()
        );
        let big = shape(json!({"SecretString": "x".repeat(MAX_VALUE + 1)}));
        assert_eq!(
            value(&big.secret_string, &big.secret_binary)
                .unwrap_err()
                .aws_name(),
            "ValidationException"
        );
        let empty = shape(json!({"SecretString": ""}));
        assert!(value(&empty.secret_string, &empty.secret_binary).is_err());
    }

    #[test]
    fn tokens_are_32_to_64_characters_or_made_up() {
        let t = shape(json!({"ClientRequestToken": "a".repeat(32)}));
        assert_eq!(
            version_token(&t.client_request_token).unwrap(),
            "a".repeat(32)
        );
        let short = shape(json!({"ClientRequestToken": "a".repeat(31)}));
        assert_eq!(
            version_token(&short.client_request_token)
                .unwrap_err()
                .aws_name(),
            "ValidationException"
        );
        let none = shape(json!({}));
        assert_eq!(version_token(&none.client_request_token).unwrap().len(), 36);
    }

    #[test]
    fn tags_are_checked_and_merged() {
        let t = shape(
            json!({"Tags": [{"Key": "a", "Value": "1"}, {"Key": "b"}, {"Key": "a", "Value": "2"}]}),
        );
        assert_eq!(
            tags(&t.tags).unwrap(),
            [
                ("a".to_owned(), "2".to_owned()),
                ("b".to_owned(), String::new())
            ]
        );
        let reserved = shape(json!({"Tags": [{"Key": "AWS:x", "Value": "1"}]}));
        assert_eq!(
            tags(&reserved.tags).unwrap_err().aws_name(),
            "InvalidParameterException"
        );
        let long = shape(json!({"Tags": [{"Key": "k".repeat(129)}]}));
        assert_eq!(
            tags(&long.tags).unwrap_err().aws_name(),
            "ValidationException"
        );
        let mistyped = shape(json!({"Tags": {"a": "b"}}));
        assert_eq!(
            tags(&mistyped.tags).unwrap_err().aws_name(),
            "SerializationException"
        );
        assert!(check_tag_count(&vec![(String::new(), String::new()); 51]).is_err());
    }
}
