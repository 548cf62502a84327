//! AWS Secrets Manager on cloister-kms: the JSON 1.1 API (`X-Amz-Target: secretsmanager.*`,
//! SigV4 service `secretsmanager`) that boto3 and aws-cli speak, with values envelope-encrypted
//! as AWS does (a fresh data key from the secret's KMS key under the encryption context
//! `{SecretARN, SecretVersionId}`, asked for the caller with `kms:ViaService`), and one
//! extension: `GetSecretValue` with a `Recipient` answers `CiphertextForRecipient`, so a
//! secret whose key policy wants attestation reaches only an attested enclave.
//!
//! Modules: `names` (names, ARNs, `SecretId`), `envelope` (sealing a value), `versions`
//! (staging labels), `common` (what operations share), `values` (operations on values),
//! `list` (filters, paging, metadata answers), `manage` (operations on metadata), `password` (GetRandomPassword).
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
mod password;
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
        "GetRandomPassword" => password::get_random_password(call),
        _ => Err(unknown(op)),
    }
}

/// Whether operation `op` with `body` answers with a secret's value in the clear.
pub(crate) fn returns_plaintext(op: &str, body: &Body) -> bool {
    match op {
        "GetSecretValue" => !body.has("Recipient"),
        "BatchGetSecretValue" | "GetRandomPassword" => true,
        _ => false,
    }
}

/// Secrets Manager operations cloister-kms does not run: resource policies (it has no IAM;
/// the KMS key policy is what guards a secret's value), replication to other regions, and
/// rotation (see RotateSecret).
const NOT_SUPPORTED: [&str; 8] = [
    "GetResourcePolicy",
    "PutResourcePolicy",
    "DeleteResourcePolicy",
    "ValidateResourcePolicy",
    "ReplicateSecretToRegions",
    "RemoveRegionsFromReplication",
    "StopReplicationToReplica",
    "CancelRotateSecret",
];

/// The answer to an operation this service does not run: InvalidRequestException naming the
/// reason for an AWS operation it leaves out (so a user learns it is known, not misspelt),
/// UnknownOperationException for anything else.
fn unknown(op: &str) -> KmsError {
    if NOT_SUPPORTED.contains(&op) {
        return crate::error::SecretsError::InvalidRequest(format!(
            "{op} is not supported by cloister-kms: it has no resource policies (the KMS key policy guards a secret's value), no replication and no rotation"
        ))
        .into();
    }
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
        "GetRandomPassword" => body.decode::<password::PasswordInput>().map(drop),
        _ => Err(unknown(op)),
    }
}
