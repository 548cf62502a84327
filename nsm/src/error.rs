//! The NSM crate's one error type, with stable codes.

use std::borrow::Cow;

use cloister_common::ErrorCode;

use crate::api::{self, NsmApiError};

/// Every code [`NsmError`] (and the API decoder's `NSM-FORMAT`) can produce.
pub const CODES: &[&str] = &[
    "NSM-REFUSED",
    "NSM-TRANSPORT",
    "NSM-FORMAT",
    "NSM-UNEXPECTED",
];

/// Why an NSM request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsmError {
    /// The NSM answered with one of its error codes.
    #[error("the NSM refused the request: {}", .0.name())]
    Refused(api::ErrorCode),
    /// The NSM could not be reached, or the connection to it broke.
    #[error("NSM transport: {context}")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request or response is not valid NSM API CBOR.
    #[error(transparent)]
    Format(#[from] NsmApiError),
    /// The NSM answered a request with a response of another kind.
    #[error("the NSM answered {asked} with {answer}")]
    Unexpected {
        /// The request's name.
        asked: &'static str,
        /// The answer, for diagnosis (responses carry no secrets).
        answer: String,
    },
}

impl NsmError {
    pub(crate) fn transport(
        context: impl Into<String>,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Self {
        let context = context.into();
        move |source| Self::Transport { context, source }
    }
}

impl From<cloister_wire::WireError> for NsmError {
    fn from(e: cloister_wire::WireError) -> Self {
        Self::Transport {
            context: "NSM connection".into(),
            source: Box::new(e),
        }
    }
}

impl ErrorCode for NsmError {
    fn code(&self) -> Cow<'static, str> {
        match self {
            Self::Refused(_) => "NSM-REFUSED",
            Self::Transport { .. } => "NSM-TRANSPORT",
            Self::Format(_) => "NSM-FORMAT",
            Self::Unexpected { .. } => "NSM-UNEXPECTED",
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_s_code_is_listed() {
        let all = [
            NsmError::Refused(api::ErrorCode::InvalidIndex),
            NsmError::transport("x")(Box::new(std::io::Error::other("y"))),
            NsmError::Format(NsmApiError("z".into())),
            NsmError::Unexpected {
                asked: "DescribeNSM",
                answer: "LockPCR".into(),
            },
        ];
        for e in all {
            assert!(CODES.contains(&&*e.code()), "{}", e.code());
        }
    }
}
