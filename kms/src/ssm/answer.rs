//! How parameters are answered: the `Parameter`, `ParameterHistory` and `ParameterMetadata`
//! shapes of botocore's model, and a SecureString's value, opened for the caller
//! (`WithDecryption`) or given as the stored KMS ciphertext in base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::model::{Parameter, ParameterType, ParameterVersion};
use super::names::Selector;
use super::secs;
use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result, SsmError};
use crate::ops::via::{self, ViaCall};

/// The encryption context of a SecureString: `{"PARAMETER_ARN": arn}`, as AWS binds it.
pub(super) fn context(arn: &str) -> EncryptionContext {
    EncryptionContext::from([("PARAMETER_ARN".to_owned(), arn.to_owned())])
}

/// The value of version `v` of the parameter `arn`: a SecureString's KMS ciphertext (base64)
/// unless `decrypt`, then the plaintext, opened with kms:Decrypt for the caller through
/// Parameter Store (AccessDeniedException when the key policy refuses the caller, InvalidKeyId
/// when the key cannot decrypt).
pub(super) fn value(
    call: &mut ViaCall<'_>,
    arn: &str,
    v: &ParameterVersion,
    decrypt: bool,
) -> Result<Zeroizing<String>> {
    if v.kind != ParameterType::SecureString || !decrypt {
        return Ok(Zeroizing::new(v.value.clone()));
    }
    let blob = STANDARD
        .decode(&v.value)
        .map_err(|_| KmsError::Internal(format!("the stored value of {arn} is not base64")))?;
    let (_, plain) = call
        .decrypt(&blob, &context(arn), None)
        .map_err(|e| via::kms_refusal(e, |m| SsmError::InvalidKeyId(m).into()))?;
    let text = std::str::from_utf8(&plain)
        .map_err(|_| KmsError::Internal(format!("the value of {arn} is not UTF-8")))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The `Parameter` shape of version `v`.
pub(super) fn parameter(
    call: &mut ViaCall<'_>,
    p: &Parameter,
    v: &ParameterVersion,
    selector: Option<&Selector>,
    decrypt: bool,
) -> Result<Value> {
    let value = value(call, &p.arn, v, decrypt)?;
    let mut out = json!({
        "Name": p.body.name,
        "Type": v.kind.as_str(),
        "Value": value.as_str(),
        "Version": v.version,
        "LastModifiedDate": secs(v.modified_ms),
        "ARN": p.arn,
        "DataType": data_type(v),
    });
    if let (Some(s), Some(o)) = (selector, out.as_object_mut()) {
        o.insert("Selector".into(), Value::String(s.text()));
    }
    Ok(out)
}

fn data_type(v: &ParameterVersion) -> &str {
    if v.data_type.is_empty() {
        "text"
    } else {
        &v.data_type
    }
}

fn tier(v: &ParameterVersion) -> &str {
    if v.tier.is_empty() {
        super::values::STANDARD
    } else {
        &v.tier
    }
}

/// The members `ParameterHistory` and `ParameterMetadata` share.
fn common(p: &Parameter, v: &ParameterVersion) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("Name".into(), json!(p.body.name));
    o.insert("Type".into(), json!(v.kind.as_str()));
    if let Some(k) = &v.key_id {
        o.insert("KeyId".into(), json!(k));
    }
    o.insert("LastModifiedDate".into(), json!(secs(v.modified_ms)));
    o.insert("LastModifiedUser".into(), json!(v.modified_by));
    if let Some(d) = &v.description {
        o.insert("Description".into(), json!(d));
    }
    if let Some(a) = &v.allowed_pattern {
        o.insert("AllowedPattern".into(), json!(a));
    }
    o.insert("Version".into(), json!(v.version));
    o.insert("Tier".into(), json!(tier(v)));
    o.insert("Policies".into(), json!([]));
    o.insert("DataType".into(), json!(data_type(v)));
    o
}

/// The `ParameterHistory` shape of version `v`.
pub(super) fn history(
    call: &mut ViaCall<'_>,
    p: &Parameter,
    v: &ParameterVersion,
    decrypt: bool,
) -> Result<Value> {
    let value = value(call, &p.arn, v, decrypt)?;
    let mut o = common(p, v);
    o.insert("Value".into(), json!(value.as_str()));
    o.insert("Labels".into(), json!(v.labels));
    Ok(Value::Object(o))
}

/// The `ParameterMetadata` shape of the parameter's latest version.
pub(super) fn metadata(p: &Parameter, v: &ParameterVersion) -> Value {
    let mut o = common(p, v);
    o.insert("ARN".into(), json!(p.arn));
    Value::Object(o)
}
