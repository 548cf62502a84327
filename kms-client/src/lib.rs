//! A client for the AWS KMS JSON 1.1 protocol: what cloister's host (seal/open) and enclave
//! (attested Decrypt) use to talk to cloister-kms or real AWS KMS.
//!
//! - [`connector`]: how bytes reach the KMS (TCP; TLS pinned to a CA over any inner connector,
//!   which in the enclave is the host's relay).
//! - [`client`]: SigV4-signed calls (`cloister-sigv4`, the same canonicalisation the server
//!   verifies) over one kept-alive connection, retried with exponential backoff and full jitter
//!   ([`retry`]) on throttling, 5xx answers and broken connections.
//! - [`ops`]: the typed operations (`generate_data_key`, `encrypt`, `decrypt`,
//!   `decrypt_for_recipient`), with keys in zeroizing types; the attested release makes its RSA
//!   key, asks the NSM for a document and opens the CMS envelope here.
//! - [`secrets`]: Secrets Manager and Parameter Store calls ([`Api`] picks the service's target
//!   prefix and signing name), including the attested `GetSecretValue` with a `Recipient`.
//!
//! The crate trusts only the CA certificates it is given for TLS; what a KMS answers is parsed
//! as untrusted input.

pub mod client;
pub mod connector;
pub mod error;
pub mod ops;
pub mod retry;
pub mod secrets;

pub use client::{Api, KmsClient, b64, blob};
pub use connector::{Connecting, Connector, Stream, TcpConnector, TlsConnector};
pub use error::{CODES, ClientError};
pub use ops::{Ciphertext, DataKey, Decrypted, Encrypted, EncryptionContext, GeneratedDataKey};
pub use retry::Retry;

/// Reads an answer as the client reads the answer to `op` with HTTP `status` (an error body for
/// any status but 200, else the operation's typed answer); for the fuzz target of what a KMS,
/// Secrets Manager or Parameter Store endpoint (or a relay in between) can send back. The
/// operations named are those the typed calls make (`GenerateDataKeyForRecipient` is
/// GenerateDataKey's answer to a request with a `Recipient`).
pub fn decode_answer(op: &str, status: u16, bytes: &[u8]) -> Result<(), ClientError> {
    if status != 200 {
        return Err(client::service_error(status, bytes));
    }
    ops::check_answer(op, bytes)
        .or_else(|| secrets::check_answer(op, bytes))
        .unwrap_or_else(|| Err(ClientError::Protocol(format!("no typed answer for {op}"))))
}

/// The operations [`decode_answer`] reads.
pub const ANSWERED_OPERATIONS: &[&str] = &[
    "GenerateDataKey",
    "GenerateDataKeyForRecipient",
    "GenerateDataKeyWithoutPlaintext",
    "Encrypt",
    "Decrypt",
    "GetSecretValue",
    "CreateSecret",
    "PutSecretValue",
    "DescribeSecret",
    "GetParameter",
];
pub use secrets::{Parameter, SecretData, SecretRef, SecretValue};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_the_typed_calls_read_them() {
        let secret = br#"{"ARN":"a","Name":"db","VersionId":"v1","CiphertextForRecipient":"AQID"}"#;
        assert!(decode_answer("GetSecretValue", 200, secret).is_ok());
        assert!(decode_answer("GetSecretValue", 200, br#"{"Name":"db"}"#).is_err());
        assert!(decode_answer("Encrypt", 200, br#"{"KeyId":"k","CiphertextBlob":"AQID"}"#).is_ok());
        assert!(decode_answer("Encrypt", 200, br#"{"KeyId":"k","CiphertextBlob":"%%"}"#).is_err());
        let refused = decode_answer(
            "Decrypt",
            400,
            br#"{"__type":"AccessDeniedException","Message":"no"}"#,
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("AccessDeniedException"),
            "{refused}"
        );
        for op in ANSWERED_OPERATIONS {
            assert!(
                !matches!(decode_answer(op, 200, b"{}"), Err(ClientError::Protocol(ref m)) if m.starts_with("no typed answer")),
                "{op}"
            );
        }
        assert!(decode_answer("ListKeys", 200, b"{}").is_err());
    }
}
