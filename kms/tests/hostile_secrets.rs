//! Secrets Manager and Parameter Store attacked by the untrusted host, against the real binary:
//! the host holds its principal's credentials (every Secrets Manager, SSM and KMS call they
//! allow; operations on a secret's metadata are open to every principal), and tries to read a
//! value the key policy keeps for an attested enclave, or to make the enclave take a value the
//! owner did not store. Each test asserts the attack's answer, and, where the service cannot
//! refuse (the host may change a secret's key, as anyone allowed UpdateSecret may on AWS), that
//! the answer tells an enclave enough to refuse it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::Engine as _;
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_attestation::{PcrValue, Timestamp};
use cloister_sigv4::Credentials;
use cloister_tests::kms::{KmsServer, rt};
use common::{document, kms_bin, recipient, signed_post as raw};
use serde_json::{Value, json};

const HOST: &str = "arn:aws:iam::111122223333:role/host";
const ROOT: &str = "arn:aws:iam::111122223333:root";

fn sm(addr: &str, creds: &Credentials, op: &str, input: Value) -> (u16, Value) {
    let (status, body) = raw(
        addr,
        creds,
        "secretsmanager",
        &format!("secretsmanager.{op}"),
        &input.to_string(),
    );
    (status, serde_json::from_str(&body).unwrap())
}

fn ssm(addr: &str, creds: &Credentials, op: &str, input: Value) -> (u16, Value) {
    let (status, body) = raw(
        addr,
        creds,
        "ssm",
        &format!("AmazonSSM.{op}"),
        &input.to_string(),
    );
    (status, serde_json::from_str(&body).unwrap())
}

/// A server with the owner (admin), the host principal, the dev PKI as trust root, and an
/// enclave-only key: the owner manages it and encrypts under it; the host may use it only with
/// an attestation document naming image `image-a`, and for nothing else.
struct World {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    root_pem: std::path::PathBuf,
    server: KmsServer,
    addr: String,
    owner: Credentials,
    host: Credentials,
    pki: DevPki,
    key_arn: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root_pem = dir.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = dir.path().join("kms");
    let owner = kms_bin().admin(&data);
    let host = kms_bin().add_principal(&data, HOST);
    let server = kms_bin().start(&data, &["--trust-root", root_pem.to_str().unwrap()]);
    let kms = server.client(owner.clone());
    let image = PcrValue::measure(b"image-a").to_hex();
    let key_arn = rt().block_on(async {
        let created = kms.call("CreateKey", &json!({})).await.unwrap();
        let id = common::key_id(&created);
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Resource": "*",
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey*"]},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": image}}},
            {"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*",
             "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}}]});
        kms.call(
            "PutKeyPolicy",
            &json!({"KeyId": id, "Policy": policy.to_string()}),
        )
        .await
        .unwrap();
        created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
    });
    let addr = server.addr.clone();
    World {
        _dir: dir,
        data,
        root_pem,
        server,
        addr,
        owner,
        host,
        pki,
        key_arn,
    }
}

/// The attested enclave: its private key and the `Recipient` member for `image`.
fn enclave(pki: &DevPki, image: &[u8]) -> (RecipientPrivateKey, Value) {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    let doc = document(pki, image, &spki);
    (RecipientPrivateKey::new(private).unwrap(), recipient(&doc))
}

fn opened(enclave: &RecipientPrivateKey, answer: &Value) -> Vec<u8> {
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(answer["CiphertextForRecipient"].as_str().unwrap())
        .unwrap();
    enclave.open(&wrapped).unwrap().to_vec()
}

fn no_value(answer: &Value) {
    let text = answer.to_string();
    assert!(!text.contains("owner-pw"), "{text}");
    assert!(answer.get("SecretString").is_none() && answer.get("SecretBinary").is_none());
}

/// The host tries to choose the value the enclave gets: move the enclave-only secret to a key it
/// may use (the AWS managed key) and seal its own AWSCURRENT there, or point AWSCURRENT back at
/// an older version the owner stored. Both change which value the secret holds, so both need
/// what writing the value needs (kms:GenerateDataKey through Secrets Manager on the key of its
/// current value), which the host lacks: refused, while the owner may. Every release names the
/// key that opened the value (an enclave that pins the owner's key refuses any other), and is
/// audited with the secret, the version and the PCR0.
#[test]
fn the_host_cannot_choose_the_value_an_enclave_gets() {
    let w = world();
    let (enc, rcpt) = enclave(&w.pki, b"image-a");
    let (status, created) = sm(
        &w.addr,
        &w.owner,
        "CreateSecret",
        json!({"Name": "app/db", "KmsKeyId": w.key_arn, "SecretString": "owner-pw-1"}),
    );
    assert_eq!(status, 200, "{created}");
    let arn = created["ARN"].as_str().unwrap().to_owned();
    let first = created["VersionId"].as_str().unwrap().to_owned();
    let (status, second) = sm(
        &w.addr,
        &w.owner,
        "PutSecretValue",
        json!({"SecretId": arn, "SecretString": "owner-pw-2"}),
    );
    assert_eq!(status, 200, "{second}");
    let second = second["VersionId"].as_str().unwrap().to_owned();
    let release = || {
        let (status, got) = sm(
            &w.addr,
            &w.host,
            "GetSecretValue",
            json!({"SecretId": arn, "Recipient": rcpt}),
        );
        assert_eq!(status, 200, "{got}");
        no_value(&got);
        assert_eq!(got["KmsKeyId"], w.key_arn.as_str(), "{got}");
        (
            got["VersionId"].as_str().unwrap().to_owned(),
            opened(&enc, &got),
        )
    };
    assert_eq!(release(), (second.clone(), b"owner-pw-2".to_vec()));

    let refused = |op: &str, body: Value| {
        let (status, answer) = sm(&w.addr, &w.host, op, body);
        assert_eq!(
            (status, answer["__type"].as_str()),
            (400, Some("AccessDeniedException")),
            "{op}: {answer}"
        );
        no_value(&answer);
    };
    // The host may not write under the owner's key...
    refused(
        "PutSecretValue",
        json!({"SecretId": arn, "SecretString": "host-pw"}),
    );
    // ...nor move the secret to a key it may use (the managed key, made by its own secret)...
    let (status, _) = sm(
        &w.addr,
        &w.host,
        "CreateSecret",
        json!({"Name": "host/own", "SecretString": "x"}),
    );
    assert_eq!(status, 200);
    refused(
        "UpdateSecret",
        json!({"SecretId": arn, "KmsKeyId": "alias/aws/secretsmanager"}),
    );
    refused(
        "UpdateSecret",
        json!({"SecretId": arn, "KmsKeyId": "alias/aws/secretsmanager", "SecretString": "host-pw"}),
    );
    // ...nor roll AWSCURRENT back to the owner's older version.
    refused(
        "UpdateSecretVersionStage",
        json!({"SecretId": arn, "VersionStage": "AWSCURRENT", "MoveToVersionId": first,
               "RemoveFromVersionId": second}),
    );
    assert_eq!(release(), (second.clone(), b"owner-pw-2".to_vec()));

    // The owner may do both (AWS's semantics for a writer).
    let (status, moved) = sm(
        &w.addr,
        &w.owner,
        "UpdateSecretVersionStage",
        json!({"SecretId": arn, "VersionStage": "AWSCURRENT", "MoveToVersionId": first,
               "RemoveFromVersionId": second}),
    );
    assert_eq!(status, 200, "{moved}");
    assert_eq!(release(), (first.clone(), b"owner-pw-1".to_vec()));

    // Every release above is audited with the secret, the version and the PCR0.
    let image = PcrValue::measure(b"image-a").to_hex();
    let releases: Vec<Value> = w
        .server
        .audit_tail(80)
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["operation"] == "secretsmanager:GetSecretValue" && e.get("pcr0").is_some())
        .collect();
    assert_eq!(releases.len(), 3, "{releases:?}");
    for e in &releases {
        assert_eq!(e["outcome"], "ok");
        assert_eq!(e["principal"], HOST);
        assert_eq!(e["resource_arn"], arn.as_str());
        assert_eq!(e["pcr0"], image.as_str());
        assert!(e["resource_version"].is_string());
    }
}

/// Every other way to read an enclave-only value in the clear is refused, and refusals are
/// audited: BatchGetSecretValue (by id and by filter; a `Recipient` member does not make it a
/// release), a `Recipient` of JSON null, a foreign image, the host's own secret named like the
/// owner's ARN after the host force-deleted it (the answer names another ARN).
#[test]
fn no_other_read_releases_an_enclave_only_value() {
    let w = world();
    let (_, created) = sm(
        &w.addr,
        &w.owner,
        "CreateSecret",
        json!({"Name": "svc", "KmsKeyId": w.key_arn, "SecretString": "owner-pw"}),
    );
    let arn = created["ARN"].as_str().unwrap().to_owned();
    let (_, rcpt) = enclave(&w.pki, b"image-a");

    for input in [
        json!({"SecretIdList": [arn]}),
        json!({"SecretIdList": ["svc"], "Recipient": rcpt}),
        json!({"Filters": [{"Key": "name", "Values": ["svc"]}]}),
    ] {
        let (status, got) = sm(&w.addr, &w.host, "BatchGetSecretValue", input.clone());
        assert_eq!(status, 200, "{got}");
        no_value(&got);
        assert_eq!(got["SecretValues"], json!([]), "{input}");
        assert_eq!(
            got["Errors"][0]["ErrorCode"], "AccessDeniedException",
            "{got}"
        );
    }
    let (status, got) = sm(
        &w.addr,
        &w.host,
        "GetSecretValue",
        json!({"SecretId": arn, "Recipient": null}),
    );
    assert_eq!(
        (status, got["__type"].as_str()),
        (400, Some("AccessDeniedException"))
    );
    let (_, foreign) = enclave(&w.pki, b"image-b");
    let (status, got) = sm(
        &w.addr,
        &w.host,
        "GetSecretValue",
        json!({"SecretId": arn, "Recipient": foreign}),
    );
    assert_eq!(
        (status, got["__type"].as_str()),
        (400, Some("AccessDeniedException"))
    );
    no_value(&got);

    // The host deletes the owner's secret (metadata operations are open) and makes one named
    // like the owner's ARN's last part: the owner's ARN now finds the host's secret as a
    // partial ARN (AWS's own rule), whose answer names another ARN, which a client asking by
    // full ARN refuses (cloister's client does).
    let (status, _) = sm(
        &w.addr,
        &w.host,
        "DeleteSecret",
        json!({"SecretId": arn, "ForceDeleteWithoutRecovery": true}),
    );
    assert_eq!(status, 200);
    let suffixed = arn.rsplit_once(':').unwrap().1.to_owned();
    let (status, mine) = sm(
        &w.addr,
        &w.host,
        "CreateSecret",
        json!({"Name": suffixed, "SecretString": "host-pw"}),
    );
    assert_eq!(status, 200, "{mine}");
    let (status, got) = sm(&w.addr, &w.host, "GetSecretValue", json!({"SecretId": arn}));
    assert_eq!(status, 200, "{got}");
    assert_ne!(got["ARN"], arn.as_str(), "the answer names the secret read");
    assert_eq!(got["ARN"], mine["ARN"]);

    let audit = w.server.audit_tail(40);
    let batches: Vec<&Value> = audit
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["operation"] == "secretsmanager:BatchGetSecretValue")
        .collect();
    assert_eq!(batches.len(), 3);
    for e in batches {
        assert!(e.get("resource_arn").is_none(), "nothing released: {e}");
        assert_eq!(
            e["reason"],
            format!("refused: {arn} AccessDeniedException").as_str()
        );
    }
    let refused = audit
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| {
            e["operation"] == "secretsmanager:GetSecretValue"
                && e["outcome"] == "error"
                && e["resource_arn"] == arn.as_str()
        })
        .count();
    assert!(refused >= 2, "{audit:?}");
}

/// A SecureString under the enclave-only key: the host's read with decryption is refused (also
/// through GetParameters, GetParametersByPath and GetParameterHistory); the ciphertext it gets
/// without decryption opens only under this parameter's context, not another's; the host's
/// overwrite under the same key is refused.
#[test]
fn an_enclave_only_parameter_leaks_through_no_read() {
    let w = world();
    let (status, put) = ssm(
        &w.addr,
        &w.owner,
        "PutParameter",
        json!({"Name": "/app/db", "Type": "SecureString", "KeyId": w.key_arn, "Value": "owner-pw"}),
    );
    assert_eq!(status, 200, "{put}");
    for (op, input) in [
        (
            "GetParameter",
            json!({"Name": "/app/db", "WithDecryption": true}),
        ),
        (
            "GetParameter",
            json!({"Name": "/app/db:1", "WithDecryption": true}),
        ),
        (
            "GetParameters",
            json!({"Names": ["/app/db"], "WithDecryption": true}),
        ),
        (
            "GetParametersByPath",
            json!({"Path": "/app", "Recursive": true, "WithDecryption": true}),
        ),
        (
            "GetParameterHistory",
            json!({"Name": "/app/db", "WithDecryption": true}),
        ),
    ] {
        let (_, got) = ssm(&w.addr, &w.host, op, input);
        assert!(!got.to_string().contains("owner-pw"), "{op}: {got}");
    }
    let (status, got) = ssm(
        &w.addr,
        &w.host,
        "GetParameter",
        json!({"Name": "/app/db", "WithDecryption": true}),
    );
    assert_eq!(status, 400, "{got}");
    let (status, got) = ssm(&w.addr, &w.host, "GetParameter", json!({"Name": "/app/db"}));
    assert_eq!(status, 200, "{got}");
    let blob = got["Parameter"]["Value"].as_str().unwrap().to_owned();
    let param_arn = got["Parameter"]["ARN"].as_str().unwrap().to_owned();

    // The host's overwrite under the owner's key: refused.
    let (status, got) = ssm(
        &w.addr,
        &w.host,
        "PutParameter",
        json!({"Name": "/app/db", "Type": "SecureString", "KeyId": w.key_arn,
               "Value": "host-pw", "Overwrite": true}),
    );
    assert_eq!(status, 400, "{got}");

    // The ciphertext under another parameter's context does not open, even for the enclave.
    let (enc, rcpt) = enclave(&w.pki, b"image-a");
    let kms = |ctx: &str| {
        raw(
            &w.addr,
            &w.host,
            "kms",
            "TrentService.Decrypt",
            &json!({"CiphertextBlob": blob, "KeyId": w.key_arn,
                    "EncryptionContext": {"PARAMETER_ARN": ctx}, "Recipient": rcpt})
            .to_string(),
        )
    };
    let (status, body) = kms(&param_arn.replace("/app/db", "app/db"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidCiphertextException"), "{body}");
    let (status, body) = kms(&param_arn);
    assert_eq!(status, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(opened(&enc, &got), b"owner-pw");
}

/// Crafted requests: deep nesting, a huge body, odd targets, a scope for another service, a
/// forged NextToken. Each gets a clear 4xx and the service keeps answering.
#[test]
fn crafted_requests_get_clear_errors_and_the_service_keeps_answering() {
    let w = world();
    let deep = format!(
        "{{\"SecretId\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("secretsmanager.GetSecretValue", deep, "secretsmanager"),
        (
            "secretsmanager.CreateSecret",
            json!({"Name": "big", "SecretString": "x".repeat(70_000)}).to_string(),
            "secretsmanager",
        ),
        ("secretsmanager.", "{}".into(), "secretsmanager"),
        (
            "secretsmanager.GetSecretValue.x",
            "{}".into(),
            "secretsmanager",
        ),
        (
            "SECRETSMANAGER.GetSecretValue",
            "{}".into(),
            "secretsmanager",
        ),
        (
            "AmazonSSM.GetParameter",
            json!({"Name": "/x"}).to_string(),
            "secretsmanager",
        ),
        (
            "secretsmanager.GetSecretValue",
            json!({"SecretId": "x"}).to_string(),
            "ssm",
        ),
        (
            "secretsmanager.ListSecrets",
            json!({"NextToken": "AAAA//////8="}).to_string(),
            "secretsmanager",
        ),
        (
            "AmazonSSM.GetParametersByPath",
            json!({"Path": "/", "NextToken": "forged"}).to_string(),
            "ssm",
        ),
        (
            "secretsmanager.ListSecretVersionIds",
            json!({"SecretId": "x", "MaxResults": 1_000_000_000_000_i64}).to_string(),
            "secretsmanager",
        ),
    ];
    for (target, body, service) in cases {
        let (status, text) = raw(&w.addr, &w.host, service, target, &body);
        assert!(
            (400..500).contains(&status),
            "{target} {service}: {status} {}",
            &text[..text.len().min(200)]
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert!(answer["__type"].is_string(), "{target}: {answer}");
    }
    let (status, _) = sm(&w.addr, &w.host, "ListSecrets", json!({}));
    assert_eq!(status, 200);
}

/// The host edits the database (it cannot read the root key): a version's sealed value and MAC
/// copied from another secret, a parameter's body and MAC copied from another parameter. Both
/// rows fail their MAC at the next start: the secret and parameter are refused (to the
/// enclave too), never answered with the other's value; the untouched ones still are.
#[test]
fn sealed_values_moved_between_rows_in_the_database_are_refused() {
    let mut w = world();
    let (enc, rcpt) = enclave(&w.pki, b"image-a");
    let mut arns = Vec::new();
    for (name, value) in [("a", "owner-pw-a"), ("b", "owner-pw-b")] {
        let (status, created) = sm(
            &w.addr,
            &w.owner,
            "CreateSecret",
            json!({"Name": name, "KmsKeyId": w.key_arn, "SecretString": value}),
        );
        assert_eq!(status, 200, "{created}");
        arns.push(created["ARN"].as_str().unwrap().to_owned());
        let (status, put) = ssm(
            &w.addr,
            &w.owner,
            "PutParameter",
            json!({"Name": format!("/p/{name}"), "Type": "SecureString", "KeyId": w.key_arn,
                   "Value": value}),
        );
        assert_eq!(status, 200, "{put}");
    }
    w.server.terminate(std::time::Duration::from_secs(30));
    let db = common::db(&w.data);
    let n = db
        .execute(
            "UPDATE secret_versions SET (sealed, mac) = \
             (SELECT sealed, mac FROM secret_versions WHERE arn = ?2) WHERE arn = ?1",
            [&arns[0], &arns[1]],
        )
        .unwrap();
    assert_eq!(n, 1);
    let n = db
        .execute(
            "UPDATE parameters SET (body, mac) = \
             (SELECT body, mac FROM parameters WHERE arn LIKE '%parameter/p/b') \
             WHERE arn LIKE '%parameter/p/a'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let server = kms_bin().start(&w.data, &["--trust-root", w.root_pem.to_str().unwrap()]);
    let addr = server.addr.clone();

    let (status, got) = sm(
        &addr,
        &w.host,
        "GetSecretValue",
        json!({"SecretId": arns[0], "Recipient": rcpt}),
    );
    assert!(status >= 400, "{got}");
    assert!(got.get("CiphertextForRecipient").is_none(), "{got}");
    let (status, got) = sm(
        &addr,
        &w.host,
        "GetSecretValue",
        json!({"SecretId": arns[1], "Recipient": rcpt}),
    );
    assert_eq!(status, 200, "{got}");
    assert_eq!(opened(&enc, &got), b"owner-pw-b");

    let (status, got) = ssm(&addr, &w.host, "GetParameter", json!({"Name": "/p/a"}));
    assert!(status >= 400, "{got}");
    assert!(got.get("Parameter").is_none(), "{got}");
    let (status, got) = ssm(&addr, &w.host, "GetParameter", json!({"Name": "/p/b"}));
    assert_eq!(status, 200, "{got}");
}

/// A value-guessing oracle: the host names the owner's version (its id is listed to anyone) as
/// the `ClientRequestToken` of a PutSecretValue or CreateSecret with a guessed value. A retry
/// of the same write answers as the first did, so if the service compared the guess with the
/// stored value for any caller, "200" against "ResourceExistsException" would confirm guesses
/// at a value the host may not read. The comparison is made only for a caller the key policy
/// lets write under the version's key; the host gets ResourceExistsException right or wrong.
#[test]
fn the_idempotency_check_is_no_oracle_for_a_caller_who_may_not_write_under_the_key() {
    let w = world();
    let (_, created) = sm(
        &w.addr,
        &w.owner,
        "CreateSecret",
        json!({"Name": "pin", "KmsKeyId": w.key_arn, "SecretString": "1234"}),
    );
    let arn = created["ARN"].as_str().unwrap().to_owned();
    let version = created["VersionId"].as_str().unwrap().to_owned();
    for guess in ["1234", "0000"] {
        let (status, got) = sm(
            &w.addr,
            &w.host,
            "PutSecretValue",
            json!({"SecretId": arn, "ClientRequestToken": version, "SecretString": guess}),
        );
        assert_eq!(
            (status, got["__type"].as_str()),
            (400, Some("ResourceExistsException")),
            "{guess}: {got}"
        );
        let (status, got) = sm(
            &w.addr,
            &w.host,
            "CreateSecret",
            json!({"Name": "pin", "ClientRequestToken": version, "SecretString": guess,
                   "KmsKeyId": w.key_arn}),
        );
        assert_eq!(
            (status, got["__type"].as_str()),
            (400, Some("ResourceExistsException")),
            "{guess}: {got}"
        );
    }
    // The comparison asks about the key the version is sealed under, whatever key the secret
    // names now: after the owner moves the secret to the AWS managed key (which every
    // principal may use through Secrets Manager), still no oracle for the host.
    let (status, moved) = sm(
        &w.addr,
        &w.owner,
        "UpdateSecret",
        json!({"SecretId": arn, "KmsKeyId": "alias/aws/secretsmanager"}),
    );
    assert_eq!(status, 200, "{moved}");
    let (status, got) = sm(
        &w.addr,
        &w.host,
        "PutSecretValue",
        json!({"SecretId": arn, "ClientRequestToken": version, "SecretString": "1234"}),
    );
    assert_eq!(
        (status, got["__type"].as_str()),
        (400, Some("ResourceExistsException")),
        "{got}"
    );
    // The owner, who may write under the key, keeps AWS's idempotent retry.
    let (status, _) = sm(
        &w.addr,
        &w.owner,
        "UpdateSecret",
        json!({"SecretId": arn, "KmsKeyId": w.key_arn}),
    );
    assert_eq!(status, 200);
    let (status, got) = sm(
        &w.addr,
        &w.owner,
        "PutSecretValue",
        json!({"SecretId": arn, "ClientRequestToken": version, "SecretString": "1234"}),
    );
    assert_eq!(status, 200, "{got}");
    let (status, got) = sm(
        &w.addr,
        &w.owner,
        "CreateSecret",
        json!({"Name": "pin", "ClientRequestToken": version, "SecretString": "1234",
               "KmsKeyId": w.key_arn}),
    );
    assert_eq!(status, 200, "{got}");
}
