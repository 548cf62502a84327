//! A hostile review of several cloister-kms nodes over one PostgreSQL database: clients racing
//! nodes, whoever administers the database (without the root key) editing the coordination
//! tables and the audit log, and an operator who misconfigures (another root key, a URL whose
//! password must not leak). Each test is an attack; it asserts what must hold (a denial of
//! service is acceptable, a stale or wrong authorization is not).
//!
//! Real parts: the `cloister-kms` binary, throwaway PostgreSQL clusters (`cloister_tests::pg`),
//! cloister's own KMS client over HTTP, `psql` for the database administrator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use cloister_kms_client::KmsClient;
use cloister_sigv4::Credentials;
use cloister_tests::kms::credentials_from;
use cloister_tests::pg::PgCluster;
use serde_json::json;

use common::cluster::{Cluster, encrypt, error_name, psql};
use common::{key_id, kms_bin, once};

/// (a) A client with valid credentials races the nodes: a key disabled on A is used on B in the
/// same instant, many rounds. No Encrypt sent to B after A answered DisableKey may succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_sent_after_a_disable_was_answered_succeeds_on_the_other_node() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "race_disable");
    let admin = cluster.admin();
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let ka = once(a.client(admin.clone()));
    let kb = std::sync::Arc::new(once(b.client(admin.clone())));
    for round in 0..15 {
        let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
        encrypt(&kb, &key).await.unwrap();
        let answered: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
        let mut hammers = Vec::new();
        for _ in 0..6 {
            let (kb, key, answered) = (kb.clone(), key.clone(), answered.clone());
            hammers.push(tokio::spawn(async move {
                let mut late_successes = 0;
                for _ in 0..40 {
                    let sent = Instant::now();
                    let after = answered.lock().unwrap().is_some_and(|t| sent > t);
                    let outcome = encrypt(&kb, &key).await;
                    if after && outcome.is_ok() {
                        late_successes += 1;
                    }
                    if let Err(e) = &outcome {
                        assert_eq!(error_name(e), "DisabledException", "{e}");
                    }
                }
                late_successes
            }));
        }
        tokio::time::sleep(Duration::from_millis(5 * (round % 4))).await;
        ka.call("DisableKey", &json!({"KeyId": key})).await.unwrap();
        *answered.lock().unwrap() = Some(Instant::now());
        let mut late = 0;
        for h in hammers {
            late += h.await.unwrap();
        }
        assert_eq!(
            late, 0,
            "round {round}: {late} Encrypts sent to B after A's DisableKey answer succeeded"
        );
    }
}

/// (a) Read-modify-write changes of one key on both nodes at once (tags): none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_of_one_key_on_two_nodes_lose_nothing() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "race_tags");
    let admin = cluster.admin();
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let (ka, kb) = (
        std::sync::Arc::new(a.client(admin.clone())),
        std::sync::Arc::new(b.client(admin.clone())),
    );
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..24 {
        let kms = if i % 2 == 0 { ka.clone() } else { kb.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            kms.call(
                "TagResource",
                &json!({"KeyId": key, "Tags": [{"TagKey": format!("t{i}"), "TagValue": "v"}]}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            // Refused is acceptable (retryable); lost after an OK is not.
            Err(e) => assert!(format!("{e}").contains("KMSInternal"), "{e}"),
        }
    }
    assert!(ok > 0);
    let tags = |kms: std::sync::Arc<KmsClient>| {
        let key = key.clone();
        async move {
            kms.call("ListResourceTags", &json!({"KeyId": key}))
                .await
                .unwrap()["Tags"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(tags(ka.clone()).await, ok, "a tag answered OK was lost (A)");
    assert_eq!(tags(kb.clone()).await, ok, "a tag answered OK was lost (B)");
}

/// (b) The database's administrator moves the generation counter back, forward, makes it
/// NULL or deletes it. Service may stop (DoS); a key disabled afterwards on A must never be
/// used on B, and neither node may crash on what it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_generation_never_makes_a_node_decide_from_stale_state() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "fence");
    let admin = cluster.admin();
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let (ka, kb) = (once(a.client(admin.clone())), once(b.client(admin.clone())));
    let tampers = [
        "UPDATE kms_generation SET generation = generation + 1000",
        "UPDATE kms_generation SET generation = 0",
        "UPDATE kms_generation SET generation = -5",
        "UPDATE kms_generation SET generation = 9223372036854775807",
    ];
    for tamper in tampers {
        let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
        encrypt(&kb, &key).await.unwrap();
        psql(&cluster.url, tamper);
        // The next disable on A (it may be refused once: the fence saw a stranger's change).
        let mut disabled = false;
        for _ in 0..5 {
            if ka.call("DisableKey", &json!({"KeyId": key})).await.is_ok() {
                disabled = true;
                break;
            }
        }
        if disabled {
            let e = encrypt(&kb, &key).await.unwrap_err();
            assert_eq!(error_name(&e), "DisabledException", "after `{tamper}`: {e}");
        } else {
            // Not disabled: then B may not think so either, and must keep serving.
            encrypt(&kb, &key).await.unwrap();
        }
    }
    // At i64::MAX no change can be made (a denial of service): set it back.
    psql(&cluster.url, "UPDATE kms_generation SET generation = 3");
    // NULL, a wrong type, no row: refused (retryable), nodes alive, no stale success.
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    for tamper in [
        "ALTER TABLE kms_generation ALTER COLUMN generation DROP NOT NULL; UPDATE kms_generation SET generation = NULL",
        "DELETE FROM kms_generation",
    ] {
        psql(&cluster.url, tamper);
        assert!(ka.call("DisableKey", &json!({"KeyId": key})).await.is_err());
        assert!(
            encrypt(&kb, &key).await.is_err(),
            "served without a generation"
        );
        psql(
            &cluster.url,
            "INSERT INTO kms_generation (id, generation) VALUES (1, 77) ON CONFLICT (id) DO UPDATE SET generation = 77",
        );
        encrypt(&kb, &key).await.unwrap();
    }
    psql(
        &cluster.url,
        "ALTER TABLE kms_generation ALTER COLUMN generation TYPE text USING generation::text",
    );
    assert!(encrypt(&kb, &key).await.is_err());
    let (mut a, mut b) = (a, b);
    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.log());
    assert!(b.child.try_wait().unwrap().is_none(), "{}", b.log());
}

/// (b) The administrator forges `kms_nodes` rows: many fake live nodes (a denial of service,
/// acceptable), or every row but the node's own deleted: its share is never above `--rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_node_rows_never_raise_a_nodes_share_above_the_rate() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "nodes");
    let admin = cluster.admin();
    let mut args = cluster.store_args();
    args.extend(["--rate", "10"]);
    let a = kms_bin().start(&cluster.dir("a"), &args);
    let ka = once(a.client(admin.clone()));
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    // Rows with a NULL-free but absurd content: far future, negative, a huge id.
    psql(
        &cluster.url,
        &format!(
            "INSERT INTO kms_nodes (node_id, seen_ms) VALUES ('future', 9223372036854775807), ('past', -9223372036854775808), ('{}', 1)",
            "x".repeat(100_000)
        ),
    );
    psql(
        &cluster.url,
        "DELETE FROM kms_nodes WHERE node_id NOT IN ('future', 'past')",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A burst of 40 at a rate of 10: the bucket holds at most 10, so at least ~25 are refused.
    let mut throttled = 0;
    for _ in 0..40 {
        if let Err(e) = encrypt(&ka, &key).await {
            assert_eq!(error_name(&e), "ThrottlingException", "{e}");
            throttled += 1;
        }
    }
    assert!(
        throttled >= 20,
        "only {throttled} of 40 throttled at rate 10"
    );
    let mut a = a;
    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.log());
}

/// (b) The administrator edits the audit log in PostgreSQL: a row deleted in the middle, the
/// newest rows cut off, the tree heads deleted, the signing key replaced. `audit verify --store`
/// catches each (the last ones with the public key the owner kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_edits_in_postgres_are_caught_by_verify() {
    let pg = PgCluster::start();
    let fresh = |name: &str| {
        let cluster = Cluster::new(&pg, name);
        let admin = cluster.admin();
        (cluster, admin)
    };
    async fn fill(cluster: &Cluster, admin: &Credentials) {
        let (mut a, mut b) = (cluster.start("a"), cluster.start("b"));
        for node in [&a, &b, &a, &b] {
            once(node.client(admin.clone()))
                .call("CreateKey", &json!({"Description": "logged"}))
                .await
                .unwrap();
        }
        // Stopped cleanly: each signs a head of the log as it leaves it.
        a.terminate(Duration::from_secs(30));
        b.terminate(Duration::from_secs(30));
    }

    // A row deleted in the middle.
    let (c, admin) = fresh("audit_mid");
    fill(&c, &admin).await;
    assert!(c.verify(&[]).0, "{}", c.verify(&[]).1);
    psql(
        &c.url,
        "DELETE FROM audit WHERE seq = (SELECT min(seq) + 1 FROM audit)",
    );
    let (ok, report) = c.verify(&[]);
    assert!(!ok, "a deleted entry went unnoticed: {report}");

    // The newest rows cut off (the heads signed over them stay).
    let (c, admin) = fresh("audit_tail");
    fill(&c, &admin).await;
    psql(
        &c.url,
        "DELETE FROM audit WHERE seq > (SELECT max(seq) - 2 FROM audit)",
    );
    let (ok, report) = c.verify(&[]);
    assert!(!ok, "a cut-off tail went unnoticed: {report}");

    // The signing key replaced: a node restarted makes a new one; the owner's pinned key
    // refuses the log's heads.
    let (c, admin) = fresh("audit_signer");
    let pem = c.dir("audit.pem");
    fill(&c, &admin).await;
    std::fs::write(&pem, c.cli("a", &["audit", "public-key"])).unwrap();
    let pinned = ["--public-key", pem.to_str().unwrap()];
    assert!(c.verify(&pinned).0, "{}", c.verify(&pinned).1);
    psql(&c.url, "DELETE FROM meta WHERE name = 'audit-signing-key'");
    psql(&c.url, "DELETE FROM tree_heads");
    fill(&c, &admin).await;
    let (ok, report) = c.verify(&pinned);
    assert!(!ok, "a replaced signing key went unnoticed: {report}");
}

/// (c) An operator starts a node with another root key, or a second deployment's database:
/// refused before serving, and the database is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_root_key_is_refused_and_changes_nothing() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "rootkey");
    let admin = cluster.admin();
    {
        let a = cluster.start("a");
        once(a.client(admin.clone()))
            .call("CreateKey", &json!({}))
            .await
            .unwrap();
    }
    let count = || {
        psql(
            &cluster.url,
            "SELECT (SELECT count(*) FROM audit) || '/' || (SELECT count(*) FROM keys) || '/' || (SELECT count(*) FROM meta)",
        )
    };
    let before = count();
    // Another deployment's root key (its own directory, its own key).
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("root.key");
    for args in [
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            cluster.url.as_str(),
            "--root-key",
            other_key.to_str().unwrap(),
        ],
        vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            cluster.url.as_str(),
        ],
    ] {
        let out = std::process::Command::new(kms_bin().path())
            .args(&args)
            .arg("--data-dir")
            .arg(other.path().join("d"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "a node with another root key served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("root key"), "{err}");
    }
    assert_eq!(count(), before, "a refused node wrote to the database");
    // The database's administrator deletes the root key check first: a node with another key
    // must still not write its own check over a store sealed under the first.
    psql(
        &cluster.url,
        "DELETE FROM meta WHERE name = 'root-key-check'",
    );
    // The other key exists (a second deployment made it).
    let second = pg.create_database("rootkey_second");
    kms_bin().cli(
        &other.path().join("second"),
        &[
            "credentials",
            "--store",
            &second,
            "--root-key",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(other_key.exists());
    let out = std::process::Command::new(kms_bin().path())
        .args(["credentials", "--store", cluster.url.as_str(), "--root-key"])
        .arg(&other_key)
        .arg("--data-dir")
        .arg(other.path().join("d"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a node with another root key took over a store whose check was deleted: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        psql(
            &cluster.url,
            "SELECT count(*) FROM meta WHERE name = 'root-key-check'"
        ),
        "0"
    );
}

/// (c) The password in `--store` never shows in what the node prints: URLs whose password holds
/// `/` or `?` (legal for the driver, which takes everything up to the first `@`), refused for
/// another reason.
#[test]
fn the_store_password_never_shows_in_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        // The plain case: clap's own error repeated the refused value.
        "postgres://kms:s3cret@db.example.com/kms",
        "postgres://kms:Pw/s3cret@db.example.com/kms",
        "postgres://kms:Pw?s3cret@db.example.com/kms",
        "postgresql://kms:Pw/s3cret@db.example.com:5432/kms?sslmode=require",
        "postgres://kms:Pw/s3cret@db.example.com/kms?sslmode=verify-full",
        "postgres://kms:Pw/s3cret@db.example.com:notaport/kms",
        "postgres://kms@db.example.com/kms?password=Pw/s3cret&sslmode=prefer",
    ] {
        let out = kms_bin().run(&tmp.path().join("d"), &["credentials", "--store", url]);
        assert!(!out.status.success(), "{url} accepted");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("s3cret"), "the password leaked: {all}");
    }
}

/// (c) A running node's log never holds the password of its `--store` URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_nodes_log_never_holds_the_store_password() {
    let pg = PgCluster::start();
    let plain = pg.create_database("pw");
    // The throwaway cluster trusts 127.0.0.1: any password is accepted, and must be hidden.
    let url = plain.replacen('@', ":Pw/s3cret@", 1);
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("root.key");
    let args = ["--store", url.as_str(), "--root-key", key.to_str().unwrap()];
    let mut cli = vec!["credentials"];
    cli.extend(args);
    let out = kms_bin().run(&tmp.path().join("a"), &cli);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("s3cret"), "{all}");
    let node = kms_bin().start(&tmp.path().join("a"), &args);
    let admin = credentials_from(&String::from_utf8_lossy(&out.stdout));
    once(node.client(admin))
        .call("CreateKey", &json!({}))
        .await
        .unwrap();
    // And with the database gone (errors name the store).
    let mut pg = pg;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!node.log().contains("s3cret"), "{}", node.log());
}

/// (b) The administrator appends an entry of their own to the audit log (well chained: the
/// chain and leaf hashes need no secret) while the nodes run. A node follows "the entries other
/// nodes committed" and signs tree heads over it, so the forged entry would pass `audit verify`
/// with the owner's pinned key and a checkpoint taken before: it must be caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_entry_appended_in_postgres_is_not_signed_into_the_log() {
    let pg = PgCluster::start();
    let c = Cluster::new(&pg, "audit_forge");
    let admin = c.admin();
    let (mut a, mut b) = (c.start("a"), c.start("b"));
    let (ka, kb) = (once(a.client(admin.clone())), once(b.client(admin.clone())));
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    encrypt(&kb, &key).await.unwrap();
    let pem = c.dir("audit.pem");
    std::fs::write(&pem, c.cli("a", &["audit", "public-key"])).unwrap();
    let checkpoint = c.dir("checkpoint.json");
    std::fs::write(&checkpoint, c.cli("a", &["audit", "checkpoint"])).unwrap();
    // The forged entry: the last one, made to say the key was scheduled for deletion.
    psql(
        &c.url,
        "INSERT INTO audit (seq, entry, prev_hash, hash, leaf_hash)
         SELECT seq + 1, e, hash,
                encode(sha256(convert_to(hash || E'\\n' || e, 'UTF8')), 'hex'),
                sha256('\\x00'::bytea || convert_to(e, 'UTF8'))
         FROM (SELECT seq, hash, replace(entry, '\"Encrypt\"', '\"ScheduleKeyDeletion\"') AS e
               FROM audit ORDER BY seq DESC LIMIT 1) t",
    );
    // The nodes go on (each may refuse a request: that is a denial of service, acceptable).
    for kms in [&ka, &kb, &ka, &kb] {
        let _ = encrypt(kms, &key).await;
    }
    a.terminate(Duration::from_secs(30));
    b.terminate(Duration::from_secs(30));
    let (ok, report) = c.verify(&[
        "--public-key",
        pem.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert!(
        !ok,
        "an entry no node wrote is in the log under a head a node signed: {report}"
    );
    assert!(report.contains("MAC"), "{report}");
    // The nodes did not follow it: while it is there they do not start over it (a denial of
    // service, visible); once it is gone they serve again.
    let out = kms_bin().run(
        &c.dir("a"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &c.url,
            "--root-key",
            c.root_key.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "a node started over a forged entry");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAC"), "{err}");
    psql(
        &c.url,
        "DELETE FROM audit WHERE entry LIKE '%ScheduleKeyDeletion%'",
    );
    let (a, b) = (c.start("a"), c.start("b"));
    encrypt(&once(a.client(admin.clone())), &key).await.unwrap();
    encrypt(&once(b.client(admin.clone())), &key).await.unwrap();
}

/// (b) Hostile contents in the coordination and log tables (a wrong type, a gap in the log's
/// sequence): requests are refused (a denial of service), no node crashes, and service comes
/// back once the rows are put right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rows_in_the_shared_tables_refuse_service_and_crash_nothing() {
    let pg = PgCluster::start();
    let c = Cluster::new(&pg, "hostile_rows");
    let admin = c.admin();
    let (mut a, mut b) = (c.start("a"), c.start("b"));
    let (ka, kb) = (once(a.client(admin.clone())), once(b.client(admin.clone())));
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    // A far entry: every node's next transaction finds a gap and writes nothing.
    psql(
        &c.url,
        "INSERT INTO audit (seq, entry, prev_hash, hash, leaf_hash)
         SELECT max(seq) + 10, 'not json', 'x', 'y', NULL FROM audit",
    );
    assert!(
        encrypt(&kb, &key).await.is_err(),
        "answered without its audit entry"
    );
    assert!(ka.call("DisableKey", &json!({"KeyId": key})).await.is_err());
    psql(&c.url, "DELETE FROM audit WHERE entry = 'not json'");
    encrypt(&kb, &key).await.unwrap();
    // The node table with a wrong type: the heartbeat fails, nothing else.
    psql(
        &c.url,
        "ALTER TABLE kms_nodes ALTER COLUMN seen_ms TYPE text USING seen_ms::text",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    encrypt(&ka, &key).await.unwrap();
    encrypt(&kb, &key).await.unwrap();
    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.log());
    assert!(b.child.try_wait().unwrap().is_none(), "{}", b.log());
    // The key's row with NULL where a value is expected: refused (integrity), others served.
    let other = key_id(&kb.call("CreateKey", &json!({})).await.unwrap());
    psql(
        &c.url,
        &format!(
            "ALTER TABLE keys ALTER COLUMN policy DROP NOT NULL; UPDATE keys SET policy = NULL WHERE key_id = '{key}'"
        ),
    );
    // Another change makes the nodes reload what is stored.
    kb.call(
        "TagResource",
        &json!({"KeyId": other, "Tags": [{"TagKey": "k", "TagValue": "v"}]}),
    )
    .await
    .unwrap();
    let refused = encrypt(&ka, &key).await.unwrap_err();
    assert!(format!("{refused}").contains("KMS-"), "{refused}");
    encrypt(&ka, &other).await.unwrap();
    assert!(a.child.try_wait().unwrap().is_none(), "{}", a.log());
}

/// (a) A grant revoked on A while its grantee uses it on B, many rounds: no Encrypt the
/// grantee sends to B after A answered RevokeGrant succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_sent_after_a_revoke_was_answered_succeeds_on_the_other_node() {
    const GRANTEE: &str = "arn:aws:iam::111122223333:role/grantee";
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "race_revoke");
    let admin = cluster.admin();
    let grantee = credentials_from(&cluster.cli("a", &["principal", "add", "--arn", GRANTEE]));
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let ka = once(a.client(admin.clone()));
    let gb = std::sync::Arc::new(once(b.client(grantee)));
    // The key's policy names only the admin: the grantee's Encrypt rests on the grant alone.
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    for round in 0..10 {
        let grant = ka
            .call(
                "CreateGrant",
                &json!({"KeyId": key, "GranteePrincipal": GRANTEE, "Operations": ["Encrypt"]}),
            )
            .await
            .unwrap()["GrantId"]
            .as_str()
            .unwrap()
            .to_owned();
        encrypt(&gb, &key).await.unwrap();
        let answered: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
        let mut hammers = Vec::new();
        for _ in 0..6 {
            let (gb, key, answered) = (gb.clone(), key.clone(), answered.clone());
            hammers.push(tokio::spawn(async move {
                let mut late = 0;
                for _ in 0..30 {
                    let sent = Instant::now();
                    let after = answered.lock().unwrap().is_some_and(|t| sent > t);
                    match encrypt(&gb, &key).await {
                        Ok(_) if after => late += 1,
                        Ok(_) => {}
                        Err(e) => assert_eq!(error_name(&e), "AccessDeniedException", "{e}"),
                    }
                }
                late
            }));
        }
        tokio::time::sleep(Duration::from_millis(5 * (round % 4))).await;
        ka.call("RevokeGrant", &json!({"KeyId": key, "GrantId": grant}))
            .await
            .unwrap();
        *answered.lock().unwrap() = Some(Instant::now());
        let mut late = 0;
        for h in hammers {
            late += h.await.unwrap();
        }
        assert_eq!(
            late, 0,
            "round {round}: {late} Encrypts after the revoke succeeded"
        );
        let e = encrypt(&gb, &key).await.unwrap_err();
        assert_eq!(error_name(&e), "AccessDeniedException", "{e}");
    }
}

/// (c) An operator names the database `localhost` but gives `hostaddr=` a remote address (where
/// the driver really connects): the plain default for loopback must not apply.
#[test]
fn a_remote_hostaddr_is_not_spoken_to_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kms_bin().run(
        &tmp.path().join("d"),
        &[
            "credentials",
            "--store",
            "postgres://kms@localhost:1/kms?hostaddr=192.0.2.1&connect_timeout=1",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not on this machine"), "{err}");
}
