//! A real `cloister-kms serve` for tests: started on a free loopback port (plain HTTP, and TLS
//! when asked) over a data directory, killed on drop; its CLI, admin credentials, clients and
//! audit log.
//!
//! With `CLOISTER_TEST_STORE=postgres` every store the harness makes is a database of one
//! throwaway PostgreSQL cluster (started once per test process, [`crate::pg`]) instead of the
//! data directory's SQLite file: `serve`, `credentials`, `principal` and `audit` get `--store`
//! naming the data directory's own database, so the same tests run against either store
//! (`scripts/test` runs the KMS API tests both ways).
//!
//! The harness runs the binary whose path it is given (`env!("CARGO_BIN_EXE_cloister-kms")` in
//! the KMS's own tests, [`crate::binary`] elsewhere), so it needs no build of its own. Like the
//! rest of this crate it panics on a broken environment: it only ever runs inside tests.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_kms_client::{KmsClient, TcpConnector, TlsConnector};
use cloister_sigv4::Credentials;
use zeroize::Zeroizing;

/// The commands that take `--store`.
const STORE_COMMANDS: [&str; 5] = ["serve", "credentials", "principal", "audit", "policy"];

/// Whether the tests' stores are PostgreSQL databases (`CLOISTER_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("CLOISTER_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("CLOISTER_TEST_STORE={other}: sqlite or postgres"),
    }
}

/// `--store <url>` for a command run over `data_dir`: its own database of the tests' cluster
/// when [`on_postgres`], else nothing (the data directory's SQLite file).
pub fn store_args(data_dir: &Path, args: &[&str]) -> Vec<String> {
    static CLUSTER: std::sync::OnceLock<crate::pg::PgCluster> = std::sync::OnceLock::new();
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    if !on_postgres()
        || !args.first().is_some_and(|c| STORE_COMMANDS.contains(c))
        || args.contains(&"--store")
    {
        return Vec::new();
    }
    let cluster = CLUSTER.get_or_init(crate::pg::PgCluster::start);
    let name = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        format!("kms_{}", hex::encode(&digest[..12]))
    };
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let url = if made.contains(&name) {
        cluster.url(&name)
    } else {
        let url = cluster.create_database(&name);
        made.push(name);
        url
    };
    vec!["--store".into(), url]
}

/// The region and account the KMS answers for by default.
pub const REGION: &str = "us-east-1";
/// The account's root, the admin principal.
pub const ADMIN_ARN: &str = "arn:aws:iam::111122223333:root";

/// The `cloister-kms` binary.
#[derive(Debug, Clone)]
pub struct KmsBinary {
    path: PathBuf,
}

impl KmsBinary {
    /// The binary at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `cloister-kms <args> --data-dir <data_dir>`, without checking how it ended.
    pub fn run(&self, data_dir: &Path, args: &[&str]) -> Output {
        Command::new(&self.path)
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .args(store_args(data_dir, args))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()))
    }

    /// Runs `cloister-kms <args> --data-dir <data_dir>`, which must succeed; its stdout.
    pub fn cli(&self, data_dir: &Path, args: &[&str]) -> String {
        let out = self.run(data_dir, args);
        assert!(
            out.status.success(),
            "cloister-kms {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("cloister-kms printed non-UTF-8")
    }

    /// The admin's credentials (the store is created if it does not exist yet).
    pub fn admin(&self, data_dir: &Path) -> Credentials {
        credentials_from(&self.cli(data_dir, &["credentials"]))
    }

    /// A new principal named `arn`, with its credentials.
    pub fn add_principal(&self, data_dir: &Path, arn: &str) -> Credentials {
        credentials_from(&self.cli(data_dir, &["principal", "add", "--arn", arn]))
    }

    /// `audit verify`: whether the chain is intact, and what the command printed.
    pub fn audit_verify(&self, data_dir: &Path) -> (bool, String) {
        let out = self.run(data_dir, &["audit", "verify"]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Starts `cloister-kms serve --listen 127.0.0.1:0 --data-dir <data_dir> <extra>`; with
    /// `--tls-listen` among `extra`, waits for the HTTPS listener too.
    pub fn start(&self, data_dir: &Path, extra: &[&str]) -> KmsServer {
        self.start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Like [`KmsBinary::start`], with the plain HTTP listener on `listen` (`host:0` for a free
    /// port) instead of loopback.
    pub fn start_on(&self, data_dir: &Path, listen: &str, extra: &[&str]) -> KmsServer {
        KmsServer::spawn(self.clone(), data_dir.to_owned(), None, listen, extra)
    }

    /// Like [`KmsBinary::start`], over a new temporary data directory the server owns.
    pub fn start_temp(&self, extra: &[&str]) -> KmsServer {
        let tmp = tempfile::tempdir().expect("temporary directory");
        KmsServer::spawn(
            self.clone(),
            tmp.path().join("kms"),
            Some(tmp),
            "127.0.0.1:0",
            extra,
        )
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID=...` / `AWS_SECRET_ACCESS_KEY=...` lines.
pub fn credentials_from(out: &str) -> Credentials {
    let env = env_lines(out);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
    };
    Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: Zeroizing::new(get("AWS_SECRET_ACCESS_KEY")),
        session_token: None,
    }
}

/// `NAME=value` lines as pairs.
pub fn env_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A running `cloister-kms serve`; killed on drop.
#[derive(Debug)]
pub struct KmsServer {
    /// The process.
    pub child: Child,
    /// The plain HTTP address (`127.0.0.1:port` unless started with [`KmsBinary::start_on`]).
    pub addr: String,
    /// The HTTPS address, when started with `--tls-listen`.
    pub https: Option<String>,
    /// The data directory.
    pub dir: PathBuf,
    binary: KmsBinary,
    log: Arc<Mutex<String>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for KmsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after(log: &str, marker: &str) -> Option<String> {
    log.split(marker)
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .map(|a| a.trim().to_owned())
}

impl KmsServer {
    fn spawn(
        binary: KmsBinary,
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(binary.path())
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(&dir)
            .args(extra)
            .args(if extra.contains(&"--store") {
                Vec::new()
            } else {
                store_args(&dir, &["serve"])
            })
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.path().display()));
        let tls = extra.contains(&"--tls-listen");
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        let lock = |log: &Arc<Mutex<String>>| {
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        loop {
            line.clear();
            let n = reader.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                let _ = child.kill();
                panic!("cloister-kms did not start: {}", lock(&log));
            }
            log.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_str(&line);
            let seen = lock(&log);
            let http = after(&seen, "listening on http://");
            if http.is_some() && (!tls || seen.contains("listening on https://")) {
                break;
            }
        }
        let seen = lock(&log);
        let addr = after(&seen, "listening on http://").expect("http address");
        let https = after(&seen, "listening on https://");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&line);
                line.clear();
            }
        });
        Self {
            child,
            addr,
            https,
            dir,
            binary,
            log,
            _tmp: tmp,
        }
    }

    /// What the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the log contains `marker`; false after `timeout`.
    pub fn wait_for_log(&self, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(marker) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log().contains(marker)
    }

    /// Stops the server with SIGTERM and waits for it to exit, at most `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(self.child.id()).expect("a process id fits in i32"),
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for cloister-kms") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cloister-kms did not stop within {timeout:?} of SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The binary this server runs.
    pub fn binary(&self) -> &KmsBinary {
        &self.binary
    }

    /// Runs the CLI on this server's data directory (see [`KmsBinary::cli`]).
    pub fn cli(&self, args: &[&str]) -> String {
        self.binary.cli(&self.dir, args)
    }

    /// The admin's credentials.
    pub fn admin(&self) -> Credentials {
        self.binary.admin(&self.dir)
    }

    /// The admin's credentials as environment pairs (`AWS_ACCESS_KEY_ID`, ...).
    pub fn admin_env(&self) -> Vec<(String, String)> {
        env_lines(&self.cli(&["credentials"]))
    }

    /// A new principal named `arn`, with its credentials.
    pub fn add_principal(&self, arn: &str) -> Credentials {
        self.binary.add_principal(&self.dir, arn)
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client over plain HTTP.
    pub fn client(&self, creds: Credentials) -> KmsClient {
        KmsClient::http(&self.url(), REGION, creds).expect("KMS client")
    }

    /// The CA certificate (PEM) the TLS listener's certificate chains to.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// A client over TLS, pinned to the server's CA, naming the server `localhost`.
    pub fn tls_client(&self, creds: Credentials) -> KmsClient {
        let https = self
            .https
            .clone()
            .expect("the server was started without --tls-listen");
        let ca = std::fs::read(self.ca_pem_path()).expect("the server's CA");
        let tls = TlsConnector::new(TcpConnector(https.clone()), "localhost", &ca)
            .expect("TLS connector");
        KmsClient::new(tls, https, REGION, creds)
    }

    /// The last `n` audit entries (`{"seq", "hash", "entry"}`), oldest first.
    pub fn audit_tail(&self, n: usize) -> Vec<serde_json::Value> {
        self.cli(&["audit", "tail", "-n", &n.to_string()])
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit tail prints JSON lines"))
            .collect()
    }

    /// `audit verify` on this server's data directory.
    pub fn audit_verify(&self) -> (bool, String) {
        self.binary.audit_verify(&self.dir)
    }
}

/// A multi-threaded runtime for driving async clients from a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
