//! AWS Systems Manager Parameter Store on cloister-kms: the JSON 1.1 API
//! (`X-Amz-Target: AmazonSSM.*`, SigV4 service `ssm`) that boto3 and aws-cli speak.
//! SecureString values are stored as real KMS ciphertext under the encryption context
//! `{"PARAMETER_ARN": arn}`, encrypted and decrypted for the caller with `kms:ViaService`, so
//! `WithDecryption=false` returns a ciphertext that KMS Decrypt opens (with a `Recipient`, in
//! an attested enclave).
//!
//! Each operation first checks its whole input without looking at any parameter (what
//! [`decode`] runs, for the fuzz target), then reads or changes the parameters.

mod answer;
mod delete;
mod describe;
mod filters;
mod labels;
pub(crate) mod model;
mod names;
mod paging;
mod put;
mod read;
mod tags;
mod values;

use serde_json::Value;

use crate::error::{KmsError, Result};
use crate::input::{Body, Member};
use crate::ops::via::ViaCall;
use model::Parameter;

/// Runs Parameter Store operation `op`.
pub(crate) async fn dispatch(op: &str, call: ViaCall<'_>) -> Result<Value> {
    match op {
        "PutParameter" => put::put_parameter(call).await,
        "GetParameter" => read::get_parameter(call),
        "GetParameters" => read::get_parameters(call),
        "GetParametersByPath" => read::get_parameters_by_path(call),
        "GetParameterHistory" => read::get_parameter_history(call),
        "DeleteParameter" => delete::delete_parameter(call).await,
        "DeleteParameters" => delete::delete_parameters(call).await,
        "DescribeParameters" => describe::describe_parameters(call),
        "LabelParameterVersion" => labels::label(call).await,
        "UnlabelParameterVersion" => labels::unlabel(call).await,
        "AddTagsToResource" => tags::add(call).await,
        "RemoveTagsFromResource" => tags::remove(call).await,
        "ListTagsForResource" => tags::list_tags(call),
        _ => Err(unknown(op)),
    }
}

/// Stores `put` (created or replaced) and deletes the parameters `deleted` names, all or none
/// and durable when it returns, then applies both to the in-memory state.
pub(super) async fn persist(
    app: &crate::app::App,
    put: Vec<model::Parameter>,
    deleted: Vec<String>,
) -> Result<()> {
    app.writer
        .put_parameters(put.clone(), deleted.clone())
        .await?;
    app.apply(|s| {
        for arn in &deleted {
            s.parameters.remove(arn);
        }
        for p in put {
            s.parameters.insert(p.arn.clone(), p);
        }
    });
    Ok(())
}

/// Whether operation `op` with `body` answers with SecureString values in the clear.
pub(crate) fn returns_plaintext(op: &str, body: &Body) -> bool {
    matches!(
        op,
        "GetParameter" | "GetParameters" | "GetParametersByPath" | "GetParameterHistory"
    ) && body.is_true("WithDecryption")
}

/// The answer to an operation this service does not run.
fn unknown(op: &str) -> KmsError {
    KmsError::UnknownOperation(format!("Unknown operation AmazonSSM.{op}"))
}

/// Decodes `body` as operation `op`'s typed input and checks it as the operation does before
/// it reads any parameter; the error is the answer the server would give.
pub(crate) fn decode(op: &str, body: &[u8]) -> Result<()> {
    let body = Body::parse(body)?;
    match op {
        "PutParameter" => put::parse(&body.decode()?).map(drop),
        "GetParameter" => read::parse_get(&body.decode()?).map(drop),
        "GetParameters" => read::parse_get_many(&body.decode()?).map(drop),
        "GetParametersByPath" => read::parse_by_path(&body.decode()?).map(drop),
        "GetParameterHistory" => read::parse_history(&body.decode()?).map(drop),
        "DeleteParameter" => delete::parse_one(&body.decode()?).map(drop),
        "DeleteParameters" => delete::parse_many(&body.decode()?).map(drop),
        "DescribeParameters" => describe::parse(&body.decode()?).map(drop),
        "LabelParameterVersion" => labels::parse(&body.decode()?, false).map(drop),
        "UnlabelParameterVersion" => labels::parse(&body.decode()?, true).map(drop),
        "AddTagsToResource" => tags::parse_add(&body.decode()?).map(drop),
        "RemoveTagsFromResource" => tags::parse_remove(&body.decode()?).map(drop),
        "ListTagsForResource" => tags::parse_list(&body.decode()?).map(drop),
        _ => Err(unknown(op)),
    }
}

/// A list member: absent, a list of the expected items, or refused (SerializationException).
fn list<'a, T>(m: &'a Member<Vec<T>>, name: &str) -> Result<Option<&'a Vec<T>>> {
    match m {
        Member::Absent => Ok(None),
        Member::Given(v) => Ok(Some(v)),
        Member::Mistyped => Err(KmsError::Serialization(format!(
            "{name} must be a list of the member's type"
        ))),
    }
}

/// A required list of 1..=max items (ValidationException otherwise), AWS's member name
/// `member` in messages.
fn sized_list<'a, T>(
    m: &'a Member<Vec<T>>,
    name: &str,
    member: &str,
    max: usize,
) -> Result<&'a Vec<T>> {
    let v = list(m, name)?.ok_or_else(|| {
        KmsError::validation(format!(
            "Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    if v.is_empty() || v.len() > max {
        return Err(KmsError::validation(format!(
            "Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max} and greater than or equal to 1"
        )));
    }
    Ok(v)
}

/// Checks each name of a list: 1..=2048 characters.
fn names_in(list: &[String], member: &str) -> Result<()> {
    for n in list {
        if n.is_empty() || n.chars().count() > 2048 {
            return Err(KmsError::validation(format!(
                "Value '{n}' at '{member}' failed to satisfy constraint: Member must have length between 1 and 2048"
            )));
        }
    }
    Ok(())
}

/// The parameter stored under `arn`, if any; a row that failed its integrity check is
/// refused.
fn find(call: &ViaCall<'_>, arn: &str) -> Result<Option<Parameter>> {
    if let Some(e) = call.app.parameter_refused(arn) {
        return Err(e);
    }
    Ok(call.app.state().parameters.get(arn).cloned())
}

/// The ARN prefix of every parameter of the request's region.
fn arn_prefix(call: &ViaCall<'_>) -> String {
    names::arn(call.region, &call.app.cfg.account, "")
}

/// Records the parameter (and version) a request names in its audit entry; the first one
/// named when a request names several.
fn audit(call: &mut ViaCall<'_>, arn: &str, version: Option<u64>) {
    if call.audit.resource_arn.is_none() {
        call.audit.resource_arn = Some(arn.to_owned());
        call.audit.resource_version = version.map(|v| v.to_string());
    }
}

/// Epoch seconds (with milliseconds), as AWS's JSON protocol writes timestamps.
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::decode;

    fn code(op: &str, body: &str) -> &'static str {
        decode(op, body.as_bytes()).unwrap_err().aws_name()
    }

    #[test]
    fn decode_checks_each_operation_before_any_parameter_is_read() {
        decode(
            "PutParameter",
            br#"{"Name":"/a","Value":"v","Type":"String"}"#,
        )
        .unwrap();
        decode(
            "GetParameter",
            br#"{"Name":"/a:prod","WithDecryption":true}"#,
        )
        .unwrap();
        decode("LabelParameterVersion", br#"{"Name":"/a","Labels":["x"]}"#).unwrap();
        assert_eq!(
            code("PutParameter", r#"{"Name":"/a"}"#),
            "ValidationException"
        );
        assert_eq!(
            code(
                "PutParameter",
                r#"{"Name":"/a","Value":"v","AllowedPattern":"("}"#
            ),
            "InvalidAllowedPatternException"
        );
        assert_eq!(
            code("PutParameter", r#"{"Name":5,"Value":"v"}"#),
            "SerializationException"
        );
        assert_eq!(
            code("GetParameters", r#"{"Names":[]}"#),
            "ValidationException"
        );
        assert_eq!(
            code("DeleteParameters", r#"{"Names":[1]}"#),
            "SerializationException"
        );
        assert_eq!(
            code("DescribeParameters", r#"{"NextToken":"x"}"#),
            "InvalidNextToken"
        );
        assert_eq!(
            code("GetParametersByPath", r#"{"Path":"/a","MaxResults":11}"#),
            "ValidationException"
        );
        assert_eq!(
            code("UnlabelParameterVersion", r#"{"Name":"/a","Labels":["x"]}"#),
            "ValidationException"
        );
        assert_eq!(
            code(
                "ListTagsForResource",
                r#"{"ResourceType":"Document","ResourceId":"x"}"#
            ),
            "InvalidResourceType"
        );
        assert_eq!(code("GetParameter", "["), "SerializationException");
        assert_eq!(code("Nope", "{}"), "UnknownOperationException");
    }
}
