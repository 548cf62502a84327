//! Secrets Manager and Parameter Store, typed: the few operations cloister needs to write a secret
//! for an enclave (`cloister secrets put`) and to fetch one inside it.
//!
//! - [`KmsClient::get_secret_value`]: the plain read (AWS's `GetSecretValue`); with path P the
//!   value is itself a KMS ciphertext that only an attested enclave can open.
//! - [`KmsClient::get_secret_value_for_recipient`]: cloister's extension R, `GetSecretValue`
//!   with a `Recipient`: the answer carries `CiphertextForRecipient` (CMS to a one-use RSA key the
//!   NSM attested), opened here. An answer that carries `SecretString`/`SecretBinary`, or names
//!   another secret than the one asked for, is refused.
//! - [`KmsClient::create_secret`], [`KmsClient::put_secret_value`],
//!   [`KmsClient::describe_secret`], [`KmsClient::get_parameter`].
//!
//! Values come back in zeroizing buffers, decoded from the (zeroizing) answer bytes.

use cloister_nsm::Nsm;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::client::{Api, KmsClient};
use crate::error::ClientError;
use crate::ops::{Blob, Recipient, SecretBlob, base64_bytes, body, parse};

/// A secret's value: text or bytes, zeroized when dropped.
#[derive(Debug)]
pub enum SecretData {
    /// `SecretString`.
    String(Zeroizing<String>),
    /// `SecretBinary`.
    Binary(Zeroizing<Vec<u8>>),
}

impl SecretData {
    /// The value's bytes (UTF-8 for a string).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::String(s) => s.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// `"String"` or `"Binary"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::String(_) => "String",
            Self::Binary(_) => "Binary",
        }
    }
}

/// Which version of a secret to read: `AWSCURRENT` when neither is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretRef<'a> {
    /// Name or ARN.
    pub secret_id: &'a str,
    /// A version id.
    pub version_id: Option<&'a str>,
    /// A staging label.
    pub version_stage: Option<&'a str>,
}

/// A secret's version as `GetSecretValue` answers it.
#[derive(Debug)]
pub struct SecretValue {
    /// The secret's ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// The version read.
    pub version_id: String,
    /// The version's staging labels.
    pub version_stages: Vec<String>,
    /// When the version was made (epoch seconds).
    pub created_date: Option<f64>,
    /// The value.
    pub value: SecretData,
    /// The KMS key that opened the version (cloister-kms answers it with a `Recipient`: a
    /// secret's key can be changed by whoever may call UpdateSecret, so an enclave pins the key
    /// it trusts and compares). `None` when the service did not say.
    pub kms_key_id: Option<String>,
}

/// What `CreateSecret` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedSecret {
    /// The new secret's ARN.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// Its name.
    pub name: String,
    /// The first version, if a value was given.
    pub version_id: Option<String>,
}

/// What `PutSecretValue` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutSecret {
    /// The secret's ARN.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// The new version.
    pub version_id: String,
    /// Its labels.
    #[serde(default)]
    pub version_stages: Vec<String>,
}

/// What cloister reads of `DescribeSecret`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretDescription {
    /// The secret's ARN.
    #[serde(rename = "ARN")]
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its KMS key, when not the AWS managed one.
    pub kms_key_id: Option<String>,
}

/// A parameter as `GetParameter` answers it.
#[derive(Debug)]
pub struct Parameter {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// Its version.
    pub version: i64,
    /// The value (for a SecureString read without decryption: base64 of the KMS ciphertext).
    pub value: Zeroizing<String>,
}

// ---- request shapes --------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValueRequest<'a> {
    secret_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<Recipient>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ValueMembers<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_base64")]
    secret_binary: Option<&'a [u8]>,
}

fn opt_base64<S: serde::Serializer>(bytes: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => base64_bytes(b, s),
        None => s.serialize_none(),
    }
}

fn value_members(value: Option<&SecretData>) -> ValueMembers<'_> {
    match value {
        Some(SecretData::String(s)) => ValueMembers {
            secret_string: Some(s),
            secret_binary: None,
        },
        Some(SecretData::Binary(b)) => ValueMembers {
            secret_string: None,
            secret_binary: Some(b),
        },
        None => ValueMembers {
            secret_string: None,
            secret_binary: None,
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecretRequest<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_request_token: Option<&'a str>,
    #[serde(flatten)]
    value: ValueMembers<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValueRequest<'a> {
    secret_id: &'a str,
    client_request_token: &'a str,
    #[serde(flatten)]
    value: ValueMembers<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stages: Option<&'a [&'a str]>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdRequest<'a> {
    secret_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterRequest<'a> {
    name: &'a str,
    with_decryption: bool,
}

// ---- answer shapes ---------------------------------------------------------------------------

/// JSON text kept in a zeroizing string: borrowed text is copied once into it, unescaped text
/// (an owned `String`) is moved in.
struct SecretText(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match <std::borrow::Cow<'de, str>>::deserialize(d)? {
            std::borrow::Cow::Borrowed(s) => Zeroizing::new(s.to_owned()),
            std::borrow::Cow::Owned(s) => Zeroizing::new(s),
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValueAnswer {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    version_id: String,
    #[serde(default)]
    version_stages: Vec<String>,
    created_date: Option<f64>,
    secret_string: Option<SecretText>,
    secret_binary: Option<SecretBlob>,
    ciphertext_for_recipient: Option<Blob>,
    secret_kind: Option<String>,
    kms_key_id: Option<String>,
}

#[derive(Deserialize)]
struct GetParameterAnswer {
    #[serde(rename = "Parameter")]
    parameter: ParameterAnswer,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ParameterAnswer {
    name: String,
    #[serde(rename = "ARN")]
    arn: String,
    #[serde(rename = "Type")]
    kind: String,
    version: i64,
    value: SecretText,
}

impl GetSecretValueAnswer {
    /// Refuses an answer about another secret than `secret_id` (a name or an ARN).
    fn check_names(&self, secret_id: &str) -> Result<(), ClientError> {
        if same_secret(secret_id, &self.arn, &self.name) {
            return Ok(());
        }
        Err(ClientError::Mismatch(format!(
            "GetSecretValue of {secret_id:?} answered {:?}",
            self.arn
        )))
    }

    /// The answer with its value, as the caller gets it.
    fn with_value(self, value: SecretData) -> SecretValue {
        SecretValue {
            arn: self.arn,
            name: self.name,
            version_id: self.version_id,
            version_stages: self.version_stages,
            created_date: self.created_date,
            value,
            kms_key_id: self.kms_key_id,
        }
    }
}

/// Parses `bytes` as Secrets Manager's or Parameter Store's answer to `op` as the typed calls
/// read it; `None` for an operation they do not call (for the answer fuzz target).
pub(crate) fn check_answer(op: &str, bytes: &[u8]) -> Option<Result<(), ClientError>> {
    Some(match op {
        "GetSecretValue" => parse::<GetSecretValueAnswer>(op, bytes).map(drop),
        "CreateSecret" => parse::<CreatedSecret>(op, bytes).map(drop),
        "PutSecretValue" => parse::<PutSecret>(op, bytes).map(drop),
        "DescribeSecret" => parse::<SecretDescription>(op, bytes).map(drop),
        "GetParameter" => parse::<GetParameterAnswer>(op, bytes).map(drop),
        _ => return None,
    })
}

/// Whether an answer naming `arn` (and `name`) is about the secret asked for as `secret_id` (a
/// name or an ARN).
fn same_secret(secret_id: &str, arn: &str, name: &str) -> bool {
    if secret_id.starts_with("arn:") {
        secret_id == arn
    } else {
        secret_id == name
    }
}

impl KmsClient {
    async fn secrets_call<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        req: &impl Serialize,
    ) -> Result<T, ClientError> {
        let answer = self
            .request_api(Api::SecretsManager, op, &body(req)?)
            .await?;
        parse(op, &answer)
    }

    /// `GetSecretValue`: the value in the clear, as any reader the key policy allows gets it.
    pub async fn get_secret_value(&self, r: SecretRef<'_>) -> Result<SecretValue, ClientError> {
        let req = GetSecretValueRequest {
            secret_id: r.secret_id,
            version_id: r.version_id,
            version_stage: r.version_stage,
            recipient: None,
        };
        let mut a: GetSecretValueAnswer = self.secrets_call("GetSecretValue", &req).await?;
        a.check_names(r.secret_id)?;
        let value = match (a.secret_string.take(), a.secret_binary.take()) {
            (Some(s), None) => SecretData::String(s.0),
            (None, Some(b)) => SecretData::Binary(b.0),
            _ => {
                return Err(ClientError::Protocol(
                    "GetSecretValue answer has not exactly one of SecretString and SecretBinary"
                        .into(),
                ));
            }
        };
        Ok(a.with_value(value))
    }

    /// `GetSecretValue` with a `Recipient` (cloister's extension R): the value released only
    /// to the enclave whose document `nsm` signs over a fresh RSA-2048 key. An answer carrying
    /// the value in the clear is refused ([`ClientError::PlaintextReturned`]); so is one about
    /// another secret than `r.secret_id` ([`ClientError::Mismatch`]).
    pub async fn get_secret_value_for_recipient(
        &self,
        r: SecretRef<'_>,
        nsm: &dyn Nsm,
    ) -> Result<SecretValue, ClientError> {
        let (private, recipient) = Self::attested_recipient(nsm).await?;
        let req = GetSecretValueRequest {
            secret_id: r.secret_id,
            version_id: r.version_id,
            version_stage: r.version_stage,
            recipient: Some(recipient),
        };
        let mut a: GetSecretValueAnswer = self.secrets_call("GetSecretValue", &req).await?;
        let in_clear = a.secret_string.is_some() || a.secret_binary.is_some();
        if !in_clear {
            a.check_names(r.secret_id)?;
        }
        let plain = Self::open_envelope(
            private,
            in_clear,
            a.ciphertext_for_recipient.take(),
            "GetSecretValue",
        )?;
        let value = match a.secret_kind.as_deref() {
            Some("Binary") => SecretData::Binary(plain),
            Some("String") => {
                let text = std::str::from_utf8(&plain).map_err(|_| {
                    ClientError::Protocol("a String secret released as bytes not UTF-8".into())
                })?;
                SecretData::String(Zeroizing::new(text.to_owned()))
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "GetSecretValue answer has SecretKind {other:?}, not String or Binary"
                )));
            }
        };
        Ok(a.with_value(value))
    }

    /// `CreateSecret` named `name`, under `kms_key_id` (the AWS managed key when `None`), with
    /// `value` as its first version if given.
    pub async fn create_secret(
        &self,
        name: &str,
        kms_key_id: Option<&str>,
        description: Option<&str>,
        value: Option<(&str, &SecretData)>,
    ) -> Result<CreatedSecret, ClientError> {
        let req = CreateSecretRequest {
            name,
            kms_key_id,
            description,
            client_request_token: value.map(|(token, _)| token),
            value: value_members(value.map(|(_, v)| v)),
        };
        self.secrets_call("CreateSecret", &req).await
    }

    /// `PutSecretValue`: `value` as the version `token` (labelled `stages`, or `AWSCURRENT`).
    pub async fn put_secret_value(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretData,
        stages: Option<&[&str]>,
    ) -> Result<PutSecret, ClientError> {
        let req = PutSecretValueRequest {
            secret_id,
            client_request_token: token,
            value: value_members(Some(value)),
            version_stages: stages,
        };
        self.secrets_call("PutSecretValue", &req).await
    }

    /// `DescribeSecret`: the secret's ARN, name and key.
    pub async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription, ClientError> {
        self.secrets_call("DescribeSecret", &SecretIdRequest { secret_id })
            .await
    }

    /// `GetParameter` (`name`, `name:version` or `name:label`).
    pub async fn get_parameter(
        &self,
        name: &str,
        with_decryption: bool,
    ) -> Result<Parameter, ClientError> {
        let req = GetParameterRequest {
            name,
            with_decryption,
        };
        let answer = self
            .request_api(Api::Ssm, "GetParameter", &body(&req)?)
            .await?;
        let a: GetParameterAnswer = parse("GetParameter", &answer)?;
        let p = a.parameter;
        Ok(Parameter {
            name: p.name,
            arn: p.arn,
            kind: p.kind,
            version: p.version,
            value: p.value.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_aws_member_names() {
        let v = SecretData::Binary(Zeroizing::new(vec![1, 2, 3]));
        let req = PutSecretValueRequest {
            secret_id: "db",
            client_request_token: "t",
            value: value_members(Some(&v)),
            version_stages: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&body(&req).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"SecretId": "db", "ClientRequestToken": "t", "SecretBinary": "AQID"})
        );
        let s = SecretData::String(Zeroizing::new("pw".into()));
        let req = CreateSecretRequest {
            name: "db",
            kms_key_id: Some("k"),
            description: None,
            client_request_token: Some("t"),
            value: value_members(Some(&s)),
        };
        let json: serde_json::Value = serde_json::from_slice(&body(&req).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Name": "db", "KmsKeyId": "k", "ClientRequestToken": "t", "SecretString": "pw"})
        );
        let req = GetSecretValueRequest {
            secret_id: "db",
            version_id: None,
            version_stage: Some("AWSPREVIOUS"),
            recipient: Some(Recipient {
                key_encryption_algorithm: "RSAES_OAEP_SHA_256",
                attestation_document: vec![9],
            }),
        };
        let json: serde_json::Value = serde_json::from_slice(&body(&req).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"SecretId": "db", "VersionStage": "AWSPREVIOUS",
                "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "CQ=="}})
        );
    }

    #[test]
    fn answers_are_checked() {
        let a: GetSecretValueAnswer = parse(
            "GetSecretValue",
            br#"{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf","Name":"db","VersionId":"v","SecretString":"p\u00e9\n","VersionStages":["AWSCURRENT"]}"#,
        )
        .unwrap();
        assert_eq!(&*a.secret_string.unwrap().0, "p\u{e9}\n");
        assert!(same_secret("db", &a.arn, "db"));
        assert!(same_secret(&a.arn, &a.arn, "db"));
        assert!(!same_secret("other", &a.arn, "db"));
        assert!(!same_secret(
            "arn:aws:secretsmanager:us-east-1:1:secret:db-XXXXXX",
            &a.arn,
            "db"
        ));
        let bad = parse::<GetSecretValueAnswer>("GetSecretValue", br#"{"Name":"db"}"#);
        assert!(matches!(bad, Err(ClientError::Protocol(_))));
        let p: GetParameterAnswer = parse(
            "GetParameter",
            br#"{"Parameter":{"Name":"/a","ARN":"arn:aws:ssm:us-east-1:1:parameter/a","Type":"SecureString","Version":2,"Value":"AQID"}}"#,
        )
        .unwrap();
        assert_eq!(p.parameter.version, 2);
        assert_eq!(&*p.parameter.value.0, "AQID");
    }
}
