//! The KMS client's one error type, with stable codes.

use std::borrow::Cow;

use cloister_common::ErrorCode;

/// Every code [`ClientError`] produces itself. Wrapped NSM and CMS errors keep their own codes
/// (`NSM-*`, `CMS-*`); a KMS service error is `KMS-` followed by AWS's error name.
pub const CODES: &[&str] = &[
    "KMS-<AWS-NAME>",
    "KMS-TRANSPORT",
    "KMS-PROTOCOL",
    "KMS-CONFIG",
    "KMS-KEY-LENGTH",
    "KMS-PLAINTEXT-RETURNED",
    "KMS-MISMATCH",
];

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The KMS answered with an error.
    #[error("{name}: {message}")]
    Service {
        /// AWS error name, e.g. `AccessDeniedException`.
        name: String,
        /// Message.
        message: String,
        /// HTTP status.
        status: u16,
    },
    /// The connection failed or broke.
    #[error("KMS transport ({context})")]
    Transport {
        /// What was being done.
        context: &'static str,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer was not the JSON expected.
    #[error("KMS protocol: {0}")]
    Protocol(String),
    /// The client is configured wrongly (endpoint, CA, server name).
    #[error("KMS client configuration: {0}")]
    Config(String),
    /// A data key of the wrong length.
    #[error("the KMS returned a {0}-byte data key, expected 32")]
    KeyLength(usize),
    /// A request with a Recipient was answered with plaintext: whoever answered is not a KMS
    /// honouring the attestation, and the key must not be used.
    #[error("the KMS returned Plaintext instead of CiphertextForRecipient")]
    PlaintextReturned,
    /// The answer is about another resource than the one asked for (a secret's ARN).
    #[error("the answer does not match the request: {0}")]
    Mismatch(String),
    /// The NSM could not attest the release key.
    #[error(transparent)]
    Nsm(#[from] cloister_nsm::NsmError),
    /// The recipient envelope could not be made or opened.
    #[error(transparent)]
    Cms(#[from] cloister_attestation::recipient::CmsError),
}

impl ClientError {
    pub(crate) fn transport<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        context: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |e| Self::Transport {
            context,
            source: e.into(),
        }
    }

    /// The AWS error name of a service error.
    pub fn aws_name(&self) -> Option<&str> {
        match self {
            Self::Service { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether trying again may succeed: throttling, 5xx answers, broken connections.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Service { name, status, .. } => *status >= 500 || name == "ThrottlingException",
            Self::Transport { .. } => true,
            _ => false,
        }
    }
}

impl ErrorCode for ClientError {
    fn code(&self) -> Cow<'static, str> {
        match self {
            Self::Service { name, .. } => format!("KMS-{name}").into(),
            Self::Transport { .. } => "KMS-TRANSPORT".into(),
            Self::Protocol(_) => "KMS-PROTOCOL".into(),
            Self::Config(_) => "KMS-CONFIG".into(),
            Self::KeyLength(_) => "KMS-KEY-LENGTH".into(),
            Self::PlaintextReturned => "KMS-PLAINTEXT-RETURNED".into(),
            Self::Mismatch(_) => "KMS-MISMATCH".into(),
            Self::Nsm(e) => e.code(),
            Self::Cms(e) => ErrorCode::code(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_listed_and_wrapped_codes_are_kept() {
        let svc = |name: &str, status| ClientError::Service {
            name: name.into(),
            message: String::new(),
            status,
        };
        assert_eq!(
            svc("AccessDeniedException", 400).code(),
            "KMS-AccessDeniedException"
        );
        let own = [
            ClientError::transport("x")(std::io::Error::other("y")),
            ClientError::Protocol("x".into()),
            ClientError::Config("x".into()),
            ClientError::KeyLength(16),
            ClientError::PlaintextReturned,
            ClientError::Mismatch("x".into()),
        ];
        for e in own {
            assert!(CODES.contains(&&*e.code()), "{}", e.code());
        }
        let cms = ClientError::from(cloister_attestation::recipient::CmsError::Decrypt(
            "x".into(),
        ));
        assert_eq!(cms.code(), "CMS-DECRYPT");
        let nsm = ClientError::from(cloister_nsm::NsmError::Refused(
            cloister_nsm::api::ErrorCode::InvalidArgument,
        ));
        assert_eq!(nsm.code(), "NSM-REFUSED");
    }

    #[test]
    fn retryable_errors() {
        let svc = |name: &str, status| ClientError::Service {
            name: name.into(),
            message: String::new(),
            status,
        };
        assert!(svc("ThrottlingException", 400).retryable());
        assert!(svc("KMSInternalException", 500).retryable());
        assert!(!svc("AccessDeniedException", 400).retryable());
        assert!(ClientError::transport("x")(std::io::Error::other("y")).retryable());
        assert!(!ClientError::PlaintextReturned.retryable());
    }
}
