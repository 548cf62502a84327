//! Several cloister-kms nodes over one PostgreSQL database behave as one KMS: a change made on
//! one node decides the very next request on another, the audit log is one log in one order,
//! a node killed with `kill -9` under load loses no answered write, and PostgreSQL going away
//! and coming back gives retryable errors, then service, with no restart of the nodes.
//!
//! Real parts: the `cloister-kms` binary, a throwaway PostgreSQL 15 cluster in a temporary
//! directory (`cloister_tests::pg`), cloister's own KMS client over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cloister_kms_client::{ClientError, KmsClient, Retry};
use cloister_tests::kms::credentials_from;
use cloister_tests::pg::PgCluster;
use serde_json::{Value, json};

use common::cluster::{Cluster, encrypt, error_name, psql};
use common::{key_id, kms_bin, once};

fn retrying(kms: KmsClient) -> KmsClient {
    kms.with_retry(Retry {
        attempts: 12,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
    })
}

fn audit_entries(cluster: &Cluster) -> Vec<Value> {
    cluster
        .cli("a", &["audit", "tail", "-n", "100000"])
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_one_database_behave_as_one_kms() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "two_nodes");
    let admin = cluster.admin();
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let (ka, kb) = (once(a.client(admin.clone())), once(b.client(admin.clone())));

    // A key made on A is used on B at once.
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    let sealed = encrypt(&kb, &key).await.unwrap();
    // Disabled on A: B refuses the very next request.
    ka.call("DisableKey", &json!({"KeyId": key})).await.unwrap();
    let refused = encrypt(&kb, &key).await.unwrap_err();
    assert_eq!(error_name(&refused), "DisabledException");
    ka.call("EnableKey", &json!({"KeyId": key})).await.unwrap();
    encrypt(&kb, &key).await.unwrap();

    // Re-policied on B (Encrypt denied to the admin): A refuses the next Encrypt.
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:Encrypt", "Resource": "*"}
        ]
    });
    kb.call(
        "PutKeyPolicy",
        &json!({"KeyId": key, "PolicyName": "default", "Policy": policy.to_string()}),
    )
    .await
    .unwrap();
    let denied = encrypt(&ka, &key).await.unwrap_err();
    assert_eq!(error_name(&denied), "AccessDeniedException");
    // Decrypt is still allowed: what B sealed before opens on A.
    ka.call(
        "Decrypt",
        &json!({"CiphertextBlob": sealed["CiphertextBlob"]}),
    )
    .await
    .unwrap();

    // Rotated on A: B's new ciphertexts use the new material, which A opens.
    let key2 = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    ka.call("RotateKeyOnDemand", &json!({"KeyId": key2}))
        .await
        .unwrap();
    let rotations = kb
        .call("ListKeyRotations", &json!({"KeyId": key2}))
        .await
        .unwrap();
    assert_eq!(rotations["Rotations"].as_array().unwrap().len(), 1);
    let after = encrypt(&kb, &key2).await.unwrap();
    ka.call(
        "Decrypt",
        &json!({"CiphertextBlob": after["CiphertextBlob"]}),
    )
    .await
    .unwrap();

    // An alias made on B names the key on A.
    kb.call(
        "CreateAlias",
        &json!({"AliasName": "alias/shared", "TargetKeyId": key2}),
    )
    .await
    .unwrap();
    encrypt(&ka, "alias/shared").await.unwrap();

    // A principal added with the CLI against the database is known to both nodes.
    let added = credentials_from(&cluster.cli(
        "b",
        &[
            "principal",
            "add",
            "--arn",
            "arn:aws:iam::111122223333:role/added",
        ],
    ));
    let as_added = once(b.client(added.clone()));
    let err = as_added
        .call("Encrypt", &json!({"KeyId": key2, "Plaintext": "aA=="}))
        .await
        .unwrap_err();
    assert_eq!(
        error_name(&err),
        "AccessDeniedException",
        "known, not allowed"
    );
    let err = once(a.client(added)).call("ListKeys", &json!({})).await;
    assert!(err.is_ok(), "{err:?}");

    // Keys made concurrently on both nodes: every one made once, both nodes list all.
    let mut tasks = Vec::new();
    for node in [&a, &b] {
        for _ in 0..6 {
            let c = retrying(node.client(admin.clone()));
            tasks.push(tokio::spawn(async move {
                key_id(&c.call("CreateKey", &json!({})).await.unwrap())
            }));
        }
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.unwrap());
    }
    for kms in [&ka, &kb] {
        let listed = kms.call("ListKeys", &json!({"Limit": 1000})).await.unwrap();
        let ids: Vec<&str> = listed["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 2 + made.len());
        for id in &made {
            assert!(ids.contains(&id.as_str()), "{id} missing");
        }
    }

    // One audit log: both nodes' entries, numbered 1..n in one chain, verified with the one
    // tree-head key both nodes sign with.
    drop((a, b));
    let entries = audit_entries(&cluster);
    let ops: Vec<&str> = entries
        .iter()
        .map(|e| e["entry"]["operation"].as_str().unwrap_or(""))
        .collect();
    for op in [
        "CreateKey",
        "DisableKey",
        "PutKeyPolicy",
        "CreateAlias",
        "RotateKeyOnDemand",
    ] {
        assert!(ops.contains(&op), "{op} not audited: {ops:?}");
    }
    let (verified, out) = cluster.verify(&[]);
    assert!(verified, "{out}");
    assert!(out.contains(&format!("{} entries", entries.len())), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_answered_write() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "kill_nine");
    let admin = cluster.admin();
    let (mut a, b) = (cluster.start("a"), cluster.start("b"));
    let kb = once(b.client(admin.clone()));

    // Writers on A until it dies; each answered CreateKey is a write A promised.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (c, answered) = (once(a.client(admin.clone())), answered.clone());
        writers.push(tokio::spawn(async move {
            while let Ok(v) = c.call("CreateKey", &json!({})).await {
                answered.lock().unwrap().push(key_id(&v));
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "no writes answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // kill -9: no clean stop, no final tree head.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let listed = kb.call("ListKeys", &json!({"Limit": 1000})).await.unwrap();
    let ids: Vec<&str> = listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap())
        .collect();
    for id in &answered {
        assert!(ids.contains(&id.as_str()), "answered key {id} lost");
    }
    // B goes on serving and its keys work; the log is intact.
    encrypt(&kb, &answered[0]).await.unwrap();
    drop(b);
    let (verified, out) = cluster.verify(&[]);
    assert!(verified, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_gives_retryable_errors_then_service_without_a_restart() {
    let mut pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "outage");
    let admin = cluster.admin();
    let node = cluster.start("a");
    let kms = once(node.client(admin.clone()));
    let key = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
    let before = kms.call("ListKeys", &json!({})).await.unwrap()["Keys"]
        .as_array()
        .unwrap()
        .len();

    pg.stop();
    let err = encrypt(&kms, &key).await.unwrap_err();
    match &err {
        ClientError::Service {
            name,
            status,
            message,
        } => {
            assert_eq!(name, "KMSInternalException", "{message}");
            assert!(*status >= 500, "retryable status, got {status}");
            assert!(message.contains("KMS-STORE-UNAVAILABLE"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(err.retryable());

    // A client that retries with backoff across the outage: its CreateKey succeeds once.
    let patient = retrying(node.client(admin.clone()));
    let create = tokio::spawn(async move { patient.call("CreateKey", &json!({})).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    let made = key_id(&create.await.unwrap().unwrap());

    // Served again by the same process; exactly one key more.
    encrypt(&kms, &key).await.unwrap();
    encrypt(&kms, &made).await.unwrap();
    let keys = kms.call("ListKeys", &json!({})).await.unwrap()["Keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys, before + 1);
    assert!(node.log().contains("KMS-STORE-UNAVAILABLE") || node.log().contains("unavailable"));
}

#[test]
fn tls_to_the_database_is_verified() {
    let pg = PgCluster::start_tls();
    let ca = pg.ca_path().unwrap().to_owned();
    // The cluster's certificate names localhost.
    let url = pg.create_database("tls").replace("127.0.0.1", "localhost");
    let with = |ca: &Path| {
        format!(
            "{url}{}sslmode=verify-full&sslrootcert={}",
            if url.contains('?') { "&" } else { "?" },
            ca.display()
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    // The cluster's own CA: served.
    let good = with(&ca);
    let out = kms_bin().run(&tmp.path().join("a"), &["credentials", "--store", &good]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another CA: refused before anything is read or written.
    let other = PgCluster::make_ca(tmp.path());
    let bad = with(&other);
    let out = kms_bin().run(&tmp.path().join("b"), &["credentials", "--store", &bad]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("tls"),
        "{err}"
    );
    // No TLS without verification.
    let lax = format!("{url}?sslmode=require");
    let out = kms_bin().run(&tmp.path().join("c"), &["credentials", "--store", &lax]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_in_the_database_alone_are_refused_on_postgres_too() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "tamper");
    let admin = cluster.admin();
    let node = cluster.start("a");
    let kms = once(node.client(admin.clone()));
    let victim = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
    let bystander = key_id(&kms.call("CreateKey", &json!({})).await.unwrap());
    drop(node);
    // Whoever can write the database (not the root key) loosens a key's policy.
    psql(
        &cluster.url,
        &format!(
            "UPDATE keys SET policy = replace(policy, 'kms:*', 'kms:Decrypt') WHERE key_id = '{victim}'"
        ),
    );
    let node = cluster.start("b");
    let kms = once(node.client(admin));
    let err = encrypt(&kms, &victim).await.unwrap_err();
    assert!(format!("{err}").contains("KMS-INTEGRITY"), "{err}");
    encrypt(&kms, &bystander).await.unwrap();
}

/// How many of `n` Encrypts sent at once on `kms` are throttled.
async fn throttled_of(kms: &KmsClient, key: &str, n: usize) -> usize {
    let mut throttled = 0;
    for _ in 0..n {
        match encrypt(kms, key).await {
            Ok(_) => {}
            Err(e) if error_name(&e) == "ThrottlingException" => throttled += 1,
            Err(e) => panic!("{e}"),
        }
    }
    throttled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_the_services_divided_among_the_live_nodes() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "rate");
    let admin = cluster.admin();
    let mut args = cluster.store_args();
    args.extend(["--rate", "40"]);
    let a = kms_bin().start(&cluster.dir("a"), &args);
    let ka = once(a.client(admin.clone()));
    let key = key_id(&ka.call("CreateKey", &json!({})).await.unwrap());
    // Alone, node A's bucket holds the whole rate: a burst of 30 passes (after a refill).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(throttled_of(&ka, &key, 30).await, 0);
    // With B alive too, A enforces half: of a burst of 30 about 10 are throttled (20 tokens,
    // refilled at 20/s while the burst runs).
    let b = kms_bin().start(&cluster.dir("b"), &args);
    assert!(
        a.wait_for_log(
            "2 node(s) of the shared store alive",
            Duration::from_secs(30)
        ),
        "A never counted B: {}",
        a.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let throttled = throttled_of(&ka, &key, 30).await;
    assert!(
        throttled >= 3,
        "only {throttled} of 30 throttled at half the rate"
    );
    // B gone: after the window, A has the whole rate again.
    drop(b);
    assert!(
        a.wait_for_log(
            "1 node(s) of the shared store alive",
            Duration::from_secs(30)
        ),
        "A never noticed B leave: {}",
        a.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(throttled_of(&ka, &key, 30).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_entry_rewritten_in_postgres_is_caught_by_verify() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "audit_rewrite");
    let admin = cluster.admin();
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    for node in [&a, &b] {
        once(node.client(admin.clone()))
            .call("CreateKey", &json!({"Description": "logged"}))
            .await
            .unwrap();
    }
    drop((a, b));
    let (intact, out) = cluster.verify(&[]);
    assert!(intact, "{out}");
    // Whoever administers the database hides that the key was made: the entry is rewritten in
    // place (its chain and leaf hashes no longer match it).
    psql(
        &cluster.url,
        "UPDATE audit SET entry = replace(entry, 'CreateKey', 'ListKeys') WHERE entry LIKE '%CreateKey%'",
    );
    let (intact, report) = cluster.verify(&[]);
    assert!(!intact);
    assert!(report.contains("entry"), "{report}");
}

#[test]
fn the_store_can_come_from_the_environment_instead_of_the_command_line() {
    let pg = PgCluster::start();
    let cluster = Cluster::new(&pg, "from_env");
    let rk = cluster.root_key.to_str().unwrap();
    let out = std::process::Command::new(kms_bin().path())
        .args(["credentials", "--root-key", rk, "--data-dir"])
        .arg(cluster.dir("a"))
        .env("CLOISTER_KMS_STORE", &cluster.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same admin as the store named on the command line: it is the same database.
    let from_env = credentials_from(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(from_env.access_key_id, cluster.admin().access_key_id);
}
