//! A parameter as the store keeps it: one row (identity its ARN) whose body holds the name,
//! the tags and every version, SecureString values as KMS ciphertext (base64), as Parameter
//! Store keeps them. The row carries a MAC (see `store::integrity`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A parameter.
#[derive(Debug, Clone)]
pub(crate) struct Parameter {
    /// `arn:aws:ssm:<region>:<account>:parameter/<name without its leading slash>`.
    pub(crate) arn: String,
    /// Everything else.
    pub(crate) body: Arc<ParameterBody>,
}

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ParameterType {
    /// Plain text.
    #[default]
    String,
    /// Comma-separated plain text.
    StringList,
    /// KMS ciphertext under `{"PARAMETER_ARN": arn}`.
    SecureString,
}

impl ParameterType {
    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::StringList => "StringList",
            Self::SecureString => "SecureString",
        }
    }
}

/// A parameter's row body (JSON). Members added later must default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ParameterBody {
    /// The name as given (`/app/db/password` or `plain`).
    pub(crate) name: String,
    /// Tags, in the order given.
    pub(crate) tags: Vec<(String, String)>,
    /// Every version kept, oldest first (versions count from 1 and are never reused).
    pub(crate) versions: Vec<ParameterVersion>,
}

/// One version of a parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ParameterVersion {
    /// 1, 2, ...
    pub(crate) version: u64,
    /// The type.
    pub(crate) kind: ParameterType,
    /// The value; for a SecureString the KMS ciphertext blob, base64.
    pub(crate) value: String,
    /// For a SecureString, the `KeyId` as given (`alias/aws/ssm` for the AWS managed key), as
    /// DescribeParameters and GetParameterHistory answer it.
    pub(crate) key_id: Option<String>,
    /// For a SecureString, the ARN of the key the value is encrypted under.
    pub(crate) key_arn: Option<String>,
    /// `Description`.
    pub(crate) description: Option<String>,
    /// `AllowedPattern`.
    pub(crate) allowed_pattern: Option<String>,
    /// `Tier`: Standard or Advanced.
    pub(crate) tier: String,
    /// `DataType`: text, aws:ec2:image, aws:ssm:integration.
    pub(crate) data_type: String,
    /// Labels on this version.
    pub(crate) labels: Vec<String>,
    /// When written, ms.
    pub(crate) modified_ms: i64,
    /// The principal that wrote it.
    pub(crate) modified_by: String,
}
