//! A real cloister-kms process on a loopback port, and clients for it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use cloister_kms_client::KmsClient;
use cloister_sigv4::Credentials;
use zeroize::Zeroizing;

pub const BIN: &str = env!("CARGO_BIN_EXE_cloister-kms");

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn credentials_from(out: &str) -> Credentials {
    let get = |k: &str| {
        out.lines()
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

pub fn admin(dir: &Path) -> Credentials {
    let out = Command::new(BIN)
        .args(["credentials", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    credentials_from(&String::from_utf8(out.stdout).unwrap())
}

pub fn add_principal(dir: &Path, arn: &str) -> Credentials {
    let out = Command::new(BIN)
        .args(["principal", "add", "--arn", arn, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    credentials_from(&String::from_utf8(out.stdout).unwrap())
}

/// Starts `cloister-kms serve` on an ephemeral port with `extra` arguments.
pub fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let log = Arc::new(Mutex::new(String::new()));
    let mut addr = None;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        log.lock().unwrap().push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().to_owned());
            break;
        }
        line.clear();
    }
    let addr = addr.unwrap_or_else(|| panic!("server did not start: {}", log.lock().unwrap()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    Server {
        child,
        addr,
        dir: dir.to_owned(),
        log,
    }
}

impl Server {
    pub fn client(&self, creds: Credentials) -> KmsClient {
        KmsClient::http(&format!("http://{}", self.addr), "us-east-1", creds).unwrap()
    }

    pub fn audit_tail(&self, n: usize) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .args(["audit", "tail", "-n", &n.to_string(), "--data-dir"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
