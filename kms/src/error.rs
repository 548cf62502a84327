//! The KMS's one error type: every variant is an AWS KMS error name with AWS's HTTP status.
//!
//! The AWS error name (`__type`) is the stable code users search for; SDKs dispatch on it.

use axum::http::StatusCode;

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key, alias or resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key's state forbids the operation (e.g. pending deletion).
    #[error("{0}")]
    InvalidState(String),
    /// The alias already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The ciphertext is not valid for this key and encryption context.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// The ciphertext was made with another key than the one named.
    #[error("{0}")]
    IncorrectKey(String),
    /// A parameter fails AWS's constraints.
    #[error("{0}")]
    Validation(String),
    /// The key policy does not allow the request.
    #[error("{0}")]
    AccessDenied(String),
    /// The key policy is not valid.
    #[error("{0}")]
    MalformedPolicy(String),
    /// The alias name is not valid.
    #[error("{0}")]
    InvalidAliasName(String),
    /// The ARN is not valid.
    #[error("{0}")]
    InvalidArn(String),
    /// The pagination marker is not valid.
    #[error("{0}")]
    InvalidMarker(String),
    /// Valid request this KMS does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Too many requests.
    #[error("{0}")]
    Throttling(String),
    /// The body is not JSON of the operation's shape.
    #[error("{0}")]
    Serialization(String),
    /// No such operation.
    #[error("{0}")]
    UnknownOperation(String),
    /// Authentication failed (SigV4), with the AWS name chosen by the signer check.
    #[error("{message}")]
    Auth {
        /// AWS error name.
        name: &'static str,
        /// Message.
        message: String,
    },
    /// Unknown access key.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// On-demand rotation limit.
    #[error("{0}")]
    LimitExceeded(String),
    /// Something failed inside the KMS (store, crypto); the message is safe to show.
    #[error("{0}")]
    Internal(String),
}

impl KmsError {
    /// The AWS error name (`__type`).
    pub fn aws_name(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFoundException",
            Self::Disabled(_) => "DisabledException",
            Self::InvalidState(_) => "KMSInvalidStateException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
            Self::InvalidCiphertext(_) => "InvalidCiphertextException",
            Self::IncorrectKey(_) => "IncorrectKeyException",
            Self::Validation(_) => "ValidationException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::MalformedPolicy(_) => "MalformedPolicyDocumentException",
            Self::InvalidAliasName(_) => "InvalidAliasNameException",
            Self::InvalidArn(_) => "InvalidArnException",
            Self::InvalidMarker(_) => "InvalidMarkerException",
            Self::Unsupported(_) => "UnsupportedOperationException",
            Self::Throttling(_) => "ThrottlingException",
            Self::Serialization(_) => "SerializationException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Auth { name, .. } => name,
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::Internal(_) => "KMSInternalException",
        }
    }

    /// AWS's HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Disabled(_) | Self::InvalidState(_) | Self::AlreadyExists(_) => {
                StatusCode::CONFLICT
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth {
                name: "MissingAuthenticationTokenException",
                ..
            } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// `1 validation error detected: ...`, AWS's wording.
    pub fn validation(detail: impl std::fmt::Display) -> Self {
        Self::Validation(format!("1 validation error detected: {detail}"))
    }

    /// A store failure.
    pub fn store(e: impl std::fmt::Display) -> Self {
        Self::Internal(format!("key store failure: {e}"))
    }
}

/// Result alias.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;
