//! Secrets released only to the attested enclave, with the real binaries in process mode
//! ([`cloister_tests::pipeline`]: cloister-kms serving KMS, Secrets Manager and Parameter Store
//! over TLS, the measured enclave under `cloister run --process`, `cloister proxy`, `cloister
//! submit --op secrets`).
//!
//! The image's configuration lists four secrets, all opened only with an attestation document
//! whose PCR0 the enclave-only key's policy names:
//! - `db-r`: a Secrets Manager secret under the enclave-only key, fetched through path R
//!   (`GetSecretValue` with a `Recipient`);
//! - `db-p` and `db-roll`: values written by `cloister secrets put` (a KMS ciphertext under the
//!   enclave-only key, bound to the secret's ARN and version), fetched through path P;
//! - `param`: an SSM SecureString under the enclave-only key, fetched through path P.
//!
//! Negatives: the host reading the enclave-only secret itself (AccessDeniedException), an image
//! the key policy does not name (every fetch refused), another secret's ciphertext stored as a
//! secret's value, and an older version's ciphertext re-put as the current version (both
//! InvalidCiphertextException at the KMS, because the enclave builds the context itself). No
//! value appears in anything the host receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use cloister_kms_client::{Api, SecretData, SecretRef};
use cloister_tests::kms::KmsServer;
use cloister_tests::pipeline::{HOST, Pipeline};
use cloister_tests::{binary, outcome};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The values: distinctive, so any leak is found by a substring search.
const VALUE_R: &str = "r-value-Zq8v2XbK4mPw";
const VALUE_P: &[u8] = b"p-value-Hn3sT7yLq0Rc";
const VALUE_PARAM: &str = "param-value-Ud5gJk1eVo";
const VALUE_ROLL_1: &[u8] = b"roll-value-one-Fy6aWc";
const VALUE_ROLL_2: &[u8] = b"roll-value-two-Lb9dNx";
const VALUE_OTHER: &[u8] = b"other-value-Qe2hSm4t";
const LEAKS: [&[u8]; 6] = [
    VALUE_R.as_bytes(),
    VALUE_P,
    VALUE_PARAM.as_bytes(),
    VALUE_ROLL_1,
    VALUE_ROLL_2,
    VALUE_OTHER,
];

/// What `prepare` made before the image was built.
#[derive(Debug, Default, Clone)]
struct Made {
    key: String,
    db_r: (String, String),
    db_p: (String, String),
    db_roll: (String, String),
    param: String,
}

fn owner_env(kms: &KmsServer) -> Vec<(String, String)> {
    let mut env = kms.admin_env();
    env.push(("AWS_REGION".into(), "us-east-1".into()));
    env.push(("HOME".into(), "/nonexistent".into()));
    env
}

/// `cloister secrets put` as the key owner: the new version's ARN and id.
fn put(kms: &KmsServer, secret_id: &str, key: &str, value: &[u8]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value");
    std::fs::write(&file, value).unwrap();
    let (code, out, err) = outcome(
        &Command::new(binary("cloister"))
            .args([
                "secrets",
                "put",
                "--kms",
                &kms.url(),
                "--secret-id",
                secret_id,
            ])
            .args(["--key", key, "--value-file", file.to_str().unwrap()])
            .envs(owner_env(kms))
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let arn = v["ARN"].as_str().unwrap().to_owned();
    let version = v["VersionId"].as_str().unwrap().to_owned();
    let printed = format!("{out}{err}");
    assert!(!printed.contains(std::str::from_utf8(value).unwrap()));
    (arn, version)
}

/// Creates the enclave-only key (its policy is set once PCR0 is known), the secrets and the
/// parameter; returns what the image's configuration adds.
fn prepare(kms: &KmsServer, made: &mut Made) -> String {
    let owner = kms.client(kms.admin());
    let rt = cloister_tests::kms::rt();
    let call = |api: Api, op: &str, body: Value| -> Value {
        rt.block_on(owner.call_api(api, op, &body))
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    };
    made.key = call(Api::Kms, "CreateKey", json!({}))["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    // Path R: the secret under the enclave-only key itself.
    let created = rt
        .block_on(owner.create_secret(
            "db-r",
            Some(&made.key),
            None,
            Some((
                "00000000-0000-4000-8000-000000000001",
                &SecretData::String(Zeroizing::new(VALUE_R.into())),
            )),
        ))
        .unwrap();
    made.db_r = (created.arn, created.version_id.unwrap());
    // Path P: values written by `cloister secrets put`.
    made.db_p = put(kms, "db-p", &made.key, VALUE_P);
    made.db_roll = put(kms, "db-roll", &made.key, VALUE_ROLL_1);
    // SSM: a SecureString under the enclave-only key.
    call(
        Api::Ssm,
        "PutParameter",
        json!({"Name": "/app/param", "Type": "SecureString", "KeyId": made.key,
               "Value": VALUE_PARAM}),
    );
    let got = call(
        Api::Ssm,
        "GetParameter",
        json!({"Name": "/app/param", "WithDecryption": false}),
    );
    made.param = got["Parameter"]["ARN"].as_str().unwrap().to_owned();
    assert!(!got.to_string().contains(VALUE_PARAM));
    format!(
        r#"[operations.secrets]
report_length = true
[[secrets]]
name = "db-r"
source = "secretsmanager"
arn = "{db_r}"
release = "recipient"
key = "{key}"
[[secrets]]
name = "db-p"
source = "secretsmanager"
arn = "{db_p}"
release = "ciphertext"
key = "{key}"
[[secrets]]
name = "db-roll"
source = "secretsmanager"
arn = "{db_roll}"
release = "ciphertext"
key = "{key}"
[[secrets]]
name = "param"
source = "ssm"
arn = "{param}"
release = "ciphertext"
key = "{key}"
"#,
        db_r = made.db_r.0,
        db_p = made.db_p.0,
        db_roll = made.db_roll.0,
        param = made.param,
        key = made.key,
    )
}

fn start(foreign_pcr0: bool) -> (Pipeline, Made) {
    let mut made = Made::default();
    let p = Pipeline::start_with(None, |kms| prepare(kms, &mut made));
    let pcr0 = if foreign_pcr0 {
        "a".repeat(96)
    } else {
        p.pcr0.clone()
    };
    p.make_enclave_only(&made.key, &pcr0);
    (p, made)
}

/// `cloister submit --op secrets` as the host: exit code, report rows by name, everything the
/// host received (stdout, stderr, the proxy's log).
fn fetch(p: &Pipeline) -> (i32, std::collections::BTreeMap<String, Value>, String) {
    let (code, out, err) = p.submit(&["secrets"], &[]);
    let rows = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect();
    let seen = format!("{out}\n{err}\n{}", p.proxy.lock().unwrap());
    assert_no_value(&seen);
    (code, rows, format!("{out}\n{err}"))
}

fn assert_no_value(text: &str) {
    for v in LEAKS {
        let v = std::str::from_utf8(v).unwrap();
        assert!(!text.contains(v), "{v} reached the host: {text}");
    }
}

fn fetched(row: &Value, version: &str, len: usize) {
    assert_eq!(row["outcome"], "fetched", "{row}");
    assert_eq!(row["version_id"], version, "{row}");
    assert_eq!(row["length"], len, "{row}");
    assert!(
        row.get("value").is_none() && row.get("reason").is_none(),
        "{row}"
    );
}

fn failed(row: &Value, code: &str) {
    assert_eq!(row["outcome"], "failed", "{row}");
    assert_eq!(row["code"], code, "{row}");
    assert!(
        row.get("version_id").is_none() && row.get("length").is_none(),
        "{row}"
    );
}

#[test]
fn secrets_reach_the_attested_enclave_and_substitutions_fail() {
    let (p, made) = start(false);

    // R, P and SSM: every configured secret fetched into the enclave; the report says which
    // version and how long, and nothing of the values.
    let (code, rows, _) = fetch(&p);
    assert_eq!(code, 0, "{rows:?}");
    assert_eq!(rows.len(), 4, "{rows:?}");
    fetched(&rows["db-r"], &made.db_r.1, VALUE_R.len());
    assert_eq!(rows["db-r"]["release"], "recipient");
    fetched(&rows["db-p"], &made.db_p.1, VALUE_P.len());
    fetched(&rows["db-roll"], &made.db_roll.1, VALUE_ROLL_1.len());
    assert_eq!(rows["param"]["outcome"], "fetched", "{:?}", rows["param"]);
    assert_eq!(rows["param"]["version_id"], "1");
    assert_eq!(rows["param"]["length"], VALUE_PARAM.len());
    // The release through R is audited with the secret and the enclave's PCR0.
    let audit = p.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["operation"] == "secretsmanager:GetSecretValue"
                && e["resource_arn"] == made.db_r.0.as_str()
                && e["resource_version"] == made.db_r.1.as_str()
                && e["principal"] == HOST
                && e["pcr0"].as_str().map(str::to_ascii_lowercase)
                    == Some(p.pcr0.to_ascii_lowercase())),
        "no audited release of db-r: {audit:?}"
    );

    // A plain read of the enclave-only secret with the host's own credentials: AWS's answer.
    let host = p.host_client();
    let rt = cloister_tests::kms::rt();
    let e = rt
        .block_on(host.get_secret_value(SecretRef {
            secret_id: &made.db_r.0,
            ..SecretRef::default()
        }))
        .unwrap_err();
    assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{e}");
    assert_no_value(&e.to_string());
    // The same for the SecureString read with decryption; without it, and for a path P
    // secret, the host gets only the KMS ciphertext.
    let e = rt
        .block_on(host.get_parameter(&made.param, true))
        .unwrap_err();
    assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{e}");
    assert_no_value(&e.to_string());
    let ct = rt.block_on(host.get_parameter(&made.param, false)).unwrap();
    assert_eq!(ct.kind, "SecureString");
    assert_no_value(&ct.value);
    let ct = rt
        .block_on(host.get_secret_value(SecretRef {
            secret_id: &made.db_p.0,
            ..SecretRef::default()
        }))
        .unwrap();
    assert_eq!(ct.version_id, made.db_p.1);
    assert_no_value(&String::from_utf8_lossy(ct.value.bytes()));
    let owner = p.kms.client(p.kms.admin());
    let e = rt
        .block_on(owner.call(
            "Decrypt",
            &json!({"CiphertextBlob": cloister_kms_client::b64(ct.value.bytes()),
                    "EncryptionContext": {"SecretARN": made.db_p.0, "SecretVersionId": made.db_p.1}}),
        ))
        .unwrap_err();
    assert_eq!(
        e.aws_name(),
        Some("AccessDeniedException"),
        "not even the owner: {e}"
    );

    // Substitution: the host stores another secret's ciphertext (made for secret B's ARN) as
    // db-p's new value. The enclave binds db-p's ARN into the context: Decrypt fails.
    let (other_arn, other_version) = put(&p.kms, "other", &made.key, VALUE_OTHER);
    let other = rt
        .block_on(host.get_secret_value(SecretRef {
            secret_id: &other_arn,
            version_id: Some(&other_version),
            version_stage: None,
        }))
        .unwrap();
    let SecretData::Binary(other_ct) = other.value else {
        panic!("a `secrets put` value is binary")
    };
    let swapped = rt
        .block_on(host.put_secret_value(
            &made.db_p.0,
            "00000000-0000-4000-8000-00000000a001",
            &SecretData::Binary(other_ct),
            None,
        ))
        .unwrap();

    // Rollback: db-roll gets a second version, then the host re-puts the first version's
    // ciphertext as a new AWSCURRENT version. The enclave binds the answered VersionId.
    let (_, v2) = put(&p.kms, &made.db_roll.0, &made.key, VALUE_ROLL_2);
    let (_, rows, _) = fetch(&p);
    fetched(&rows["db-roll"], &v2, VALUE_ROLL_2.len());
    let old = rt
        .block_on(host.get_secret_value(SecretRef {
            secret_id: &made.db_roll.0,
            version_id: Some(&made.db_roll.1),
            version_stage: None,
        }))
        .unwrap();
    let rolled = rt
        .block_on(host.put_secret_value(
            &made.db_roll.0,
            "00000000-0000-4000-8000-00000000b001",
            &old.value,
            None,
        ))
        .unwrap();

    let (code, rows, text) = fetch(&p);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("error[KMS-InvalidCiphertextException]"),
        "{text}"
    );
    assert!(!text.contains("incomplete"), "the report is whole: {text}");
    fetched(&rows["db-r"], &made.db_r.1, VALUE_R.len());
    failed(&rows["db-p"], "KMS-InvalidCiphertextException");
    failed(&rows["db-roll"], "KMS-InvalidCiphertextException");
    assert_eq!(rows["param"]["outcome"], "fetched");
    // The failures are the KMS's refusals of the enclave's own Decrypt calls with the
    // versions the host stored.
    assert_ne!(swapped.version_id, made.db_p.1);
    assert_ne!(rolled.version_id, made.db_roll.1);
}

#[test]
fn an_image_the_key_policy_does_not_name_fetches_nothing() {
    let (p, _) = start(true);
    let (code, rows, text) = fetch(&p);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("error[KMS-AccessDeniedException]"), "{text}");
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in rows.values() {
        failed(row, "KMS-AccessDeniedException");
    }
}

#[test]
fn the_secrets_operation_takes_no_input_and_refuses_stray_flags() {
    let (code, _, err) = outcome(
        &Command::new(binary("cloister"))
            .args([
                "submit",
                "--proxy",
                "unix:///nonexistent",
                "--op",
                "secrets",
                "x.sealed",
            ])
            .output()
            .unwrap(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("no sealed files"), "{err}");
    let (code, _, err) = outcome(
        &Command::new(binary("cloister"))
            .args(["submit", "--proxy", "unix:///nonexistent", "--op", "mask"])
            .output()
            .unwrap(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("at least one sealed file"), "{err}");
}

/// A tokenization key kept in Secrets Manager under the enclave-only key: the image's policy
/// derives its key from that secret (`operations.tokenize.key_secret`), fetched by the enclave
/// itself for each job, so a job passes no key. The tokens are those of the key derived from the
/// value the owner stored, equal across jobs; a job passing a key of its own is refused; the
/// value appears nowhere the host looks.
#[test]
fn a_tokenization_key_kept_as_a_secret_is_fetched_by_the_enclave_for_each_job() {
    let secret: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let mut key = String::new();
    let p = Pipeline::start_with(None, |kms| {
        let owner = kms.client(kms.admin());
        let rt = cloister_tests::kms::rt();
        key = rt
            .block_on(owner.call_api(Api::Kms, "CreateKey", &json!({})))
            .unwrap()["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .to_owned();
        let value = SecretData::Binary(Zeroizing::new(secret.clone()));
        let created = rt
            .block_on(owner.create_secret(
                "tok",
                Some(&key),
                None,
                Some(("00000000-0000-4000-8000-0000000000aa", &value)),
            ))
            .unwrap();
        format!(
            "[operations.tokenize]\nfields = [\"name\"]\nclear = [\"country\"]\n\
             key_secret = \"tok\"\n[[secrets]]\nname = \"tok\"\nsource = \"secretsmanager\"\n\
             arn = \"{}\"\nrelease = \"recipient\"\nkey = \"{}\"\n",
            created.arn, key
        )
    });
    p.make_enclave_only(&key, &p.pcr0);
    let sealed = p.seal(&cloister_tests::pipeline::records(6), "people", 3);
    let tokenize = || {
        let (code, out, err) = p.submit(&["tokenize"], &[&sealed]);
        assert_eq!(code, 0, "{err}");
        let seen = format!("{out}\n{err}\n{}", p.proxy.lock().unwrap());
        assert!(
            !seen.contains(&hex::encode(&secret)),
            "the tokenization secret leaked"
        );
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let first = tokenize();
    assert_eq!(first.len(), 6);
    assert_eq!(tokenize(), first, "tokens differ between jobs");
    let expected = cloister_enclave::ops::tokenize::TokenKey::from_secret(&secret)
        .unwrap()
        .token(&cloister_enclave::record::Value::String(
            cloister_enclave::record::Text::new("patient-0"),
        ))
        .unwrap();
    assert_eq!(first[0]["name"], expected, "{:?}", first[0]);
    assert!(first[0].get("amount").is_none(), "{:?}", first[0]);
    // The enclave fetched the key through R: audited with its ARN and the image's PCR0.
    assert!(
        p.audit()
            .iter()
            .any(|e| e["operation"] == "secretsmanager:GetSecretValue"
                && e["pcr0"] == p.pcr0.as_str()
                && e["outcome"] == "ok"),
        "no attested release of the tokenization secret in the audit log"
    );
    // A job may not bring its own key to an image that derives its key from a secret.
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own.key");
    std::fs::write(&own, b"a key of the host's choosing").unwrap();
    let (code, _, err) = p.submit(
        &["tokenize", "--token-key", own.to_str().unwrap()],
        &[&sealed],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("ENC-POLICY") && err.contains("may not pass one"),
        "{err}"
    );
}
