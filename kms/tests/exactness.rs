//! Exactness against the real binary: what a signature must cover, what a policy means, and
//! which trust root vouched for an attestation document.
//!
//! Requests the KMS client would never send (signed over too little, scoped to another day) are
//! made by hand with `cloister_sigv4` and sent over a raw socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::{AWS_NITRO_ROOT_G1_SHA256, PcrIndex, PcrValue, Pcrs, Timestamp};
use cloister_kms_client::{ClientError, b64};
use cloister_sigv4::{Credentials, RequestParts};
use cloister_tests::kms::{KmsBinary, REGION, rt};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The binary under test.
fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

fn code(r: Result<Value, ClientError>) -> String {
    match r {
        Ok(v) => format!("OK {v}"),
        Err(e) => e.aws_name().unwrap_or("not a service error").to_owned(),
    }
}

/// `POST /` to `addr` with exactly `headers` (plus `Content-Length` and `Connection: close`):
/// the status and the JSON answer.
fn send(addr: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, answer) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(answer).unwrap())
}

/// `signed` headers signed by `creds` (SigV4 adds `x-amz-date` and `authorization`), then
/// `unsigned` appended as if added in transit.
fn signed_request(
    creds: &Credentials,
    signed: &[(&str, &str)],
    unsigned: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: signed,
        body,
    };
    let added = cloister_sigv4::sign(&parts, creds, REGION, "kms", OffsetDateTime::now_utc());
    signed
        .iter()
        .chain(unsigned)
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain(added)
        .collect()
}

#[test]
fn a_request_signed_without_its_target_replays_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let kms = server.client(creds.clone());
    let id = rt().block_on(async {
        kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    let body = serde_json::to_vec(&json!({"KeyId": id, "PendingWindowInDays": 7})).unwrap();
    let host = server.addr.as_str();
    let json_type = ("content-type", "application/x-amz-json-1.1");

    // Control: the same raw path with the target signed works.
    let (status, answer) = send(
        host,
        &signed_request(
            &creds,
            &[
                ("host", host),
                json_type,
                ("x-amz-target", "TrentService.DescribeKey"),
            ],
            &[],
            &body,
        ),
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["KeyMetadata"]["KeyId"], id.as_str());

    // Captured: signed over host and content-type only. Neither its own target nor another
    // operation's is accepted under that signature.
    for target in [
        "TrentService.DescribeKey",
        "TrentService.ScheduleKeyDeletion",
    ] {
        let captured = signed_request(
            &creds,
            &[("host", host), json_type],
            &[("X-Amz-Target", target)],
            &body,
        );
        let (status, answer) = send(host, &captured, &body);
        assert_eq!(status, 400, "{target}: {answer}");
        assert_eq!(answer["__type"], "IncompleteSignatureException", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("'x-amz-target' must be a 'SignedHeader'"),
            "{answer}"
        );
    }
    // An unsigned session token or content type is refused the same way.
    let (_, answer) = send(
        host,
        &signed_request(
            &creds,
            &[("host", host), ("x-amz-target", "TrentService.DescribeKey")],
            &[json_type, ("X-Amz-Security-Token", "stolen")],
            &body,
        ),
        &body,
    );
    assert_eq!(answer["__type"], "IncompleteSignatureException", "{answer}");
    rt().block_on(async {
        let d = kms
            .call("DescribeKey", &json!({"KeyId": id}))
            .await
            .unwrap();
        assert_eq!(
            d["KeyMetadata"]["KeyState"], "Enabled",
            "the replay did nothing"
        );
    });
}

/// A correctly signed `ListKeys` whose credential scope names `scope_date`.
fn signed_with_scope_date(
    creds: &Credentials,
    host: &str,
    scope_date: &str,
) -> Vec<(String, String)> {
    let now = cloister_sigv4::amz_date(OffsetDateTime::now_utc());
    let headers: Vec<(String, String)> = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", host),
        ("x-amz-date", now.as_str()),
        ("x-amz-target", "TrentService.ListKeys"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &pairs,
        body: b"{}",
    };
    let names: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    let creq =
        cloister_sigv4::canonical_request(&parts, &names, &cloister_sigv4::sha256_hex(b"{}"));
    let scope = cloister_sigv4::scope(scope_date, REGION, "kms");
    let sts = cloister_sigv4::string_to_sign(&now, &scope, &creq);
    let key = cloister_sigv4::signing_key(&creds.secret_access_key, scope_date, REGION, "kms");
    let authorization = format!(
        "{} Credential={}/{scope}, SignedHeaders={}, Signature={}",
        cloister_sigv4::ALGORITHM,
        creds.access_key_id,
        names.join(";"),
        cloister_sigv4::signature(&key, &sts)
    );
    headers
        .into_iter()
        .chain([("authorization".to_owned(), authorization)])
        .collect()
}

#[test]
fn a_credential_scoped_to_another_day_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let host = server.addr.as_str();
    let today = cloister_sigv4::amz_date(OffsetDateTime::now_utc())[..8].to_owned();
    let (status, answer) = send(host, &signed_with_scope_date(&creds, host, &today), b"{}");
    assert_eq!(status, 200, "control: {answer}");
    let yesterday = cloister_sigv4::amz_date(OffsetDateTime::now_utc() - time::Duration::days(1))
        [..8]
        .to_owned();
    for other in [yesterday.as_str(), &today[..6]] {
        let (status, answer) = send(host, &signed_with_scope_date(&creds, host, other), b"{}");
        assert_eq!(status, 400, "{other}: {answer}");
        assert_eq!(answer["__type"], "InvalidSignatureException", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("Date in Credential scope does not match"),
            "{answer}"
        );
    }
}

#[test]
fn policies_mean_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let root = kms_bin().admin(dir.path());
    let app_role = "arn:aws:iam::111122223333:role/app";
    let app_creds = kms_bin().add_principal(dir.path(), app_role);
    let server = kms_bin().start(dir.path(), &[]);
    let (kms, app) = (server.client(root), server.client(app_creds));
    rt().block_on(async {
        let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let put = |policy: String| {
            let kms = &kms;
            let id = id.clone();
            async move { code(kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy})).await) }
        };
        let admin = r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}"#;

        // Duplicate keys: a reader sees Deny, serde_json alone would keep Allow.
        let duplicate = format!(r#"{{"Statement": [{admin}, {{"Effect": "Deny", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}]}}"#);
        assert_eq!(put(duplicate).await, "MalformedPolicyDocumentException");
        // A wildcard inside a principal ARN is not a pattern in IAM.
        let partial = format!(r#"{{"Statement": [{admin}, {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::111122223333:role/*"}}, "Action": "kms:*", "Resource": "*"}}]}}"#);
        assert_eq!(put(partial).await, "MalformedPolicyDocumentException");

        // Encryption-context keys differing only in case: every value must satisfy an Allow's
        // condition, and any value fires a Deny's.
        let policy = json!({"Statement": [
            serde_json::from_str::<Value>(admin).unwrap(),
            {"Effect": "Allow", "Principal": {"AWS": app_role}, "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "backup"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blocked"}}}
        ]});
        assert!(put(policy.to_string()).await.starts_with("OK"));
        let gdk = |ec: Value| {
            let input = json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": ec});
            let app = &app;
            async move { app.call("GenerateDataKey", &input).await }
        };
        assert!(code(gdk(json!({"purpose": "backup"})).await).starts_with("OK"));
        assert!(code(gdk(json!({"Purpose": "backup"})).await).starts_with("OK"), "condition key names are case-insensitive");
        assert_eq!(code(gdk(json!({"Purpose": "backup", "purpose": "other"})).await), "AccessDeniedException");
        assert_eq!(code(gdk(json!({"Purpose": "other", "purpose": "backup"})).await), "AccessDeniedException");
        let blocked = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": {"Tenant": "fine", "tenant": "blocked"}})).await.unwrap();
        let e = kms.call("Decrypt", &json!({"CiphertextBlob": blocked["CiphertextBlob"], "EncryptionContext": {"Tenant": "fine", "tenant": "blocked"}})).await.unwrap_err();
        assert!(e.to_string().contains("explicit deny"), "{e}");
    });
}

const ENCLAVE_ROLE: &str = "arn:aws:iam::111122223333:role/enclave";

fn pcrs(image: &[u8]) -> Pcrs {
    let mut p = Pcrs::new();
    for i in 0..16 {
        p.insert(PcrIndex::new(i).unwrap(), PcrValue::ZERO);
    }
    p.insert(PcrIndex::IMAGE, PcrValue::measure(image));
    p
}

/// A `Recipient` with a fresh document from `pki` for `image`, carrying a fresh RSA key.
fn recipient(pki: &DevPki, image: &[u8]) -> Value {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    let req = DocumentRequest {
        module_id: "i-0123456789abcdef0-enc0000000000000001".into(),
        pcrs: pcrs(image),
        public_key: Some(spki),
        user_data: None,
        nonce: None,
    };
    let doc = b64(&pki.issue(&req, Timestamp::now()).unwrap());
    json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc})
}

#[test]
fn a_key_policy_names_the_trust_root_that_must_have_signed() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let (a, b, untrusted) = (
        DevPki::generate(now).unwrap(),
        DevPki::generate(now).unwrap(),
        DevPki::generate(now).unwrap(),
    );
    let (a_pem, b_pem) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    std::fs::write(&a_pem, a.root_pem()).unwrap();
    std::fs::write(&b_pem, b.root_pem()).unwrap();
    let fingerprint = |pki: &DevPki| hex::encode(pki.trust_anchor().unwrap().sha256());
    let (fp_a, fp_b) = (fingerprint(&a), fingerprint(&b));

    // `trust-roots` prints what a policy writer copies: the AWS root's, then each given root's.
    let out = std::process::Command::new(kms_bin().path())
        .args(["trust-roots", "--trust-root"])
        .arg(&a_pem)
        .arg("--trust-root")
        .arg(&b_pem)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(printed, [AWS_NITRO_ROOT_G1_SHA256, &fp_a, &fp_b]);

    let data = dir.path().join("kms");
    let admin = kms_bin().admin(&data);
    let enclave = kms_bin().add_principal(&data, ENCLAVE_ROLE);
    let server = kms_bin().start(
        &data,
        &[
            "--trust-root",
            a_pem.to_str().unwrap(),
            "--trust-root",
            b_pem.to_str().unwrap(),
        ],
    );
    // `serve` names each root it trusts, with its fingerprint.
    for fp in [AWS_NITRO_ROOT_G1_SHA256, &fp_a, &fp_b] {
        assert!(
            server.log().contains(fp),
            "{fp} not logged: {}",
            server.log()
        );
    }
    let (kms, host) = (server.client(admin), server.client(enclave));
    let image = PcrValue::measure(b"the real image").to_hex();

    rt().block_on(async {
        let key_requiring = |root: String| {
            let kms = &kms;
            let image = image.clone();
            async move {
                let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
                let policy = json!({"Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
                    {"Effect": "Allow", "Principal": {"AWS": ENCLAVE_ROLE}, "Action": "kms:GenerateDataKey", "Resource": "*",
                     "Condition": {"StringEquals": {"kms:RecipientAttestation:ImageSha384": image,
                                                    "cloister:RecipientAttestation:TrustRootSha256": root}}}
                ]});
                kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy.to_string()})).await.unwrap();
                id
            }
        };
        let gdk = |id: &str, r: Value| {
            let input = json!({"KeyId": id, "KeySpec": "AES_256", "Recipient": r});
            let host = &host;
            async move { host.call("GenerateDataKey", &input).await }
        };

        let needs_a = key_requiring(fp_a.clone()).await;
        assert!(code(gdk(&needs_a, recipient(&a, b"the real image")).await).starts_with("OK"));
        // Root B is trusted too, and its document carries the same PCR0: not enough for this key.
        let e = gdk(&needs_a, recipient(&b, b"the real image")).await.unwrap_err();
        assert_eq!(e.aws_name(), Some("AccessDeniedException"));
        assert!(e.to_string().contains("not authorized"), "{e}");

        // A key for real Nitro enclaves only: the dev PKI cannot satisfy it.
        let needs_aws = key_requiring(AWS_NITRO_ROOT_G1_SHA256.to_owned()).await;
        assert_eq!(code(gdk(&needs_aws, recipient(&a, b"the real image")).await), "AccessDeniedException");

        // A document from no trusted root is refused before any policy.
        let e = gdk(&needs_a, recipient(&untrusted, b"the real image")).await.unwrap_err();
        assert!(e.to_string().contains("ATT-ROOT"), "{e}");
    });

    let audit: Vec<Value> = server
        .audit_tail(20)
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["operation"] == "GenerateDataKey")
        .collect();
    assert_eq!(audit.len(), 4, "{audit:?}");
    // Verified documents: module id, PCR0 and the root that verified them.
    assert_eq!(
        (&audit[0]["outcome"], &audit[0]["trust_root_sha256"]),
        (&json!("ok"), &json!(fp_a))
    );
    assert_eq!(
        (&audit[1]["outcome"], &audit[1]["trust_root_sha256"]),
        (&json!("error"), &json!(fp_b))
    );
    assert_eq!(audit[1]["pcr0"], image.as_str());
    // The refused document's PCR0 and module id are claims, never recorded as verified.
    let refused = &audit[3];
    assert_eq!(refused["error"], "AccessDeniedException");
    assert_eq!(refused["claimed_pcr0"], image.as_str(), "{refused}");
    assert!(refused["claimed_module_id"].is_string(), "{refused}");
    for verified_only in ["pcr0", "module_id", "trust_root_sha256"] {
        assert!(
            refused.get(verified_only).is_none(),
            "{verified_only} in {refused}"
        );
    }
    let (intact, out) = server.audit_verify();
    assert!(intact, "{out}");
}
