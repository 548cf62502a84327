//! Requests per second over HTTP with keep-alive: cloister-kms beside moto_server, same load
//! generator, same run.
//!
//! The load generator is cloister's own KMS client (SigV4 signing, one kept-alive connection per
//! worker; it reconnects when moto closes each connection). It measures GenerateDataKey,
//! Decrypt, Sign (ECC_NIST_P256, ECDSA_SHA_256 of a RAW message) and GenerateMac (an HMAC_256
//! key) against both servers, and attested Decrypt (a Recipient with a dev-NSM document; the
//! verified chain is cached, so each request costs one ES384 verification and one RSA
//! encryption) against cloister-kms. It prints figures and asserts nothing.
//!
//! Run: `scripts/bench-kms` (installs moto_server in the project venv, then runs this).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{Proc, WORKERS, client, load};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::{PcrIndex, PcrValue, Pcrs, Timestamp};
use cloister_kms_client::{KmsClient, b64};
use cloister_sigv4::Credentials;
use serde_json::{Value, json};
use zeroize::Zeroizing;

fn start_cloister(
    dir: &std::path::Path,
    root_pem: &std::path::Path,
) -> (Proc, String, Credentials) {
    let bin = env!("CARGO_BIN_EXE_cloister-kms");
    let out = Command::new(bin)
        .args(["credentials", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    let creds = Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: Zeroizing::new(get("AWS_SECRET_ACCESS_KEY")),
        session_token: None,
    };
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--trust-root"])
        .arg(root_pem)
        .arg("--data-dir")
        .arg(dir)
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
    (Proc(child), addr, creds)
}

fn start_moto() -> Option<(Proc, String)> {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/moto_server");
    if !std::path::Path::new(bin).exists() {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let proc = Proc(child);
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..400 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Some((proc, addr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `op` with `input`, retried briefly: a server may accept connections a moment before it
/// answers, and moto closes each connection after its answer, which a client can race.
async fn call_retrying(c: &KmsClient, op: &str, input: &Value) -> Value {
    let mut answer = c.call(op, input).await;
    for _ in 0..40 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        answer = c.call(op, input).await;
    }
    answer.unwrap_or_else(|e| panic!("{op}: {e}"))
}

async fn key_and_blob(c: &KmsClient) -> (Value, Value) {
    let id = call_retrying(c, "CreateKey", &json!({})).await["KeyMetadata"]["KeyId"].clone();
    let gdk = json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"tenant": "bench"}});
    let blob = call_retrying(c, "GenerateDataKey", &gdk).await["CiphertextBlob"].clone();
    (
        gdk,
        json!({"CiphertextBlob": blob, "EncryptionContext": {"tenant": "bench"}}),
    )
}

/// A Sign request: a new ECC_NIST_P256 signing key, a 32-byte RAW message.
async fn sign_input(c: &KmsClient) -> Value {
    let create = json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"});
    let id = call_retrying(c, "CreateKey", &create).await["KeyMetadata"]["KeyId"].clone();
    json!({"KeyId": id, "Message": b64(&[7u8; 32]), "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_256"})
}

/// A GenerateMac request on a new HMAC_256 key.
async fn mac_request(c: &KmsClient) -> Value {
    let create = json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"});
    let id = call_retrying(c, "CreateKey", &create).await["KeyMetadata"]["KeyId"].clone();
    json!({"KeyId": id, "MacAlgorithm": "HMAC_SHA_256", "Message": b64(&[0x5a; 256])})
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let root_pem = dir.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let (_kms, addr, creds) = start_cloister(&dir.path().join("kms"), &root_pem);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let rsa = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = rsa.public_key().as_der().unwrap().as_ref().to_vec();
    let mut pcrs = Pcrs::new();
    for i in 0..16u8 {
        pcrs.insert(PcrIndex::new(i.into()).unwrap(), PcrValue::measure(&[i]));
    }
    let req = DocumentRequest {
        module_id: "i-0-enc0".into(),
        pcrs,
        public_key: Some(spki),
        ..Default::default()
    };
    let doc = b64(&pki.issue(&req, Timestamp::now()).unwrap());

    println!(
        "load: {WORKERS} concurrent keep-alive clients, {secs} s per figure, SigV4-signed by the same client code"
    );
    let (ours, moto) = rt.block_on(async {
        let (gdk, dec) = key_and_blob(&client(&addr, &creds)).await;
        let sign = sign_input(&client(&addr, &creds)).await;
        let mac = mac_request(&client(&addr, &creds)).await;
        let mut att = dec.clone();
        att["Recipient"] =
            json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc});
        let ours = [
            load(
                std::slice::from_ref(&addr),
                &creds,
                "GenerateDataKey",
                &gdk,
                secs,
            )
            .await,
            load(std::slice::from_ref(&addr), &creds, "Decrypt", &dec, secs).await,
            load(std::slice::from_ref(&addr), &creds, "Sign", &sign, secs).await,
            load(std::slice::from_ref(&addr), &creds, "Decrypt", &att, secs).await,
            load(
                std::slice::from_ref(&addr),
                &creds,
                "GenerateMac",
                &mac,
                secs,
            )
            .await,
        ];
        let moto = match start_moto() {
            None => None,
            Some((_proc, maddr)) => {
                let (m_gdk, m_dec) = key_and_blob(&client(&maddr, &creds)).await;
                let m_sign = sign_input(&client(&maddr, &creds)).await;
                let m_mac = mac_request(&client(&maddr, &creds)).await;
                Some([
                    load(
                        std::slice::from_ref(&maddr),
                        &creds,
                        "GenerateDataKey",
                        &m_gdk,
                        secs,
                    )
                    .await,
                    load(
                        std::slice::from_ref(&maddr),
                        &creds,
                        "Decrypt",
                        &m_dec,
                        secs,
                    )
                    .await,
                    load(std::slice::from_ref(&maddr), &creds, "Sign", &m_sign, secs).await,
                    load(
                        std::slice::from_ref(&maddr),
                        &creds,
                        "GenerateMac",
                        &m_mac,
                        secs,
                    )
                    .await,
                ])
            }
        };
        (ours, moto)
    });
    println!(
        "\n{:<36} {:>14} {:>14} {:>8}",
        "operation", "cloister-kms", "moto_server", "ratio"
    );
    for (i, name) in [
        "GenerateDataKey",
        "Decrypt",
        "Sign (ECC_NIST_P256, RAW)",
        "GenerateMac (HMAC_256)",
    ]
    .iter()
    .enumerate()
    {
        // ours: GenerateDataKey, Decrypt, Sign, attested Decrypt, GenerateMac; moto: the others.
        let (o, oe) = ours[if i == 3 { 4 } else { i }];
        match &moto {
            // The goal is set for the data key operations; Sign and GenerateMac are reported.
            Some(m) => println!(
                "{name:<36} {o:>10.0} r/s {:>10.0} r/s {:>7.1}x   (errors: {oe} / {}{})",
                m[i].0,
                o / m[i].0.max(1e-9),
                m[i].1,
                if i < 2 { "; goal >= 50x" } else { "" }
            ),
            None => println!(
                "{name:<36} {o:>10.0} r/s {:>14} {:>8}   (errors: {oe})",
                "not installed", "-"
            ),
        }
    }
    let (a, ae) = ours[3];
    println!(
        "{:<36} {a:>10.0} r/s {:>14} {:>8}   (errors: {ae}; goal >= 1000 r/s)",
        "Decrypt with Recipient (attested)", "n/a", "-"
    );
    if moto.is_none() {
        println!(
            "\nmoto_server not found in .venv: run scripts/bench-kms to install it and compare."
        );
    }
}
