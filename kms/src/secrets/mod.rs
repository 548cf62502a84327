//! AWS Secrets Manager on cloister-kms: the JSON 1.1 API (`X-Amz-Target: secretsmanager.*`,
//! SigV4 service `secretsmanager`) that boto3 and aws-cli speak, with values envelope-encrypted
//! as AWS does (a fresh data key from the secret's KMS key under the encryption context
//! `{SecretARN, SecretVersionId}`, asked for the caller with `kms:ViaService`), and one
//! extension: `GetSecretValue` with a `Recipient` answers `CiphertextForRecipient`, so a
//! secret whose key policy wants attestation reaches only an attested enclave.
//!
//! Modules: `names` (names, ARNs, `SecretId`), `envelope` (sealing a value), `versions`
//! (staging labels), `common` (what operations share), `values` (operations on values),
//! `list` (filters, paging, metadata answers), `manage` (operations on metadata).
//!
//! Authorization: cloister-kms has no IAM. The KMS key policy decides every use of a value
//! (writes need `kms:GenerateDataKey`, reads `kms:Decrypt`, for the caller through
//! `secretsmanager.<region>.amazonaws.com`); operations on metadata (DescribeSecret,
//! ListSecrets, tags, deletion...) are open to every authenticated principal of the account.

mod common;
mod envelope;
mod list;
mod manage;
pub(crate) mod model;
mod names;
mod values;
mod versions;

use serde_json::Value;

pub(crate) use self::manage::housekeeping;
use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::ops::via::ViaCall;

/// Runs Secrets Manager operation `op`.
pub(crate) async fn dispatch(op: &str, call: ViaCall<'_>) -> Result<Value> {
    match op {
        "CreateSecret" => values::create_secret(call).await,
        "GetSecretValue" => values::get_secret_value(call),
        "BatchGetSecretValue" => values::batch_get_secret_value(call),
        "PutSecretValue" => values::put_secret_value(call).await,
        "UpdateSecret" => values::update_secret(call).await,
        "UpdateSecretVersionStage" => manage::update_secret_version_stage(call).await,
        "DescribeSecret" => manage::describe_secret(call),
        "ListSecrets" => list::list_secrets(call),
        "ListSecretVersionIds" => manage::list_secret_version_ids(call),
        "DeleteSecret" => manage::delete_secret(call).await,
        "RestoreSecret" => manage::restore_secret(call).await,
        "TagResource" => manage::tag_resource(call).await,
        "UntagResource" => manage::untag_resource(call).await,
        "RotateSecret" => manage::rotate_secret(call),
        _ => Err(unknown(op)),
    }
}

/// Whether operation `op` with `body` answers with a secret's value in the clear.
pub(crate) fn returns_plaintext(op: &str, body: &Body) -> bool {
    match op {
        "GetSecretValue" => !body.has("Recipient"),
        "BatchGetSecretValue" => true,
        _ => false,
    }
}

/// The answer to an operation this service does not run.
fn unknown(op: &str) -> KmsError {
    KmsError::UnknownOperation(format!("Unknown operation secretsmanager.{op}"))
}

/// Decodes `body` as operation `op`'s typed input, as the server would before running it.
pub(crate) fn decode(op: &str, body: &[u8]) -> Result<()> {
    let body = Body::parse(body)?;
    match op {
        "CreateSecret" => body.decode::<values::CreateSecretInput>().map(drop),
        "GetSecretValue" => body.decode::<values::GetSecretValueInput>().map(drop),
        "BatchGetSecretValue" => body.decode::<values::BatchGetSecretValueInput>().map(drop),
        "PutSecretValue" => body.decode::<values::PutSecretValueInput>().map(drop),
        "UpdateSecret" => body.decode::<values::UpdateSecretInput>().map(drop),
        "UpdateSecretVersionStage" => body.decode::<manage::UpdateStageInput>().map(drop),
        "DescribeSecret" | "RestoreSecret" => body.decode::<manage::SecretIdInput>().map(drop),
        "ListSecrets" => body.decode::<list::ListSecretsInput>().map(drop),
        "ListSecretVersionIds" => body.decode::<manage::ListVersionsInput>().map(drop),
        "DeleteSecret" => body.decode::<manage::DeleteSecretInput>().map(drop),
        "TagResource" => body.decode::<manage::TagInputs>().map(drop),
        "UntagResource" => body.decode::<manage::UntagInput>().map(drop),
        "RotateSecret" => body.decode::<manage::RotateInput>().map(drop),
        _ => Err(unknown(op)),
    }
}
