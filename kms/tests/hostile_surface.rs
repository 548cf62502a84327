//! A hostile review of issue 10's surface (grants, asymmetric and HMAC keys, imported material,
//! tags, Multi-Region keys, schema version 2) against the real binary. Each test is one line of
//! attack, asserting the refusal with AWS's error name and that nothing changed.
//!
//! Holes found and fixed: a deleted key's grants stayed in memory, so a Multi-Region replica
//! made again in the same region inherited the old replica's grants (unit test in
//! `ops/grants.rs`, since deletion takes 7 days); `policy check` did not count ReplicateKey,
//! which lets its caller put the key's material under a policy of its own
//! ([`replicate_key_is_a_policy_write_and_regions_stay_apart`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use std::process::Command;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_attestation::{PcrValue, Timestamp};
use cloister_kms_client::{ClientError, KmsClient, b64, blob};
use cloister_sigv4::Credentials;
use cloister_tests::kms::{ADMIN_ARN, KmsServer, rt};
use serde_json::{Value, json};

use common::{db, document, key_id, kms_bin, once, recipient};

const HOST: &str = "arn:aws:iam::111122223333:role/cloister-host";
const OPS: &str = "arn:aws:iam::111122223333:role/ops";

/// The AWS error name, or `OK <answer>`.
fn code(r: Result<Value, ClientError>) -> String {
    match r {
        Ok(v) => format!("OK {v}"),
        Err(e) => e.aws_name().unwrap_or("not a service error").to_owned(),
    }
}

/// A data directory with the admin, the host and ops principals, and a server on it.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    server: KmsServer,
    creds: (Credentials, Credentials, Credentials),
    owner: KmsClient,
    host: KmsClient,
    ops: KmsClient,
    pki: DevPki,
}

fn started(extra: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root_pem = tmp.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let dir = tmp.path().join("kms");
    let admin = kms_bin().admin(&dir);
    let host = kms_bin().add_principal(&dir, HOST);
    let ops = kms_bin().add_principal(&dir, OPS);
    let mut args = vec!["--trust-root", root_pem.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = kms_bin().start(&dir, &args);
    Setup {
        owner: once(server.client(admin.clone())),
        host: once(server.client(host.clone())),
        ops: once(server.client(ops.clone())),
        creds: (admin, host, ops),
        server,
        dir,
        _tmp: tmp,
        pki,
    }
}

/// `op` with the raw `body`, signed as the admin, over a plain TCP connection: the answer.
fn raw_call(s: &Setup, op: &str, body: &[u8]) -> String {
    let addr = s.server.url().trim_start_matches("http://").to_owned();
    let target = format!("TrentService.{op}");
    let headers = cloister_sigv4::sign_json_request(
        &cloister_sigv4::JsonRequest {
            host: &addr,
            target: &target,
            body,
            region: "us-east-1",
            service: "kms",
        },
        &s.creds.0,
        time::OffsetDateTime::now_utc(),
        None,
    );
    let mut req = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in &headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    out
}

/// A client signing for `region`.
fn in_region(s: &Setup, region: &str, creds: &Credentials) -> KmsClient {
    once(KmsClient::http(&s.server.url(), region, creds.clone()).unwrap())
}

/// The owner does everything; the host may do `host_actions` only with an attestation of
/// "pipeline image", and nothing without one.
fn guarded_policy(host_actions: &[&str]) -> String {
    let pinned = PcrValue::measure(b"pipeline image").to_hex();
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "HostAttested", "Effect": "Allow", "Principal": {"AWS": HOST},
         "Action": host_actions, "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pinned}}},
        {"Sid": "HostOnlyAttested", "Effect": "Deny", "Principal": {"AWS": HOST},
         "Action": "kms:*", "Resource": "*",
         "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
    ]})
    .to_string()
}

async fn create(kms: &KmsClient, input: Value) -> String {
    key_id(&kms.call("CreateKey", &input).await.unwrap())
}

async fn grant_ids(kms: &KmsClient, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = kms
        .call("ListGrants", &json!({"KeyId": key}))
        .await
        .unwrap()["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["GrantId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// Grants.

#[test]
fn grant_chains_do_not_escalate_and_only_the_right_principals_retire_or_revoke() {
    let s = started(&[]);
    rt().block_on(async {
        let key = create(&s.owner, json!({})).await;
        // The host may Encrypt under tenant=a and create grants: nothing else.
        let parent = s
            .owner
            .call(
                "CreateGrant",
                &json!({"KeyId": key, "GranteePrincipal": HOST,
                        "Operations": ["CreateGrant", "Encrypt"],
                        "Constraints": {"EncryptionContextSubset": {"tenant": "a"}}}),
            )
            .await
            .unwrap();
        let parent_id = parent["GrantId"].as_str().unwrap().to_owned();
        let before = grant_ids(&s.owner, &key).await;
        for (what, input) in [
            (
                "an operation the parent lacks",
                json!({"KeyId": key, "GranteePrincipal": HOST, "Operations": ["Decrypt"]}),
            ),
            (
                "no constraint",
                json!({"KeyId": key, "GranteePrincipal": OPS, "Operations": ["Encrypt"]}),
            ),
            (
                "another tenant",
                json!({"KeyId": key, "GranteePrincipal": OPS, "Operations": ["Encrypt"],
                       "Constraints": {"EncryptionContextSubset": {"tenant": "b"}}}),
            ),
            (
                "CreateGrant plus an operation the parent lacks",
                json!({"KeyId": key, "GranteePrincipal": OPS,
                       "Operations": ["CreateGrant", "ReEncryptFrom"],
                       "Constraints": {"EncryptionContextSubset": {"tenant": "a"}}}),
            ),
        ] {
            let r = s.host.call("CreateGrant", &input).await;
            assert_eq!(code(r), "AccessDeniedException", "{what}");
        }
        // The parent's own operation does not reach Decrypt, nor another tenant.
        let ct = s
            .owner
            .call(
                "Encrypt",
                &json!({"KeyId": key, "Plaintext": b64(b"s"), "EncryptionContext": {"tenant": "a"}}),
            )
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let r = s
            .host
            .call(
                "Decrypt",
                &json!({"CiphertextBlob": ct, "EncryptionContext": {"tenant": "a"}}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        let r = s
            .host
            .call(
                "Encrypt",
                &json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"tenant": "b"}}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        // Retiring and revoking by principals the grant does not name.
        let r = s
            .ops
            .call("RetireGrant", &json!({"KeyId": key, "GrantId": parent_id}))
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        let r = s
            .ops
            .call(
                "RetireGrant",
                &json!({"GrantToken": parent["GrantToken"]}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        // The grantee itself: the grant does not carry RetireGrant.
        let r = s
            .host
            .call("RetireGrant", &json!({"KeyId": key, "GrantId": parent_id}))
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        for who in [&s.host, &s.ops] {
            let r = who
                .call("RevokeGrant", &json!({"KeyId": key, "GrantId": parent_id}))
                .await;
            assert_eq!(code(r), "AccessDeniedException");
        }
        // A grant id of this key named with another key: not found there.
        let other = create(&s.owner, json!({})).await;
        let r = s
            .owner
            .call("RevokeGrant", &json!({"KeyId": other, "GrantId": parent_id}))
            .await;
        assert_eq!(code(r), "NotFoundException");
        let r = s
            .owner
            .call(
                "RetireGrant",
                &json!({"KeyId": other, "GrantToken": parent["GrantToken"]}),
            )
            .await;
        assert_eq!(code(r), "NotFoundException");
        // Nothing changed; a child at least as strict is still allowed (the check is not
        // simply closed).
        assert_eq!(grant_ids(&s.owner, &key).await, before);
        s.host
            .call(
                "CreateGrant",
                &json!({"KeyId": key, "GranteePrincipal": OPS, "Operations": ["Encrypt"],
                        "Constraints": {"EncryptionContextEquals": {"tenant": "a", "x": "y"}}}),
            )
            .await
            .unwrap();
        assert_eq!(grant_ids(&s.owner, &key).await.len(), 2);
    });
}

#[test]
fn a_policy_deny_beats_a_grant_named_by_its_token_or_not() {
    let s = started(&[]);
    rt().block_on(async {
        let key = create(&s.owner, json!({})).await;
        let ct = s
            .owner
            .call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"records")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let g = s
            .owner
            .call(
                "CreateGrant",
                &json!({"KeyId": key, "GranteePrincipal": OPS,
                        "Operations": ["Decrypt", "ReEncryptFrom", "CreateGrant"]}),
            )
            .await
            .unwrap();
        let pt = s
            .ops
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"records");
        let deny = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": OPS}, "Action": "kms:*", "Resource": "*"}]});
        s.owner
            .call(
                "PutKeyPolicy",
                &json!({"KeyId": key, "Policy": deny.to_string()}),
            )
            .await
            .unwrap();
        let own = create(&s.owner, json!({})).await;
        for (op, input) in [
            ("Decrypt", json!({"CiphertextBlob": ct})),
            (
                "Decrypt",
                json!({"CiphertextBlob": ct, "GrantTokens": [g["GrantToken"]]}),
            ),
            (
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "DestinationKeyId": own}),
            ),
            (
                "CreateGrant",
                json!({"KeyId": key, "GranteePrincipal": HOST, "Operations": ["Decrypt"]}),
            ),
        ] {
            let e = s.ops.call(op, &input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{op}: {e}");
            assert!(e.to_string().contains("explicit deny"), "{op}: {e}");
        }
        assert_eq!(grant_ids(&s.owner, &key).await.len(), 1);
    });
}

// ---------------------------------------------------------------------------------------------
// The new plaintext-returning operations for a host whose policy requires attestation.

#[test]
fn a_host_gets_key_pairs_shared_secrets_and_rsa_plaintext_only_wrapped_to_its_enclave() {
    let s = started(&[]);
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    let enclave = RecipientPrivateKey::new(private).unwrap();
    let good = document(&s.pki, b"pipeline image", &spki);
    let other_image = document(&s.pki, b"other image", &spki);
    let secrets = rt().block_on(async {
        let actions = [
            "kms:Decrypt",
            "kms:GenerateDataKeyPair",
            "kms:GenerateDataKeyPairWithoutPlaintext",
            "kms:DeriveSharedSecret",
            "kms:ReEncryptFrom",
        ];
        let policy = guarded_policy(&actions);
        let sym = create(&s.owner, json!({"Policy": policy})).await;
        let rsa = create(
            &s.owner,
            json!({"Policy": policy, "KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
        )
        .await;
        let ecdh = create(
            &s.owner,
            json!({"Policy": policy, "KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"}),
        )
        .await;
        let rsa_ct = s
            .owner
            .call(
                "Encrypt",
                &json!({"KeyId": rsa, "Plaintext": b64(b"rsa secret"),
                        "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
            )
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let peer = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::ECDH_P256)
            .unwrap();
        let peer_spki = b64(peer.compute_public_key().unwrap().as_der().unwrap().as_ref());
        let own = create(
            &s.host,
            json!({"Policy": json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": HOST},
                   "Action": "kms:*", "Resource": "*"}]}).to_string()}),
        )
        .await;
        let asks = |r: Option<Value>| {
            let with = |mut v: Value| {
                if let Some(r) = &r {
                    v["Recipient"] = r.clone();
                }
                v
            };
            vec![
                (
                    "GenerateDataKeyPair",
                    with(json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"})),
                ),
                (
                    "GenerateDataKeyPairWithoutPlaintext",
                    with(json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"})),
                ),
                (
                    "DeriveSharedSecret",
                    with(json!({"KeyId": ecdh, "KeyAgreementAlgorithm": "ECDH",
                                "PublicKey": peer_spki})),
                ),
                (
                    "Decrypt",
                    with(json!({"KeyId": rsa, "CiphertextBlob": rsa_ct,
                                "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})),
                ),
            ]
        };
        let mut secrets = vec![b64(b"rsa secret")];
        // Without a document: the Deny, for every one of them, and for ReEncrypt to its own key.
        for (op, input) in asks(None) {
            let e = s.host.call(op, &input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{op}: {e}");
            assert!(e.to_string().contains("explicit deny"), "{op}: {e}");
        }
        let r = s
            .host
            .call(
                "ReEncrypt",
                &json!({"CiphertextBlob": rsa_ct, "SourceKeyId": rsa,
                        "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "DestinationKeyId": own}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        // A document of another image: no Allow matches.
        for (op, input) in asks(Some(recipient(&other_image))) {
            let r = s.host.call(op, &input).await;
            assert_eq!(code(r), "AccessDeniedException", "{op}");
        }
        // The pinned image: only CiphertextForRecipient, never the plaintext beside it.
        for (op, input) in asks(Some(recipient(&good))) {
            let r = s.host.call(op, &input).await;
            if op == "GenerateDataKeyPairWithoutPlaintext" {
                // It takes no Recipient: the document is not considered, the Deny holds.
                assert_eq!(code(r), "AccessDeniedException", "{op}");
                continue;
            }
            let out = r.unwrap();
            for secret in ["Plaintext", "PrivateKeyPlaintext", "SharedSecret"] {
                assert!(out.get(secret).is_none(), "{op}: {out}");
            }
            let opened = enclave
                .open(&blob(&out, "CiphertextForRecipient").unwrap())
                .unwrap();
            secrets.push(b64(&opened));
            match op {
                "Decrypt" => assert_eq!(opened.as_slice(), b"rsa secret"),
                "DeriveSharedSecret" => assert_eq!(opened.len(), 32),
                // A PKCS #8 private key whose public key is the one answered.
                _ => {
                    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        &opened,
                    )
                    .unwrap();
                    use aws_lc_rs::signature::KeyPair as _;
                    assert_eq!(
                        pair.public_key().as_der().unwrap().as_ref(),
                        blob(&out, "PublicKey").unwrap()
                    );
                }
            }
        }
        secrets
    });
    // No secret in the audit log or the server's log.
    let audit = serde_json::to_string(&s.server.audit_tail(200)).unwrap();
    let log = s.server.log();
    assert_eq!(secrets.len(), 4);
    for secret in &secrets {
        assert!(!audit.contains(secret.as_str()) && !log.contains(secret.as_str()));
    }
}

#[test]
fn keys_of_other_usages_do_not_open_or_re_wrap_ciphertexts() {
    let s = started(&[]);
    rt().block_on(async {
        let sym = create(&s.owner, json!({})).await;
        let hmac = create(
            &s.owner,
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .await;
        let signing = create(
            &s.owner,
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        )
        .await;
        let ct = s
            .owner
            .call("Encrypt", &json!({"KeyId": sym, "Plaintext": b64(b"data")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let cases = [
            (
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "SourceKeyId": hmac, "DestinationKeyId": sym}),
                "IncorrectKeyException",
            ),
            (
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "SourceKeyId": signing,
                       "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "DestinationKeyId": sym}),
                "InvalidKeyUsageException",
            ),
            (
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "DestinationKeyId": hmac}),
                "InvalidKeyUsageException",
            ),
            (
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "DestinationKeyId": signing,
                       "DestinationEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": ct, "KeyId": signing,
                       "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": hmac, "KeySpec": "AES_256"}),
                "InvalidKeyUsageException",
            ),
            (
                "GenerateDataKeyPair",
                json!({"KeyId": signing, "KeyPairSpec": "RSA_2048"}),
                "InvalidKeyUsageException",
            ),
            (
                "GenerateMac",
                json!({"KeyId": sym, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                "Sign",
                json!({"KeyId": hmac, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"}),
                "InvalidKeyUsageException",
            ),
        ];
        for (op, input, want) in cases {
            let r = s.owner.call(op, &input).await;
            assert_eq!(code(r), want, "{op} {input}");
        }
        // The blob still opens under its key.
        let pt = s
            .owner
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"data");
    });
}

// ---------------------------------------------------------------------------------------------
// Multi-Region keys.

/// `cloister-kms policy check --json <file>`: how `who` reaches `action`.
fn checked_reach(dir: &Path, policy: &str, who: &str, action: &str) -> String {
    let file = dir.join("policy-under-check.json");
    std::fs::write(&file, policy).unwrap();
    let out = Command::new(kms_bin().path())
        .args(["policy", "check", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == who)
        .unwrap()["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == action)
        .unwrap_or_else(|| panic!("{action} not checked: {report}"))["reach"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn replicate_key_is_a_policy_write_and_regions_stay_apart() {
    let s = started(&[
        "--replica-region",
        "us-west-2",
        "--replica-region",
        "eu-west-1",
    ]);
    let (admin, host, _) = s.creds.clone();
    let (owner_west, owner_eu) = (
        in_region(&s, "us-west-2", &admin),
        in_region(&s, "eu-west-1", &admin),
    );
    let (host_west, host_eu) = (
        in_region(&s, "us-west-2", &host),
        in_region(&s, "eu-west-1", &host),
    );
    // The policy of a careful owner who lets the host replicate (and describe) the key, and
    // decrypt only attested: its Deny guards Decrypt alone.
    let pinned = PcrValue::measure(b"pipeline image").to_hex();
    let replicable = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": ["kms:DescribeKey", "kms:ReplicateKey"],
         "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pinned}}},
        {"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
    ]})
    .to_string();
    rt().block_on(async {
        let mrk = create(
            &s.owner,
            json!({"MultiRegion": true, "Policy": guarded_policy(&["kms:Decrypt"])}),
        )
        .await;
        assert!(mrk.starts_with("mrk-"));
        let ct = s
            .owner
            .call("Encrypt", &json!({"KeyId": mrk, "Plaintext": b64(b"mr secret")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        // A region without a replica has no such key: the blob does not open there.
        for who in [&owner_eu, &host_eu] {
            let r = who.call("Decrypt", &json!({"CiphertextBlob": ct})).await;
            assert_eq!(code(r), "InvalidCiphertextException");
        }
        // An ARN of the home region named in another region is not that region's key.
        let home_arn = format!("arn:aws:kms:us-east-1:111122223333:key/{mrk}");
        let r = owner_eu
            .call("DescribeKey", &json!({"KeyId": home_arn}))
            .await;
        assert_eq!(code(r), "NotFoundException");
        // Replicating, or moving the primary, without rights on the primary.
        let r = s
            .host
            .call(
                "ReplicateKey",
                &json!({"KeyId": mrk, "ReplicaRegion": "us-west-2",
                        "Policy": json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": HOST},
                                  "Action": "kms:*", "Resource": "*"}]}).to_string(),
                        "BypassPolicyLockoutSafetyCheck": true}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        let r = owner_west.call("DescribeKey", &json!({"KeyId": mrk})).await;
        assert_eq!(code(r), "NotFoundException");
        // The owner replicates (default policy: the account only); the host still gets nothing
        // there, and cannot move the primary.
        s.owner
            .call(
                "ReplicateKey",
                &json!({"KeyId": mrk, "ReplicaRegion": "us-west-2"}),
            )
            .await
            .unwrap();
        let r = host_west.call("Decrypt", &json!({"CiphertextBlob": ct})).await;
        assert_eq!(code(r), "AccessDeniedException");
        let r = s
            .host
            .call(
                "UpdatePrimaryRegion",
                &json!({"KeyId": mrk, "PrimaryRegion": "us-west-2"}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        let d = s
            .owner
            .call("DescribeKey", &json!({"KeyId": mrk}))
            .await
            .unwrap();
        assert_eq!(
            d["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"],
            "PRIMARY"
        );
        // A grant on the replica does not reach the primary, and the other way round.
        s.owner
            .call(
                "CreateGrant",
                &json!({"KeyId": mrk, "GranteePrincipal": OPS, "Operations": ["Decrypt"]}),
            )
            .await
            .unwrap();
        let (_, _, ops) = s.creds.clone();
        let r = in_region(&s, "us-west-2", &ops)
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await;
        assert_eq!(code(r), "AccessDeniedException");

        // With the careful owner's policy, ReplicateKey is a path to plaintext without
        // attestation: the host puts the material under a policy of its own in eu-west-1.
        // (AWS behaves so too; `policy check` must report it, which it did not.)
        s.owner
            .call(
                "PutKeyPolicy",
                &json!({"KeyId": mrk, "Policy": replicable}),
            )
            .await
            .unwrap();
        let r = s.host.call("Decrypt", &json!({"CiphertextBlob": ct})).await;
        assert_eq!(code(r), "AccessDeniedException");
        let own = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*"}]});
        s.host
            .call(
                "ReplicateKey",
                &json!({"KeyId": mrk, "ReplicaRegion": "eu-west-1", "Policy": own.to_string()}),
            )
            .await
            .unwrap();
        let pt = host_eu
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"mr secret");
    });
    assert_eq!(
        checked_reach(&s.dir, &replicable, HOST, "kms:Decrypt"),
        "attested-only"
    );
    assert_eq!(
        checked_reach(&s.dir, &replicable, HOST, "kms:ReplicateKey"),
        "without-attestation"
    );
    // The full guard (Deny kms:* without attestation) covers ReplicateKey.
    assert_eq!(
        checked_reach(
            &s.dir,
            &guarded_policy(&["kms:Decrypt"]),
            HOST,
            "kms:ReplicateKey"
        ),
        "not-allowed"
    );
}

// ---------------------------------------------------------------------------------------------
// Imported key material.

/// RSA-OAEP-SHA-256 of `material` to the wrapping key `spki`.
fn wrap(spki: &[u8], material: &[u8]) -> String {
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    b64(public
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .unwrap())
}

#[test]
fn import_tokens_bind_their_key_and_imported_material_cannot_be_swapped() {
    let s = started(&[]);
    let token = rt().block_on(async {
        let a = create(&s.owner, json!({"Origin": "EXTERNAL"})).await;
        let b = create(&s.owner, json!({"Origin": "EXTERNAL"})).await;
        let params = |k: String| {
            let owner = &s.owner;
            async move {
                let p = owner
                    .call(
                        "GetParametersForImport",
                        &json!({"KeyId": k, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                                "WrappingKeySpec": "RSA_2048"}),
                    )
                    .await
                    .unwrap();
                (
                    p["ImportToken"].as_str().unwrap().to_owned(),
                    blob(&p, "PublicKey").unwrap(),
                )
            }
        };
        let (token_a, spki_a) = params(a.clone()).await;
        let material = [0x11u8; 32];
        let import = |k: &str, token: &str, wrapped: &str| {
            json!({"KeyId": k, "ImportToken": token, "EncryptedKeyMaterial": wrapped,
                   "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        };
        // A stranger may not ask for parameters.
        let r = s
            .host
            .call(
                "GetParametersForImport",
                &json!({"KeyId": a, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                        "WrappingKeySpec": "RSA_2048"}),
            )
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        // Key A's token on key B; an edited token; material of the wrong length.
        let r = s
            .owner
            .call(
                "ImportKeyMaterial",
                &import(&b, &token_a, &wrap(&spki_a, &material)),
            )
            .await;
        assert_eq!(code(r), "InvalidImportTokenException");
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&token_a)
            .unwrap();
        let n = raw.len();
        raw[n / 2] ^= 1;
        let r = s
            .owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &b64(&raw), &wrap(&spki_a, &material)),
            )
            .await;
        assert_eq!(code(r), "InvalidImportTokenException");
        let r = s
            .owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &token_a, &wrap(&spki_a, &[1u8; 31])),
            )
            .await;
        assert_eq!(code(r), "IncorrectKeyMaterialException");
        // Material wrapped to another key's wrapping key does not unwrap.
        let (_, spki_b) = params(b.clone()).await;
        let r = s
            .owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &token_a, &wrap(&spki_b, &material)),
            )
            .await;
        assert_eq!(code(r), "InvalidCiphertextException");
        for k in [&a, &b] {
            let d = s
                .owner
                .call("DescribeKey", &json!({"KeyId": k}))
                .await
                .unwrap();
            assert_eq!(d["KeyMetadata"]["KeyState"], "PendingImport");
        }

        s.owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &token_a, &wrap(&spki_a, &material)),
            )
            .await
            .unwrap();
        let ct = s
            .owner
            .call("Encrypt", &json!({"KeyId": a, "Plaintext": b64(b"byok")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        // The host may not delete the material; the owner does, and the key stops.
        let r = s
            .host
            .call("DeleteImportedKeyMaterial", &json!({"KeyId": a}))
            .await;
        assert_eq!(code(r), "AccessDeniedException");
        s.owner
            .call("DeleteImportedKeyMaterial", &json!({"KeyId": a}))
            .await
            .unwrap();
        let r = s
            .owner
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await;
        assert_eq!(code(r), "KMSInvalidStateException");
        // Other material (right length, valid token) is refused; the key stays PendingImport.
        let r = s
            .owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &token_a, &wrap(&spki_a, &[0x22u8; 32])),
            )
            .await;
        assert_eq!(code(r), "IncorrectKeyMaterialException");
        let d = s
            .owner
            .call("DescribeKey", &json!({"KeyId": a}))
            .await
            .unwrap();
        assert_eq!(d["KeyMetadata"]["KeyState"], "PendingImport");
        // The same material again: the old ciphertext opens.
        s.owner
            .call(
                "ImportKeyMaterial",
                &import(&a, &token_a, &wrap(&spki_a, &material)),
            )
            .await
            .unwrap();
        let pt = s
            .owner
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"byok");
        token_a
    });
    // The token and the material never reach the audit log or the server's log.
    let text = serde_json::to_string(&s.server.audit_tail(200)).unwrap() + &s.server.log();
    assert!(!text.contains(&token[..64]), "the import token is logged");
    assert!(
        !text.contains(&b64(&[0x11u8; 32])),
        "the material is logged"
    );
}

// ---------------------------------------------------------------------------------------------
// Rows of schema version 2 edited in the database.

#[test]
fn edited_grant_and_attribute_rows_are_refused_after_a_restart() {
    let mut s = started(&[]);
    let (admin, host, ops) = s.creds.clone();
    let (k1, k2, k3, ct1, ct2) = rt().block_on(async {
        let k1 = create(&s.owner, json!({})).await;
        let k2 = create(&s.owner, json!({})).await;
        let k3 = create(
            &s.owner,
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
                   "Tags": [{"TagKey": "tier", "TagValue": "prod"}]}),
        )
        .await;
        let enc = |k: String| {
            let owner = &s.owner;
            async move {
                owner
                    .call("Encrypt", &json!({"KeyId": k, "Plaintext": b64(b"row")}))
                    .await
                    .unwrap()["CiphertextBlob"]
                    .clone()
            }
        };
        let (ct1, ct2) = (enc(k1.clone()).await, enc(k2.clone()).await);
        for (k, who) in [(&k1, OPS), (&k1, ADMIN_ARN)] {
            s.owner
                .call(
                    "CreateGrant",
                    &json!({"KeyId": k, "GranteePrincipal": who, "Operations": ["Encrypt"]}),
                )
                .await
                .unwrap();
        }
        (k1, k2, k3, ct1, ct2)
    });
    s.server.terminate(std::time::Duration::from_secs(30));
    let conn = db(&s.dir);
    // The ops grant made a Decrypt grant to the host; the owner's grant moved to key 2, for
    // ops, with Decrypt; key 3's attributes made a symmetric key.
    let n = conn
        .execute(
            "UPDATE grants SET body = replace(replace(body, ?1, ?2), '\"Encrypt\"', '\"Decrypt\"') WHERE key_id = ?3 AND body LIKE '%role/ops%'",
            [OPS, HOST, &k1],
        )
        .unwrap();
    assert_eq!(n, 1);
    let n = conn
        .execute(
            "UPDATE grants SET key_id = ?1, body = replace(replace(body, ?2, ?3), '\"Encrypt\"', '\"Decrypt\"') WHERE key_id = ?4 AND instr(body, '\"grantee_principal\":\"' || ?2 || '\"') > 0",
            [&k2, ADMIN_ARN, OPS, &k1],
        )
        .unwrap();
    assert_eq!(n, 1);
    let n = conn
        .execute(
            "UPDATE keys SET attrs = replace(replace(attrs, 'ECC_NIST_P256', 'SYMMETRIC_DEFAULT'), 'SIGN_VERIFY', 'ENCRYPT_DECRYPT') WHERE key_id = ?1",
            [&k3],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let server = kms_bin().start(&s.dir, &[]);
    let (owner, host, ops) = (
        once(server.client(admin)),
        once(server.client(host)),
        once(server.client(ops)),
    );
    rt().block_on(async {
        let r = host.call("Decrypt", &json!({"CiphertextBlob": ct1})).await;
        assert_eq!(code(r), "AccessDeniedException");
        let r = ops.call("Decrypt", &json!({"CiphertextBlob": ct2})).await;
        assert_eq!(code(r), "AccessDeniedException");
        // Neither edited grant is listed, on either key.
        for k in [&k1, &k2] {
            assert_eq!(grant_ids(&owner, k).await, Vec::<String>::new(), "{k}");
        }
        // Key 3 is refused as a whole, not served as a symmetric key.
        for (op, input) in [
            ("DescribeKey", json!({"KeyId": k3})),
            ("Encrypt", json!({"KeyId": k3, "Plaintext": b64(b"x")})),
            (
                "TagResource",
                json!({"KeyId": k3, "Tags": [{"TagKey": "tier", "TagValue": "dev"}]}),
            ),
        ] {
            let e = owner.call(op, &input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("KMSInternalException"), "{op}: {e}");
            assert!(e.to_string().contains("KMS-INTEGRITY"), "{op}: {e}");
        }
        // The untouched keys still work.
        let pt = owner
            .call("Decrypt", &json!({"CiphertextBlob": ct2}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"row");
    });
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Oversized and malformed inputs.

#[test]
fn oversized_inputs_are_refused_and_the_server_keeps_serving() {
    let s = started(&[]);
    rt().block_on(async {
        let signing = create(
            &s.owner,
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        )
        .await;
        let hmac = create(
            &s.owner,
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .await;
        let before = s.owner.call("ListKeys", &json!({})).await.unwrap()["Keys"]
            .as_array()
            .unwrap()
            .len();
        let big = b64(&[7u8; 4097]);
        let tags: Vec<Value> = (0..51)
            .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
            .collect();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases = [
            (
                "Sign",
                json!({"KeyId": signing, "Message": big, "SigningAlgorithm": "ECDSA_SHA_256"}),
                "ValidationException",
            ),
            (
                "Sign",
                json!({"KeyId": signing, "Message": b64(&[1; 33]), "MessageType": "DIGEST",
                       "SigningAlgorithm": "ECDSA_SHA_256"}),
                "ValidationException",
            ),
            (
                "GenerateMac",
                json!({"KeyId": hmac, "Message": big, "MacAlgorithm": "HMAC_SHA_256"}),
                "ValidationException",
            ),
            ("CreateKey", json!({"Tags": tags}), "TagException"),
            (
                "TagResource",
                json!({"KeyId": hmac, "Tags": tags}),
                "TagException",
            ),
            (
                "TagResource",
                json!({"KeyId": hmac, "Tags": [{"TagKey": "aws:owner", "TagValue": "me"}]}),
                "TagException",
            ),
            (
                "CreateGrant",
                json!({"KeyId": hmac, "GranteePrincipal": OPS, "Operations": ["GenerateMac"],
                       "GrantTokens": vec!["x"; 11]}),
                "ValidationException",
            ),
            (
                "CreateGrant",
                json!({"KeyId": hmac, "GranteePrincipal": OPS, "Operations": ["GenerateMac"],
                       "Constraints": {"EncryptionContextSubset": {"a": "b"}}}),
                "ValidationException",
            ),
            (
                "CreateGrant",
                json!({"KeyId": hmac, "GranteePrincipal": OPS, "Operations": ["Decrypt"]}),
                "ValidationException",
            ),
        ];
        for (op, input, want) in cases {
            let r = s.owner.call(op, &input).await;
            assert_eq!(code(r), want, "{op}");
        }
        // A deeply nested body is a SerializationException, not a crash.
        let answer = raw_call(&s, "CreateKey", deep.as_bytes());
        assert!(answer.contains("SerializationException"), "{answer}");
        // Still serving; no key, tag or grant was added.
        let after = s.owner.call("ListKeys", &json!({})).await.unwrap()["Keys"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(after, before);
        let t = s
            .owner
            .call("ListResourceTags", &json!({"KeyId": hmac}))
            .await
            .unwrap();
        assert_eq!(t["Tags"], json!([]));
        assert_eq!(grant_ids(&s.owner, &hmac).await, Vec::<String>::new());
    });
}
