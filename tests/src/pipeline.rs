//! The attested pipeline in process mode, for tests that drive it as a user would:
//! cloister-kms (TLS), the enclave image (`cloister build-image --process-only`) started by
//! `cloister run --process` (which measures it and serves its emulated NSM over a socket pair),
//! and `cloister proxy` with its KMS relay, each a real process on real sockets.
//!
//! The KMS holds three keys: the records' key, a tokenization key and a reseal target, and two
//! principals: the key owner (root, who seals, makes tokenization keys and opens resealed
//! records) and the host ([`HOST`], whose credentials jobs carry, and who may Decrypt or
//! GenerateDataKey only for an enclave whose PCR0 is the image's). The image's disclosure policy
//! is [`OPERATIONS`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_wire::message::{KmsAccess, SecretString};
use serde_json::{Value, json};

use crate::kms::{KmsBinary, KmsServer};
use crate::{binary, outcome};

/// The pipeline image's disclosure policy; `{token}` and `{target}` are the KMS keys' ARNs.
pub const OPERATIONS: &str = r#"[operations]
max_jobs = 2
[operations.stats]
group_by = ["country", "address"]
aggregate = ["amount", "id"]
emit = ["count", "sum", "mean", "min", "max"]
min_group_size = 5
small_groups = "other"
max_groups = 100
budget = { jobs = 3, window_secs = 3600 }
[operations.mask]
keep_last = { card = 4, id = 2 }
clear = ["country"]
[operations.tokenize]
fields = ["name", "card"]
clear = ["country"]
key_arn = "{token}"
[operations.reseal]
target_keys = ["{target}"]
"#;

/// The key owner (the producer of sealed records): the account's root principal.
const ROOT: &str = "arn:aws:iam::111122223333:root";
/// The host's principal, whose credentials jobs carry: it may use keys only through an attested
/// enclave, and can neither seal records nor make data keys it would see.
pub const HOST: &str = "arn:aws:iam::111122223333:role/cloister-host";

/// A child process, killed when dropped, with its stderr collected.
#[derive(Debug)]
pub struct Proc(pub Child, pub Arc<Mutex<String>>);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a program, collecting its stderr; waits until a line contains `ready`.
pub fn spawn(bin: &str, args: &[&str], ready: &str) -> Proc {
    spawn_command(Command::new(binary(bin)).args(args), ready)
}

/// How much of a child's stderr [`spawn_command`] keeps: a flood of log lines (a test may
/// provoke one) must not exhaust the test's memory.
const MAX_LOG: usize = 64 << 20;

/// Spawns `cmd` (stdout to /dev/null), collecting its stderr (up to [`MAX_LOG`] bytes); waits
/// until a line contains `ready`.
pub fn spawn_command(cmd: &mut Command, ready: &str) -> Proc {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let log = Arc::new(Mutex::new(String::new()));
    let keep = |log: &Mutex<String>, line: &str| {
        let mut l = log.lock().unwrap();
        if l.len() < MAX_LOG {
            l.push_str(line);
            l.push('\n');
        }
    };
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        keep(&log, &line);
        if line.contains(ready) {
            break;
        }
    }
    assert!(
        log.lock().unwrap().contains(ready),
        "{:?} did not start: {}",
        cmd.get_program(),
        log.lock().unwrap()
    );
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            keep(&sink, &line);
        }
    });
    Proc(child, log)
}

/// A running pipeline.
#[allow(missing_debug_implementations)]
pub struct Pipeline {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// The KMS.
    pub kms: KmsServer,
    /// The host's environment (its credentials, region): what `cloister submit` runs with.
    pub env: Vec<(String, String)>,
    /// The key owner's environment: what `seal`, `open` and `token-key` run with.
    pub owner_env: Vec<(String, String)>,
    /// Where jobs are submitted.
    pub proxy_addr: String,
    /// The proxy's KMS relay socket.
    pub relay_socket: PathBuf,
    /// The KMS's TLS endpoint (host:port).
    pub kms_tls: String,
    /// The records' key.
    pub key_arn: String,
    /// The tokenization key's KMS key.
    pub token_arn: String,
    /// The reseal target.
    pub target_arn: String,
    /// The enclave's job address (for a proxy started anew).
    pub enclave_addr: String,
    /// PCR0 of the enclave image the launcher runs.
    pub pcr0: String,
    /// The proxy process (replaceable: see [`Pipeline::restart_proxy`]).
    pub proxy_proc: Option<Proc>,
    /// The launcher.
    pub launched: crate::launcher::Launched,
    /// The proxy's log.
    pub proxy: Arc<Mutex<String>>,
}

impl Pipeline {
    /// Starts everything. The key's policy lets the root manage and seal, and releases keys for
    /// Decrypt only to an enclave whose PCR0 is `policy_pcr0` (default: the image's own).
    pub fn start(policy_pcr0: Option<&str>) -> Self {
        Self::start_with(policy_pcr0, |_| String::new())
    }

    /// As [`Pipeline::start`], with `prepare` run once the KMS is up and before the image is
    /// built: it sets up what the image must name (secrets, their keys) and returns TOML
    /// appended to the image's configuration after its `[operations]` (for example
    /// `[operations.secrets]` and `[[secrets]]` entries; an `[operations.tokenize]` there
    /// replaces the default one).
    pub fn start_with(
        policy_pcr0: Option<&str>,
        prepare: impl FnOnce(&KmsServer) -> String,
    ) -> Self {
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
        let mut owner_env = kms.admin_env();
        owner_env.push(("AWS_REGION".into(), "us-east-1".into()));
        owner_env.push(("HOME".into(), "/nonexistent".into()));
        let host = kms.add_principal(HOST);
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), host.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                host.secret_access_key.to_string(),
            ),
        ];
        env.extend(
            owner_env
                .iter()
                .filter(|(k, _)| {
                    ![
                        "AWS_ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY",
                        "AWS_SESSION_TOKEN",
                    ]
                    .contains(&k.as_str())
                })
                .cloned(),
        );
        // The key and its policy, as the owner sets them up.
        let owner = kms.client(kms.admin());
        let rt = crate::kms::rt();
        let http = |op: &str, body: Value| -> Value { rt.block_on(owner.call(op, &body)).unwrap() };
        let create = || {
            http("CreateKey", json!({}))["KeyMetadata"]["Arn"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (key_arn, token_arn, target_arn) = (create(), create(), create());
        // The image: the enclave binary and a configuration naming this KMS and key.
        let mut operations = OPERATIONS
            .replace("{token}", &token_arn)
            .replace("{target}", &target_arn);
        let extra = prepare(&kms);
        // What `prepare` adds may bring its own tokenization policy, in place of the default.
        if extra.contains("[operations.tokenize]") {
            let start = operations.find("[operations.tokenize]").unwrap();
            let end = operations.find("[operations.reseal]").unwrap();
            operations.replace_range(start..end, "");
        }
        operations.push_str(&extra);
        std::fs::write(
            p("enclave.toml"),
            crate::microvm::config_with_operations(
                &kms_tls,
                kms.ca_pem_path().to_str().unwrap(),
                &key_arn,
                &operations,
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
        // The owner seals under the records' key, makes tokenization keys without ever seeing
        // one (GenerateDataKeyWithoutPlaintext), and opens what was resealed to the target. The
        // host uses each key only through the attested image: Decrypt of records and
        // tokenization keys, GenerateDataKey of the target (the new data key never leaves it).
        let attested = json!({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": policy_pcr0}});
        let owner = |actions: Value| {
            json!({"Effect": "Allow", "Principal": {"AWS": ROOT},
                   "Action": actions, "Resource": "*"})
        };
        let host_may = |action: &str| {
            json!({"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": action,
                   "Resource": "*", "Condition": attested})
        };
        let manage = [
            "kms:Describe*",
            "kms:Get*",
            "kms:Put*",
            "kms:DisableKey",
            "kms:EnableKey",
        ];
        let with =
            |extra: &[&str]| -> Value { json!(manage.iter().chain(extra).collect::<Vec<_>>()) };
        // And, whatever else a policy grants it later (AWS's standard key-user statement
        // includes kms:ReEncrypt*), nothing at all without an attestation document.
        let host_guard = json!({"Sid": "HostOnlyAttested", "Effect": "Deny",
            "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*",
            "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}});
        let records_policy = json!({"Version": "2012-10-17", "Statement": [
            owner(with(&["kms:Encrypt", "kms:GenerateDataKey*"])), host_may("kms:Decrypt"),
            host_guard]});
        let token_policy = json!({"Version": "2012-10-17", "Statement": [
            owner(with(&["kms:GenerateDataKeyWithoutPlaintext"])), host_may("kms:Decrypt"),
            host_guard]});
        let target_policy = json!({"Version": "2012-10-17", "Statement": [
            owner(with(&["kms:Decrypt"])), host_may("kms:GenerateDataKey"), host_guard]});
        for (key, policy) in [
            (&key_arn, &records_policy),
            (&token_arn, &token_policy),
            (&target_arn, &target_policy),
        ] {
            http(
                "PutKeyPolicy",
                json!({"KeyId": key, "Policy": policy.to_string()}),
            );
        }

        let relay_socket = p("proxy/relay.sock");
        std::fs::create_dir_all(p("proxy")).unwrap();
        let launched = crate::launcher::run(
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
        let mut pipeline = Self {
            dir,
            kms,
            env,
            owner_env,
            proxy_addr,
            relay_socket,
            kms_tls,
            key_arn,
            token_arn,
            target_arn,
            enclave_addr,
            pcr0,
            proxy_proc: None,
            launched,
            proxy: Arc::default(),
        };
        pipeline.restart_proxy();
        pipeline
    }

    /// Stops the proxy if it runs, and starts a new one on the same addresses.
    pub fn restart_proxy(&mut self) {
        let enclave = self.enclave_addr.clone();
        self.restart_proxy_over(&[enclave.as_str()], &[]);
    }

    /// Stops the proxy if it runs, and starts a new one on the same job and relay addresses,
    /// over `enclaves` (each an `--enclave`), with `extra` arguments.
    pub fn restart_proxy_over(&mut self, enclaves: &[&str], extra: &[&str]) {
        drop(self.proxy_proc.take());
        let _ = std::fs::remove_file(self.dir.path().join("proxy/jobs.sock"));
        let _ = std::fs::remove_file(&self.relay_socket);
        let relay = format!("unix://{}", self.relay_socket.display());
        let mut args = vec!["proxy", "--listen", &self.proxy_addr];
        for e in enclaves {
            args.extend(["--enclave", e]);
        }
        args.extend(["--relay-listen", &relay, "--kms-endpoint", &self.kms_tls]);
        args.extend_from_slice(extra);
        let proxy = spawn("cloister", &args, "jobs on");
        self.proxy = proxy.1.clone();
        self.proxy_proc = Some(proxy);
    }

    /// Starts another enclave of the pipeline's image under `cloister run --process` (state in
    /// `state_dir`), reaching the KMS through the proxy's relay; its `--enclave` address is
    /// `launched.get("proxy")` without the flag.
    pub fn launch_enclave(&self, state_dir: &Path) -> crate::launcher::Launched {
        let p = |rel: &str| self.dir.path().join(rel);
        crate::launcher::run(
            &binary("cloister"),
            state_dir,
            &[
                "--eif",
                p("enclave.eif").to_str().unwrap(),
                "--process",
                "--dev-pki",
                p("pki").to_str().unwrap(),
                "--kms-relay",
                self.relay_socket.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        )
    }

    /// Runs `cloister` with the pipeline's environment: exit code, stdout, stderr.
    pub fn submit(&self, op: &[&str], files: &[&Path]) -> (i32, String, String) {
        let mut args = vec!["submit", "--proxy", &self.proxy_addr, "--op"];
        args.extend_from_slice(op);
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        args.extend(files.iter().map(String::as_str));
        self.host(&args)
    }

    /// Runs `cloister` as the key owner (seal, open, token-key).
    pub fn cloister(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(&self.owner_env, args)
    }

    /// Runs `cloister` as the host (submit, or an attempt at what the owner does).
    pub fn host(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(&self.env, args)
    }

    fn run_as(&self, env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
        outcome(
            &Command::new(binary("cloister"))
                .args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap(),
        )
    }

    /// Seals `records` under the records' key, `per_message` records per message.
    pub fn seal(&self, records: &[Value], name: &str, per_message: usize) -> PathBuf {
        let lines: Vec<String> = records.iter().map(Value::to_string).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.seal_lines(&lines, name, per_message)
    }

    /// Seals JSON lines as given (as the owner, with `cloister seal`).
    pub fn seal_lines(&self, lines: &[&str], name: &str, per_message: usize) -> PathBuf {
        let input = self.dir.path().join(format!("{name}.jsonl"));
        std::fs::write(
            &input,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let out = self.dir.path().join(format!("{name}.sealed"));
        // Over the KMS's TLS listener, pinned to its CA, as a key owner off the KMS's machine
        // would seal (GenerateDataKey answers plaintext over cleartext only on loopback).
        let (code, _, err) = self.cloister(&[
            "seal",
            "--kms",
            &format!("https://{}", self.kms_tls),
            "--kms-ca",
            self.kms.ca_pem_path().to_str().unwrap(),
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

    /// `cloister submit --op reseal` of `sealed` to the target key, as the host: the resealed
    /// messages' file (nothing printed on stdout).
    pub fn reseal(&self, sealed: &Path) -> PathBuf {
        let out = self.dir.path().join("resealed.esdk");
        let (code, stdout, err) = self.submit(
            &[
                "reseal",
                "--target-key",
                &self.target_arn,
                "--out",
                out.to_str().unwrap(),
            ],
            &[sealed],
        );
        assert_eq!(code, 0, "{err}");
        assert!(stdout.is_empty(), "{stdout}");
        out
    }

    /// A tokenization key made by the owner (`cloister token-key`), written to `name`.
    pub fn token_key(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let (code, _, err) = self.cloister(&[
            "token-key",
            "--kms",
            &self.kms.url(),
            "--key-id",
            &self.token_arn,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    }

    /// The host's credentials as a job carries them.
    pub fn access(&self) -> KmsAccess {
        let get = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in the host's environment"))
        };
        KmsAccess {
            region: get("AWS_REGION"),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: SecretString::new(get("AWS_SECRET_ACCESS_KEY")),
            session_token: None,
        }
    }

    /// The host's own KMS client (its credentials, over the KMS's TLS): what the host can do
    /// with Secrets Manager, Parameter Store and KMS outside any enclave.
    pub fn host_client(&self) -> cloister_kms_client::KmsClient {
        let a = self.access();
        self.kms.tls_client(cloister_sigv4::Credentials {
            access_key_id: a.access_key_id.clone(),
            secret_access_key: zeroize::Zeroizing::new(a.secret_access_key.expose().to_owned()),
            session_token: None,
        })
    }

    /// Makes `key` enclave-only, as the owner: the owner manages it, encrypts and makes data
    /// keys under it; the host may Decrypt only with a document whose PCR0 is `pcr0`, and
    /// nothing at all without one.
    pub fn make_enclave_only(&self, key: &str, pcr0: &str) {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Resource": "*",
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey*"]},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pcr0}}},
            {"Sid": "HostOnlyAttested", "Effect": "Deny", "Principal": {"AWS": HOST},
             "Action": "kms:*", "Resource": "*",
             "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}}]});
        let owner = self.kms.client(self.kms.admin());
        crate::kms::rt()
            .block_on(owner.call(
                "PutKeyPolicy",
                &json!({"KeyId": key, "Policy": policy.to_string()}),
            ))
            .unwrap();
    }

    /// The KMS's audit entries.
    pub fn audit(&self) -> Vec<Value> {
        self.kms
            .audit_tail(100_000)
            .into_iter()
            .map(|l| l["entry"].clone())
            .collect()
    }
}

/// `n` records over three countries.
pub fn records(n: usize) -> Vec<Value> {
    const COUNTRIES: [&str; 3] = ["NZ", "FR", "JP"];
    (0..n)
        .map(|i| {
            let country = COUNTRIES[i % 3];
            json!({"id": i, "name": format!("patient-{i}"), "amount": f64::from(u32::try_from(i % 17).unwrap()) * 2.5, "country": country})
        })
        .collect()
}

/// The project venv's Python (with the official AWS Encryption SDK).
fn venv_python() -> PathBuf {
    let python = crate::workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test creates the venv before the Rust tests",
        python.display()
    );
    python
}

/// Seals records with the official Python AWS Encryption SDK (the project venv) against the
/// pipeline's KMS.
pub fn python_seal(p: &Pipeline, records: &[Value], suite: &str, frame_length: u32, out: &Path) {
    let python = venv_python();
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
        .envs(p.owner_env.iter().map(|(k, v)| (k, v)))
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

/// Opens one Encryption SDK message in `input` with the official Python AWS Encryption SDK (the
/// project venv), allowing only `key_arn`: the plaintext, or the SDK's error text.
pub fn python_open(p: &Pipeline, key_arn: &str, input: &Path) -> Result<Vec<u8>, String> {
    let python = venv_python();
    let script = r#"
import sys, aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[sys.argv[1]])
pt, _ = client.decrypt(source=open(sys.argv[2], "rb").read(), key_provider=provider)
sys.stdout.buffer.write(pt)
"#;
    let o = Command::new(python)
        .args(["-c", script, key_arn, input.to_str().unwrap()])
        .envs(p.owner_env.iter().map(|(k, v)| (k, v)))
        .env("AWS_ENDPOINT_URL_KMS", p.kms.url())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}
