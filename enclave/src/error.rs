//! The enclave crate's one error type. Errors from the crates it uses keep their own codes
//! (`ESDK-AUTH`, `CMS-DECRYPT`, `KMS-AccessDeniedException`, `NSM-REFUSED`, `WIRE-TIMEOUT`), so
//! the user sees the code of what actually failed; the enclave adds codes only for its own
//! failures.

use std::borrow::Cow;

use cloister_common::ErrorCode;

/// Every code [`EnclaveError`] produces itself (wrapped errors keep theirs).
pub const CODES: &[&str] = &[
    "ENC-NO-KEY",
    "ENC-RECORD",
    "ENC-PROTOCOL",
    "ENC-CONFIG",
    "ENC-START",
    "ENC-POLICY",
    "ENC-BUDGET",
    "ENC-BUSY",
    "ENC-LIMIT",
];

/// A failure inside the enclave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// The message has no data key wrapped by a KMS key this enclave accepts.
    #[error("no aws-kms encrypted data key for a key this enclave accepts")]
    NoAcceptedKey,
    /// The data key could not be released (KMS refusal, transport, attestation, envelope).
    #[error("key release failed")]
    KeyRelease(#[source] cloister_kms_client::ClientError),
    /// The NSM failed outside a key release.
    #[error(transparent)]
    Nsm(#[from] cloister_nsm::NsmError),
    /// A sealed message is malformed or fails authentication.
    #[error(transparent)]
    Message(#[from] cloister_esdk::EsdkError),
    /// A decrypted record is not a JSON object, or not one the operation can use. The reason
    /// says what was wrong, never what the record holds.
    #[error("record {line} of the message: {reason}")]
    Record {
        /// 1-based line number.
        line: usize,
        /// What was wrong (static text: no record content).
        reason: &'static str,
    },
    /// The job asks for something the image's disclosure policy does not allow.
    #[error("refused by the disclosure policy: {0}")]
    Policy(String),
    /// The policy's budget of jobs for this key and window is spent.
    #[error("the budget of {jobs} {op} jobs per {window_secs} s for this key is spent")]
    Budget {
        /// The operation.
        op: &'static str,
        /// Jobs allowed per window.
        jobs: u32,
        /// The window.
        window_secs: u64,
    },
    /// The enclave already serves as many jobs as its configuration allows.
    #[error("the enclave is serving its {0} jobs at once; try again later")]
    Busy(u32),
    /// A job went past a bound of the policy (groups) or of the enclave (frame sizes).
    #[error("limit: {0}")]
    Limit(String),
    /// The connection to the host failed or carried a malformed frame.
    #[error(transparent)]
    Wire(#[from] cloister_wire::WireError),
    /// The host broke the protocol's order.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The image's configuration is unreadable or invalid (the message names the field).
    #[error("configuration: {0}")]
    Config(String),
    /// The enclave could not start: a mount, a module, a file of the image, an inherited
    /// descriptor.
    #[error("start: {what}")]
    Start {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<cloister_kms_client::ClientError> for EnclaveError {
    fn from(e: cloister_kms_client::ClientError) -> Self {
        Self::KeyRelease(e)
    }
}

impl ErrorCode for EnclaveError {
    fn code(&self) -> Cow<'static, str> {
        match self {
            Self::NoAcceptedKey => "ENC-NO-KEY".into(),
            Self::KeyRelease(e) => e.code(),
            Self::Nsm(e) => e.code(),
            Self::Message(e) => ErrorCode::code(e),
            Self::Record { .. } => "ENC-RECORD".into(),
            Self::Policy(_) => "ENC-POLICY".into(),
            Self::Budget { .. } => "ENC-BUDGET".into(),
            Self::Busy(_) => "ENC-BUSY".into(),
            Self::Limit(_) => "ENC-LIMIT".into(),
            Self::Wire(e) => ErrorCode::code(e),
            Self::Protocol(_) => "ENC-PROTOCOL".into(),
            Self::Config(_) => "ENC-CONFIG".into(),
            Self::Start { .. } => "ENC-START".into(),
        }
    }

    /// A message that fails to authenticate or holds a bad record is reported and skipped; the
    /// job goes on. Anything else (no key, a refused release, the host's connection) ends it.
    fn is_fatal(&self) -> bool {
        !matches!(self, Self::Message(_) | Self::Record { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_codes_and_only_message_errors_are_not_fatal() {
        let cms = cloister_attestation::recipient::CmsError::Decrypt("RSA-OAEP".into());
        let e = EnclaveError::from(cloister_kms_client::ClientError::from(cms));
        assert_eq!(e.code(), "CMS-DECRYPT");
        assert!(e.is_fatal());
        let e = EnclaveError::from(cloister_esdk::EsdkError::Commitment);
        assert_eq!(e.code(), "ESDK-COMMITMENT");
        assert!(!e.is_fatal());
        assert!(
            !EnclaveError::Record {
                line: 3,
                reason: "x"
            }
            .is_fatal()
        );
        for own in [
            EnclaveError::NoAcceptedKey,
            EnclaveError::Record {
                line: 1,
                reason: "x",
            },
            EnclaveError::Policy("x".into()),
            EnclaveError::Budget {
                op: "stats",
                jobs: 1,
                window_secs: 1,
            },
            EnclaveError::Busy(1),
            EnclaveError::Limit("x".into()),
            EnclaveError::Protocol("x"),
            EnclaveError::Config("x".into()),
            EnclaveError::Start {
                what: "x".into(),
                source: std::io::Error::other("y"),
            },
        ] {
            assert!(CODES.contains(&&*own.code()), "{}", own.code());
        }
        let readme = include_str!("../README.md");
        for code in CODES {
            assert!(
                readme.contains(&format!("`{code}`")),
                "{code} not in README"
            );
        }
        assert_eq!(
            EnclaveError::from(cloister_wire::WireError::Closed).code(),
            "WIRE-CLOSED"
        );
    }
}
