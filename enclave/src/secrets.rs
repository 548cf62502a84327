//! Secrets the enclave may fetch, and fetching them: the configuration's `[[secrets]]` (part of
//! the measured image) and the `secrets` job operation.
//!
//! Each entry names one Secrets Manager secret or SSM parameter by its full ARN, how it is
//! released, and (path P) the KMS key its ciphertext must be under:
//! - `release = "recipient"` (path R, Secrets Manager only, cloister-kms's extension):
//!   `GetSecretValue` with a `Recipient`; the service decrypts with the caller's rights plus this
//!   enclave's attestation and answers `CiphertextForRecipient`, which only this enclave opens;
//! - `release = "ciphertext"` (path P, portable to AWS): the stored value is itself a KMS
//!   ciphertext under `key`. A Secrets Manager value is read with a plain `GetSecretValue` and
//!   opened with `Decrypt` + `Recipient` under `{"SecretARN": <configured ARN>,
//!   "SecretVersionId": <the VersionId the service answered>}`; a SecureString parameter is read
//!   with `GetParameter(WithDecryption=false)` and opened under `{"PARAMETER_ARN": <configured
//!   ARN>}`.
//!
//! Every encryption context is built here from the configuration and what the service answered
//! over the enclave's own TLS (the host relays bytes it can neither read nor forge), never from
//! anything the host sends: another secret's ciphertext, or an older version's re-put as a new
//! version, fails `Decrypt` at the KMS. (A parameter's context has no version: an older
//! SecureString version re-put under the same parameter still opens, as on AWS.)
//!
//! A fetched value never leaves the enclave and is zeroized when dropped: the `secrets`
//! operation fetches each configured secret (showing it can be fetched and opened) and reports
//! one row per secret (name, ARN, version, path, outcome, and the length only when the policy
//! allows it), never a value or a hash of one; `tokenize` fetches its key secret for each job.

use base64::Engine as _;
use cloister_common::ErrorCode;
use cloister_kms_client::{Ciphertext, EncryptionContext, KmsClient, SecretData, SecretRef};
use cloister_nsm::Nsm;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::EnclaveError;

/// Most secrets a configuration may list.
pub const MAX_SECRETS: usize = 64;

/// Where a secret lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// AWS Secrets Manager.
    Secretsmanager,
    /// SSM Parameter Store (a SecureString).
    Ssm,
}

/// How a secret reaches the enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Path R: `GetSecretValue` with a `Recipient`.
    Recipient,
    /// Path P: the value is a KMS ciphertext the enclave opens with `Decrypt` + `Recipient`.
    Ciphertext,
}

impl Release {
    fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Ciphertext => "ciphertext",
        }
    }
}

/// One `[[secrets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// A label, unique in the configuration (what the report and other operations call it).
    pub name: String,
    /// Secrets Manager or Parameter Store.
    pub source: Source,
    /// The secret's full ARN (with its 6-character suffix) or the parameter's ARN.
    pub arn: String,
    /// Path R or P.
    pub release: Release,
    /// The KMS key ARN the value must be under: path P, the ciphertext's key (the `Decrypt`
    /// KeyId); path R, the key the version read was opened under (the answer's `KmsKeyId`).
    /// Required for both: a secret's key can be changed, and a value sealed under another key
    /// is not the owner's.
    pub key: String,
}

fn invalid(reason: String) -> EnclaveError {
    EnclaveError::Config(reason)
}

/// What the service answered is not what the configuration expects (`KMS-MISMATCH`).
fn mismatch(reason: String) -> EnclaveError {
    cloister_kms_client::ClientError::Mismatch(reason).into()
}

/// `arn:<partition>:<service>:<region>:<12-digit account>:<resource>`: the resource, if `arn`
/// has that shape for `service`.
fn arn_resource<'a>(arn: &'a str, service: &str) -> Option<&'a str> {
    if arn.len() > 2048 || arn.bytes().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, svc, region, account, resource] = parts[..] else {
        return None;
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    (prefix == "arn"
        && word(partition)
        && svc == service
        && word(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !resource.is_empty())
    .then_some(resource)
}

/// Whether `arn` is a Secrets Manager secret's full ARN: `secret:<name>-<6 characters>`.
fn is_secret_arn(arn: &str) -> bool {
    let Some(name) = arn_resource(arn, "secretsmanager").and_then(|r| r.strip_prefix("secret:"))
    else {
        return false;
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 512
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    };
    match name.rsplit_once('-') {
        Some((n, suffix)) => {
            name_ok(n) && suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Whether `arn` is a parameter's ARN: `parameter/<name>`.
fn is_parameter_arn(arn: &str) -> bool {
    arn_resource(arn, "ssm")
        .and_then(|r| r.strip_prefix("parameter/"))
        .is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 2048
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
        })
}

/// Checks `[[secrets]]`: names and ARNs well formed, of the right service, and unique; path R
/// only for Secrets Manager; a key exactly for path P. The error names the entry.
pub fn validate(specs: &[SecretSpec]) -> Result<(), EnclaveError> {
    if specs.len() > MAX_SECRETS {
        return Err(invalid(format!(
            "secrets: {} entries, more than the {MAX_SECRETS} allowed",
            specs.len()
        )));
    }
    for (i, s) in specs.iter().enumerate() {
        let what = format!("secrets[{i}]");
        if s.name.is_empty()
            || s.name.len() > 64
            || !s
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(invalid(format!(
                "{what}.name {:?} is not 1..=64 of A-Za-z0-9_.-",
                s.name
            )));
        }
        if specs[..i].iter().any(|o| o.name == s.name) {
            return Err(invalid(format!("{what}.name {:?} is given twice", s.name)));
        }
        if specs[..i].iter().any(|o| o.arn == s.arn) {
            return Err(invalid(format!("{what}.arn {:?} is given twice", s.arn)));
        }
        match s.source {
            Source::Secretsmanager if !is_secret_arn(&s.arn) => {
                return Err(invalid(format!(
                    "{what}.arn {:?} is not a secret's full ARN \
                     (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)",
                    s.arn
                )));
            }
            Source::Ssm if !is_parameter_arn(&s.arn) => {
                return Err(invalid(format!(
                    "{what}.arn {:?} is not a parameter's ARN \
                     (arn:aws:ssm:<region>:<account>:parameter/<name>)",
                    s.arn
                )));
            }
            _ => {}
        }
        if (s.release, s.source) == (Release::Recipient, Source::Ssm) {
            return Err(invalid(format!(
                "{what}: release = \"recipient\" is for Secrets Manager only; a parameter is \
                 released as its ciphertext"
            )));
        }
        if !arn_resource(&s.key, "kms").is_some_and(|r| r.starts_with("key/")) {
            return Err(invalid(format!(
                "{what}.key {:?} is not a KMS key ARN",
                s.key
            )));
        }
    }
    Ok(())
}

/// A fetched secret (in the enclave only).
#[derive(Debug)]
pub struct Fetched {
    /// The ARN it was fetched from.
    pub arn: String,
    /// The version fetched (a parameter's version number as text).
    pub version_id: String,
    /// The value, zeroized when dropped.
    pub value: SecretData,
}

/// Fetches `spec` through `kms` (the job's client over the relayed TLS).
pub async fn fetch(
    kms: &KmsClient,
    nsm: &dyn Nsm,
    spec: &SecretSpec,
) -> Result<Fetched, EnclaveError> {
    match (spec.source, spec.release) {
        (Source::Secretsmanager, Release::Recipient) => {
            let r = SecretRef {
                secret_id: &spec.arn,
                ..SecretRef::default()
            };
            let v = kms.get_secret_value_for_recipient(r, nsm).await?;
            // A version opened under another key than the configured one is not the owner's
            // (cloister-kms lets only a writer change a secret's key, but AWS leaves that to
            // IAM, and the configuration is what this enclave trusts): refused.
            if v.kms_key_id.as_deref() != Some(spec.key.as_str()) {
                return Err(mismatch(format!(
                    "GetSecretValue answered a version opened under key {:?}, not the configured one",
                    v.kms_key_id
                )));
            }
            Ok(Fetched {
                arn: v.arn,
                version_id: v.version_id,
                value: v.value,
            })
        }
        (Source::Secretsmanager, Release::Ciphertext) => {
            let r = SecretRef {
                secret_id: &spec.arn,
                ..SecretRef::default()
            };
            let v = kms.get_secret_value(r).await?;
            let SecretData::Binary(blob) = &v.value else {
                return Err(mismatch(
                    "the secret's value is a SecretString, not a KMS ciphertext (SecretBinary)"
                        .into(),
                ));
            };
            // The context comes from the configuration (the ARN) and the version the service
            // answered over this enclave's TLS, never from the host.
            let context: EncryptionContext = [
                ("SecretARN".to_owned(), spec.arn.clone()),
                ("SecretVersionId".to_owned(), v.version_id.clone()),
            ]
            .into();
            let plain = open(kms, nsm, spec, blob, &context).await?;
            Ok(Fetched {
                arn: v.arn,
                version_id: v.version_id,
                value: SecretData::Binary(plain),
            })
        }
        (Source::Ssm, _) => {
            let p = kms.get_parameter(&spec.arn, false).await?;
            if p.arn != spec.arn {
                return Err(mismatch(format!("GetParameter answered for {:?}", p.arn)));
            }
            if p.kind != "SecureString" {
                return Err(mismatch(format!(
                    "the parameter is a {}, not a SecureString",
                    p.kind
                )));
            }
            let blob = base64::engine::general_purpose::STANDARD
                .decode(p.value.as_bytes())
                .map_err(|_| mismatch("the SecureString's value is not base64".into()))?;
            let context: EncryptionContext =
                [("PARAMETER_ARN".to_owned(), spec.arn.clone())].into();
            let plain = open(kms, nsm, spec, &blob, &context).await?;
            Ok(Fetched {
                arn: p.arn,
                version_id: p.version.to_string(),
                value: SecretData::Binary(plain),
            })
        }
    }
}

/// `Decrypt` + `Recipient` of `blob` under the configured key and `context`.
async fn open(
    kms: &KmsClient,
    nsm: &dyn Nsm,
    spec: &SecretSpec,
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>, EnclaveError> {
    let ct = Ciphertext {
        blob,
        key_id: Some(&spec.key),
        context,
    };
    let d = kms.decrypt_bytes_for_recipient(ct, nsm).await?;
    if spec.key != d.key_id {
        return Err(mismatch(format!(
            "Decrypt answered for key {:?}, not the configured one",
            d.key_id
        )));
    }
    Ok(d.plaintext)
}

/// Fetches every configured secret into `store`; one report row per secret (JSON text), and the
/// first failure's code and reason if any failed. The rows carry no value and no hash of one;
/// the length only if `report_length`.
pub async fn fetch_all(
    kms: &KmsClient,
    nsm: &dyn Nsm,
    specs: &[SecretSpec],
    report_length: bool,
) -> (Vec<String>, Option<EnclaveError>) {
    let mut rows = Vec::with_capacity(specs.len());
    let mut first_failure = None;
    for spec in specs {
        let mut row = serde_json::json!({
            "name": spec.name,
            "arn": spec.arn,
            "source": match spec.source { Source::Secretsmanager => "secretsmanager", Source::Ssm => "ssm" },
            "release": spec.release.as_str(),
        });
        match fetch(kms, nsm, spec).await {
            Ok(f) => {
                row["outcome"] = "fetched".into();
                row["version_id"] = f.version_id.clone().into();
                if report_length {
                    row["length"] = f.value.bytes().len().into();
                }
            }
            Err(e) => {
                row["outcome"] = "failed".into();
                row["code"] = e.code().into_owned().into();
                row["reason"] = cloister_common::error::chain(&e).into();
                first_failure.get_or_insert(e);
            }
        }
        rows.push(row.to_string());
    }
    (rows, first_failure)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use cloister_attestation::PcrValue;
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{self, Scripted, seal_to_recipient};

    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:db-AbC123";
    const PARAM: &str = "arn:aws:ssm:us-east-1:111122223333:parameter/app/db";
    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

    fn spec(
        name: &str,
        source: Source,
        arn: &str,
        release: Release,
        key: Option<&str>,
    ) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            source,
            arn: arn.into(),
            release,
            // `None`: the key the tests' KMS uses.
            key: key.unwrap_or(KEY).into(),
        }
    }

    #[test]
    fn good_entries_pass() {
        validate(&[
            spec(
                "db",
                Source::Secretsmanager,
                SECRET,
                Release::Recipient,
                None,
            ),
            spec(
                "db-p",
                Source::Secretsmanager,
                &SECRET.replace("db-", "db2-"),
                Release::Ciphertext,
                Some(KEY),
            ),
            spec("param", Source::Ssm, PARAM, Release::Ciphertext, Some(KEY)),
            spec(
                "db-r",
                Source::Secretsmanager,
                &SECRET.replace("db-", "db3-"),
                Release::Recipient,
                Some(KEY),
            ),
        ])
        .unwrap();
    }

    #[test]
    fn bad_entries_name_the_field() {
        let cases = [
            (
                spec("", Source::Secretsmanager, SECRET, Release::Recipient, None),
                "name",
            ),
            (
                spec(
                    "a b",
                    Source::Secretsmanager,
                    SECRET,
                    Release::Recipient,
                    None,
                ),
                "name",
            ),
            (
                spec(
                    "db",
                    Source::Secretsmanager,
                    "arn:aws:secretsmanager:us-east-1:111122223333:secret:db",
                    Release::Recipient,
                    None,
                ),
                "full ARN",
            ),
            (
                spec(
                    "db",
                    Source::Secretsmanager,
                    PARAM,
                    Release::Recipient,
                    None,
                ),
                "full ARN",
            ),
            (
                spec(
                    "db",
                    Source::Secretsmanager,
                    "arn:aws:secretsmanager:us-east-1:1:secret:db-AbC123",
                    Release::Recipient,
                    None,
                ),
                "full ARN",
            ),
            (
                spec("db", Source::Ssm, SECRET, Release::Ciphertext, Some(KEY)),
                "parameter's ARN",
            ),
            (
                spec("db", Source::Ssm, PARAM, Release::Recipient, None),
                "Secrets Manager only",
            ),
            (
                spec(
                    "db",
                    Source::Secretsmanager,
                    SECRET,
                    Release::Recipient,
                    Some("alias/db"),
                ),
                "not a KMS key ARN",
            ),
            (
                spec(
                    "db",
                    Source::Secretsmanager,
                    SECRET,
                    Release::Ciphertext,
                    Some("k1"),
                ),
                "not a KMS key ARN",
            ),
        ];
        for (s, expected) in cases {
            let e = validate(std::slice::from_ref(&s)).unwrap_err();
            assert_eq!(e.code(), "ENC-CONFIG");
            assert!(e.to_string().contains(expected), "{s:?}: {e}");
        }
        let a = spec(
            "db",
            Source::Secretsmanager,
            SECRET,
            Release::Recipient,
            None,
        );
        let e = validate(&[a.clone(), a.clone()]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let mut b = a.clone();
        b.name = "other".into();
        let e = validate(&[a, b]).unwrap_err();
        assert!(
            e.to_string().contains("arn") && e.to_string().contains("twice"),
            "{e}"
        );
    }

    const OTHER: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:other-XyZ789";

    /// A Secrets Manager that stores `binary` as `SECRET`'s version `v2` (answering `arn` for it)
    /// and a KMS that opens it only under the context a real KMS would check: the one
    /// `cloister secrets put` bound (`SECRET`, `v2`).
    fn service(arn: &'static str, root: cloister_attestation::TrustAnchor) -> Scripted {
        Scripted::new(move |target, req| match target {
            "secretsmanager.GetSecretValue" => {
                assert!(req.get("Recipient").is_none());
                (
                    200,
                    json!({"ARN": arn, "Name": "db", "VersionId": "v2",
                             "VersionStages": ["AWSCURRENT"], "SecretBinary": "Y3Q="}),
                )
            }
            "TrentService.Decrypt" => {
                let bound = json!({"SecretARN": SECRET, "SecretVersionId": "v2"});
                if req["EncryptionContext"] != bound {
                    return (
                        400,
                        json!({"__type": "InvalidCiphertextException", "message": ""}),
                    );
                }
                let ct = seal_to_recipient(&root, req, b"pw");
                (200, json!({"KeyId": KEY, "CiphertextForRecipient": ct}))
            }
            other => panic!("{other}"),
        })
    }

    #[tokio::test]
    async fn path_p_binds_the_configured_arn_and_the_answered_version() {
        let (nsm, root) = testing::nsm(PcrValue::measure(b"image"));
        let p = spec(
            "db",
            Source::Secretsmanager,
            SECRET,
            Release::Ciphertext,
            Some(KEY),
        );
        let svc = service(SECRET, root.clone());
        let f = fetch(&svc.client(), &nsm, &p).await.unwrap();
        assert_eq!(f.version_id, "v2");
        assert_eq!(f.value.bytes(), b"pw");
        let seen = svc.seen.lock().unwrap().clone();
        assert_eq!(seen[0].1["SecretId"], SECRET);
        assert_eq!(seen[1].1["KeyId"], KEY);
        assert_eq!(
            STANDARD
                .decode(seen[1].1["CiphertextBlob"].as_str().unwrap())
                .unwrap(),
            b"ct"
        );
        // Configured for another secret, the same stored ciphertext does not open: the
        // enclave's context names its own configured ARN.
        let q = spec(
            "db",
            Source::Secretsmanager,
            OTHER,
            Release::Ciphertext,
            Some(KEY),
        );
        let svc = service(OTHER, root.clone());
        let e = fetch(&svc.client(), &nsm, &q).await.unwrap_err();
        assert_eq!(e.code(), "KMS-InvalidCiphertextException");
        // An answer about another secret than the configured one is refused before Decrypt.
        let svc = service(OTHER, root);
        let e = fetch(&svc.client(), &nsm, &p).await.unwrap_err();
        assert_eq!(e.code(), "KMS-MISMATCH");
        assert_eq!(svc.seen.lock().unwrap().len(), 1, "no Decrypt");
    }

    #[tokio::test]
    async fn path_r_refuses_a_value_in_the_clear_and_reports_no_value() {
        let (nsm, root) = testing::nsm(PcrValue::measure(b"image"));
        let r = spec(
            "db",
            Source::Secretsmanager,
            SECRET,
            Release::Recipient,
            None,
        );
        let clear = Scripted::new(|_, _| {
            (
                200,
                json!({"ARN": SECRET, "Name": "db", "VersionId": "v1", "SecretString": "hunter2",
                         "CiphertextForRecipient": "AA=="}),
            )
        });
        let e = fetch(&clear.client(), &nsm, &r).await.unwrap_err();
        assert_eq!(e.code(), "KMS-PLAINTEXT-RETURNED");
        let good = Scripted::new(move |target, req: &Value| {
            assert_eq!(target, "secretsmanager.GetSecretValue");
            assert_eq!(req["SecretId"], SECRET);
            let ct = seal_to_recipient(&root, req, b"hunter2");
            (
                200,
                json!({"ARN": SECRET, "Name": "db", "VersionId": "v1", "SecretKind": "String",
                         "KmsKeyId": KEY, "CiphertextForRecipient": ct}),
            )
        });
        let (rows, failure) =
            fetch_all(&good.client(), &nsm, std::slice::from_ref(&r), false).await;
        assert!(failure.is_none());
        let row: Value = serde_json::from_str(&rows[0]).unwrap();
        assert_eq!(row["outcome"], "fetched");
        assert_eq!(row["version_id"], "v1");
        assert!(row.get("length").is_none(), "the policy did not allow it");
        assert!(!rows[0].contains("hunter2"));
        assert_eq!(
            fetch(&good.client(), &nsm, &r).await.unwrap().value.bytes(),
            b"hunter2"
        );
        let (rows, failure) = fetch_all(&clear.client(), &nsm, &[r], true).await;
        assert_eq!(failure.unwrap().code(), "KMS-PLAINTEXT-RETURNED");
        assert!(!rows[0].contains("hunter2"), "{}", rows[0]);
    }

    /// A service that answers a version opened under another key than the configured one (a
    /// secret moved to a key its writer chose), or does not say which: refused.
    #[tokio::test]
    async fn path_r_refuses_a_version_opened_under_another_key() {
        const HOST_KEY: &str =
            "arn:aws:kms:us-east-1:111122223333:key/99999999-9999-9999-9999-999999999999";
        let (nsm, root) = testing::nsm(PcrValue::measure(b"image"));
        let pinned = spec(
            "db",
            Source::Secretsmanager,
            SECRET,
            Release::Recipient,
            Some(KEY),
        );
        let answering = |key: Option<&'static str>| {
            let root = root.clone();
            Scripted::new(move |_, req: &Value| {
                let ct = seal_to_recipient(&root, req, b"hunter2");
                let mut a = json!({"ARN": SECRET, "Name": "db", "VersionId": "v9",
                                   "SecretKind": "String", "CiphertextForRecipient": ct});
                if let Some(k) = key {
                    a["KmsKeyId"] = json!(k);
                }
                (200, a)
            })
        };
        for key in [Some(HOST_KEY), None] {
            let e = fetch(&answering(key).client(), &nsm, &pinned)
                .await
                .unwrap_err();
            assert_eq!(e.code(), "KMS-MISMATCH", "{key:?}");
        }
        let f = fetch(&answering(Some(KEY)).client(), &nsm, &pinned)
            .await
            .unwrap();
        assert_eq!(f.value.bytes(), b"hunter2");
    }
}
