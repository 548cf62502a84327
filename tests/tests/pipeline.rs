//! The attested pipeline in process mode: cloister-kms (TLS), the enclave image
//! (`cloister build-image --process-only`) started by `cloister run --process` (which measures it
//! and serves its emulated NSM over a socket pair), and the proxy with its KMS relay, each a real
//! process talking over real sockets; driven by `cloister seal` and `cloister submit` as a user
//! would.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_attestation::PcrValue;
use cloister_tests::kms::{KmsBinary, KmsServer};
use cloister_tests::{binary, outcome};
use serde_json::{Value, json};

struct Proc(Child, Arc<Mutex<String>>);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a program, collecting its stderr; waits until a line contains `ready`.
fn spawn(bin: &str, args: &[&str], ready: &str) -> Proc {
    let mut child = Command::new(binary(bin))
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.lock().unwrap().push_str(&line);
        log.lock().unwrap().push('\n');
        if line.contains(ready) {
            break;
        }
    }
    assert!(
        log.lock().unwrap().contains(ready),
        "{bin} did not start: {}",
        log.lock().unwrap()
    );
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    Proc(child, log)
}

struct Pipeline {
    dir: tempfile::TempDir,
    kms: KmsServer,
    env: Vec<(String, String)>,
    proxy_addr: String,
    relay_socket: PathBuf,
    kms_tls: String,
    key_arn: String,
    /// PCR0 of the enclave image the launcher runs.
    pcr0: String,
    _procs: Vec<Proc>,
    _launched: cloister_tests::launcher::Launched,
    proxy: Arc<Mutex<String>>,
}

impl Pipeline {
    /// Starts everything. The key's policy lets the root manage and seal, and releases keys for
    /// Decrypt only to an enclave whose PCR0 is `policy_pcr0` (default: the image's own).
    fn start(policy_pcr0: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |rel: &str| dir.path().join(rel);
        let pki = p("pki");
        Command::new(binary("cloister"))
            .args(["dev-pki", "init", "--dir", pki.to_str().unwrap()])
            .status()
            .unwrap();
        let kms = KmsBinary::new(binary("cloister-kms")).start(
            &p("kms"),
            &[
                "--tls-listen",
                "127.0.0.1:0",
                "--trust-root",
                pki.join("root.pem").to_str().unwrap(),
            ],
        );
        let kms_tls = kms.https.clone().unwrap();
        let mut env = kms.admin_env();
        env.push(("AWS_REGION".into(), "us-east-1".into()));
        env.push(("HOME".into(), "/nonexistent".into()));
        // The key and its policy, as the owner sets them up.
        let owner = kms.client(kms.admin());
        let rt = cloister_tests::kms::rt();
        let http = |op: &str, body: Value| -> Value { rt.block_on(owner.call(op, &body)).unwrap() };
        let key_arn = http("CreateKey", json!({}))["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .to_owned();
        // The image: the enclave binary and a configuration naming this KMS and key.
        std::fs::write(
            p("enclave.toml"),
            format!(
                "nsm = \"vsock\"\n[kms]\nendpoint = \"{kms_tls}\"\nserver_name = \"localhost\"\n\
                 ca_file = \"{}\"\naccepted_keys = [\"{key_arn}\"]\n[cache]\nmax_age_secs = 300\n\
                 max_uses = 10000\n[vsock]\njobs_port = 5000\nrelay_port = 8000\nnsm_port = 9000\n",
                kms.ca_pem_path().display()
            ),
        )
        .unwrap();
        let eif = p("enclave.eif");
        let (code, out, err) = outcome(
            &Command::new(binary("cloister"))
                .args(["build-image", "--process-only", "--json", "--config"])
                .arg(p("enclave.toml"))
                .arg("--enclave-binary")
                .arg(binary("cloister-enclave"))
                .arg("--out")
                .arg(&eif)
                .output()
                .unwrap(),
        );
        assert_eq!(code, 0, "{err}");
        let built: Value = serde_json::from_str(&out).unwrap();
        let pcr0 = built["Measurements"]["PCR0"].as_str().unwrap().to_owned();
        let policy_pcr0 = policy_pcr0.unwrap_or(&pcr0);
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": policy_pcr0}}}]});
        http(
            "PutKeyPolicy",
            json!({"KeyId": key_arn, "Policy": policy.to_string()}),
        );

        let relay_socket = p("proxy/relay.sock");
        std::fs::create_dir_all(p("proxy")).unwrap();
        let launched = cloister_tests::launcher::run(
            &binary("cloister"),
            &p("state"),
            &[
                "--eif",
                eif.to_str().unwrap(),
                "--process",
                "--dev-pki",
                pki.to_str().unwrap(),
                "--kms-relay",
                relay_socket.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let enclave_addr = launched
            .get("proxy")
            .trim_start_matches("--enclave ")
            .to_owned();
        let proxy_addr = format!("unix://{}", p("proxy/jobs.sock").display());
        let proxy = spawn(
            "cloister",
            &[
                "proxy",
                "--listen",
                &proxy_addr,
                "--enclave",
                &enclave_addr,
                "--relay-listen",
                &format!("unix://{}", relay_socket.display()),
                "--kms-endpoint",
                &kms_tls,
            ],
            "jobs on",
        );
        let proxy_log = proxy.1.clone();
        Self {
            dir,
            kms,
            env,
            proxy_addr,
            relay_socket,
            kms_tls,
            key_arn,
            pcr0,
            _procs: vec![proxy],
            _launched: launched,
            proxy: proxy_log,
        }
    }

    fn cloister(&self, args: &[&str]) -> (i32, String, String) {
        outcome(
            &Command::new(binary("cloister"))
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap(),
        )
    }

    fn seal(&self, records: &[Value], name: &str, per_message: usize) -> PathBuf {
        let input = self.dir.path().join(format!("{name}.jsonl"));
        std::fs::write(
            &input,
            records.iter().map(|r| format!("{r}\n")).collect::<String>(),
        )
        .unwrap();
        let out = self.dir.path().join(format!("{name}.sealed"));
        let (code, _, err) = self.cloister(&[
            "seal",
            "--kms",
            &self.kms.url(),
            "--key-id",
            &self.key_arn,
            "--context",
            "dataset=test",
            "--records-per-message",
            &per_message.to_string(),
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    }

    fn audit(&self) -> Vec<Value> {
        self.kms
            .audit_tail(100_000)
            .into_iter()
            .map(|l| l["entry"].clone())
            .collect()
    }
}

fn records(n: usize) -> Vec<Value> {
    const COUNTRIES: [&str; 3] = ["NZ", "FR", "JP"];
    (0..n)
        .map(|i| {
            let country = COUNTRIES[i % 3];
            json!({"id": i, "name": format!("patient-{i}"), "amount": f64::from(u32::try_from(i % 17).unwrap()) * 2.5, "country": country})
        })
        .collect()
}

#[test]
fn stats_over_sealed_records_with_one_attested_key_release() {
    let p = Pipeline::start(None);
    let recs = records(250);
    let sealed = p.seal(&recs, "data", 20); // 13 messages, one data key
    let (code, out, err) = p.cloister(&[
        "submit",
        "--proxy",
        &p.proxy_addr,
        "--op",
        "stats",
        "--group-by",
        "country",
        sealed.to_str().unwrap(),
    ]);
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
    let (code, out, err) = p.cloister(&[
        "submit",
        "--proxy",
        &p.proxy_addr,
        "--op",
        "stats",
        sealed.to_str().unwrap(),
    ]);
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
    let (code, out, err) = p.cloister(&[
        "submit",
        "--proxy",
        &p.proxy_addr,
        "--op",
        "stats",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
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

/// Seals records with the official Python AWS Encryption SDK (the project venv) against the
/// pipeline's KMS.
fn python_seal(p: &Pipeline, records: &[Value], suite: &str, frame_length: u32, out: &Path) {
    let python = cloister_tests::workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test creates the venv before the Rust tests",
        python.display()
    );
    let script = r#"
import json, sys, aws_encryption_sdk
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
arn, suite, frame, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
alg = {"0x0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
       "0x0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384}[suite]
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[arn])
ct, _ = client.encrypt(source=sys.stdin.buffer.read(), key_provider=provider, algorithm=alg,
                       frame_length=frame, encryption_context={"dataset": "python"})
open(out, "wb").write(ct)
"#;
    let mut child = Command::new(python)
        .args([
            "-c",
            script,
            &p.key_arn,
            suite,
            &frame_length.to_string(),
            out.to_str().unwrap(),
        ])
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_ENDPOINT_URL_KMS", p.kms.url())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            records
                .iter()
                .map(|r| format!("{r}\n"))
                .collect::<String>()
                .as_bytes(),
        )
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
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
        files.push(out.display().to_string());
    }
    let mut args = vec!["submit", "--proxy", &p.proxy_addr, "--op", "stats"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = p.cloister(&args);
    assert_eq!(code, 0, "{err}");
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["count"], 4 * 40);
    let sum: f64 = recs.iter().map(|r| r["amount"].as_f64().unwrap()).sum();
    assert!((row["fields"]["amount"]["sum"].as_f64().unwrap() - 4.0 * sum).abs() < 1e-9);
    assert_eq!(row["fields"]["id"]["max"], 39.0);
}
