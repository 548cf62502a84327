//! The operator's tools, with the real binary: `policy check` (which principals reach plaintext
//! without attestation, from a file or a stored key, as text and JSON; PutKeyPolicy logs the
//! same findings) and `tls rotate` (a new certificate under the same CA, picked up by the
//! running server; a new CA refused by clients that pin the old one; KMS keys untouched).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use cloister_tests::kms::{KmsBinary, rt};
use serde_json::{Value, json};

fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

const HOST: &str = "arn:aws:iam::111122223333:role/cloister-host";

/// The owner manages and seals; the host may Decrypt (and, by AWS's standard key-user
/// statement, ReEncrypt) — only Decrypt is conditioned on attestation.
fn leaky_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "HostDecrypt", "Effect": "Allow", "Principal": {"AWS": HOST},
         "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "ab"}}},
        {"Sid": "HostReEncrypt", "Effect": "Allow", "Principal": {"AWS": HOST},
         "Action": "kms:ReEncrypt*", "Resource": "*"}
    ]})
}

fn host_reach(report: &Value, action: &str) -> String {
    report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == HOST)
        .unwrap()["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == action)
        .unwrap()["reach"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn policy_check_reports_unattested_paths_from_a_file_and_a_stored_key() {
    let server = kms_bin().start_temp(&[]);
    let file = server.dir.join("policy.json");
    std::fs::write(&file, leaky_policy().to_string()).unwrap();

    let text = server
        .binary()
        .run(&server.dir, &["policy", "check", file.to_str().unwrap()]);
    // `run` appends --data-dir, which a file check does not need but accepts.
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(&format!("principal {HOST}")), "{text}");
    assert!(
        text.contains(
            "kms:ReEncryptFrom        ALLOWED WITHOUT ATTESTATION (statement HostReEncrypt)"
        ),
        "{text}"
    );
    assert!(
        text.contains("kms:Decrypt              only with attestation"),
        "{text}"
    );

    // The same policy stored on a key, checked by key ARN, as JSON.
    let kms = server.client(server.admin());
    let rt = rt();
    let arn = rt.block_on(kms.call("CreateKey", &json!({}))).unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    rt.block_on(kms.call(
        "PutKeyPolicy",
        &json!({"KeyId": arn, "Policy": leaky_policy().to_string()}),
    ))
    .unwrap();
    let json: Value =
        serde_json::from_str(&server.cli(&["policy", "check", "--key-id", &arn, "--json"]))
            .unwrap();
    assert_eq!(
        host_reach(&json, "kms:ReEncryptFrom"),
        "without-attestation"
    );
    assert_eq!(host_reach(&json, "kms:Decrypt"), "attested-only");
    assert_eq!(host_reach(&json, "kms:PutKeyPolicy"), "not-allowed");
    // The owner's eight paths (five plaintext actions, PutKeyPolicy, CreateGrant, ReplicateKey)
    // and the host's one.
    assert_eq!(json["without_attestation"], 9, "{json}");

    // PutKeyPolicy logged the host's unattested path.
    assert!(
        server.wait_for_log(
            &format!("{HOST} reaches plaintext without attestation: kms:ReEncryptFrom"),
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );

    // A malformed policy and an unknown key are clear errors.
    std::fs::write(&file, "{\"Statement\": 1}").unwrap();
    let out = server
        .binary()
        .run(&server.dir, &["policy", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MalformedPolicyDocumentException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server
        .binary()
        .run(&server.dir, &["policy", "check", "--key-id", "no-such-key"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key no-such-key"));
}

#[test]
fn tls_rotate_keeps_the_ca_and_the_keys_and_a_new_ca_is_refused_by_old_pins() {
    let server = kms_bin().start_temp(&["--tls-listen", "127.0.0.1:0"]);
    let admin = server.admin();
    let rt = rt();
    let before = rt.block_on(async {
        let kms = server.tls_client(admin.clone());
        let key = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let ct = kms
            .call("Encrypt", &json!({"KeyId": key, "Plaintext": "aGVsbG8="}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        (key, ct)
    });
    let ca = std::fs::read(server.ca_pem_path()).unwrap();
    let cert = std::fs::read(server.dir.join("tls/server.pem")).unwrap();

    let out = server.cli(&["tls", "rotate"]);
    assert!(out.contains("under the same CA"), "{out}");
    assert_eq!(std::fs::read(server.ca_pem_path()).unwrap(), ca);
    assert_ne!(
        std::fs::read(server.dir.join("tls/server.pem")).unwrap(),
        cert
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.dir.join("tls/server.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // A new connection, pinned to the same CA, gets the new certificate from the running
    // server, and the key made before still decrypts.
    let plain = rt.block_on(async {
        let kms = server.tls_client(admin.clone());
        kms.call("Decrypt", &json!({"CiphertextBlob": before.1}))
            .await
            .unwrap()["Plaintext"]
            .clone()
    });
    assert_eq!(plain, "aGVsbG8=");
    assert!(
        server.wait_for_log("TLS certificate reloaded", Duration::from_secs(5)),
        "{}",
        server.log()
    );

    // A new CA: a client pinned to the old one is refused at the handshake.
    let old_pin = server.tls_client(admin.clone());
    let out = server.cli(&["tls", "rotate", "--new-ca"]);
    assert!(out.contains("must pin the new"), "{out}");
    assert_ne!(std::fs::read(server.ca_pem_path()).unwrap(), ca);
    let refused = rt.block_on(old_pin.call("ListKeys", &json!({})));
    assert!(refused.is_err(), "{refused:?}");
    let fresh = server.tls_client(admin);
    let keys = rt.block_on(fresh.call("ListKeys", &json!({}))).unwrap();
    assert!(keys.to_string().contains(&before.0), "{keys}");
}
