//! Several cloister-kms nodes over one throwaway PostgreSQL database, each with its own data
//! directory and all with the same root key, for the multi-node tests and their hostile review;
//! `psql` for whoever administers the database.

use std::path::PathBuf;

use cloister_kms_client::{ClientError, KmsClient};
use cloister_sigv4::Credentials;
use cloister_tests::kms::{KmsServer, credentials_from};
use cloister_tests::pg::PgCluster;
use serde_json::{Value, json};

use super::kms_bin;

/// Nodes sharing one database and one root key, each with its own data directory.
pub(crate) struct Cluster {
    tmp: tempfile::TempDir,
    pub(crate) url: String,
    pub(crate) root_key: PathBuf,
}

impl Cluster {
    /// A new database `db` of `pg`, and a root key path no node has made yet.
    pub(crate) fn new(pg: &PgCluster, db: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root_key = tmp.path().join("root.key");
        Self {
            url: pg.create_database(db),
            tmp,
            root_key,
        }
    }

    /// Node `node`'s data directory.
    pub(crate) fn dir(&self, node: &str) -> PathBuf {
        self.tmp.path().join(node)
    }

    /// `--store <url> --root-key <key>`.
    pub(crate) fn store_args(&self) -> Vec<&str> {
        vec![
            "--store",
            self.url.as_str(),
            "--root-key",
            self.root_key.to_str().unwrap(),
        ]
    }

    /// `cloister-kms <args> --store <url> --root-key <key> --data-dir <node's dir>`, which must
    /// succeed; its stdout.
    pub(crate) fn cli(&self, node: &str, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(self.store_args());
        kms_bin().cli(&self.dir(node), &all)
    }

    /// `audit verify <extra>` of the shared log, run from node `a`'s data directory: (success,
    /// stdout and stderr).
    pub(crate) fn verify(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["audit", "verify"];
        args.extend(extra);
        args.extend(self.store_args());
        let out = kms_bin().run(&self.dir("a"), &args);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The admin's credentials (node `a` makes the store if it does not exist).
    pub(crate) fn admin(&self) -> Credentials {
        credentials_from(&self.cli("a", &["credentials"]))
    }

    /// `cloister-kms serve` of node `node`.
    pub(crate) fn start(&self, node: &str) -> KmsServer {
        kms_bin().start(&self.dir(node), &self.store_args())
    }
}

/// The AWS error name of a service error, else the error's text.
pub(crate) fn error_name(e: &ClientError) -> String {
    match e {
        ClientError::Service { name, .. } => name.clone(),
        other => format!("{other}"),
    }
}

/// Encrypt of a few bytes under `key`.
pub(crate) async fn encrypt(kms: &KmsClient, key: &str) -> Result<Value, ClientError> {
    kms.call("Encrypt", &json!({"KeyId": key, "Plaintext": "aGVsbG8="}))
        .await
}

/// `psql -At -c <sql>` against `url`'s database, as the cluster's superuser, which must succeed:
/// its stdout.
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new(cloister_tests::pg::bin_dir().join("psql"))
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
