//! Secrets Manager's attested release (path R) against the real binary: a secret stored under a
//! key whose policy allows `kms:Decrypt` only to an attested enclave (a PCR0 condition) is
//! refused to plain reads with AWS's answer, and reaches the enclave only as
//! `CiphertextForRecipient` (never `SecretString`/`SecretBinary`), with the release audited
//! (operation, secret ARN, version, PCR0).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::Engine as _;
use cloister_attestation::PcrValue;
use cloister_attestation::Timestamp;
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_sigv4::Credentials;
use cloister_tests::kms::rt;
use common::{document, kms_bin, recipient};
use serde_json::{Value, json};

const ENCLAVE_ROLE: &str = "arn:aws:iam::111122223333:role/enclave";

/// One Secrets Manager request over plain HTTP, signed for `service`: (status, JSON body).
fn call(addr: &str, creds: &Credentials, service: &str, op: &str, input: &Value) -> (u16, Value) {
    let (status, body) = common::signed_post(
        addr,
        creds,
        service,
        &format!("secretsmanager.{op}"),
        &input.to_string(),
    );
    (status, serde_json::from_str(&body).unwrap())
}

fn sm(addr: &str, creds: &Credentials, op: &str, input: Value) -> (u16, Value) {
    call(addr, creds, "secretsmanager", op, &input)
}

#[test]
fn an_enclave_only_secret_reaches_only_the_attested_enclave_wrapped_to_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root_pem = dir.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = dir.path().join("kms");
    let admin = kms_bin().admin(&data);
    let host = kms_bin().add_principal(&data, ENCLAVE_ROLE);
    let server = kms_bin().start(&data, &["--trust-root", root_pem.to_str().unwrap()]);
    let kms = server.client(admin.clone());
    let addr = server.addr.clone();
    let image = PcrValue::measure(b"image-a").to_hex();

    let key = rt().block_on(async {
        let id = common::key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "owner", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:GenerateDataKey"], "Resource": "*"},
            {"Sid": "enclave", "Effect": "Allow", "Principal": {"AWS": ENCLAVE_ROLE},
             "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": image},
                           "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}}
        ]});
        kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy.to_string()})).await.unwrap();
        id
    });

    let (status, created) = sm(
        &addr,
        &admin,
        "CreateSecret",
        json!({"Name": "app/db", "KmsKeyId": key, "SecretString": "db-password"}),
    );
    assert_eq!(status, 200, "{created}");
    let arn = created["ARN"].as_str().unwrap().to_owned();
    let version = created["VersionId"].as_str().unwrap().to_owned();

    // Plain reads, by the owner or the host, get AWS's answer.
    for who in [&admin, &host] {
        let (status, refused) = sm(&addr, who, "GetSecretValue", json!({"SecretId": "app/db"}));
        assert_eq!(status, 400);
        assert_eq!(
            refused,
            json!({"__type": "AccessDeniedException", "Message": "Access to KMS is not allowed"})
        );
    }

    // The enclave's document: the value wrapped to its key, never in the clear.
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    let enclave = RecipientPrivateKey::new(private).unwrap();
    let good = document(&pki, b"image-a", &spki);
    let (status, got) = sm(
        &addr,
        &host,
        "GetSecretValue",
        json!({"SecretId": arn, "Recipient": recipient(&good)}),
    );
    assert_eq!(status, 200, "{got}");
    assert!(
        got.get("SecretString").is_none() && got.get("SecretBinary").is_none(),
        "{got}"
    );
    assert_eq!(got["ARN"], arn.as_str());
    assert_eq!(got["Name"], "app/db");
    assert_eq!(got["VersionId"], version.as_str());
    assert_eq!(got["VersionStages"], json!(["AWSCURRENT"]));
    assert_eq!(got["SecretKind"], "String");
    assert!(got["CreatedDate"].as_f64().unwrap() > 0.0);
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(got["CiphertextForRecipient"].as_str().unwrap())
        .unwrap();
    assert_eq!(enclave.open(&wrapped).unwrap().as_slice(), b"db-password");

    // A binary value says so.
    let (status, put) = sm(
        &addr,
        &admin,
        "PutSecretValue",
        json!({"SecretId": arn, "SecretBinary": cloister_kms_client::b64(&[0, 1, 2])}),
    );
    assert_eq!(status, 200, "{put}");
    let (_, got) = sm(
        &addr,
        &host,
        "GetSecretValue",
        json!({"SecretId": "app/db", "Recipient": recipient(&good)}),
    );
    assert_eq!(got["SecretKind"], "Binary");
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(got["CiphertextForRecipient"].as_str().unwrap())
        .unwrap();
    assert_eq!(enclave.open(&wrapped).unwrap().as_slice(), [0, 1, 2]);

    // Another image's document is refused, and so is a broken one.
    let foreign = document(&pki, b"image-b", &spki);
    let (status, refused) = sm(
        &addr,
        &host,
        "GetSecretValue",
        json!({"SecretId": "app/db", "Recipient": recipient(&foreign)}),
    );
    assert_eq!(
        (status, refused["__type"].as_str()),
        (400, Some("AccessDeniedException"))
    );
    let (status, refused) = sm(
        &addr,
        &host,
        "GetSecretValue",
        json!({"SecretId": "app/db", "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "AAAA"}}),
    );
    assert_eq!(status, 400, "{refused}");

    // A request signed for the KMS is not a Secrets Manager request.
    let (status, refused) = call(
        &addr,
        &host,
        "kms",
        "GetSecretValue",
        &json!({"SecretId": "app/db"}),
    );
    assert_eq!(
        (status, refused["__type"].as_str()),
        (400, Some("InvalidSignatureException")),
        "{refused}"
    );

    // A plain read of a secret under the AWS managed key is audited with its ARN and version
    // (and no PCR0).
    let (status, plain) = sm(
        &addr,
        &admin,
        "CreateSecret",
        json!({"Name": "app/plain", "SecretString": "p"}),
    );
    assert_eq!(status, 200, "{plain}");
    let (status, read) = sm(
        &addr,
        &admin,
        "GetSecretValue",
        json!({"SecretId": "app/plain"}),
    );
    assert_eq!((status, read["SecretString"].as_str()), (200, Some("p")));

    // The release is audited: operation, caller, secret, version, PCR0.
    let audit = server.audit_tail(40);
    let plain_read = audit
        .iter()
        .map(|e| &e["entry"])
        .rfind(|e| e["operation"] == "secretsmanager:GetSecretValue")
        .unwrap();
    assert_eq!(plain_read["outcome"], "ok");
    assert_eq!(plain_read["resource_arn"], plain["ARN"]);
    assert_eq!(plain_read["resource_version"], plain["VersionId"]);
    assert!(plain_read.get("pcr0").is_none());
    let released: Vec<&Value> = audit
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| {
            e["operation"] == "secretsmanager:GetSecretValue"
                && e["outcome"] == "ok"
                && e.get("pcr0").is_some()
        })
        .collect();
    assert_eq!(released.len(), 2, "{audit:?}");
    let first = released[0];
    assert_eq!(first["principal"], ENCLAVE_ROLE);
    assert_eq!(first["resource_arn"], arn.as_str());
    assert_eq!(first["resource_version"], version.as_str());
    assert_eq!(first["pcr0"], image.as_str());
    assert_eq!(first["encryption_context"]["SecretARN"], arn.as_str());
    let refusals = audit
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["operation"] == "secretsmanager:GetSecretValue" && e["outcome"] == "error")
        .count();
    assert!(refusals >= 4, "{refusals}");
}
