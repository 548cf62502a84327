//! A hostile review of cloister-kms against the real binary: each test is one line of attack.
//!
//! Attacks the KMS withstands are regression tests asserting the refusal and its error. Attacks
//! that succeeded assert the secure behaviour: the one found (policy check counting a Deny guard
//! that names another key's ARN) was fixed in `policy::findings`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_kms_client::{ClientError, KmsClient, b64};
use cloister_sigv4::{Credentials, RequestParts};
use cloister_tests::kms::{ADMIN_ARN, KmsServer, REGION, rt};
use serde_json::{Value, json};
use time::OffsetDateTime;

use common::{db, key_id, kms_bin, once, rewrite_audit_entry, serve_refused};

const HOST: &str = "arn:aws:iam::111122223333:role/cloister-host";
const IMAGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The AWS error name, or `OK <answer>`.
fn code(r: Result<Value, ClientError>) -> String {
    match r {
        Ok(v) => format!("OK {v}"),
        Err(e) => e.aws_name().unwrap_or("not a service error").to_owned(),
    }
}

fn owner_statement() -> Value {
    json!({"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*",
           "Resource": "*"})
}

/// The split-principal policy of tests/src/pipeline.rs: the owner may do everything; the host
/// may Decrypt only for `IMAGE`, and nothing at all without an attestation document.
fn guarded_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [
        owner_statement(),
        {"Sid": "HostAttested", "Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": IMAGE}}},
        {"Sid": "HostOnlyAttested", "Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*",
         "Resource": "*", "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
    ]})
    .to_string()
}

/// A data directory with an admin and the host principal, and a server on it.
fn started(extra: &[&str]) -> (tempfile::TempDir, KmsServer, KmsClient, KmsClient) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    let admin = kms_bin().admin(&dir);
    let host = kms_bin().add_principal(&dir, HOST);
    let server = kms_bin().start(&dir, extra);
    let (owner, host) = (once(server.client(admin)), once(server.client(host)));
    (tmp, server, owner, host)
}

/// `cloister-kms policy check --json <file>`: how `who` reaches `action`.
fn checked_reach(dir: &Path, policy: &str, who: &str, action: &str) -> String {
    let file = dir.join("policy-under-check.json");
    std::fs::write(&file, policy).unwrap();
    let out = Command::new(kms_bin().path())
        .args(["policy", "check", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // A principal the policy does not name is covered by the `*` line.
    let principals = report["principals"].as_array().unwrap();
    let principal = principals
        .iter()
        .find(|p| p["principal"] == who)
        .or_else(|| principals.iter().find(|p| p["principal"] == "*"))
        .unwrap_or_else(|| panic!("{who} not in {report}"));
    principal["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == action)
        .unwrap()["reach"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. Split principals: the host gets nothing without attestation, by any operation.

#[test]
fn host_without_attestation_reaches_no_plaintext_by_any_operation() {
    let (_tmp, _server, owner, host) = started(&[]);
    rt().block_on(async {
        let victim = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        owner.call("PutKeyPolicy", &json!({"KeyId": victim, "Policy": guarded_policy()})).await.unwrap();
        owner.call("CreateAlias", &json!({"AliasName": "alias/records", "TargetKeyId": victim})).await.unwrap();
        let ct = owner
            .call("Encrypt", &json!({"KeyId": victim, "Plaintext": b64(b"records key"), "EncryptionContext": {"job": "1"}}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        // The host makes a key of its own, with a policy giving itself everything.
        let own_policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*"}]});
        let own = key_id(&host.call("CreateKey", &json!({"Policy": own_policy.to_string()})).await.unwrap());
        let open = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}).to_string();
        let attempts = [
            ("Decrypt", json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}})),
            ("Decrypt", json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}, "KeyId": "alias/records"})),
            ("ReEncrypt", json!({"CiphertextBlob": ct, "SourceEncryptionContext": {"job": "1"}, "DestinationKeyId": own})),
            ("GenerateDataKey", json!({"KeyId": victim, "KeySpec": "AES_256"})),
            ("GenerateDataKey", json!({"KeyId": "alias/records", "KeySpec": "AES_256"})),
            ("GenerateDataKeyWithoutPlaintext", json!({"KeyId": victim, "KeySpec": "AES_256"})),
            ("Encrypt", json!({"KeyId": victim, "Plaintext": b64(b"x")})),
            ("PutKeyPolicy", json!({"KeyId": victim, "Policy": open, "BypassPolicyLockoutSafetyCheck": true})),
            ("GetKeyPolicy", json!({"KeyId": victim})),
            ("UpdateAlias", json!({"AliasName": "alias/records", "TargetKeyId": own})),
            ("DeleteAlias", json!({"AliasName": "alias/records"})),
            ("CreateAlias", json!({"AliasName": "alias/records-2", "TargetKeyId": victim})),
            ("ScheduleKeyDeletion", json!({"KeyId": victim, "PendingWindowInDays": 7})),
            ("DisableKey", json!({"KeyId": victim})),
            ("RotateKeyOnDemand", json!({"KeyId": victim})),
            ("DescribeKey", json!({"KeyId": victim})),
        ];
        for (op, input) in &attempts {
            let e = host.call(op, input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{op} {input}: {e}");
            assert!(e.to_string().contains("with an explicit deny"), "{op}: {e}");
        }
        // Naming its own key in a Decrypt of the victim's blob does not switch keys.
        let e = host.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}, "KeyId": own})).await.unwrap_err();
        assert_eq!(e.aws_name(), Some("IncorrectKeyException"), "{e}");
        // Nothing changed: the alias still names the victim, which still decrypts for its owner.
        let d = owner.call("DescribeKey", &json!({"KeyId": "alias/records"})).await.unwrap();
        assert_eq!(d["KeyMetadata"]["KeyId"], victim.as_str());
        assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");
        let pt = owner.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}})).await.unwrap();
        assert_eq!(cloister_kms_client::blob(&pt, "Plaintext").unwrap(), b"records key");
    });
}

// ---------------------------------------------------------------------------------------------
// 1. `policy check` against what the KMS does: every variant the report calls safe must be
// refused by the KMS, and every variant the KMS allows must be reported.

/// A policy with the owner statement and `host` (statements about the host).
fn with_owner(host: &[Value]) -> String {
    let mut statements = vec![owner_statement()];
    statements.extend(host.iter().cloned());
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn allow_host(action: Value, condition: Option<Value>) -> Value {
    let mut s =
        json!({"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": action, "Resource": "*"});
    if let Some(c) = condition {
        s["Condition"] = c;
    }
    s
}

fn deny_host(resource: &str, action: &str, condition: Value) -> Value {
    json!({"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": action, "Resource": resource,
           "Condition": condition})
}

/// For each policy: what `policy check` says of the host's Decrypt, and whether the KMS gives
/// the host plaintext without a document.
fn check_against_kms(cases: &[(&str, String)]) -> Vec<(String, String, String)> {
    let (tmp, _server, owner, host) = started(&[]);
    rt().block_on(async {
        let mut out = Vec::new();
        for (what, policy) in cases {
            let id = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
            let ct = owner
                .call(
                    "Encrypt",
                    &json!({"KeyId": id, "Plaintext": b64(b"secret")}),
                )
                .await
                .unwrap()["CiphertextBlob"]
                .clone();
            let put = owner
                .call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy}))
                .await;
            assert!(put.is_ok(), "{what}: {}", code(put));
            let reach = checked_reach(tmp.path(), policy, HOST, "kms:Decrypt");
            let kms = code(host.call("Decrypt", &json!({"CiphertextBlob": ct})).await);
            out.push(((*what).to_owned(), reach, kms));
        }
        out
    })
}

fn assert_check_agrees(results: &[(String, String, String)]) {
    for (what, reach, kms) in results {
        let kms_allows = kms.starts_with("OK");
        if kms_allows {
            assert_eq!(
                reach, "without-attestation",
                "{what}: the KMS answered {kms}"
            );
        } else {
            assert_eq!(kms, "AccessDeniedException", "{what}");
        }
    }
}

#[test]
fn policy_check_sees_through_action_case_wildcards_and_attestation_conditions() {
    let att = "kms:RecipientAttestation:ImageSha384";
    let cases = [
        (
            "upper-case action",
            with_owner(&[allow_host(json!("KMS:DECRYPT"), None)]),
        ),
        (
            "kms:Decr*",
            with_owner(&[allow_host(json!("kms:Decr*"), None)]),
        ),
        (
            "kms:*crypt",
            with_owner(&[allow_host(json!("kms:*crypt"), None)]),
        ),
        (
            "kms:De?rypt",
            with_owner(&[allow_host(json!(["kms:Encrypt", "kms:De?rypt"]), None)]),
        ),
        ("*", with_owner(&[allow_host(json!("*"), None)])),
        (
            "IfExists",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"StringEqualsIfExists": {att: IMAGE}})),
            )]),
        ),
        (
            "ForAllValues",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"ForAllValues:StringEquals": {att: IMAGE}})),
            )]),
        ),
        (
            "StringNotEquals",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"StringNotEquals": {att: "00"}})),
            )]),
        ),
        (
            "StringNotLike trust root",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(
                    json!({"StringNotLike": {"cloister:RecipientAttestation:TrustRootSha256": "ab*"}}),
                ),
            )]),
        ),
        (
            "Null false (must be present)",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"Null": {att: "false"}})),
            )]),
        ),
        (
            "Null true (must be absent)",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"Null": {att: "true"}})),
            )]),
        ),
        (
            "StringLike *",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"StringLike": {att: "*"}})),
            )]),
        ),
        (
            "ForAnyValue:StringNotEquals",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"ForAnyValue:StringNotEquals": {att: IMAGE}})),
            )]),
        ),
        (
            "an attested and an unattested statement",
            with_owner(&[
                allow_host(
                    json!("kms:Decrypt"),
                    Some(json!({"StringEquals": {att: IMAGE}})),
                ),
                allow_host(
                    json!("kms:Decrypt"),
                    Some(json!({"StringEquals": {"kms:CallerAccount": "111122223333"}})),
                ),
            ]),
        ),
        (
            "attested and an unrelated condition",
            with_owner(&[allow_host(
                json!("kms:Decrypt"),
                Some(json!({"StringEquals": {att: IMAGE, "kms:CallerAccount": "111122223333"}})),
            )]),
        ),
        (
            "Principal *",
            with_owner(&[
                json!({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
            ]),
        ),
        // Deny guards that hold whenever nothing is attested.
        (
            "Deny KMS:* case",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host("*", "KMS:*", json!({"Null": {att: "true"}})),
            ]),
        ),
        (
            "Deny IfExists",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "*",
                    "kms:*",
                    json!({"StringNotEqualsIfExists": {att: IMAGE}}),
                ),
            ]),
        ),
        (
            "Deny ForAllValues",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "*",
                    "kms:*",
                    json!({"ForAllValues:StringNotEquals": {att: IMAGE}}),
                ),
            ]),
        ),
        (
            "Deny on Null false does not guard",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host("*", "kms:*", json!({"Null": {att: "false"}})),
            ]),
        ),
        (
            "Deny with a dodgeable context condition",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "*",
                    "kms:*",
                    json!({"Null": {att: "true"}, "StringEquals": {"kms:EncryptionContext:tier": "gold"}}),
                ),
            ]),
        ),
        (
            "Deny on another action",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host("*", "kms:Encrypt", json!({"Null": {att: "true"}})),
            ]),
        ),
        (
            "Deny on the key's ARN pattern",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "arn:aws:kms:*:111122223333:key/*",
                    "kms:*",
                    json!({"Null": {att: "true"}}),
                ),
            ]),
        ),
    ];
    let results = check_against_kms(&cases);
    assert_check_agrees(&results);
    // And the cases are not vacuous: both outcomes occur.
    assert!(results.iter().any(|(_, _, k)| k.starts_with("OK")));
    assert!(results.iter().any(|(_, r, _)| r == "attested-only"));
}

#[test]
fn policy_check_does_not_count_a_deny_guard_that_names_another_resource() {
    let att = "kms:RecipientAttestation:ImageSha384";
    let cases = [
        (
            "Deny on another key",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000",
                    "kms:*",
                    json!({"Null": {att: "true"}}),
                ),
            ]),
        ),
        (
            "Deny on an upper-case ARN",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host("ARN:AWS:KMS:*", "kms:*", json!({"Null": {att: "true"}})),
            ]),
        ),
        (
            "Deny on an alias ARN",
            with_owner(&[
                allow_host(json!("kms:Decrypt"), None),
                deny_host(
                    "arn:aws:kms:us-east-1:111122223333:alias/records",
                    "kms:*",
                    json!({"Null": {att: "true"}}),
                ),
            ]),
        ),
    ];
    assert_check_agrees(&check_against_kms(&cases));
}

// ---------------------------------------------------------------------------------------------
// 7. Transport: no plaintext over public cleartext, however the Recipient member is dressed.

/// An address of this machine other than loopback.
fn non_loopback_address() -> std::net::IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .expect("a non-loopback address (the transport rule cannot be tested without one)")
}

/// `POST /` to `addr` with exactly `headers`: the status and the JSON answer.
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
    (status, serde_json::from_str(answer).unwrap_or(Value::Null))
}

/// `signed` headers signed by `creds` (plus `x-amz-date` and `authorization`), with
/// `before` and `after` added unsigned around them, as if in transit.
fn signed_request(
    creds: &Credentials,
    host: &str,
    target: &str,
    before: &[(&str, &str)],
    after: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let signed = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &signed,
        body,
    };
    let added = cloister_sigv4::sign(&parts, creds, REGION, "kms", OffsetDateTime::now_utc());
    before
        .iter()
        .chain(&signed)
        .chain(after)
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain(added)
        .collect()
}

#[test]
fn no_recipient_disguise_gets_plaintext_over_public_cleartext() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(tmp.path());
    let ip = non_loopback_address();
    let server = kms_bin().start_on(tmp.path(), &format!("{ip}:0"), &[]);
    let kms = once(server.client(creds.clone()));
    rt().block_on(async {
        let id = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        let ct = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"secret")})).await.unwrap()["CiphertextBlob"].clone();
        let disguises = [
            ("Recipient null", json!({"Recipient": null})),
            ("Recipient {}", json!({"Recipient": {}})),
            ("Recipient []", json!({"Recipient": []})),
            ("Recipient \"\"", json!({"Recipient": ""})),
            ("Recipient false", json!({"Recipient": false})),
            ("lower-case member", json!({"recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "AA=="}})),
            ("empty document", json!({"Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": ""}})),
            ("null document", json!({"Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": null}})),
            ("no algorithm", json!({"Recipient": {"AttestationDocument": "AA=="}})),
        ];
        for (what, extra) in &disguises {
            let mut inputs = vec![
                ("Decrypt", json!({"CiphertextBlob": ct})),
                ("GenerateDataKey", json!({"KeyId": id, "KeySpec": "AES_256"})),
                ("GenerateRandom", json!({"NumberOfBytes": 16})),
            ];
            for (op, input) in &mut inputs {
                for (k, v) in extra.as_object().unwrap() {
                    input[k] = v.clone();
                }
                let r = kms.call(op, input).await;
                let c = code(r);
                assert!(!c.contains("Plaintext"), "{what} {op}: {c}");
                assert!(
                    ["UnsupportedOperationException", "ValidationException", "SerializationException"].contains(&c.as_str()),
                    "{what} {op}: {c}"
                );
            }
        }
        // GenerateDataKeyWithoutPlaintext ignores a Recipient and never answers with a key.
        let g = kms.call("GenerateDataKeyWithoutPlaintext", &json!({"KeyId": id, "KeySpec": "AES_256", "Recipient": {}})).await.unwrap();
        assert!(g.get("Plaintext").is_none() && g.get("CiphertextForRecipient").is_none(), "{g}");
    });
    // By hand: duplicate members (the last wins, for the check and the operation alike), and
    // targets in another case.
    let host = server.addr.clone();
    for (target, body) in [
        (
            "TrentService.GenerateRandom",
            r#"{"Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "AA=="}, "Recipient": null}"#,
        ),
        (
            "TrentService.GenerateRandom",
            r#"{"Recipient": null, "Recipient": {}}"#,
        ),
        ("TrentService.generaterandom", "{}"),
        ("trentservice.GenerateRandom", "{}"),
        ("TrentService.GenerateRandom ", "{}"),
        ("TrentService.GenerateRandom\t", "{}"),
    ] {
        let headers = signed_request(&creds, &host, target, &[], &[], body.as_bytes());
        let (status, answer) = send(&host, &headers, body.as_bytes());
        assert!(
            answer.get("Plaintext").is_none(),
            "{target} {body}: {answer}"
        );
        assert!(status >= 400, "{target} {body}: {status} {answer}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. SigV4: a captured Encrypt cannot be made a Decrypt by adding a second target header.

#[test]
fn a_second_target_header_does_not_turn_a_signed_request_into_another_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(tmp.path());
    let server = kms_bin().start(tmp.path(), &[]);
    let host = server.addr.clone();
    let body = br#"{"NumberOfBytes": 16}"#;
    // The genuine request works.
    let headers = signed_request(&creds, &host, "TrentService.GenerateRandom", &[], &[], body);
    let (status, answer) = send(&host, &headers, body);
    assert_eq!(status, 200, "{answer}");
    for (before, after) in [
        (vec![("X-Amz-Target", "TrentService.ListKeys")], vec![]),
        (vec![], vec![("X-Amz-Target", "TrentService.ListKeys")]),
        (vec![("x-amz-target", "TrentService.ListKeys")], vec![]),
        (vec![("X-AMZ-DATE", "20200101T000000Z")], vec![]),
        (vec![], vec![("Content-Type", "application/json")]),
        (vec![("X-Amz-Security-Token", "x")], vec![]),
    ] {
        let headers = signed_request(
            &creds,
            &host,
            "TrentService.GenerateRandom",
            &before,
            &after,
            body,
        );
        let (status, answer) = send(&host, &headers, body);
        assert!(status >= 400, "{before:?} {after:?}: {answer}");
        let t = answer["__type"].as_str().unwrap_or_default();
        assert!(
            ["InvalidSignatureException", "IncompleteSignatureException"].contains(&t),
            "{before:?} {after:?}: {answer}"
        );
        assert!(answer.get("Keys").is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Integrity at rest.

#[test]
fn key_material_moved_between_keys_or_a_rolled_back_version_is_refused() {
    let (tmp, server, owner, _host) = started(&[]);
    let dir = tmp.path().join("kms");
    let (a, b, ct_a, ct_b) = rt().block_on(async {
        let a = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        let b = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        let ct_a = owner
            .call("Encrypt", &json!({"KeyId": a, "Plaintext": b64(b"a")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let ct_b = owner
            .call("Encrypt", &json!({"KeyId": b, "Plaintext": b64(b"b")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        owner
            .call("RotateKeyOnDemand", &json!({"KeyId": b}))
            .await
            .unwrap();
        (a, b, ct_a, ct_b)
    });
    drop(server);
    {
        let db = db(&dir);
        // Swap the two keys' version-1 material.
        db.execute_batch(&format!(
            "UPDATE key_material SET key_id = 'swap' WHERE key_id = '{a}' AND version = 1;
             UPDATE key_material SET key_id = '{a}' WHERE key_id = '{b}' AND version = 1;
             UPDATE key_material SET key_id = '{b}' WHERE key_id = 'swap' AND version = 1;"
        ))
        .unwrap();
    }
    let server = kms_bin().start(&dir, &[]);
    let owner = once(server.client(server.admin()));
    rt().block_on(async {
        for ct in [&ct_a, &ct_b] {
            let e = owner
                .call("Decrypt", &json!({"CiphertextBlob": ct}))
                .await
                .unwrap_err();
            let name = e.aws_name().unwrap_or_default().to_owned();
            assert!(
                ["KMSInternalException", "InvalidCiphertextException"].contains(&name.as_str()),
                "{e}"
            );
        }
    });
    drop(server);

    // Key b's current version rolled back to 1.
    let n = db(&dir)
        .execute(
            "UPDATE keys SET current_version = 1 WHERE key_id = ?1",
            [&b],
        )
        .unwrap();
    assert_eq!(n, 1);
    let server = kms_bin().start(&dir, &[]);
    let owner = once(server.client(server.admin()));
    rt().block_on(async {
        let e = owner
            .call("Encrypt", &json!({"KeyId": b, "Plaintext": b64(b"x")}))
            .await
            .unwrap_err();
        assert_eq!(e.aws_name(), Some("KMSInternalException"), "{e}");
        assert!(e.to_string().contains("error[KMS-INTEGRITY]"), "{e}");
    });
    assert!(
        server
            .audit_tail(50)
            .iter()
            .any(|e| e["entry"]["operation"] == "IntegrityCheck")
    );
}

#[test]
fn a_store_dressed_as_an_older_schema_or_with_an_edited_root_key_check_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    kms_bin().admin(&dir);
    drop(kms_bin().start(&dir, &[]));
    let pristine = std::fs::read(dir.join("kms.sqlite3")).unwrap();

    // user_version 0 with the MAC columns in place: would a start MAC whatever is there?
    db(&dir).execute_batch("PRAGMA user_version = 0;").unwrap();
    let err = serve_refused(&dir, &[]);
    assert!(err.contains("migrate"), "{err}");
    // A version from the future.
    db(&dir).execute_batch("PRAGMA user_version = 7;").unwrap();
    let err = serve_refused(&dir, &[]);
    assert!(err.to_lowercase().contains("version"), "{err}");

    // The root key check edited.
    std::fs::write(dir.join("kms.sqlite3"), &pristine).unwrap();
    db(&dir)
        .execute_batch("UPDATE meta SET value = x'00';")
        .unwrap();
    let err = serve_refused(&dir, &[]);
    assert!(err.to_lowercase().contains("root key"), "{err}");
}

#[test]
fn an_older_genuine_key_row_is_the_only_undetected_rollback() {
    let (tmp, server, owner, host) = started(&[]);
    let dir = tmp.path().join("kms");
    let open = with_owner(&[allow_host(json!("kms:Decrypt"), None)]);
    let (a, b, ct) = rt().block_on(async {
        let a = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        let b = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        owner
            .call("PutKeyPolicy", &json!({"KeyId": a, "Policy": open}))
            .await
            .unwrap();
        owner
            .call("PutKeyPolicy", &json!({"KeyId": b, "Policy": open}))
            .await
            .unwrap();
        let ct = owner
            .call("Encrypt", &json!({"KeyId": a, "Plaintext": b64(b"a")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        (a, b, ct)
    });
    // A backup of key a's row while it was open to the host.
    let backup: (String, Vec<u8>) = db(&dir)
        .query_row(
            "SELECT policy, mac FROM keys WHERE key_id = ?1",
            [&a],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    rt().block_on(async {
        for k in [&a, &b] {
            owner
                .call(
                    "PutKeyPolicy",
                    &json!({"KeyId": k, "Policy": guarded_policy()}),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            code(host.call("Decrypt", &json!({"CiphertextBlob": ct})).await),
            "AccessDeniedException"
        );
    });
    drop(server);

    // Key a's old row put back on key b: another identity, refused.
    db(&dir)
        .execute(
            "UPDATE keys SET policy = ?1, mac = ?2 WHERE key_id = ?3",
            rusqlite::params![backup.0, backup.1, b],
        )
        .unwrap();
    // Key a's own old row put back: authentic, and (as documented) not detected.
    db(&dir)
        .execute(
            "UPDATE keys SET policy = ?1, mac = ?2 WHERE key_id = ?3",
            rusqlite::params![backup.0, backup.1, a],
        )
        .unwrap();
    let server = kms_bin().start(&dir, &[]);
    let owner = once(server.client(server.admin()));
    rt().block_on(async {
        let e = owner
            .call("DescribeKey", &json!({"KeyId": b}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("error[KMS-INTEGRITY]"), "{e}");
        let p = owner
            .call("GetKeyPolicy", &json!({"KeyId": a}))
            .await
            .unwrap();
        assert_eq!(
            p["Policy"],
            open.as_str(),
            "the documented limit: an older authentic row of the same key"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 6. The release log: proofs and checkpoints from elsewhere.

fn run(args: &[&str]) -> Output {
    Command::new(kms_bin().path()).args(args).output().unwrap()
}

/// Exit 1 or 2 with an error, never a panic.
fn assert_refused_cleanly(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "{what}: {:?} {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

fn audit_file(dir: &Path, args: &[&str], name: &str) -> PathBuf {
    let out = kms_bin().cli(dir, &[&["audit"], args].concat());
    let path = dir.with_file_name(name);
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn forged_and_malformed_proofs_and_checkpoints_are_refused_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    let creds = kms_bin().admin(&dir);
    let server = kms_bin().start(&dir, &[]);
    let kms = server.client(creds);
    rt().block_on(async {
        for _ in 0..9 {
            kms.call("ListKeys", &json!({})).await.unwrap();
        }
    });
    let pem = audit_file(&dir, &["public-key"], "key.pem");
    let checkpoint = audit_file(&dir, &["checkpoint"], "checkpoint.json");
    let proof = audit_file(&dir, &["prove", "--seq", "3"], "proof.json");
    let pem = pem.to_str().unwrap();
    let ok = run(&[
        "audit",
        "check-proof",
        "--public-key",
        pem,
        "--proof",
        proof.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let genuine: Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let head: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = genuine.clone();
        f(&mut v);
        v.to_string()
    };
    let hex64 = "00".repeat(32);
    let mut forged: Vec<(&str, String)> = vec![
        (
            "entry rewritten",
            edit(&|v| {
                v["entry"] = json!(v["entry"].as_str().unwrap().replace("ListKeys", "Decrypt"))
            }),
        ),
        ("leaf index moved", edit(&|v| v["leaf_index"] = json!(3))),
        (
            "tree size changed",
            edit(&|v| {
                v["tree_head"]["tree_size"] =
                    json!(v["tree_head"]["tree_size"].as_u64().unwrap() + 1)
            }),
        ),
        (
            "root changed",
            edit(&|v| v["tree_head"]["root_hash"] = json!(hex64)),
        ),
        ("path emptied", edit(&|v| v["audit_path"] = json!([]))),
        (
            "path doubled",
            edit(&|v| {
                let p = v["audit_path"].as_array().unwrap().clone();
                v["audit_path"] = json!([p.clone(), p].concat());
            }),
        ),
        (
            "upper-case hex",
            edit(&|v| {
                v["tree_head"]["root_hash"] =
                    json!(v["tree_head"]["root_hash"].as_str().unwrap().to_uppercase())
            }),
        ),
        (
            "leaf index past the tree",
            edit(&|v| v["leaf_index"] = json!(u64::MAX)),
        ),
        (
            "negative leaf index",
            edit(&|v| v["leaf_index"] = json!(-1)),
        ),
        (
            "huge tree",
            edit(&|v| v["tree_head"]["tree_size"] = json!(u64::MAX)),
        ),
        (
            "empty tree",
            edit(&|v| {
                v["tree_head"]["tree_size"] = json!(0);
                v["leaf_index"] = json!(0);
            }),
        ),
        ("extra field", edit(&|v| v["extra"] = json!(1))),
        ("a checkpoint instead of a proof", head.to_string()),
        (
            "the wrong format",
            edit(&|v| v["format"] = json!("cloister-kms consistency proof v1")),
        ),
        (
            "too many hashes",
            edit(&|v| v["audit_path"] = json!(vec![hex64.clone(); 100_000])),
        ),
        ("null", "null".to_owned()),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "not UTF-8",
            String::from_utf8_lossy(&[0xff, 0xfe, b'{']).into_owned(),
        ),
        (
            "larger than the bound",
            format!("{{\"entry\": \"{}\"}}", "a".repeat(2 << 20)),
        ),
    ];
    forged.push(("empty", String::new()));
    for (what, text) in &forged {
        let f = tmp.path().join("forged.json");
        std::fs::write(&f, text).unwrap();
        let f = f.to_str().unwrap();
        let o = run(&["audit", "check-proof", "--public-key", pem, "--proof", f]);
        assert_refused_cleanly(&o, what);
        assert_eq!(o.status.code(), Some(1), "{what}");
        if *what == "a checkpoint instead of a proof" {
            continue;
        }
        // The same file as a checkpoint, and as a consistency proof from the genuine one.
        let o = kms_bin().run(&dir, &["audit", "verify", "--checkpoint", f]);
        assert_refused_cleanly(&o, what);
        let o = run(&[
            "audit",
            "check-proof",
            "--public-key",
            pem,
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--proof",
            f,
        ]);
        assert_refused_cleanly(&o, what);
    }
    // Checkpoints forged from the genuine one.
    for (what, forged) in [
        ("bigger", {
            let mut h = head.clone();
            h["tree_size"] = json!(head["tree_size"].as_u64().unwrap() + 5);
            h
        }),
        ("smaller", {
            let mut h = head.clone();
            h["tree_size"] = json!(3);
            h
        }),
        ("empty", {
            let mut h = head.clone();
            h["tree_size"] = json!(0);
            h
        }),
        ("huge", {
            let mut h = head.clone();
            h["tree_size"] = json!(u64::MAX);
            h
        }),
        ("later", {
            let mut h = head.clone();
            h["timestamp_ms"] = json!(u64::MAX);
            h
        }),
    ] {
        let f = tmp.path().join("forged-checkpoint.json");
        std::fs::write(&f, forged.to_string()).unwrap();
        let o = kms_bin().run(
            &dir,
            &["audit", "verify", "--checkpoint", f.to_str().unwrap()],
        );
        assert_refused_cleanly(&o, what);
        assert_eq!(o.status.code(), Some(1), "{what}");
    }
    // Out-of-range requests to prove.
    for args in [
        ["prove", "--seq", "0"],
        ["prove", "--seq", "18446744073709551615"],
        ["prove", "--from-size", "18446744073709551615"],
        ["prove", "--seq", "-1"],
    ] {
        let o = kms_bin().run(&dir, &[&["audit"], &args[..]].concat());
        assert_refused_cleanly(&o, &format!("{args:?}"));
    }
}

#[test]
fn a_rewrite_hidden_by_deleting_the_heads_and_the_signing_key_is_caught_by_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    let creds = kms_bin().admin(&dir);
    let server = kms_bin().start(&dir, &[]);
    let kms = server.client(creds.clone());
    rt().block_on(async {
        for _ in 0..6 {
            kms.call("CreateKey", &json!({})).await.unwrap();
        }
    });
    let pem = audit_file(&dir, &["public-key"], "key.pem");
    let checkpoint = audit_file(&dir, &["checkpoint"], "checkpoint.json");
    drop(server);

    // Rewrite entry 2, recompute every chain and leaf hash, delete the heads and the key.
    {
        let db = db(&dir);
        rewrite_audit_entry(&db, 2, "CreateKey", "ListKeys");
        db.execute_batch("DELETE FROM tree_heads;").unwrap();
    }
    std::fs::remove_file(dir.join("audit-signing.key")).unwrap();
    // A start makes a new key and signs the rewritten log.
    drop(kms_bin().start(&dir, &[]));
    let (intact, out) = kms_bin().audit_verify(&dir);
    assert!(
        intact,
        "as documented, without a checkpoint the log checks out: {out}"
    );

    let cp = checkpoint.to_str().unwrap();
    for extra in [
        vec!["--checkpoint", cp],
        vec!["--checkpoint", cp, "--public-key", pem.to_str().unwrap()],
    ] {
        let o = kms_bin().run(&dir, &[&["audit", "verify"], &extra[..]].concat());
        assert_eq!(
            o.status.code(),
            Some(1),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let line = String::from_utf8_lossy(&o.stdout);
        assert!(
            line.contains("checkpoint") || line.contains("tree head"),
            "{extra:?}: {line}"
        );
    }
}
