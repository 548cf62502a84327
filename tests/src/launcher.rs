//! `cloister run` in tests: started in the background, its "ready" report read, its children
//! found, and stopped (killed on drop if a test fails first). Panics on a broken environment:
//! it only ever runs inside tests.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `cloister run`.
#[derive(Debug)]
pub struct Launched {
    child: Option<Child>,
    /// What it printed once ready: `key value` lines.
    pub report: HashMap<String, String>,
    /// The state directory.
    pub state_dir: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `cloister run` with `args` (plus `--state-dir state_dir`) and waits up to `timeout`
/// for its ready report; panics with its stderr if it ends first.
pub fn run(cloister: &Path, state_dir: &Path, args: &[&str], timeout: Duration) -> Launched {
    let mut child = Command::new(cloister)
        .arg("run")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cloister run");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut report = HashMap::new();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let (k, v) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                report.insert(k.to_owned(), v.to_owned());
                if k == "relay" {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let err = err_thread.join().unwrap_or_default();
                panic!("cloister run was not ready within {timeout:?} ({status:?}):\n{err}");
            }
        }
    }
    Launched {
        child: Some(child),
        report,
        state_dir: state_dir.to_path_buf(),
        stderr: Some(err_thread),
    }
}

impl Launched {
    /// A value of the ready report.
    pub fn get(&self, key: &str) -> &str {
        self.report
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.report))
    }

    /// The enclave id.
    pub fn id(&self) -> &str {
        self.get("enclave")
    }

    /// The enclave's folder.
    pub fn dir(&self) -> PathBuf {
        self.state_dir.join(self.id())
    }

    /// The launcher's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Waits for the launcher to end; its status and stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("cloister run did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, err)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The pids of `pid`'s children.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// The command line of `pid` (empty once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether `pid` still exists (a zombie counts: it would be a child left unreaped).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every Unix socket under `dir` (recursively; symlinks not followed).
pub fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_socket() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One attested job end to end through `cloister run`: cloister-kms (TLS) trusting the
/// launcher's dev PKI, a key whose policy releases data keys only to the image's PCR0, the image
/// (`cloister build-image`, its configuration naming that KMS and key), `cloister run` with
/// `--kms-relay`, `cloister proxy` on the addresses the launcher printed, `cloister seal` and
/// `cloister submit --op stats`. Then the same with an image whose configuration differs by one
/// byte (the cache's `max_uses`), which the KMS must refuse its key. Returns what both runs gave.
///
/// `image_args` are build-image's kernel arguments (`--process-only`, or `--kernel ...
/// --enclave-binary <static>`); `run_args` go to `cloister run` (e.g. `--process`).
pub fn attested_job(
    dir: &Path,
    image_args: &[&str],
    run_args: &[&str],
    ready: Duration,
) -> JobOutcome {
    use serde_json::{Value, json};

    use crate::kms::KmsBinary;
    use crate::{binary, outcome};

    let cloister = binary("cloister");
    let pki = dir.join("dev-pki");
    let (code, _, err) = outcome(
        &Command::new(&cloister)
            .args(["dev-pki", "init", "--dir", pki.to_str().expect("utf-8")])
            .output()
            .expect("dev-pki init"),
    );
    assert_eq!(code, 0, "{err}");
    let kms = KmsBinary::new(binary("cloister-kms")).start(
        &dir.join("kms"),
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--trust-root",
            pki.join("root.pem").to_str().expect("utf-8"),
        ],
    );
    let https = kms.https.clone().expect("TLS listener");
    let env = kms.admin_env();
    let client = kms.client(kms.admin());
    let rt = crate::kms::rt();
    let key_arn = rt
        .block_on(client.call("CreateKey", &json!({})))
        .expect("CreateKey")["KeyMetadata"]["Arn"]
        .as_str()
        .expect("arn")
        .to_owned();

    // The image names this KMS and key; its PCR0 goes into the key's policy.
    std::fs::copy(kms.ca_pem_path(), dir.join("kms-ca.pem")).expect("CA");
    let config = crate::microvm::config_with_ca_file(&https, "kms-ca.pem", &key_arn);
    let build = |name: &str, config: &str| -> (PathBuf, String) {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("config");
        let eif = dir.join(format!("{name}.eif"));
        let mut args = vec![
            "build-image",
            "--config",
            config_path.to_str().expect("utf-8"),
            "--out",
            eif.to_str().expect("utf-8"),
            "--json",
        ];
        args.extend_from_slice(image_args);
        let (code, out, err) =
            outcome(&Command::new(&cloister).args(&args).output().expect("build"));
        assert_eq!(code, 0, "{err}");
        let built: Value = serde_json::from_str(&out).expect("build-image --json");
        let pcr0 = built["Measurements"]["PCR0"]
            .as_str()
            .expect("PCR0")
            .to_owned();
        (eif, pcr0)
    };
    let (eif, pcr0) = build("enclave", &config);
    let one_byte_apart = config.replace("max_uses = 10000", "max_uses = 10001");
    assert_ne!(one_byte_apart, config);
    let (other_eif, other_pcr0) = build("other", &one_byte_apart);
    assert_ne!(
        pcr0, other_pcr0,
        "one byte of configuration is another image"
    );
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": crate::kms::ADMIN_ARN},
         "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": crate::kms::ADMIN_ARN}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pcr0}}}]});
    rt.block_on(client.call(
        "PutKeyPolicy",
        &json!({"KeyId": key_arn, "Policy": policy.to_string()}),
    ))
    .expect("PutKeyPolicy");

    // The launcher, then the proxy on the addresses it printed.
    std::fs::create_dir_all(dir.join("proxy")).expect("proxy dir");
    let relay = dir.join("proxy/relay.sock");
    let jobs = format!("unix://{}", dir.join("proxy/jobs.sock").display());
    let start = |eif: &Path, pcr0: &str| -> (Launched, std::process::Child) {
        let mut run_all = vec![
            "--eif",
            eif.to_str().expect("utf-8"),
            "--dev-pki",
            pki.to_str().expect("utf-8"),
            "--kms-relay",
            relay.to_str().expect("utf-8"),
        ];
        run_all.extend_from_slice(run_args);
        let launched = run(&cloister, &dir.join("state"), &run_all, ready);
        assert_eq!(launched.get("pcr0"), pcr0);
        let enclave = launched
            .get("proxy")
            .trim_start_matches("--enclave ")
            .to_owned();
        let _ = std::fs::remove_file(dir.join("proxy/jobs.sock"));
        let proxy = Command::new(&cloister)
            .args([
                "proxy",
                "--listen",
                &jobs,
                "--enclave",
                &enclave,
                "--relay-listen",
                &format!("unix://{}", relay.display()),
                "--kms-endpoint",
                &https,
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("proxy");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !dir.join("proxy/jobs.sock").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (launched, proxy)
    };
    let (launched, mut proxy) = start(&eif, &pcr0);

    // Seal as the key's owner, submit as a user.
    let input = dir.join("records.jsonl");
    let records: String = (0..60)
        .map(|i| {
            let country = ["NZ", "FR", "JP"][i % 3];
            format!(
                "{}\n",
                json!({"id": i, "name": format!("patient-{i}"), "amount": i, "country": country})
            )
        })
        .collect();
    std::fs::write(&input, records).expect("records");
    let sealed = dir.join("records.sealed");
    let with_env = |args: &[&str]| {
        outcome(
            &Command::new(&cloister)
                .args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("AWS_REGION", crate::kms::REGION)
                .output()
                .expect("cloister"),
        )
    };
    let (code, _, err) = with_env(&[
        "seal",
        "--kms",
        &kms.url(),
        "--key-id",
        &key_arn,
        "--context",
        "dataset=test",
        "--records-per-message",
        "20",
        input.to_str().expect("utf-8"),
        "-o",
        sealed.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = with_env(&[
        "submit",
        "--proxy",
        &jobs,
        "--op",
        "stats",
        "--group-by",
        "country",
        sealed.to_str().expect("utf-8"),
    ]);
    let _ = proxy.kill();
    let _ = proxy.wait();
    drop(launched);
    assert_eq!(code, 0, "submit failed: {err}");
    let rows = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();

    // The image one byte apart: booted the same way, refused its key.
    let (launched, mut proxy) = start(&other_eif, &other_pcr0);
    let submit = [
        "submit",
        "--proxy",
        &jobs,
        "--op",
        "stats",
        sealed.to_str().expect("utf-8"),
    ];
    let (refused_code, refused_out, refused_err) = with_env(&submit);
    let _ = proxy.kill();
    let _ = proxy.wait();
    drop(launched);
    let decrypts: Vec<Value> = kms
        .audit_tail(1000)
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| e["operation"] == "Decrypt")
        .collect();
    JobOutcome {
        rows,
        decrypts,
        pcr0,
        other_pcr0,
        refused: (refused_code, refused_out, refused_err),
    }
}

/// What [`attested_job`] saw.
#[derive(Debug)]
pub struct JobOutcome {
    /// The good image's result rows.
    pub rows: Vec<serde_json::Value>,
    /// Every Decrypt the KMS audited, in order (the good image's, then the other's).
    pub decrypts: Vec<serde_json::Value>,
    /// The good image's PCR0.
    pub pcr0: String,
    /// The PCR0 of the image one byte apart.
    pub other_pcr0: String,
    /// `cloister submit`'s exit code, stdout and stderr against the image one byte apart.
    pub refused: (i32, String, String),
}

impl JobOutcome {
    /// Asserts the whole story: the good image released once and produced `groups` rows; the
    /// other image was refused with AWS's AccessDenied, nothing was printed, and the refusal was
    /// audited with the other image's PCR0.
    pub fn assert_released_then_refused(&self, groups: usize) {
        assert_eq!(self.rows.len(), groups, "{:?}", self.rows);
        assert_eq!(self.decrypts.len(), 2, "{:?}", self.decrypts);
        assert_eq!(self.decrypts[0]["outcome"], "ok");
        assert_eq!(self.decrypts[0]["pcr0"], self.pcr0.as_str());
        let (code, out, err) = &self.refused;
        assert_eq!(*code, 1, "{err}");
        assert!(
            out.is_empty(),
            "nothing is printed for a refused job: {out}"
        );
        assert!(err.contains("error[KMS-AccessDeniedException]"), "{err}");
        assert_eq!(self.decrypts[1]["outcome"], "error");
        assert_eq!(self.decrypts[1]["error"], "AccessDeniedException");
        assert_eq!(self.decrypts[1]["pcr0"], self.other_pcr0.as_str());
    }
}
