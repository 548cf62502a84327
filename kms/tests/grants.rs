//! Grants against the real binary: attested conditions apply through grants exactly as through
//! key policies. The key owner's pipeline policy lets the host Decrypt only with an attestation
//! document, and denies it everything without one; an admin then grants the host Decrypt. The
//! grant must not open a path around the attestation Deny (AWS's evaluation logic: an explicit
//! Deny refuses whatever a grant allows), and `cloister-kms policy check --key-id` must count
//! the grants on the key as it counts policy statements.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_attestation::{PcrValue, Timestamp};
use cloister_kms_client::{b64, blob};
use cloister_tests::kms::{ADMIN_ARN, rt};
use serde_json::{Value, json};

use common::{document, key_id, kms_bin, once, recipient};

const HOST: &str = "arn:aws:iam::111122223333:role/cloister-host";
const OPS: &str = "arn:aws:iam::111122223333:role/ops";

/// The split-principal pipeline policy (as scripts/run's and hostile_kms.rs'): the owner does
/// everything; the host may Decrypt only for `image`, and nothing without attestation.
fn pipeline_policy(image: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "HostAttested", "Effect": "Allow", "Principal": {"AWS": HOST},
         "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": image}}},
        {"Sid": "HostOnlyAttested", "Effect": "Deny", "Principal": {"AWS": HOST},
         "Action": "kms:*", "Resource": "*",
         "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
    ]})
    .to_string()
}

/// How `who` reaches `action` in a `policy check --json` report.
fn reach(report: &Value, who: &str, action: &str) -> (String, Vec<String>) {
    let path = report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == who)
        .unwrap_or_else(|| panic!("{who} not in {report}"))["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["action"] == action)
        .unwrap()
        .clone();
    let statements = path["statements"]
        .as_array()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (path["reach"].as_str().unwrap().to_owned(), statements)
}

#[test]
fn a_grant_does_not_lift_the_attestation_deny_and_policy_check_counts_grants() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root_pem = tmp.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let dir = tmp.path().join("kms");
    let owner = kms_bin().admin(&dir);
    let host = kms_bin().add_principal(&dir, HOST);
    let ops = kms_bin().add_principal(&dir, OPS);
    let server = kms_bin().start(&dir, &["--trust-root", root_pem.to_str().unwrap()]);
    let (owner, host, ops) = (
        once(server.client(owner)),
        once(server.client(host)),
        once(server.client(ops)),
    );
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    let enclave = RecipientPrivateKey::new(private).unwrap();
    let pinned = PcrValue::measure(b"pipeline image").to_hex();

    let victim = rt().block_on(async {
        let victim = key_id(&owner.call("CreateKey", &json!({})).await.unwrap());
        owner
            .call(
                "PutKeyPolicy",
                &json!({"KeyId": victim, "Policy": pipeline_policy(&pinned)}),
            )
            .await
            .unwrap();
        let ct = owner
            .call(
                "Encrypt",
                &json!({"KeyId": victim, "Plaintext": b64(b"records key")}),
            )
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let other_image = document(&pki, b"some other image", &spki);
        // Before any grant: an attested document of another image is not what the policy pins.
        let e = host
            .call(
                "Decrypt",
                &json!({"CiphertextBlob": ct, "Recipient": recipient(&other_image)}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{e}");

        // The admin grants the host Decrypt and GenerateDataKey.
        let grant = owner
            .call(
                "CreateGrant",
                &json!({"KeyId": victim, "GranteePrincipal": HOST,
                        "Operations": ["Decrypt", "GenerateDataKey"]}),
            )
            .await
            .unwrap();
        // Without attestation the host still gets nothing: the Deny binds grantees too, whether
        // the grant is named by its token or not.
        let token = grant["GrantToken"].clone();
        for (op, input) in [
            ("Decrypt", json!({"CiphertextBlob": ct})),
            (
                "Decrypt",
                json!({"CiphertextBlob": ct, "GrantTokens": [token]}),
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": victim, "KeySpec": "AES_256"}),
            ),
        ] {
            let e = host.call(op, &input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("AccessDeniedException"), "{op}: {e}");
            assert!(e.to_string().contains("with an explicit deny"), "{op}: {e}");
        }
        // With a valid Recipient the grant allows it (here for an image the policy alone does
        // not allow: the grant is what lets it), and the answer is only wrapped to the enclave.
        let out = host
            .call(
                "Decrypt",
                &json!({"CiphertextBlob": ct, "Recipient": recipient(&other_image)}),
            )
            .await
            .unwrap();
        assert!(out.get("Plaintext").is_none(), "{out}");
        let opened = enclave
            .open(&blob(&out, "CiphertextForRecipient").unwrap())
            .unwrap();
        assert_eq!(opened.as_slice(), b"records key");
        let right_image = document(&pki, b"pipeline image", &spki);
        let out = host
            .call(
                "Decrypt",
                &json!({"CiphertextBlob": ct, "Recipient": recipient(&right_image)}),
            )
            .await
            .unwrap();
        assert!(out.get("Plaintext").is_none(), "{out}");

        // A grant to a principal no Deny names is a plaintext path without attestation: the
        // KMS serves it, so policy check must report it.
        owner
            .call(
                "CreateGrant",
                &json!({"KeyId": victim, "GranteePrincipal": OPS, "Operations": ["Decrypt"]}),
            )
            .await
            .unwrap();
        let pt = ops
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"records key");
        victim
    });

    let report: Value =
        serde_json::from_str(&server.cli(&["policy", "check", "--key-id", &victim, "--json"]))
            .unwrap();
    let grants: Value = rt()
        .block_on(owner.call("ListGrants", &json!({"KeyId": victim})))
        .unwrap();
    let ops_grant = grants["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["GranteePrincipal"] == OPS)
        .unwrap()["GrantId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The host's grant is covered by the Deny guard; the ops grant is a finding naming it.
    assert_eq!(
        reach(&report, HOST, "kms:Decrypt").0,
        "attested-only",
        "{report}"
    );
    assert_eq!(
        reach(&report, HOST, "kms:GenerateDataKey").0,
        "attested-only"
    );
    assert_eq!(
        reach(&report, OPS, "kms:Decrypt"),
        (
            "without-attestation".to_owned(),
            vec![format!("grant {ops_grant}")]
        ),
        "{report}"
    );
    assert_eq!(reach(&report, OPS, "kms:ReEncryptFrom").0, "not-allowed");
    let text = server.cli(&["policy", "check", "--key-id", &victim]);
    assert!(
        text.contains(&format!(
            "ALLOWED WITHOUT ATTESTATION (statement grant {ops_grant})"
        )),
        "{text}"
    );

    // Once the ops grant is revoked, the finding is gone, and so is the path.
    rt().block_on(async {
        owner
            .call(
                "RevokeGrant",
                &json!({"KeyId": victim, "GrantId": ops_grant}),
            )
            .await
            .unwrap();
    });
    let report: Value =
        serde_json::from_str(&server.cli(&["policy", "check", "--key-id", &victim, "--json"]))
            .unwrap();
    assert!(
        report["principals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["principal"] != OPS),
        "{report}"
    );
}
