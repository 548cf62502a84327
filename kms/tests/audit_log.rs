//! The audit log against the real binary: a tampered entry, a log rewritten with every hash
//! recomputed, and a cut-off tail are named by `audit verify` (with a checkpoint kept from
//! before where the database alone cannot tell); `audit prove`'s proofs check with only the
//! public key; the log keeps growing across restarts. The server is stopped before the database
//! is edited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_kms::TreeSigner;
use cloister_kms::audit_proof::InclusionProof;
use cloister_tests::kms::{KmsServer, rt};
use serde_json::json;

use common::{db, kms_bin, rewrite_audit_entry};

/// A temporary directory holding a data directory (`kms`) with a running server; the files
/// the tests save go beside the data directory.
fn started() -> (tempfile::TempDir, PathBuf, KmsServer) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kms");
    kms_bin().admin(&dir);
    let server = kms_bin().start(&dir, &[]);
    (tmp, dir, server)
}

/// `n` requests, each one audit entry: ListKeys, then a CreateKey every fourth.
fn requests(server: &KmsServer, n: usize) {
    let kms = server.client(server.admin());
    rt().block_on(async {
        for i in 0..n {
            let op = if i % 4 == 3 { "CreateKey" } else { "ListKeys" };
            kms.call(op, &json!({})).await.unwrap();
        }
    });
}

/// Stops the server as an operator does (SIGTERM) and waits for it.
fn stop(mut server: KmsServer) {
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success(), "{}", server.log());
}

/// `cloister-kms audit <args> --data-dir <dir>`.
fn audit(dir: &Path, args: &[&str]) -> Output {
    kms_bin().run(dir, &[&["audit"], args].concat())
}

/// `cloister-kms audit <args>` with no data directory.
fn offline(args: &[&str]) -> Output {
    Command::new(kms_bin().path())
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `audit verify <extra>`: exit code and its one line.
fn verify(dir: &Path, extra: &[&str]) -> (i32, String) {
    let o = audit(dir, &[&["verify"], extra].concat());
    (o.status.code().unwrap(), stdout(&o).trim().to_owned())
}

/// Runs `audit <args>` successfully and writes what it printed to `<dir>/../<name>`.
fn save(dir: &Path, args: &[&str], name: &str) -> PathBuf {
    let o = audit(dir, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let path = dir.with_file_name(name);
    std::fs::write(&path, &o.stdout).unwrap();
    path
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_tampered_entry_is_named() {
    let (_tmp, dir, server) = started();
    requests(&server, 6);
    stop(server);
    let (code, line) = verify(&dir, &[]);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("audit log intact: 6 entries"), "{line}");
    db(&dir)
        .execute(
            "UPDATE audit SET entry = replace(entry, 'ListKeys', 'ListAliases') WHERE seq = 2",
            [],
        )
        .unwrap();
    let (code, line) = verify(&dir, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "audit log BROKEN at entry 2: hash does not match the entry's contents"
    );
}

#[test]
fn a_recomputed_log_is_caught_by_the_stored_heads_and_by_a_checkpoint_without_them() {
    let (_tmp, dir, server) = started();
    requests(&server, 8);
    // Read-only commands work beside the running server.
    let checkpoint = save(&dir, &["checkpoint"], "checkpoint.json");
    let (code, line) = verify(&dir, &["--checkpoint", checkpoint.to_str().unwrap()]);
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("extends the checkpoint of size 8"), "{line}");
    requests(&server, 4);
    stop(server);

    let db = db(&dir);
    rewrite_audit_entry(&db, 5, "ListKeys", "ListAliases");
    // Every row checks out, but the head signed at shutdown (size 12) does not.
    let (code, line) = verify(&dir, &[]);
    assert_eq!(code, 1);
    assert!(
        line.starts_with("audit log BROKEN at tree head of size 12: entries 1..=12 do not give its root: an entry after 0 and at or before 12 was changed"),
        "{line}"
    );

    // Without the stored heads the database alone cannot tell...
    db.execute("DELETE FROM tree_heads", []).unwrap();
    db.execute("DELETE FROM audit_frontier", []).unwrap();
    let (code, line) = verify(&dir, &[]);
    assert_eq!(code, 0, "{line}");
    // ...but the checkpoint kept from before can, even once the server has signed the
    // rewritten log again.
    let path = checkpoint.to_str().unwrap();
    let (code, line) = verify(&dir, &["--checkpoint", path]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "audit log BROKEN at checkpoint of size 8: entries 1..=8 do not give its root: an entry at or before 8 was rewritten since it was taken"
    );
    let server = kms_bin().start(&dir, &[]);
    requests(&server, 1);
    let (code, line) = verify(&dir, &["--checkpoint", path]);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("audit log BROKEN at checkpoint of size 8"),
        "{line}"
    );
    drop(server);
}

#[test]
fn a_cut_off_tail_is_caught_by_a_checkpoint() {
    let (_tmp, dir, server) = started();
    requests(&server, 10);
    stop(server);
    let checkpoint = save(&dir, &["checkpoint"], "checkpoint.json");
    let path = checkpoint.to_str().unwrap();
    assert_eq!(verify(&dir, &["--checkpoint", path]).0, 0);

    let db = db(&dir);
    db.execute("DELETE FROM audit WHERE seq > 7", []).unwrap();
    // Left in place, the head signed at shutdown names the cut.
    let (code, line) = verify(&dir, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "audit log BROKEN at tree head of size 10: it covers 10 entries but the log has only 7: the log's tail was cut off"
    );
    // With the later heads gone too, only the checkpoint can.
    db.execute("DELETE FROM tree_heads WHERE tree_size > 7", [])
        .unwrap();
    assert_eq!(verify(&dir, &[]).0, 0);
    let (code, line) = verify(&dir, &["--checkpoint", path]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "audit log BROKEN at checkpoint of size 10: the log has 7 entries, fewer than the checkpoint's 10: its tail was cut off"
    );
}

#[test]
fn proofs_check_with_only_the_public_key() {
    let (_tmp, dir, server) = started();
    requests(&server, 5);
    let old = save(&dir, &["checkpoint"], "old.json");
    requests(&server, 6);
    let pem = save(&dir, &["public-key"], "key.pem");
    let proof = save(&dir, &["prove", "--seq", "3"], "proof.json");
    let consistency = save(&dir, &["prove", "--from-size", "5"], "consistency.json");
    drop(server);
    let (pem, proof_path) = (pem.to_str().unwrap(), proof.to_str().unwrap());
    // No data directory: the offline checker has the key and the proof only.
    std::fs::remove_dir_all(&dir).unwrap();

    let ok = offline(&["check-proof", "--public-key", pem, "--proof", proof_path]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let out = stdout(&ok);
    assert!(
        out.starts_with("inclusion proof valid: entry 3 is in the signed log of 11 entries\n"),
        "{out}"
    );
    assert!(out.contains("\"operation\":\"ListKeys\""), "{out}");
    let ok = offline(&[
        "check-proof",
        "--public-key",
        pem,
        "--checkpoint",
        old.to_str().unwrap(),
        "--proof",
        consistency.to_str().unwrap(),
    ]);
    assert_eq!(
        stdout(&ok),
        "consistency proof valid: the signed log of 11 entries extends the checkpoint of 5 entries\n"
    );

    let original = InclusionProof::parse(&std::fs::read(&proof).unwrap()).unwrap();
    let check = |p: &InclusionProof, key: &str| {
        std::fs::write(&proof, p.to_json()).unwrap();
        let o = offline(&["check-proof", "--public-key", key, "--proof", proof_path]);
        (o.status.code().unwrap(), stdout(&o).trim().to_owned())
    };
    // A modified entry.
    let modified = InclusionProof {
        entry: original.entry.replace("ListKeys", "ListAliases"),
        ..original.clone()
    };
    assert_eq!(
        check(&modified, pem),
        (1, "proof REJECTED: entry 3 and its audit path do not lead to the signed root: the entry or the proof was changed".into())
    );
    // The modified entry under a head re-signed by another key, which fits it.
    let forger = TreeSigner::generate().unwrap();
    let forged = InclusionProof {
        tree_head: forger.sign_now(11, modified.computed_root().unwrap()),
        ..modified
    };
    assert_eq!(
        check(&forged, pem),
        (
            1,
            "proof REJECTED: the tree head of 11 entries is not signed by the given public key"
                .into()
        )
    );
    let forger_pem = proof.with_file_name("forger.pem");
    std::fs::write(&forger_pem, forger.public_key().to_pem()).unwrap();
    assert_eq!(check(&forged, forger_pem.to_str().unwrap()).0, 0);
    // Not a proof at all.
    std::fs::write(&proof, "{\"format\":\"something else\"}").unwrap();
    let o = offline(&["check-proof", "--public-key", pem, "--proof", proof_path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(
            "proof REJECTED: the inclusion proof does not parse: unknown variant `something else`"
        ),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_log_keeps_growing_across_restarts() {
    let (_tmp, dir, server) = started();
    requests(&server, 5);
    let checkpoint = save(&dir, &["checkpoint"], "checkpoint.json");
    stop(server);
    // The writer signed the last entries at shutdown.
    let heads = |dir: &Path| {
        let db = db(dir);
        (
            count(&db, "SELECT count(*) FROM audit"),
            count(&db, "SELECT max(tree_size) FROM tree_heads"),
        )
    };
    assert_eq!(heads(&dir), (5, 5));

    let server = kms_bin().start(&dir, &[]);
    requests(&server, 7);
    // Killed: the entries since the last head are signed at the next start.
    drop(server);
    assert_eq!(heads(&dir), (12, 5));
    let server = kms_bin().start(&dir, &[]);
    assert_eq!(heads(&dir), (12, 12));
    requests(&server, 1);
    let (ok, line) = server.audit_verify();
    assert!(ok, "{line}");
    assert!(line.starts_with("audit log intact: 13 entries"), "{line}");
    let (code, line) = verify(&dir, &["--checkpoint", checkpoint.to_str().unwrap()]);
    assert_eq!(code, 0, "{line}");
    let tail = server.audit_tail(13);
    let seqs: Vec<i64> = tail.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=13).collect::<Vec<_>>());
    let proof = save(&dir, &["prove", "--seq", "13"], "proof.json");
    let pem = save(&dir, &["public-key"], "key.pem");
    let o = offline(&[
        "check-proof",
        "--public-key",
        pem.to_str().unwrap(),
        "--proof",
        proof.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    // The key owner's pinned key checks every stored head; another key checks none.
    let pem = pem.to_str().unwrap();
    assert_eq!(verify(&dir, &["--public-key", pem]).0, 0);
    let other = dir.with_file_name("other.pem");
    let other_key = TreeSigner::generate().unwrap().public_key().to_pem();
    std::fs::write(&other, other_key).unwrap();
    let (code, line) = verify(&dir, &["--public-key", other.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "audit log BROKEN at tree head of size 0: its signature does not verify under the tree-head public key"
    );
}
