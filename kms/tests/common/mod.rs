//! Helpers the KMS's integration tests share: the binary, a client that does not retry, the
//! store opened behind the server's back, a start that must be refused, the rewrite of the
//! audit log an attacker with write access to the database only can make, and a dev-PKI
//! attestation document with the `Recipient` member naming it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub(crate) mod cluster;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloister_kms_client::{KmsClient, Retry};
use cloister_tests::kms::KmsBinary;
use rusqlite::params;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The binary under test.
pub(crate) fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

/// A client that does not retry: an integrity refusal is a 500, which clients retry.
pub(crate) fn once(kms: KmsClient) -> KmsClient {
    kms.with_retry(Retry {
        attempts: 1,
        ..Default::default()
    })
}

/// The key id in a CreateKey answer.
pub(crate) fn key_id(created: &Value) -> String {
    created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// The store's database, opened behind the server's back.
pub(crate) fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("kms.sqlite3")).unwrap()
}

/// Runs `cloister-kms serve` over `dir`, which must refuse to start; its stderr.
pub(crate) fn serve_refused(dir: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(kms_bin().path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a speed assertion: a guard against a server that starts and never exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cloister-kms serve started over {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

/// What an attacker with write access to the database only can do: edit entry `seq` (replace
/// `from` by `to`), then recompute every chain hash and leaf hash so each row checks out.
pub(crate) fn rewrite_audit_entry(db: &rusqlite::Connection, seq: i64, from: &str, to: &str) {
    let n = db
        .execute(
            "UPDATE audit SET entry = replace(entry, ?1, ?2) WHERE seq = ?3",
            params![from, to, seq],
        )
        .unwrap();
    assert_eq!(n, 1);
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT seq, entry FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = "0".repeat(64);
    for (seq, entry) in rows {
        let hash = hex::encode(Sha256::digest(format!("{prev}\n{entry}")));
        let leaf = Sha256::digest([&[0u8][..], entry.as_bytes()].concat()).to_vec();
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2, leaf_hash = ?3 WHERE seq = ?4",
            params![prev, hash, leaf, seq],
        )
        .unwrap();
        prev = hash;
    }
}

/// An attestation document for `image` (PCR0) carrying `spki`, from the dev PKI, base64.
pub(crate) fn document(
    pki: &cloister_attestation::dev_signer::DevPki,
    image: &[u8],
    spki: &[u8],
) -> String {
    use cloister_attestation::{PcrIndex, PcrValue, Pcrs, Timestamp};
    let mut pcrs = Pcrs::new();
    pcrs.insert(PcrIndex::IMAGE, PcrValue::measure(image));
    let req = cloister_attestation::dev_signer::DocumentRequest {
        module_id: "i-0123456789abcdef0-enc0000000000000001".into(),
        pcrs,
        public_key: Some(spki.to_vec()),
        user_data: None,
        nonce: None,
    };
    cloister_kms_client::b64(&pki.issue(&req, Timestamp::now()).unwrap())
}

/// The `Recipient` member naming `doc`.
pub(crate) fn recipient(doc: &str) -> Value {
    serde_json::json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc})
}

/// One request over plain HTTP to `addr` with `X-Amz-Target: target`, signed for `service` with
/// `creds` (as boto3 signs it): the status and the body's text.
pub(crate) fn signed_post(
    addr: &str,
    creds: &cloister_sigv4::Credentials,
    service: &str,
    target: &str,
    body: &str,
) -> (u16, String) {
    let headers = cloister_sigv4::sign_json_request(
        &cloister_sigv4::JsonRequest {
            host: addr,
            target,
            body: body.as_bytes(),
            region: "us-east-1",
            service,
        },
        creds,
        time::OffsetDateTime::now_utc(),
        None,
    );
    let mut req = format!(
        "POST / HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8(resp).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    (status, body.to_owned())
}
