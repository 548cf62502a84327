//! The attested pipeline in process mode: cloister-kms (TLS), the enclave image
//! (`cloister build-image --process-only`) started by `cloister run --process` (which measures it
//! and serves its emulated NSM over a socket pair), and the proxy with its KMS relay, each a real
//! process talking over real sockets; driven by `cloister seal` and `cloister submit` as a user
//! would.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::time::Duration;

use cloister_attestation::PcrValue;
use cloister_tests::pipeline::{Pipeline, python_seal, records};
use serde_json::{Value, json};

#[test]
fn stats_over_sealed_records_with_one_attested_key_release() {
    let p = Pipeline::start(None);
    let recs = records(250);
    let sealed = p.seal(&recs, "data", 20); // 13 messages, one data key
    let (code, out, err) = p.submit(&["stats", "--group-by", "country"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for country in ["NZ", "FR", "JP"] {
        let mine: Vec<&Value> = recs.iter().filter(|r| r["country"] == country).collect();
        let row = rows.iter().find(|r| r["group"] == country).unwrap();
        assert_eq!(row["count"], mine.len());
        let sum: f64 = mine.iter().map(|r| r["amount"].as_f64().unwrap()).sum();
        assert!((row["fields"]["amount"]["sum"].as_f64().unwrap() - sum).abs() < 1e-9);
        let max = mine
            .iter()
            .map(|r| r["amount"].as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(row["fields"]["amount"]["max"].as_f64().unwrap(), max);
    }
    assert!(err.contains("done: 13 messages, 250 records"), "{err}");
    // One attested release served all 13 messages.
    let audit = p.audit();
    let decrypts: Vec<&Value> = audit
        .iter()
        .filter(|e| e["operation"] == "Decrypt")
        .collect();
    assert_eq!(decrypts.len(), 1, "{decrypts:?}");
    assert_eq!(decrypts[0]["outcome"], "ok");
    assert_eq!(decrypts[0]["pcr0"], p.pcr0.as_str());
    // The host saw no plaintext.
    let proxy_log = p.proxy.lock().unwrap().clone();
    assert!(!proxy_log.contains("patient-"));
    assert!(!out.contains("patient-"));
}

#[test]
fn a_policy_for_another_image_fails_the_job_and_is_audited() {
    let p = Pipeline::start(Some(&PcrValue::measure(b"some other image").to_hex()));
    let sealed = p.seal(&records(10), "data", 5);
    let (code, out, err) = p.submit(&["stats"], &[&sealed]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("AccessDeniedException"), "{err}");
    let audit = p.audit();
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|e| e["operation"] == "Decrypt")
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["error"], "AccessDeniedException");
    assert_eq!(refused[0]["pcr0"], p.pcr0.as_str());
}

#[test]
fn a_tampered_message_is_named_and_nothing_from_it_is_used() {
    let p = Pipeline::start(None);
    let good = p.seal(&records(30), "good", 30);
    let bad = p.seal(&records(7), "bad", 7);
    let mut bytes = std::fs::read(&bad).unwrap();
    let n = bytes.len();
    bytes[n - 200] ^= 0x01;
    std::fs::write(&bad, bytes).unwrap();
    let (code, out, err) = p.submit(&["stats"], &[&good, &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("error[ESDK-AUTH]: {}", bad.display())),
        "{err}"
    );
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows[0]["count"], 30,
        "only the authenticated message counts"
    );
}

#[test]
fn the_relay_refuses_other_destinations_and_a_flipping_relay_breaks_tls() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let p = Pipeline::start(None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The proxy's relay: anything but the KMS endpoint is refused.
        let mut s = BufReader::new(
            tokio::net::UnixStream::connect(&p.relay_socket)
                .await
                .unwrap(),
        );
        s.get_mut()
            .write_all(b"CONNECT 127.0.0.1:22\n")
            .await
            .unwrap();
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("DENIED"), "{line}");

        // A malicious relay that flips one byte of the KMS's answer: TLS fails, cleanly.
        let evil = p.dir.path().join("evil.sock");
        let listener = tokio::net::UnixListener::bind(&evil).unwrap();
        let kms = p.kms_tls.clone();
        tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                let kms = kms.clone();
                tokio::spawn(async move {
                    let mut c = BufReader::new(c);
                    let mut l = String::new();
                    c.read_line(&mut l).await.unwrap();
                    let upstream = tokio::net::TcpStream::connect(&kms).await.unwrap();
                    c.get_mut().write_all(b"OK\n").await.unwrap();
                    let (mut ur, mut uw) = upstream.into_split();
                    let (mut cr, mut cw) = c.into_inner().into_split();
                    tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut seen = 0usize;
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if seen < 300 && seen + n > 300 {
                            buf[300 - seen] ^= 0x01;
                        }
                        seen += n;
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let connector = cloister_enclave::kms::RelayConnector::new(
            format!("unix://{}", evil.display()).parse().unwrap(),
            &p.kms_tls,
        )
        .unwrap();
        let ca = std::fs::read(p.kms.ca_pem_path()).unwrap();
        let tls = cloister_kms_client::TlsConnector::new(connector, "localhost", &ca).unwrap();
        let creds = p.kms.admin();
        let client = cloister_kms_client::KmsClient::new(tls, "localhost", "us-east-1", creds)
            .with_retry(cloister_kms_client::Retry {
                attempts: 1,
                ..Default::default()
            });
        let err =
            tokio::time::timeout(Duration::from_secs(20), client.call("ListKeys", &json!({})))
                .await
                .expect("no hang")
                .unwrap_err();
        assert_eq!(
            cloister_common::ErrorCode::code(&err),
            "KMS-TRANSPORT",
            "{err}"
        );
    });
}

#[test]
#[ignore = "needs the project venv (Python Encryption SDK): scripts/test sets it up and runs ignored tests"]
fn records_sealed_by_the_python_sdk_are_processed_in_the_enclave() {
    let p = Pipeline::start(None);
    let recs = records(40);
    let mut files = Vec::new();
    for (suite, frame) in [
        ("0x0478", 0u32),
        ("0x0478", 128),
        ("0x0578", 0),
        ("0x0578", 4096),
    ] {
        let out = p.dir.path().join(format!("py-{suite}-{frame}.esdk"));
        python_seal(&p, &recs, suite, frame, &out);
        files.push(out);
    }
    let files: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out, err) = p.submit(&["stats"], &files);
    assert_eq!(code, 0, "{err}");
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["count"], 4 * 40);
    let sum: f64 = recs.iter().map(|r| r["amount"].as_f64().unwrap()).sum();
    assert!((row["fields"]["amount"]["sum"].as_f64().unwrap() - 4.0 * sum).abs() < 1e-9);
    assert_eq!(row["fields"]["id"]["max"], 39.0);
}
