//! The messages of the host<->enclave protocol.
//!
//! A job flows as: host → `Job`, then `Sealed` messages (each an AWS Encryption SDK message), then
//! `EndOfInput`; enclave → results as they are produced (`Rows` of JSON text, `Resealed`
//! messages) and `Progress` (counts only), then `Done` or `Failed`. A message that fails
//! authentication or holds a bad record yields `MessageFailed` naming it, and nothing from it.
//! A connection may instead start with `Ping` (the proxy's health probe): the enclave answers
//! `Pong` and closes, without taking a job slot. An enclave older than `Ping` answers it
//! `Failed` (a malformed frame to it), which still proves it serves.
//! What each operation may read and emit is not in these messages: it is the enclave's measured
//! disclosure policy, which refuses a job asking for more before any record is decrypted.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The version this build speaks. A peer with another version is refused.
pub const PROTOCOL_VERSION: u16 = 2;

/// What travels in one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version.
    pub v: u16,
    /// The message.
    pub msg: Message,
}

/// Credentials the job carries for the enclave's KMS calls. They are the host's own: not secret
/// from the host, and useless without a valid attestation document for keys whose policy
/// requires one; still, they are credentials, so they are zeroized and never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsAccess {
    /// Region (SigV4 scope).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
    /// Session token, if any.
    pub session_token: Option<SecretString>,
}

/// A string that is zeroized when dropped and shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `s`.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the enclave computes over the records (the job's request; the enclave's policy decides
/// whether it is allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Operation {
    /// Aggregates (count, and those of numeric fields the policy names), optionally grouped by a
    /// field the policy allows; groups smaller than the policy's k are folded or suppressed.
    Stats {
        /// Group records by this field's value.
        group_by: Option<String>,
        /// Aggregate these fields (empty: every field the policy allows).
        fields: Vec<String>,
    },
    /// The records with the policy's masked fields masked, its clear fields kept, and every
    /// other field dropped.
    Mask,
    /// The records with the policy's fields replaced by deterministic tokens.
    Tokenize {
        /// The tokenization key, wrapped by the KMS key the policy names (a `CiphertextBlob`).
        #[serde(with = "serde_bytes")]
        token_key: Vec<u8>,
    },
    /// The records re-encrypted under a new data key of `target_key`.
    Reseal {
        /// The KMS key ARN to reseal to (the policy lists the allowed ones).
        target_key: String,
    },
    /// Fetch the secrets the enclave's measured configuration lists into the enclave (no sealed
    /// input); the result is one report row per secret, never a value.
    Secrets,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Host → enclave: start a job.
    Job {
        /// Job id, chosen by the host.
        id: u64,
        /// The operation.
        op: Operation,
        /// Credentials for the KMS.
        kms: KmsAccess,
    },
    /// Host → enclave: one sealed message (AWS Encryption SDK format).
    Sealed {
        /// Its name, for errors (e.g. the file name).
        name: String,
        /// The message bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Host → enclave: no more input.
    EndOfInput,
    /// Enclave → host: how far the job is.
    Progress {
        /// Messages processed.
        messages: u64,
        /// Records processed.
        records: u64,
    },
    /// Enclave → host: result rows, each a JSON object as text.
    Rows {
        /// The rows.
        rows: Vec<String>,
    },
    /// Enclave → host: one input message re-encrypted (an Encryption SDK message).
    Resealed {
        /// The input message's name.
        name: String,
        /// The new message.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Enclave → host: a message failed (authentication, key release); nothing from it counts.
    MessageFailed {
        /// The message's name.
        name: String,
        /// Stable error code.
        code: String,
        /// Why.
        reason: String,
    },
    /// Enclave → host: the job finished.
    Done {
        /// Messages that succeeded.
        messages: u64,
        /// Records processed.
        records: u64,
    },
    /// Either way: the job (or the connection) failed.
    Failed {
        /// Stable error code.
        code: String,
        /// Why.
        reason: String,
    },
    /// Host → enclave, instead of a `Job`: a health probe.
    Ping,
    /// Enclave → host: the answer to `Ping`.
    Pong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_in_debug_output() {
        let access = KmsAccess {
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG".into()),
            session_token: Some(SecretString::new("FwoGZXIvYXdzE".into())),
        };
        let shown = format!("{access:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(!shown.contains("FwoGZXIvYXdzE"), "{shown}");
        assert_eq!(access.secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG");
    }
}
