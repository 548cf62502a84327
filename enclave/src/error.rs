//! The enclave crate's one error type, with stable codes.

/// A failure inside the enclave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// The NSM answered with an error code.
    #[error("the NSM refused the request: {0}")]
    Nsm(&'static str),
    /// The NSM could not be reached, or answered something unexpected.
    #[error("NSM transport: {0}")]
    NsmTransport(String),
    /// The KMS refused or failed the attested Decrypt.
    #[error("KMS {code}: {message}")]
    Kms {
        /// AWS error name or transport code.
        code: String,
        /// Message.
        message: String,
    },
    /// The data key could not be released for another reason.
    #[error("key release: {0}")]
    KeyRelease(String),
    /// A sealed message is malformed or fails authentication.
    #[error("{0}")]
    Message(#[from] cloister_esdk::EsdkError),
    /// A decrypted record is not a JSON object.
    #[error("record {line} of the message is not a JSON object")]
    Record {
        /// 1-based line number.
        line: usize,
    },
    /// The host broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl EnclaveError {
    /// Stable short code.
    pub fn code(&self) -> String {
        match self {
            Self::Nsm(_) => "ENC-NSM".into(),
            Self::NsmTransport(_) => "ENC-NSM-TRANSPORT".into(),
            Self::Kms { code, .. } => format!("ENC-KMS-{code}"),
            Self::KeyRelease(_) => "ENC-KEY-RELEASE".into(),
            Self::Message(e) => e.code().into(),
            Self::Record { .. } => "ENC-RECORD".into(),
            Self::Protocol(_) => "ENC-PROTOCOL".into(),
        }
    }
}
