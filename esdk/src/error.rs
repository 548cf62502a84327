//! The crate's one error type, with stable codes.

/// Why a message could not be read, opened or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EsdkError {
    /// The bytes are not a message of a supported shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A suite or version cloister does not accept (non-committing suites included).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The data key does not match the message's key commitment.
    #[error("key commitment does not match: wrong data key or tampered header")]
    Commitment,
    /// An authentication tag or the signature does not verify.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// A cryptographic primitive failed while sealing.
    #[error("sealing failed: {0}")]
    Seal(String),
}

impl EsdkError {
    /// Stable short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "ESDK-FORMAT",
            Self::Unsupported(_) => "ESDK-UNSUPPORTED",
            Self::Commitment => "ESDK-COMMITMENT",
            Self::Authentication(_) => "ESDK-AUTH",
            Self::Seal(_) => "ESDK-SEAL",
        }
    }
}

/// Every code [`EsdkError`] can produce.
pub const CODES: &[&str] = &[
    "ESDK-FORMAT",
    "ESDK-UNSUPPORTED",
    "ESDK-COMMITMENT",
    "ESDK-AUTH",
    "ESDK-SEAL",
];

impl cloister_common::ErrorCode for EsdkError {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        EsdkError::code(self).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_s_code_is_listed() {
        let all = [
            EsdkError::Malformed(String::new()),
            EsdkError::Unsupported(String::new()),
            EsdkError::Commitment,
            EsdkError::Authentication(String::new()),
            EsdkError::Seal(String::new()),
        ];
        assert_eq!(all.len(), CODES.len());
        for e in all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
