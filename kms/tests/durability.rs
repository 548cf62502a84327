//! kill -9 while clients write; after a restart every answered key and ciphertext is usable and
//! the audit chain is intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_kms_client::blob;
use cloister_tests::kms::{KmsBinary, rt};
use serde_json::{Value, json};

/// The binary under test.
fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

#[test]
fn answered_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let mut server = kms_bin().start(dir.path(), &[]);
    /// (key id, ciphertext blob, data key) of every answered GenerateDataKey.
    type Answered = Vec<(String, Value, Vec<u8>)>;
    let answered: Arc<Mutex<Answered>> = Arc::default();
    let rt = rt();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let kms = server.client(creds.clone());
            let answered = answered.clone();
            tasks.push(tokio::spawn(async move {
                let no_retry = cloister_kms_client::Retry { attempts: 1, ..Default::default() };
                let kms = kms.with_retry(no_retry);
                loop {
                    let Ok(k) = kms.call("CreateKey", &json!({})).await else { return };
                    let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
                    let Ok(d) = kms.call("GenerateDataKey", &json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"k": &id}})).await
                    else {
                        return;
                    };
                    answered.lock().unwrap().push((id, d["CiphertextBlob"].clone(), blob(&d, "Plaintext").unwrap()));
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SIGKILL: no chance to flush anything.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for t in tasks {
            let _ = t.await;
        }
    });
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 10,
        "only {} writes answered before the kill",
        answered.len()
    );

    let server = kms_bin().start(dir.path(), &[]);
    let kms = server.client(creds);
    rt.block_on(async {
        for (id, ct, plain) in &answered {
            kms.call("DescribeKey", &json!({"KeyId": id}))
                .await
                .unwrap();
            let p = kms
                .call(
                    "Decrypt",
                    &json!({"CiphertextBlob": ct, "EncryptionContext": {"k": id}}),
                )
                .await
                .unwrap();
            assert_eq!(&blob(&p, "Plaintext").unwrap(), plain);
        }
    });
    let v = std::process::Command::new(kms_bin().path())
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn audit_verify_names_the_first_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let kms = server.client(creds);
    rt().block_on(async {
        for _ in 0..5 {
            kms.call("ListKeys", &json!({})).await.unwrap();
        }
    });
    drop(server);
    let verify = || {
        std::process::Command::new(kms_bin().path())
            .args(["audit", "verify", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact: 5 entries"));
    let db = rusqlite::Connection::open(dir.path().join("kms.sqlite3")).unwrap();
    db.execute(
        "UPDATE audit SET entry = replace(entry, 'ListKeys', 'ListAliases') WHERE seq = 3",
        [],
    )
    .unwrap();
    drop(db);
    let bad = verify();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("BROKEN at entry 3"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}
