//! AWS Systems Manager Parameter Store on cloister-kms: the JSON 1.1 API
//! (`X-Amz-Target: AmazonSSM.*`, SigV4 service `ssm`) that boto3 and aws-cli speak.
//! SecureString values are stored as real KMS ciphertext under the encryption context
//! `{"PARAMETER_ARN": arn}`, encrypted and decrypted for the caller with `kms:ViaService`, so
//! `WithDecryption=false` returns a ciphertext that KMS Decrypt opens (with a `Recipient`, in
//! an attested enclave).

pub(crate) mod model;

use serde_json::Value;

use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::ops::via::ViaCall;

/// Runs Parameter Store operation `op`.
pub(crate) async fn dispatch(op: &str, call: ViaCall<'_>) -> Result<Value> {
    let _ = call;
    Err(unknown(op))
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

/// Decodes `body` as operation `op`'s typed input, as the server would before running it.
pub(crate) fn decode(op: &str, body: &[u8]) -> Result<()> {
    let _ = Body::parse(body)?;
    Err(unknown(op))
}
