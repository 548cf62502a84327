//! Integrity at rest against the real binary: a key policy, an alias or a principal edited in the
//! database while the server is stopped is refused after a restart, and audited, while the rest
//! keeps working; the root key can live outside the data directory, and a store is never opened
//! with a new or foreign root key; a store from before row MACs is migrated by the operator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use cloister_kms_client::{ClientError, b64, blob};
use cloister_tests::kms::{ADMIN_ARN, KmsServer, credentials_from, rt};
use serde_json::{Value, json};

use common::{db, key_id, kms_bin, once, serve_refused};

const HOST_ARN: &str = "arn:aws:iam::111122223333:role/cloister-host";
const IMAGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Asserts that `r` is the integrity refusal, naming `what`.
fn assert_refused(r: Result<Value, ClientError>, what: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.aws_name(), Some("KMSInternalException"), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("error[KMS-INTEGRITY]")
            && msg.contains("failed its integrity check")
            && msg.contains(what),
        "{msg}"
    );
}

/// The `IntegrityCheck` entries of the audit log.
fn integrity_entries(server: &KmsServer) -> Vec<Value> {
    server
        .audit_tail(1000)
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["operation"] == "IntegrityCheck")
        .collect()
}

/// Asserts that the one `IntegrityCheck` entry names `table` and `what`, and the log said so.
fn assert_audited(server: &KmsServer, table: &str, what: &str) {
    let entries = integrity_entries(server);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(
        (&e["outcome"], &e["error"], &e["principal"]),
        (
            &json!("error"),
            &json!("KMSInternalException"),
            &json!("cloister-kms")
        ),
        "{e}"
    );
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("(table {table})")) && reason.contains(what),
        "{reason}"
    );
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("failed its integrity check")),
        "{log}"
    );
    let (intact, out) = server.audit_verify();
    assert!(intact, "{out}");
}

fn key_arn(id: &str) -> String {
    format!("arn:aws:kms:us-east-1:111122223333:key/{id}")
}

/// A policy letting the admin do everything and the host decrypt, only for `IMAGE` if
/// `attested`.
fn policy(attested: bool) -> String {
    let mut host = json!({"Sid": "host", "Effect": "Allow", "Principal": {"AWS": HOST_ARN},
        "Action": "kms:Decrypt", "Resource": "*"});
    if attested {
        host["Condition"] =
            json!({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": IMAGE}});
    }
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": ADMIN_ARN}, "Action": "kms:*", "Resource": "*"},
        host,
    ]})
    .to_string()
}

#[test]
fn a_key_policy_edited_in_the_database_refuses_that_key_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = kms_bin().admin(d);
    let host = kms_bin().add_principal(d, HOST_ARN);
    let server = kms_bin().start(d, &[]);
    let (kms, hosted) = (
        once(server.client(admin.clone())),
        once(server.client(host.clone())),
    );
    let (a, b, ct_a, ct_b) = rt().block_on(async {
        let a = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        kms.call("PutKeyPolicy", &json!({"KeyId": a, "Policy": policy(true)}))
            .await
            .unwrap();
        kms.call(
            "CreateAlias",
            &json!({"AliasName": "alias/a", "TargetKeyId": a}),
        )
        .await
        .unwrap();
        let ct_a = kms
            .call("Encrypt", &json!({"KeyId": a, "Plaintext": b64(b"a")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        let b = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        kms.call(
            "PutKeyPolicy",
            &json!({"KeyId": b, "Policy": policy(false)}),
        )
        .await
        .unwrap();
        let ct_b = kms
            .call("Encrypt", &json!({"KeyId": b, "Plaintext": b64(b"b")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone();
        // Key a releases only to the attested image.
        let denied = hosted
            .call("Decrypt", &json!({"CiphertextBlob": ct_a}))
            .await
            .unwrap_err();
        assert_eq!(denied.aws_name(), Some("AccessDeniedException"), "{denied}");
        (a, b, ct_a, ct_b)
    });
    drop(server);

    // The attestation condition removed from key a's policy, in the database only.
    let edited = db(d)
        .execute(
            "UPDATE keys SET policy = ?1 WHERE key_id = ?2",
            [policy(false), a.clone()],
        )
        .unwrap();
    assert_eq!(edited, 1);

    let server = kms_bin().start(d, &[]);
    let (kms, hosted) = (once(server.client(admin)), once(server.client(host)));
    let arn_a = key_arn(&a);
    rt().block_on(async {
        // Neither released nor manageable.
        assert_refused(
            hosted
                .call("Decrypt", &json!({"CiphertextBlob": ct_a}))
                .await,
            &arn_a,
        );
        for (op, input) in [
            ("DescribeKey", json!({"KeyId": a})),
            (
                "Encrypt",
                json!({"KeyId": "alias/a", "Plaintext": b64(b"x")}),
            ),
            (
                "GetKeyPolicy",
                json!({"KeyId": arn_a, "PolicyName": "default"}),
            ),
            ("PutKeyPolicy", json!({"KeyId": a, "Policy": policy(true)})),
            ("EnableKey", json!({"KeyId": a})),
            (
                "ScheduleKeyDeletion",
                json!({"KeyId": a, "PendingWindowInDays": 7}),
            ),
        ] {
            assert_refused(kms.call(op, &input).await, &arn_a);
        }
        let listed = kms.call("ListKeys", &json!({})).await.unwrap();
        let ids: Vec<&str> = listed["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [b.as_str()]);
        // Everything else works.
        let p = hosted
            .call("Decrypt", &json!({"CiphertextBlob": ct_b}))
            .await
            .unwrap();
        assert_eq!(blob(&p, "Plaintext").unwrap(), b"b");
        kms.call("Encrypt", &json!({"KeyId": b, "Plaintext": b64(b"y")}))
            .await
            .unwrap();
        kms.call("CreateKey", &json!({})).await.unwrap();
    });
    assert_audited(&server, "keys", &arn_a);
    let entries = integrity_entries(&server);
    assert_eq!(entries[0]["key_id"], a.as_str());
}

#[test]
fn a_principal_given_the_admin_arn_in_the_database_cannot_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = kms_bin().admin(d);
    let host = kms_bin().add_principal(d, HOST_ARN);
    let server = kms_bin().start(d, &[]);
    let (kms, hosted) = (
        once(server.client(admin.clone())),
        once(server.client(host.clone())),
    );
    let key = rt().block_on(async {
        let key = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        let denied = hosted
            .call("DescribeKey", &json!({"KeyId": key}))
            .await
            .unwrap_err();
        assert_eq!(denied.aws_name(), Some("AccessDeniedException"), "{denied}");
        key
    });
    drop(server);

    let edited = db(d)
        .execute(
            "UPDATE principals SET arn = ?1 WHERE access_key_id = ?2",
            [ADMIN_ARN, &host.access_key_id],
        )
        .unwrap();
    assert_eq!(edited, 1);

    let server = kms_bin().start(d, &[]);
    let (kms, hosted) = (
        once(server.client(admin.clone())),
        once(server.client(host.clone())),
    );
    rt().block_on(async {
        let who = format!("access key {}", host.access_key_id);
        assert_refused(
            hosted.call("DescribeKey", &json!({"KeyId": key})).await,
            &who,
        );
        assert_refused(hosted.call("GenerateRandom", &json!({})).await, &who);
        kms.call("DescribeKey", &json!({"KeyId": key}))
            .await
            .unwrap();
    });
    assert_audited(&server, "principals", &host.access_key_id);
    // The CLI still finds the real admin.
    assert_eq!(server.admin().access_key_id, admin.access_key_id);

    // A principal added while the server runs, edited before its first request: found when the
    // server reads it, refused, and audited then.
    let late = server.add_principal("arn:aws:iam::111122223333:role/late");
    db(d)
        .execute(
            "UPDATE principals SET arn = ?1 WHERE access_key_id = ?2",
            [ADMIN_ARN, &late.access_key_id],
        )
        .unwrap();
    let late_client = once(server.client(late.clone()));
    rt().block_on(async {
        let who = format!("access key {}", late.access_key_id);
        assert_refused(late_client.call("ListKeys", &json!({})).await, &who);
        assert_refused(late_client.call("ListKeys", &json!({})).await, &who);
        kms.call("ListKeys", &json!({})).await.unwrap();
    });
    let entries = integrity_entries(&server);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains(&late.access_key_id)
    );
}

#[test]
fn an_alias_retargeted_in_the_database_no_longer_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = kms_bin().admin(d);
    let server = kms_bin().start(d, &[]);
    let kms = once(server.client(admin.clone()));
    let (a, b) = rt().block_on(async {
        let a = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        let b = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        kms.call(
            "CreateAlias",
            &json!({"AliasName": "alias/app", "TargetKeyId": a}),
        )
        .await
        .unwrap();
        kms.call(
            "CreateAlias",
            &json!({"AliasName": "alias/other", "TargetKeyId": b}),
        )
        .await
        .unwrap();
        (a, b)
    });
    drop(server);

    let edited = db(d)
        .execute(
            "UPDATE aliases SET key_id = ?1 WHERE name = 'alias/app'",
            [&b],
        )
        .unwrap();
    assert_eq!(edited, 1);

    let server = kms_bin().start(d, &[]);
    let kms = once(server.client(admin));
    let alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/app";
    rt().block_on(async {
        for (op, input) in [
            (
                "Encrypt",
                json!({"KeyId": "alias/app", "Plaintext": b64(b"x")}),
            ),
            ("DescribeKey", json!({"KeyId": alias_arn})),
            ("DeleteAlias", json!({"AliasName": "alias/app"})),
            (
                "UpdateAlias",
                json!({"AliasName": "alias/app", "TargetKeyId": a}),
            ),
            (
                "CreateAlias",
                json!({"AliasName": "alias/app", "TargetKeyId": a}),
            ),
        ] {
            assert_refused(kms.call(op, &input).await, alias_arn);
        }
        let aliases = kms.call("ListAliases", &json!({})).await.unwrap();
        let names: Vec<&str> = aliases["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AliasName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alias/other"]);
        // Both keys, and the other alias, work.
        kms.call("Encrypt", &json!({"KeyId": a, "Plaintext": b64(b"x")}))
            .await
            .unwrap();
        let d = kms
            .call("DescribeKey", &json!({"KeyId": "alias/other"}))
            .await
            .unwrap();
        assert_eq!(d["KeyMetadata"]["KeyId"], b.as_str());
    });
    assert_audited(&server, "aliases", alias_arn);
}

#[test]
fn the_root_key_can_live_outside_the_data_directory_and_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let key = secrets.join("kms-root.key");
    let key_arg = key.to_str().unwrap();
    let creds = credentials_from(&kms_bin().cli(&data, &["credentials", "--root-key", key_arg]));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let in_data_dir = data.join("root.key");
    assert!(!in_data_dir.exists());

    let server = kms_bin().start(&data, &["--root-key", key_arg]);
    let ct = rt().block_on(async {
        let kms = once(server.client(creds.clone()));
        let id = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"kept")}))
            .await
            .unwrap()["CiphertextBlob"]
            .clone()
    });
    drop(server);
    let server = kms_bin().start(&data, &["--root-key", key_arg]);
    rt().block_on(async {
        let kms = once(server.client(creds.clone()));
        let p = kms
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&p, "Plaintext").unwrap(), b"kept");
    });
    drop(server);

    // Without --root-key the store's key is missing: refused, and no new key is made.
    let err = serve_refused(&data, &[]);
    assert!(
        err.contains(&format!("{} does not exist", in_data_dir.display()))
            && err.contains("--root-key"),
        "{err}"
    );
    for args in [
        &["credentials"][..],
        &["principal", "add", "--arn", HOST_ARN],
    ] {
        let out = kms_bin().run(&data, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{args:?}"
        );
    }
    assert!(!in_data_dir.exists());

    // Another key: refused before any row is read.
    let other = secrets.join("other.key");
    std::fs::write(&other, [7u8; 32]).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = serve_refused(&data, &["--root-key", other.to_str().unwrap()]);
    assert!(err.contains("is not the root key of the store"), "{err}");

    // A key readable by others: refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = serve_refused(&data, &["--root-key", key_arg]);
    assert!(err.contains("it must be 0600"), "{err}");
}

#[test]
fn a_store_from_before_row_macs_is_migrated_by_the_operator_not_by_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let creds = kms_bin().admin(d);
    let server = kms_bin().start(d, &[]);
    let ct = rt().block_on(async {
        let kms = once(server.client(creds.clone()));
        let id = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
        kms.call(
            "CreateAlias",
            &json!({"AliasName": "alias/app", "TargetKeyId": id}),
        )
        .await
        .unwrap();
        kms.call(
            "Encrypt",
            &json!({"KeyId": "alias/app", "Plaintext": b64(b"old")}),
        )
        .await
        .unwrap()["CiphertextBlob"]
            .clone()
    });
    drop(server);

    // The store as a version without row MACs left it (or as whoever writes the database could
    // make it look).
    db(d)
        .execute_batch(
            "ALTER TABLE keys DROP COLUMN mac; ALTER TABLE keys DROP COLUMN attrs;
             ALTER TABLE aliases DROP COLUMN mac; ALTER TABLE principals DROP COLUMN mac;
             DROP TABLE meta; DROP TABLE grants; DROP TABLE secrets;
             DROP TABLE secret_versions; DROP TABLE parameters; PRAGMA user_version = 0;",
        )
        .unwrap();
    let err = serve_refused(d, &[]);
    assert!(err.contains("run `cloister-kms migrate"), "{err}");

    let out = kms_bin().cli(d, &["migrate"]);
    // One key, one alias, the admin.
    assert!(
        out.contains("3 key, alias and principal rows MAC'd"),
        "{out}"
    );
    let out = kms_bin().cli(d, &["migrate"]);
    assert!(out.contains("nothing to do"), "{out}");

    let server = kms_bin().start(d, &[]);
    rt().block_on(async {
        let kms = once(server.client(creds));
        let p = kms
            .call("Decrypt", &json!({"CiphertextBlob": ct}))
            .await
            .unwrap();
        assert_eq!(blob(&p, "Plaintext").unwrap(), b"old");
        kms.call(
            "Encrypt",
            &json!({"KeyId": "alias/app", "Plaintext": b64(b"new")}),
        )
        .await
        .unwrap();
    });
    assert!(integrity_entries(&server).is_empty());
}
