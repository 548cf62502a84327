//! Requests per second of cloister-kms on each store, same client, same run: SQLite (the
//! reference), PostgreSQL with one node, PostgreSQL with two nodes sharing the database (the
//! same workers split between them).
//!
//! Every request is authenticated and audited, and its answer waits until its audit entry is
//! durable, so the figures measure the store's commit path: SQLite's group commit in one
//! process, PostgreSQL's over a loopback socket, and with two nodes the audit lock that keeps
//! one log across them. The PostgreSQL cluster is a throwaway one in a temporary directory
//! (`cloister_tests::pg`), fsync on. It prints figures and asserts nothing.
//!
//! Run: `scripts/bench-kms` (which runs this after the moto comparison), or
//! `cargo bench -p cloister-kms --bench stores`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{Proc, WORKERS, client, load};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use cloister_sigv4::Credentials;
use cloister_tests::pg::PgCluster;
use serde_json::json;
use zeroize::Zeroizing;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cloister-kms")
}

/// `--store <url>` if the store is not the data directory's SQLite file.
fn store_args(store: Option<&str>) -> Vec<String> {
    store.map_or_else(Vec::new, |s| vec!["--store".into(), s.into()])
}

fn credentials(dir: &Path, root_key: &Path, store: Option<&str>) -> Credentials {
    let out = Command::new(bin())
        .args(["credentials", "--data-dir"])
        .arg(dir)
        .arg("--root-key")
        .arg(root_key)
        .args(store_args(store))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: Zeroizing::new(get("AWS_SECRET_ACCESS_KEY")),
        session_token: None,
    }
}

fn serve(dir: &Path, root_key: &Path, store: Option<&str>) -> (Proc, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .arg("--root-key")
        .arg(root_key)
        .args(store_args(store))
        // The per-request log line is not what is measured here.
        .env("RUST_LOG", "info,cloister_kms::server=warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on http://")
                .nth(1)
                .map(|a| a.trim().to_owned())
        })
        .expect("cloister-kms did not start");
    std::thread::spawn(move || lines.for_each(drop));
    (Proc(child), addr)
}

/// One configuration's figures: GenerateDataKey and Decrypt of its data key, per second.
async fn measure(name: &str, addrs: &[String], creds: &Credentials, secs: f64) -> [(f64, u64); 2] {
    let c = client(&addrs[0], creds);
    let key = c
        .call(
            "CreateKey",
            &json!({"Description": format!("bench {name}")}),
        )
        .await
        .unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let gdk = json!({"KeyId": key_id, "KeySpec": "AES_256"});
    let blob = c.call("GenerateDataKey", &gdk).await.unwrap()["CiphertextBlob"].clone();
    // Every node must know the key before the figures start (a node learns of it at its next
    // request; this makes sure of it for each).
    for a in addrs {
        client(a, creds)
            .call("DescribeKey", &json!({"KeyId": key_id}))
            .await
            .unwrap();
    }
    [
        load(addrs, creds, "GenerateDataKey", &gdk, secs).await,
        load(
            addrs,
            creds,
            "Decrypt",
            &json!({"CiphertextBlob": blob}),
            secs,
        )
        .await,
    ]
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root_key = tmp.path().join("root.key");
    let mut rows: Vec<(String, [(f64, u64); 2])> = Vec::new();

    // SQLite: the reference.
    {
        let dir = tmp.path().join("sqlite");
        let creds = credentials(&dir, &root_key, None);
        let (_p, addr) = serve(&dir, &root_key, None);
        rows.push((
            "SQLite, 1 node".into(),
            rt.block_on(measure("sqlite", &[addr], &creds, secs)),
        ));
    }

    let pg = PgCluster::start();
    // PostgreSQL, one node.
    {
        let url = pg.create_database("bench_one");
        let dir = tmp.path().join("pg-one");
        let creds = credentials(&dir, &root_key, Some(&url));
        let (_p, addr) = serve(&dir, &root_key, Some(&url));
        rows.push((
            "PostgreSQL, 1 node".into(),
            rt.block_on(measure("pg1", &[addr], &creds, secs)),
        ));
    }
    // PostgreSQL, two nodes over one database, the workers split between them.
    {
        let url = pg.create_database("bench_two");
        let (a, b) = (tmp.path().join("pg-a"), tmp.path().join("pg-b"));
        let creds = credentials(&a, &root_key, Some(&url));
        let (_pa, addr_a) = serve(&a, &root_key, Some(&url));
        let (_pb, addr_b) = serve(&b, &root_key, Some(&url));
        rows.push((
            "PostgreSQL, 2 nodes".into(),
            rt.block_on(measure("pg2", &[addr_a, addr_b], &creds, secs)),
        ));
    }

    println!();
    println!(
        "cloister-kms requests/s by store ({WORKERS} clients, {secs} s each, {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<22} {:>18} {:>18}",
        "store", "GenerateDataKey", "Decrypt"
    );
    let reference = rows[0].1;
    for (name, figures) in &rows {
        let cell = |i: usize| {
            let (rps, errors) = figures[i];
            let share = 100.0 * rps / reference[i].0.max(f64::MIN_POSITIVE);
            let errors = if errors > 0 {
                format!(" ({errors} err)")
            } else {
                String::new()
            };
            format!("{rps:>8.0} ({share:>3.0}%){errors}")
        };
        println!("{name:<22} {:>18} {:>18}", cell(0), cell(1));
    }
    println!("(percentages: of SQLite's figure in this run)");
}
