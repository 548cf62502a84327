//! AWS Secrets Manager on cloister-kms: the JSON 1.1 API (`X-Amz-Target: secretsmanager.*`,
//! SigV4 service `secretsmanager`) that boto3 and aws-cli speak, with values envelope-encrypted
//! as AWS does (a fresh data key from the secret's KMS key under the encryption context
//! `{SecretARN, SecretVersionId}`, asked for the caller with `kms:ViaService`), and one
//! extension: `GetSecretValue` with a `Recipient` answers `CiphertextForRecipient`, so a
//! secret whose key policy wants attestation reaches only an attested enclave.

pub(crate) mod model;

use serde_json::Value;

use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::ops::via::ViaCall;

/// Runs Secrets Manager operation `op`.
pub(crate) async fn dispatch(op: &str, call: ViaCall<'_>) -> Result<Value> {
    let _ = call;
    Err(unknown(op))
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
    let _ = Body::parse(body)?;
    Err(unknown(op))
}
