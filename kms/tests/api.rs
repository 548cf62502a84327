//! The KMS API over real HTTP against a started cloister-kms: operations, errors, auth, state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};

use cloister_kms_client::{ClientError, b64, blob};
use cloister_tests::kms::{KmsBinary, rt};
use serde_json::{Value, json};

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

#[test]
fn key_lifecycle_and_cryptography() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let kms = server.client(creds);
    rt().block_on(async {
        let key = kms.call("CreateKey", &json!({"Description": "test"})).await.unwrap()["KeyMetadata"].clone();
        let id = key["KeyId"].as_str().unwrap().to_owned();
        let arn = key["Arn"].as_str().unwrap().to_owned();
        assert_eq!(key["KeyState"], "Enabled");
        kms.call("CreateAlias", &json!({"AliasName": "alias/app", "TargetKeyId": id})).await.unwrap();
        assert_eq!(code(kms.call("CreateAlias", &json!({"AliasName": "alias/app", "TargetKeyId": id})).await), "AlreadyExistsException");
        assert_eq!(code(kms.call("CreateAlias", &json!({"AliasName": "alias/aws/x", "TargetKeyId": id})).await), "InvalidAliasNameException");
        for key_ref in [id.as_str(), arn.as_str(), "alias/app", "arn:aws:kms:us-east-1:111122223333:alias/app"] {
            let d = kms.call("DescribeKey", &json!({"KeyId": key_ref})).await.unwrap();
            assert_eq!(d["KeyMetadata"]["KeyId"], id.as_str(), "{key_ref}");
        }
        assert_eq!(code(kms.call("DescribeKey", &json!({"KeyId": "alias/none"})).await), "NotFoundException");
        assert_eq!(code(kms.call("DescribeKey", &json!({})).await), "ValidationException");

        // Encryption context binds, unambiguously.
        let ec = json!({"ab": "c"});
        let gdk = kms.call("GenerateDataKey", &json!({"KeyId": "alias/app", "KeySpec": "AES_256", "EncryptionContext": ec})).await.unwrap();
        assert_eq!(gdk["KeyId"], arn.as_str());
        let dk = blob(&gdk, "Plaintext").unwrap();
        assert_eq!(dk.len(), 32);
        let ct = gdk["CiphertextBlob"].clone();
        let dec = kms.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": ec})).await.unwrap();
        assert_eq!(blob(&dec, "Plaintext").unwrap(), dk);
        for wrong in [json!({"a": "bc"}), json!({}), json!({"ab": "c", "x": "y"}), json!({"AB": "c"})] {
            let r = kms.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": wrong})).await;
            assert_eq!(code(r), "InvalidCiphertextException", "{wrong}");
        }
        // Tampered ciphertext.
        let mut raw = blob(&gdk, "CiphertextBlob").unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(code(kms.call("Decrypt", &json!({"CiphertextBlob": b64(&raw), "EncryptionContext": ec})).await), "InvalidCiphertextException");
        // KeyId that does not match the blob.
        let other = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        assert_eq!(code(kms.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": ec, "KeyId": other})).await), "IncorrectKeyException");

        // Limits, AWS wording.
        let err = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(&[0; 4097])})).await.unwrap_err();
        assert!(err.to_string().contains("1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"), "{err}");
        assert_eq!(code(kms.call("GenerateDataKey", &json!({"KeyId": id, "NumberOfBytes": 1025})).await), "ValidationException");
        assert_eq!(code(kms.call("GenerateDataKey", &json!({"KeyId": id})).await), "ValidationException");
        let n = kms.call("GenerateDataKey", &json!({"KeyId": id, "NumberOfBytes": 7})).await.unwrap();
        assert_eq!(blob(&n, "Plaintext").unwrap().len(), 7);
        assert!(kms.call("GenerateDataKeyWithoutPlaintext", &json!({"KeyId": id, "KeySpec": "AES_128"})).await.unwrap().get("Plaintext").is_none());
        assert_eq!(blob(&kms.call("GenerateRandom", &json!({"NumberOfBytes": 64})).await.unwrap(), "Plaintext").unwrap().len(), 64);

        // Rotation keeps old versions.
        let before = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"old")})).await.unwrap();
        kms.call("RotateKeyOnDemand", &json!({"KeyId": id})).await.unwrap();
        let after = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"new")})).await.unwrap();
        let version = |v: &Value| cloister_kms::blob::header(&blob(v, "CiphertextBlob").unwrap()).unwrap().version;
        assert_eq!((version(&before), version(&after)), (1, 2));
        for (v, want) in [(&before, b"old"), (&after, b"new")] {
            let p = kms.call("Decrypt", &json!({"CiphertextBlob": v["CiphertextBlob"]})).await.unwrap();
            assert_eq!(blob(&p, "Plaintext").unwrap(), want);
        }
        kms.call("EnableKeyRotation", &json!({"KeyId": id, "RotationPeriodInDays": 90})).await.unwrap();
        let st = kms.call("GetKeyRotationStatus", &json!({"KeyId": id})).await.unwrap();
        assert_eq!((st["KeyRotationEnabled"].clone(), st["RotationPeriodInDays"].clone()), (json!(true), json!(90)));
        assert_eq!(code(kms.call("EnableKeyRotation", &json!({"KeyId": id, "RotationPeriodInDays": 10})).await), "ValidationException");

        // ReEncrypt.
        let re = kms.call("ReEncrypt", &json!({"CiphertextBlob": before["CiphertextBlob"], "DestinationKeyId": other})).await.unwrap();
        let p = kms.call("Decrypt", &json!({"CiphertextBlob": re["CiphertextBlob"]})).await.unwrap();
        assert_eq!(blob(&p, "Plaintext").unwrap(), b"old");

        // Disabled and pending-deletion keys refuse cryptography.
        kms.call("DisableKey", &json!({"KeyId": id})).await.unwrap();
        let e = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"x")})).await.unwrap_err();
        assert!(matches!(e, ClientError::Service { ref name, status: 400, .. } if name == "DisabledException"), "{e}");
        assert_eq!(code(kms.call("Decrypt", &json!({"CiphertextBlob": before["CiphertextBlob"]})).await), "DisabledException");
        kms.call("EnableKey", &json!({"KeyId": id})).await.unwrap();
        assert_eq!(code(kms.call("ScheduleKeyDeletion", &json!({"KeyId": id, "PendingWindowInDays": 3})).await), "ValidationException");
        let del = kms.call("ScheduleKeyDeletion", &json!({"KeyId": id, "PendingWindowInDays": 7})).await.unwrap();
        assert_eq!(del["KeyState"], "PendingDeletion");
        assert_eq!(code(kms.call("Decrypt", &json!({"CiphertextBlob": before["CiphertextBlob"]})).await), "KMSInvalidStateException");
        assert_eq!(code(kms.call("EnableKey", &json!({"KeyId": id})).await), "KMSInvalidStateException");
        kms.call("CancelKeyDeletion", &json!({"KeyId": id})).await.unwrap();
        let d = kms.call("DescribeKey", &json!({"KeyId": id})).await.unwrap();
        assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");

        // Paging.
        for _ in 0..3 {
            kms.call("CreateKey", &json!({})).await.unwrap();
        }
        let mut seen = 0;
        let mut marker = Value::Null;
        loop {
            let page = kms.call("ListKeys", &json!({"Limit": 2, "Marker": marker})).await.unwrap();
            seen += page["Keys"].as_array().unwrap().len();
            if page["Truncated"] == json!(false) {
                break;
            }
            marker = page["NextMarker"].clone();
        }
        assert_eq!(seen, 5);
        assert_eq!(code(kms.call("ListKeys", &json!({"Marker": "bogus"})).await), "InvalidMarkerException");
        assert_eq!(code(kms.call("Frobnicate", &json!({})).await), "UnknownOperationException");
    });
}

fn raw_post(addr: &str, headers: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn authentication_is_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let r = raw_post(
        &server.addr,
        "X-Amz-Target: TrentService.ListKeys\r\nContent-Type: application/x-amz-json-1.1\r\n",
        "{}",
    );
    assert!(r.contains("MissingAuthenticationTokenException"), "{r}");
    let r = raw_post(
        &server.addr,
        "X-Amz-Target: TrentService.ListKeys\r\nAuthorization: Basic abc\r\n",
        "{}",
    );
    assert!(r.contains("IncompleteSignatureException"), "{r}");
    rt().block_on(async {
        let mut wrong = creds.clone();
        wrong.secret_access_key = zeroize::Zeroizing::new("not-the-secret".into());
        assert_eq!(
            code(server.client(wrong).call("ListKeys", &json!({})).await),
            "InvalidSignatureException"
        );
        let mut unknown = creds.clone();
        unknown.access_key_id = "AKIAUNKNOWNUNKNOWN00".into();
        assert_eq!(
            code(server.client(unknown).call("ListKeys", &json!({})).await),
            "UnrecognizedClientException"
        );
        let eu = cloister_kms_client::KmsClient::http(
            &format!("http://{}", server.addr),
            "eu-west-1",
            creds.clone(),
        )
        .unwrap();
        assert_eq!(
            code(eu.call("ListKeys", &json!({})).await),
            "InvalidSignatureException"
        );
        creds.session_token = None;
        server
            .client(creds)
            .call("ListKeys", &json!({}))
            .await
            .unwrap();
    });
    let audit = server.audit_tail(20);
    assert!(audit.iter().any(|e| e["entry"]["principal"] == "anonymous"
        && e["entry"]["error"] == "MissingAuthenticationTokenException"));
}

#[test]
fn key_policies_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let root = kms_bin().admin(dir.path());
    let app_role = "arn:aws:iam::111122223333:role/app";
    let app_creds = kms_bin().add_principal(dir.path(), app_role);
    let server = kms_bin().start(dir.path(), &[]);
    let (kms, app) = (server.client(root), server.client(app_creds));
    rt().block_on(async {
        let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        // The default policy gives only the account root access.
        let e = app.call("GenerateDataKey", &json!({"KeyId": id, "KeySpec": "AES_256"})).await.unwrap_err();
        assert_eq!(e.aws_name(), Some("AccessDeniedException"));
        assert!(e.to_string().contains("is not authorized to perform: kms:GenerateDataKey"), "{e}");
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": app_role}, "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "acme"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blocked"}}}
        ]});
        kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy.to_string()})).await.unwrap();
        let ok = app.call("GenerateDataKey", &json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"tenant": "acme"}})).await.unwrap();
        app.call("Decrypt", &json!({"CiphertextBlob": ok["CiphertextBlob"], "EncryptionContext": {"tenant": "acme"}})).await.unwrap();
        assert_eq!(code(app.call("GenerateDataKey", &json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"tenant": "other"}})).await), "AccessDeniedException");
        assert_eq!(code(app.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": {"tenant": "acme"}})).await), "AccessDeniedException");
        // Explicit deny beats the root's allow.
        let blocked = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": {"tenant": "blocked"}})).await.unwrap();
        let e = kms.call("Decrypt", &json!({"CiphertextBlob": blocked["CiphertextBlob"], "EncryptionContext": {"tenant": "blocked"}})).await.unwrap_err();
        assert!(e.to_string().contains("explicit deny"), "{e}");
        // Bad policies, and a policy that would lock the caller out.
        assert_eq!(code(kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": "{\"Statement\": 5}"})).await), "MalformedPolicyDocumentException");
        let lockout = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": app_role}, "Action": "kms:*", "Resource": "*"}});
        assert_eq!(code(kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": lockout.to_string()})).await), "MalformedPolicyDocumentException");
        let got = kms.call("GetKeyPolicy", &json!({"KeyId": id, "PolicyName": "default"})).await.unwrap();
        assert_eq!(serde_json::from_str::<Value>(got["Policy"].as_str().unwrap()).unwrap(), policy);
    });
}

#[test]
fn throttling_beyond_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &["--rate", "5"]);
    let kms = server.client(creds).with_retry(cloister_kms_client::Retry {
        attempts: 1,
        ..Default::default()
    });
    rt().block_on(async {
        let mut throttled = 0;
        for _ in 0..30 {
            if let Err(e) = kms
                .call("GenerateRandom", &json!({"NumberOfBytes": 8}))
                .await
            {
                assert_eq!(e.aws_name(), Some("ThrottlingException"));
                throttled += 1;
            }
        }
        assert!(throttled >= 15, "only {throttled} of 30 throttled at 5/s");
        // Management operations are not throttled.
        kms.call("ListKeys", &json!({})).await.unwrap();
    });
    // A client with retries gets through with backoff.
    let patient = server.client(kms_bin().admin(dir.path()));
    rt().block_on(async {
        for _ in 0..8 {
            patient
                .call("GenerateRandom", &json!({"NumberOfBytes": 8}))
                .await
                .unwrap();
        }
    });
}

#[test]
fn a_second_server_on_the_same_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let _first = kms_bin().start(dir.path(), &[]);
    let out = std::process::Command::new(kms_bin().path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is locked"));
}

#[test]
fn tls_listener_serves_the_same_api_with_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &["--tls-listen", "127.0.0.1:0"]);
    let https = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = server.log();
            if let Some(a) = log.split("listening on https://").nth(1) {
                break a.lines().next().unwrap().trim().to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no https listener: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let tcp = cloister_kms_client::TcpConnector(https.clone());
    let tls = cloister_kms_client::TlsConnector::new(tcp, "localhost", &ca).unwrap();
    let kms = cloister_kms_client::KmsClient::new(tls, https.clone(), "us-east-1", creds.clone());
    rt().block_on(async {
        let r = kms
            .call("GenerateRandom", &json!({"NumberOfBytes": 16}))
            .await
            .unwrap();
        assert_eq!(blob(&r, "Plaintext").unwrap().len(), 16);
        // A client that trusts another CA refuses the server.
        let other_dir = tempfile::tempdir().unwrap();
        let _ = cloister_kms::server_config(other_dir.path()).unwrap();
        let other_ca = std::fs::read(other_dir.path().join("tls/ca.pem")).unwrap();
        let tcp = cloister_kms_client::TcpConnector(https.clone());
        let tls = cloister_kms_client::TlsConnector::new(tcp, "localhost", &other_ca).unwrap();
        let wrong = cloister_kms_client::KmsClient::new(tls, https, "us-east-1", creds).with_retry(
            cloister_kms_client::Retry {
                attempts: 1,
                ..Default::default()
            },
        );
        assert_eq!(
            cloister_common::ErrorCode::code(
                &wrong.call("ListKeys", &json!({})).await.unwrap_err()
            ),
            "KMS-TRANSPORT"
        );
    });
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = kms_bin().start(dir.path(), &[]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "exit {exit:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(server.log().contains("stopped"));
}

#[test]
fn the_harness_serves_tls_with_extra_trust_roots_as_the_pipeline_needs() {
    let pki =
        cloister_attestation::dev_signer::DevPki::generate(cloister_attestation::Timestamp::now())
            .unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let root = pki_dir.path().join("root.pem");
    std::fs::write(&root, pki.root_pem()).unwrap();
    let server = kms_bin().start_temp(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--trust-root",
        root.to_str().unwrap(),
    ]);
    assert!(server.https.is_some(), "{}", server.log());
    let env = server.admin_env();
    assert!(
        env.iter()
            .any(|(k, v)| k == "AWS_ACCESS_KEY_ID" && v.starts_with("AKIA"))
    );
    let tls = server.tls_client(server.admin());
    rt().block_on(async {
        let r = tls
            .call("GenerateRandom", &json!({"NumberOfBytes": 16}))
            .await
            .unwrap();
        assert_eq!(blob(&r, "Plaintext").unwrap().len(), 16);
    });
    assert_eq!(server.audit_tail(5).len(), 1);
    let (intact, out) = server.audit_verify();
    assert!(intact, "{out}");
}
