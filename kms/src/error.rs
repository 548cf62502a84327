//! The KMS's errors: [`KmsError`] for requests (every variant an AWS KMS error name with AWS's
//! HTTP status; the Secrets Manager and Parameter Store operations' own errors in
//! [`SecretsError`] and [`SsmError`], carried by it), [`StoreError`] for the SQLite store,
//! [`SetupError`] for starting up.
//!
//! The AWS error name (`__type`) is the stable code users search for; SDKs dispatch on it, and
//! [`cloister_common::ErrorCode::code`] returns it.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use cloister_attestation::recipient::CmsError;
use cloister_sigv4::SigV4Error;

/// A refused or failed request.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Authentication failed (SigV4); the AWS name is the signer check's.
    #[error("{0}")]
    Auth(#[from] SigV4Error),
    /// Unknown access key.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The key's usage or spec does not allow the operation (e.g. Encrypt with a signing key).
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// A tag is not valid (reserved prefix, too many tags).
    #[error("{0}")]
    Tag(String),
    /// Verify: the signature is not valid for the message, key and algorithm.
    #[error("{0}")]
    InvalidSignature(String),
    /// A grant token is malformed (InvalidGrantTokenException).
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A grant id is malformed (InvalidGrantIdException).
    #[error("{0}")]
    InvalidGrantId(String),
    /// The request would have succeeded, but DryRun was set (DryRunOperationException, 412).
    #[error("{0}")]
    DryRun(String),
    /// VerifyMac: the MAC does not verify for the message, key and algorithm.
    #[error("{0}")]
    InvalidMac(String),
    /// ImportKeyMaterial: the import token is not one this KMS issued for this key.
    #[error("{0}")]
    InvalidImportToken(String),
    /// ImportKeyMaterial: the import token's 24 hours are over.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// ImportKeyMaterial: the material does not fit the key, or is not the material imported before.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// On-demand rotation limit.
    #[error("{0}")]
    LimitExceeded(String),
    /// The key store failed.
    #[error("key store failure: {0}")]
    Store(#[from] StoreError),
    /// The answer for an attested recipient could not be built.
    #[error("{0}")]
    Recipient(#[from] CmsError),
    /// Something else failed inside the KMS (randomness, crypto); the message is safe to show.
    #[error("{0}")]
    Internal(String),
    /// A Secrets Manager error of its own (the AWS errors all three services share, such as
    /// AccessDeniedException or ValidationException, stay the variants above).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A Parameter Store error of its own.
    #[error(transparent)]
    Ssm(#[from] SsmError),
}

/// Secrets Manager's modeled errors (botocore `secretsmanager/2017-10-17`): each is its
/// `__type`, answered with HTTP 400 (the model gives them no `httpError`, and AWS answers
/// client errors, ResourceNotFoundException included, with 400) except InternalServiceError.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// No secret (or version) by that name, ARN, id or label; or a secret with no value.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A parameter's value is not valid (name, length, combination).
    #[error("{0}")]
    InvalidParameter(String),
    /// The request is not valid in the secret's state (scheduled for deletion, a label's rules).
    #[error("{0}")]
    InvalidRequest(String),
    /// The secret, or the version a `ClientRequestToken` names with another value, exists.
    #[error("{0}")]
    ResourceExists(String),
    /// A quota (versions, labels, value size).
    #[error("{0}")]
    LimitExceeded(String),
    /// The secret's KMS key could not encrypt (disabled, pending deletion, wrong type).
    #[error("{0}")]
    EncryptionFailure(String),
    /// The secret's KMS key could not decrypt (disabled, pending deletion, the value altered).
    #[error("{0}")]
    DecryptionFailure(String),
    /// The `NextToken` is not one this service gave.
    #[error("{0}")]
    InvalidNextToken(String),
    /// A precondition of the request does not hold.
    #[error("{0}")]
    PreconditionNotMet(String),
    /// The resource policy is not valid.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// The service failed.
    #[error("{0}")]
    InternalServiceError(String),
}

impl SecretsError {
    /// Every `__type` this type can produce.
    pub const CODES: &'static [&'static str] = &[
        "ResourceNotFoundException",
        "InvalidParameterException",
        "InvalidRequestException",
        "ResourceExistsException",
        "LimitExceededException",
        "EncryptionFailure",
        "DecryptionFailure",
        "InvalidNextTokenException",
        "PreconditionNotMetException",
        "MalformedPolicyDocumentException",
        "InternalServiceError",
    ];

    /// The `__type`.
    pub fn aws_name(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::InvalidParameter(_) => "InvalidParameterException",
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::ResourceExists(_) => "ResourceExistsException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::EncryptionFailure(_) => "EncryptionFailure",
            Self::DecryptionFailure(_) => "DecryptionFailure",
            Self::InvalidNextToken(_) => "InvalidNextTokenException",
            Self::PreconditionNotMet(_) => "PreconditionNotMetException",
            Self::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            Self::InternalServiceError(_) => "InternalServiceError",
        }
    }
}

/// Parameter Store's modeled errors (botocore `ssm/2014-11-06`) for the operations served: each
/// is its `__type`; its message member is `message` or `Message` as the model's shape names it
/// ([`SsmError::message_member`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsmError {
    /// No parameter by that name.
    #[error("{0}")]
    ParameterNotFound(String),
    /// The parameter has no such version or label.
    #[error("{0}")]
    ParameterVersionNotFound(String),
    /// PutParameter without Overwrite on an existing parameter.
    #[error("{0}")]
    ParameterAlreadyExists(String),
    /// Too many parameters.
    #[error("{0}")]
    ParameterLimitExceeded(String),
    /// The parameter has 100 versions, the oldest labelled.
    #[error("{0}")]
    ParameterMaxVersionLimitExceeded(String),
    /// Too many labels on a version, or a label that is not valid.
    #[error("{0}")]
    ParameterVersionLabelLimitExceeded(String),
    /// The value does not match the parameter's AllowedPattern.
    #[error("{0}")]
    ParameterPatternMismatch(String),
    /// The AllowedPattern is not a valid regular expression.
    #[error("{0}")]
    InvalidAllowedPattern(String),
    /// The KeyId does not name a usable symmetric encryption key.
    #[error("{0}")]
    InvalidKeyId(String),
    /// A filter key that is not valid.
    #[error("{0}")]
    InvalidFilterKey(String),
    /// A filter option that is not valid.
    #[error("{0}")]
    InvalidFilterOption(String),
    /// A filter value that is not valid.
    #[error("{0}")]
    InvalidFilterValue(String),
    /// The `NextToken` is not one this service gave.
    #[error("{0}")]
    InvalidNextToken(String),
    /// A path with more than 15 levels.
    #[error("{0}")]
    HierarchyLevelLimitExceeded(String),
    /// Overwrite may not change a parameter between String/StringList and SecureString.
    #[error("{0}")]
    HierarchyTypeMismatch(String),
    /// A Type other than String, StringList, SecureString.
    #[error("{0}")]
    UnsupportedParameterType(String),
    /// A resource id that is not valid (tags).
    #[error("{0}")]
    InvalidResourceId(String),
    /// A resource type that is not valid (tags).
    #[error("{0}")]
    InvalidResourceType(String),
    /// More than 50 tags.
    #[error("{0}")]
    TooManyTags(String),
    /// The service failed.
    #[error("{0}")]
    InternalServerError(String),
}

impl SsmError {
    /// Every `__type` this type can produce.
    pub const CODES: &'static [&'static str] = &[
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "ParameterAlreadyExists",
        "ParameterLimitExceeded",
        "ParameterMaxVersionLimitExceeded",
        "ParameterVersionLabelLimitExceeded",
        "ParameterPatternMismatchException",
        "InvalidAllowedPatternException",
        "InvalidKeyId",
        "InvalidFilterKey",
        "InvalidFilterOption",
        "InvalidFilterValue",
        "InvalidNextToken",
        "HierarchyLevelLimitExceededException",
        "HierarchyTypeMismatchException",
        "UnsupportedParameterType",
        "InvalidResourceId",
        "InvalidResourceType",
        "TooManyTagsError",
        "InternalServerError",
    ];

    /// The `__type`.
    pub fn aws_name(&self) -> &'static str {
        match self {
            Self::ParameterNotFound(_) => "ParameterNotFound",
            Self::ParameterVersionNotFound(_) => "ParameterVersionNotFound",
            Self::ParameterAlreadyExists(_) => "ParameterAlreadyExists",
            Self::ParameterLimitExceeded(_) => "ParameterLimitExceeded",
            Self::ParameterMaxVersionLimitExceeded(_) => "ParameterMaxVersionLimitExceeded",
            Self::ParameterVersionLabelLimitExceeded(_) => "ParameterVersionLabelLimitExceeded",
            Self::ParameterPatternMismatch(_) => "ParameterPatternMismatchException",
            Self::InvalidAllowedPattern(_) => "InvalidAllowedPatternException",
            Self::InvalidKeyId(_) => "InvalidKeyId",
            Self::InvalidFilterKey(_) => "InvalidFilterKey",
            Self::InvalidFilterOption(_) => "InvalidFilterOption",
            Self::InvalidFilterValue(_) => "InvalidFilterValue",
            Self::InvalidNextToken(_) => "InvalidNextToken",
            Self::HierarchyLevelLimitExceeded(_) => "HierarchyLevelLimitExceededException",
            Self::HierarchyTypeMismatch(_) => "HierarchyTypeMismatchException",
            Self::UnsupportedParameterType(_) => "UnsupportedParameterType",
            Self::InvalidResourceId(_) => "InvalidResourceId",
            Self::InvalidResourceType(_) => "InvalidResourceType",
            Self::TooManyTags(_) => "TooManyTagsError",
            Self::InternalServerError(_) => "InternalServerError",
        }
    }

    /// The member the model's shape names the message with (`message` or `Message`); `None`
    /// for the shapes without one (the answer then carries only `__type`).
    pub fn message_member(&self) -> Option<&'static str> {
        match self {
            Self::InvalidNextToken(_)
            | Self::InvalidFilterValue(_)
            | Self::InternalServerError(_) => Some("Message"),
            Self::InvalidFilterKey(_)
            | Self::InvalidResourceId(_)
            | Self::InvalidResourceType(_)
            | Self::TooManyTags(_) => None,
            _ => Some("message"),
        }
    }
}

/// Every AWS error name a [`KmsError`] can carry.
pub(crate) const CODES: &[&str] = &[
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "AlreadyExistsException",
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "ValidationException",
    "AccessDeniedException",
    "MalformedPolicyDocumentException",
    "InvalidAliasNameException",
    "InvalidArnException",
    "InvalidMarkerException",
    "UnsupportedOperationException",
    "ThrottlingException",
    "SerializationException",
    "UnknownOperationException",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
    "LimitExceededException",
    "TagException",
    "KMSInvalidSignatureException",
    "InvalidGrantTokenException",
    "InvalidGrantIdException",
    "DryRunOperationException",
    "KMSInvalidMacException",
    "InvalidImportTokenException",
    "ExpiredImportTokenException",
    "IncorrectKeyMaterialException",
    "InvalidKeyUsageException",
    "KMSInternalException",
];

impl KmsError {
    /// Every AWS error name this type can produce (see [`CODES`]).
    pub const CODES: &'static [&'static str] = CODES;

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
            Self::Auth(e) => e.aws_error(),
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::Tag(_) => "TagException",
            Self::InvalidSignature(_) => "KMSInvalidSignatureException",
            Self::InvalidGrantToken(_) => "InvalidGrantTokenException",
            Self::InvalidGrantId(_) => "InvalidGrantIdException",
            Self::DryRun(_) => "DryRunOperationException",
            Self::InvalidMac(_) => "KMSInvalidMacException",
            Self::InvalidImportToken(_) => "InvalidImportTokenException",
            Self::ExpiredImportToken(_) => "ExpiredImportTokenException",
            Self::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            Self::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            Self::Store(_) | Self::Recipient(_) | Self::Internal(_) => "KMSInternalException",
            Self::Secrets(e) => e.aws_name(),
            Self::Ssm(e) => e.aws_name(),
        }
    }

    /// AWS's HTTP status for this error: 400 for every client error, NotFoundException,
    /// DisabledException, KMSInvalidStateException and AlreadyExistsException included (as
    /// recorded from AWS KMS), 500 for the KMS's own failures, 403 for a missing signature.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Store(_)
            | Self::Recipient(_)
            | Self::Internal(_)
            | Self::Secrets(SecretsError::InternalServiceError(_))
            | Self::Ssm(SsmError::InternalServerError(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(SigV4Error::Missing) => StatusCode::FORBIDDEN,
            Self::DryRun(_) => StatusCode::PRECONDITION_FAILED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// `1 validation error detected: ...`, AWS's wording.
    pub(crate) fn validation(detail: impl std::fmt::Display) -> Self {
        Self::Validation(format!("1 validation error detected: {detail}"))
    }

    /// The error a failed random number generator gives.
    pub(crate) fn no_randomness() -> Self {
        Self::Internal("no randomness".into())
    }
}

impl cloister_common::ErrorCode for KmsError {
    fn code(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.aws_name())
    }

    /// Every KMS error ends its request; only throttling and an unavailable store (nothing was
    /// written) invite the same request again.
    fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::Throttling(_) | Self::Store(StoreError::Unavailable(_))
        )
    }
}

/// The store (SQLite or PostgreSQL) failed, or holds something it should not.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("{0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// PostgreSQL refused a statement (not a connection failure: see `Unavailable`).
    #[error("error[KMS-STORE-SQL]: PostgreSQL refused a statement: {message} (SQLSTATE {code})")]
    Postgres {
        /// The SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The database cannot be reached or cannot serve now (connection lost or refused, server
    /// shutting down or restarting, too many connections, a serialization conflict): nothing
    /// of the request was written, and the same request may be retried.
    #[error("error[KMS-STORE-UNAVAILABLE]: the store is unavailable, retry later: {0}")]
    Unavailable(String),
    /// An audit entry could not be encoded.
    #[error("{0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// A stored key policy no longer parses.
    #[error("{0}")]
    Policy(#[source] Box<KmsError>),
    /// A stored principal secret is not UTF-8.
    #[error("{0}")]
    Utf8(#[from] std::string::FromUtf8Error),
    /// A row holds a value no version of cloister-kms writes.
    #[error("{0}")]
    Corrupt(&'static str),
    /// A key row holds an unknown state.
    #[error("unknown key state {0:?}")]
    UnknownState(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(Arc::new(e))
    }
}

impl From<rusqlite::Error> for KmsError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Starting the KMS failed: the data directory, the root key, the store or the TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The root key file is readable by group or others.
    #[error("{} has mode {mode:o}; it must be 0600", path.display())]
    RootKeyMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The root key file has the wrong size.
    #[error("{} must hold exactly 32 bytes", path.display())]
    RootKeySize {
        /// The file.
        path: PathBuf,
    },
    /// The root key file does not exist, but the data directory holds a store sealed under one.
    #[error(
        "{} does not exist, but {} holds a store sealed under a root key: give that key with --root-key <FILE> (a new key would open none of its rows, so none is made)",
        key.display(),
        dir.display()
    )]
    RootKeyMissing {
        /// The root key file looked for.
        key: PathBuf,
        /// The data directory.
        dir: PathBuf,
    },
    /// The root key is not the one the store's rows were sealed and MAC'd under.
    #[error(
        "{} is not the root key of the store in {} (its root key check does not match): wrong --root-key?",
        key.display(),
        dir.display()
    )]
    WrongRootKey {
        /// The root key file given.
        key: PathBuf,
        /// The data directory.
        dir: PathBuf,
    },
    /// The store predates row integrity: `cloister-kms migrate` must MAC its rows first.
    #[error(
        "the store in {} predates row integrity (schema version 0): run `cloister-kms migrate --data-dir {}` once; it MACs the rows as they are now",
        dir.display(),
        dir.display()
    )]
    NeedsMigration {
        /// The data directory.
        dir: PathBuf,
    },
    /// The store's schema version is one this build does not know.
    #[error(
        "the store in {} has schema version {version}, which this cloister-kms does not know",
        dir.display()
    )]
    UnknownSchema {
        /// The data directory.
        dir: PathBuf,
        /// Its `PRAGMA user_version`.
        version: i64,
    },
    /// The store named does not exist (a command that only reads it).
    #[error("error[KMS-STORE-NONE]: there is no KMS store at {0}")]
    NoStore(String),
    /// `--store` is not a store URL this build accepts.
    #[error("error[KMS-STORE-URL]: --store: {0}")]
    StoreUrl(String),
    /// The store could not be opened or initialised.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// The TLS certificates could not be made.
    #[error("TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS material does not parse.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl From<StoreError> for SetupError {
    fn from(e: StoreError) -> Self {
        Self::Kms(e.into())
    }
}

impl From<rusqlite::Error> for SetupError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Kms(e.into())
    }
}

impl SetupError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Result alias.
pub(crate) type Result<T, E = KmsError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    fn every_variant() -> Vec<KmsError> {
        let s = || String::from("m");
        vec![
            KmsError::NotFound(s()),
            KmsError::Disabled(s()),
            KmsError::InvalidState(s()),
            KmsError::AlreadyExists(s()),
            KmsError::InvalidCiphertext(s()),
            KmsError::IncorrectKey(s()),
            KmsError::Validation(s()),
            KmsError::AccessDenied(s()),
            KmsError::MalformedPolicy(s()),
            KmsError::InvalidAliasName(s()),
            KmsError::InvalidArn(s()),
            KmsError::InvalidMarker(s()),
            KmsError::Unsupported(s()),
            KmsError::Throttling(s()),
            KmsError::Serialization(s()),
            KmsError::UnknownOperation(s()),
            KmsError::Auth(SigV4Error::Missing),
            KmsError::Auth(SigV4Error::Malformed(s())),
            KmsError::Auth(SigV4Error::Date(s())),
            KmsError::Auth(SigV4Error::Scope(s())),
            KmsError::Auth(SigV4Error::Mismatch),
            KmsError::UnrecognizedClient,
            KmsError::LimitExceeded(s()),
            KmsError::Tag(s()),
            KmsError::InvalidSignature(s()),
            KmsError::InvalidGrantToken(s()),
            KmsError::InvalidGrantId(s()),
            KmsError::DryRun(s()),
            KmsError::InvalidMac(s()),
            KmsError::InvalidImportToken(s()),
            KmsError::ExpiredImportToken(s()),
            KmsError::IncorrectKeyMaterial(s()),
            KmsError::InvalidKeyUsage(s()),
            KmsError::Store(StoreError::Corrupt("x")),
            KmsError::Recipient(CmsError::Encrypt(s())),
            KmsError::Internal(s()),
        ]
    }

    fn secrets_variants() -> Vec<SecretsError> {
        let s = || String::from("m");
        vec![
            SecretsError::ResourceNotFound(s()),
            SecretsError::InvalidParameter(s()),
            SecretsError::InvalidRequest(s()),
            SecretsError::ResourceExists(s()),
            SecretsError::LimitExceeded(s()),
            SecretsError::EncryptionFailure(s()),
            SecretsError::DecryptionFailure(s()),
            SecretsError::InvalidNextToken(s()),
            SecretsError::PreconditionNotMet(s()),
            SecretsError::MalformedPolicyDocument(s()),
            SecretsError::InternalServiceError(s()),
        ]
    }

    fn ssm_variants() -> Vec<SsmError> {
        let s = || String::from("m");
        vec![
            SsmError::ParameterNotFound(s()),
            SsmError::ParameterVersionNotFound(s()),
            SsmError::ParameterAlreadyExists(s()),
            SsmError::ParameterLimitExceeded(s()),
            SsmError::ParameterMaxVersionLimitExceeded(s()),
            SsmError::ParameterVersionLabelLimitExceeded(s()),
            SsmError::ParameterPatternMismatch(s()),
            SsmError::InvalidAllowedPattern(s()),
            SsmError::InvalidKeyId(s()),
            SsmError::InvalidFilterKey(s()),
            SsmError::InvalidFilterOption(s()),
            SsmError::InvalidFilterValue(s()),
            SsmError::InvalidNextToken(s()),
            SsmError::HierarchyLevelLimitExceeded(s()),
            SsmError::HierarchyTypeMismatch(s()),
            SsmError::UnsupportedParameterType(s()),
            SsmError::InvalidResourceId(s()),
            SsmError::InvalidResourceType(s()),
            SsmError::TooManyTags(s()),
            SsmError::InternalServerError(s()),
        ]
    }

    #[test]
    fn the_other_services_errors_are_listed_and_client_errors_are_400() {
        let secrets = secrets_variants();
        for code in SecretsError::CODES {
            assert!(
                secrets.iter().any(|e| e.aws_name() == *code),
                "{code} unused"
            );
        }
        let ssm = ssm_variants();
        for code in SsmError::CODES {
            assert!(ssm.iter().any(|e| e.aws_name() == *code), "{code} unused");
        }
        for e in secrets
            .into_iter()
            .map(KmsError::from)
            .chain(ssm.into_iter().map(KmsError::from))
        {
            let internal = matches!(e.aws_name(), "InternalServiceError" | "InternalServerError");
            let status = if internal {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(e.status(), status, "{}", e.aws_name());
            assert_eq!(e.code(), e.aws_name());
        }
        assert_eq!(
            SsmError::ParameterNotFound("x".into()).message_member(),
            Some("message")
        );
        assert_eq!(
            SsmError::InvalidNextToken("x".into()).message_member(),
            Some("Message")
        );
        assert_eq!(SsmError::TooManyTags("x".into()).message_member(), None);
    }

    #[test]
    fn every_variant_names_a_listed_aws_error() {
        let all = every_variant();
        for e in &all {
            assert!(KmsError::CODES.contains(&e.aws_name()), "{e:?}");
            assert_eq!(e.code(), e.aws_name());
        }
        // And every listed name is produced by some variant.
        for code in CODES {
            assert!(all.iter().any(|e| e.aws_name() == *code), "{code} unused");
        }
    }

    #[test]
    fn statuses_and_messages_are_aws_s() {
        assert_eq!(
            KmsError::Auth(SigV4Error::Missing).status(),
            StatusCode::FORBIDDEN
        );
        // AWS answers these four with 400 (recorded from AWS KMS; the API reference lists them
        // as client errors), not 404 / 409.
        for e in [
            KmsError::NotFound("x".into()),
            KmsError::Disabled("x".into()),
            KmsError::InvalidState("x".into()),
            KmsError::AlreadyExists("x".into()),
        ] {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{}", e.aws_name());
        }
        let store = KmsError::Store(StoreError::Corrupt("bad row"));
        assert_eq!(store.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(store.to_string(), "key store failure: bad row");
        assert!(std::error::Error::source(&store).is_some());
        assert!(!KmsError::Throttling("x".into()).is_fatal());
        assert!(KmsError::AccessDenied("x".into()).is_fatal());
        assert_eq!(
            KmsError::validation("Value x").to_string(),
            "1 validation error detected: Value x"
        );
    }
}
