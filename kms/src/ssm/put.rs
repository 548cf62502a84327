//! PutParameter: creates a parameter (version 1) or, with `Overwrite`, adds a version. Versions
//! count from 1 and are never reused; the 100 latest are kept (the oldest dropped, unless it
//! has a label: ParameterMaxVersionLimitExceeded). A SecureString's value is encrypted with
//! KMS Encrypt for the caller through Parameter Store, under `KeyId` (default: the AWS managed
//! key `alias/aws/ssm`) with `{"PARAMETER_ARN": arn}`; only the ciphertext is stored.
//!
//! Deviations, documented: a SecureString value is at most 4096 bytes, whatever its tier (AWS
//! envelope-encrypts larger Advanced values with the Encryption SDK; cloister keeps every
//! SecureString as one KMS ciphertext, which KMS Decrypt opens only up to its 6144-byte
//! ciphertext bound, and which is what an enclave opens with a `Recipient`); an overwrite without `KeyId` keeps
//! the previous version's key (so a value under an enclave-only key does not silently move to
//! the managed key); parameter policies (`Policies`) are refused.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::model::{Parameter, ParameterBody, ParameterType, ParameterVersion};
use super::{answer, names, tags, values};
use crate::error::{KmsError, Result, SsmError};
use crate::input::{Member, b64};
use crate::ops::via::{self, ViaCall};
use crate::store::now_ms;

/// Versions kept per parameter.
const MAX_VERSIONS: usize = 100;
/// Largest SecureString value, bytes: what KMS Encrypt takes.
const MAX_SECURE: usize = 4096;
/// The AWS managed key's alias.
const MANAGED_KEY: &str = "alias/aws/ssm";

/// PutParameter's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct PutInput {
    name: Member<String>,
    description: Member<String>,
    value: Member<String>,
    #[serde(rename = "Type")]
    kind: Member<String>,
    key_id: Member<String>,
    overwrite: Member<bool>,
    allowed_pattern: Member<String>,
    tags: Member<Vec<tags::TagInput>>,
    tier: Member<String>,
    policies: Member<String>,
    data_type: Member<String>,
}

/// A checked PutParameter request.
#[derive(Debug)]
pub(super) struct Put {
    name: String,
    /// The value: a SecureString's plaintext until it is encrypted, so zeroized when dropped.
    value: Zeroizing<String>,
    kind: Option<ParameterType>,
    key_id: Option<String>,
    overwrite: bool,
    description: Option<String>,
    allowed_pattern: Option<String>,
    tags: Vec<(String, String)>,
    tier: Option<String>,
    data_type: Option<String>,
}

/// Checks the input as AWS does before it looks at the parameter.
pub(super) fn parse(i: &PutInput) -> Result<Put> {
    let name = names::trim(i.name.required("Name", 2048)?).to_owned();
    let value = i
        .value
        .text("Value")?
        .ok_or_else(|| {
            KmsError::validation(
                "Value null at 'value' failed to satisfy constraint: Member must not be null",
            )
        })?
        .to_owned();
    let value = Zeroizing::new(value);
    let kind = match i.kind.text("Type")? {
        None => None,
        Some(t) => Some(values::parameter_type(t).ok_or_else(|| {
            KmsError::validation(format!(
                "Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
            ))
        })?),
    };
    let key_id = match i.key_id.text("KeyId")? {
        None => None,
        Some(k) => {
            let valid = !k.is_empty()
                && k.len() <= 256
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b));
            if !valid {
                return Err(KmsError::validation(format!(
                    "Value '{k}' at 'keyId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-zA-Z0-9:/_-]+)$"
                )));
            }
            Some(k.to_owned())
        }
    };
    let description = i.description.text("Description")?.map(str::to_owned);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(KmsError::validation(
            "Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1024",
        ));
    }
    let allowed_pattern = i.allowed_pattern.text("AllowedPattern")?.map(str::to_owned);
    if let Some(p) = &allowed_pattern {
        if p.chars().count() > 1024 {
            return Err(KmsError::validation(
                "Value at 'allowedPattern' failed to satisfy constraint: Member must have length less than or equal to 1024",
            ));
        }
        values::compile(p)?;
    }
    let tier = i
        .tier
        .one_of("Tier", &["Standard", "Advanced", "Intelligent-Tiering"])?
        .map(str::to_owned);
    let data_type = i.data_type.text("DataType")?.map(str::to_owned);
    if i.policies.text("Policies")?.is_some() {
        return Err(KmsError::Validation(
            "Parameter policies are not supported by cloister-kms.".into(),
        ));
    }
    let overwrite = i.overwrite.flag("Overwrite")?;
    let tags = tags::parse_tags(&i.tags, 1000)?;
    if overwrite && !tags.is_empty() {
        return Err(KmsError::Validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.".into(),
        ));
    }
    if tags.len() > tags::MAX_TAGS {
        return Err(SsmError::TooManyTags(String::new()).into());
    }
    if kind.is_some_and(|k| k != ParameterType::SecureString) && key_id.is_some() {
        return Err(KmsError::Validation(
            "KeyId is only valid for SecureString parameters.".into(),
        ));
    }
    Ok(Put {
        name,
        value,
        kind,
        key_id,
        overwrite,
        description,
        allowed_pattern,
        tags,
        tier,
        data_type,
    })
}

/// What the new version will be, given the parameter as it is.
#[derive(Debug)]
struct Plan {
    kind: ParameterType,
    version: u64,
    tier: String,
    data_type: String,
    description: Option<String>,
    allowed_pattern: Option<String>,
    /// The key to encrypt under (a SecureString's): as given, or the previous version's.
    key_id: Option<String>,
}

/// The checks that depend on the parameter as it is: exists without Overwrite, a type to
/// create, no change to or from SecureString, the tier, the data type, the pattern, the version
/// limit.
fn plan(put: &Put, existing: Option<&Parameter>) -> Result<Plan> {
    let latest = existing.and_then(|p| p.body.versions.last());
    if latest.is_some() && !put.overwrite {
        return Err(SsmError::ParameterAlreadyExists(
            "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.".into(),
        )
        .into());
    }
    let kind = match (put.kind, latest) {
        (Some(k), _) => k,
        (None, Some(l)) => l.kind,
        (None, None) => {
            return Err(KmsError::Validation(
                "A parameter type is required when you create a parameter.".into(),
            ));
        }
    };
    if let Some(l) = latest {
        let secure = |k: ParameterType| k == ParameterType::SecureString;
        if secure(l.kind) != secure(kind) {
            return Err(SsmError::HierarchyTypeMismatch(format!(
                "The parameter type can't be changed from {} to {}. Parameter Store doesn't support changing a parameter type in a hierarchy; create a new, unique parameter.",
                l.kind.as_str(),
                kind.as_str()
            ))
            .into());
        }
    }
    if kind != ParameterType::SecureString && put.key_id.is_some() {
        return Err(KmsError::Validation(
            "KeyId is only valid for SecureString parameters.".into(),
        ));
    }
    let description = put
        .description
        .clone()
        .or_else(|| latest.and_then(|l| l.description.clone()));
    let allowed_pattern = put
        .allowed_pattern
        .clone()
        .or_else(|| latest.and_then(|l| l.allowed_pattern.clone()));
    values::check_value(&put.value, allowed_pattern.as_deref())?;
    if kind == ParameterType::SecureString && put.value.len() > MAX_SECURE {
        return Err(KmsError::Validation(format!(
            "cloister-kms stores a SecureString value as one KMS ciphertext, so at most {MAX_SECURE} bytes in either tier (AWS envelope-encrypts larger Advanced values with the Encryption SDK); store a larger value as several parameters."
        )));
    }
    let tier = values::tier(
        put.tier.as_deref(),
        latest.map(|l| l.tier.as_str()).filter(|t| !t.is_empty()),
        &put.value,
    )?;
    let data_type = values::data_type(
        put.data_type.as_deref().or_else(|| {
            latest
                .map(|l| l.data_type.as_str())
                .filter(|d| !d.is_empty())
        }),
        kind,
    )?;
    if let Some(p) = existing
        && p.body.versions.len() >= MAX_VERSIONS
        && let Some(oldest) = p.body.versions.first()
        && !oldest.labels.is_empty()
    {
        return Err(SsmError::ParameterMaxVersionLimitExceeded(format!(
            "You attempted to create a new version of {} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
            p.body.name, oldest.version
        ))
        .into());
    }
    let key_id = (kind == ParameterType::SecureString).then(|| {
        put.key_id
            .clone()
            .or_else(|| latest.and_then(|l| l.key_id.clone()))
            .unwrap_or_else(|| MANAGED_KEY.to_owned())
    });
    Ok(Plan {
        kind,
        version: latest.map_or(1, |l| l.version + 1),
        tier,
        data_type,
        description,
        allowed_pattern,
        key_id,
    })
}

pub(super) async fn put_parameter(mut call: ViaCall<'_>) -> Result<Value> {
    let put = parse(&call.input()?)?;
    let account = call.app.cfg.account.clone();
    names::check_name(&put.name, call.region, &account)?;
    let arn = names::arn(call.region, &account, &put.name);
    call.audit.resource_arn = Some(arn.clone());
    let first = plan(&put, super::find(&call, &arn)?.as_ref())?;
    // Encrypt before taking the write lock: making the managed key takes it too.
    let sealed = match &first.key_id {
        None => None,
        Some(key_id) => {
            let key_ref = if key_id == MANAGED_KEY {
                call.key_arn(None).await?
            } else {
                key_id.clone()
            };
            let (key_arn, blob) = call
                .encrypt(&key_ref, put.value.as_bytes(), &answer::context(&arn))
                .map_err(|e| via::kms_refusal(e, |m| SsmError::InvalidKeyId(m).into()))?;
            Some((key_id.clone(), key_arn, b64(&blob)))
        }
    };
    let _guard = call.app.mutate().await?;
    let existing = super::find(&call, &arn)?;
    let plan = plan(&put, existing.as_ref())?;
    if plan.key_id != first.key_id {
        return Err(SsmError::InternalServerError(
            "The parameter changed during the request; try again.".into(),
        )
        .into());
    }
    let (value, key_id, key_arn) = match sealed {
        Some((k, a, v)) => (v, Some(k), Some(a)),
        None => (put.value.to_string(), None, None),
    };
    let mut body = existing.map_or_else(
        || ParameterBody {
            name: put.name.clone(),
            tags: put.tags.clone(),
            versions: Vec::new(),
        },
        |p| (*p.body).clone(),
    );
    if body.versions.len() >= MAX_VERSIONS {
        body.versions.remove(0);
    }
    body.versions.push(ParameterVersion {
        version: plan.version,
        kind: plan.kind,
        value,
        key_id,
        key_arn,
        description: plan.description,
        allowed_pattern: plan.allowed_pattern,
        tier: plan.tier.clone(),
        data_type: plan.data_type,
        labels: Vec::new(),
        modified_ms: now_ms(),
        modified_by: call.principal.arn.clone(),
    });
    let parameter = Parameter {
        arn: arn.clone(),
        body: Arc::new(body),
    };
    super::persist(call.app, vec![parameter], Vec::new()).await?;
    call.audit.resource_version = Some(plan.version.to_string());
    Ok(json!({"Version": plan.version, "Tier": plan.tier}))
}
