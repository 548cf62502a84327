//! The proxy's job pipe beside a raw Unix-socket copy, in one run (`scripts/bench-pipe`).
//!
//! - raw: a writer pushes `BENCH_PIPE_MIB` MiB (default 512) in 256 KiB writes over a Unix stream
//!   socket to a reader that discards them;
//! - proxy: the same writer connects to a real `cloister proxy` (built for this benchmark), which
//!   forwards to a sink listening at the enclave's address that discards.
//!
//! - job (unless `BENCH_PIPE_JOB=0`): a whole job end to end in process mode, as
//!   `tests/tests/pipeline.rs` starts it (cloister-kms over TLS, the enclave image under
//!   `cloister run --process`, the proxy with its relay): `cloister submit --op stats` of
//!   `BENCH_JOB_MIB` MiB of JSON lines (default 64) sealed by `cloister seal`, timed as a process,
//!   in MB/s of sealed input. It measures the enclave's work (one attested key release, then
//!   decrypting and parsing every record), not the pipe: a reference beside the pipe figures.
//!
//! A run is timed from the writer's connect to the reader's end of stream (all bytes counted).
//! Raw and proxy runs alternate (`BENCH_RUNS` each, default 5) so that a busy machine weighs on
//! both alike; the best of each is compared with the goal "proxy pipe >= 0.5x raw Unix-socket
//! copy". The result is reported, never failed on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloister_tests::env_or;
use cloister_tests::kms::KmsBinary;
use cloister_tests::pipeline::{Proc, spawn_command};
use serde_json::{Value, json};

/// Size of each write (and of the readers' buffers).
const CHUNK: usize = 256 << 10;
/// The goal: proxy throughput over raw throughput.
const GOAL: f64 = 0.5;

/// Writes `total` bytes in [`CHUNK`] writes, then ends the stream.
fn push(mut s: UnixStream, total: u64) {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251).to_le_bytes()[0]).collect();
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap();
        s.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
    // Wait for the far end to close, so the connection is not torn down under the proxy.
    let _ = s.read(&mut [0u8; 1]);
}

/// Reads to end of stream, discarding: how many bytes, and when the last one arrived.
fn drain(mut s: UnixStream) -> (u64, Instant) {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).unwrap() {
            0 => return (n, Instant::now()),
            k => n += k as u64,
        }
    }
}

/// One timed transfer of `total` bytes: the writer connects to `connect`, the sink accepts on
/// `sink`; MB/s (10^6 bytes per second).
fn transfer(connect: &Path, sink: &UnixListener, total: u64) -> f64 {
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| drain(sink.accept().unwrap().0));
        let start = Instant::now();
        let writer = UnixStream::connect(connect).unwrap();
        let w = scope.spawn(move || push(writer, total));
        let (n, end) = reader.join().unwrap();
        w.join().unwrap();
        assert_eq!(n, total, "the sink got {n} of {total} bytes");
        total as f64 / end.duration_since(start).as_secs_f64() / 1e6
    })
}

/// Starts `cloister proxy` on a sink at `dir/enclave.sock` and waits until it listens.
fn start_proxy(cloister: &Path, dir: &Path) -> Proc {
    let addr = |name: &str| format!("unix://{}", dir.join(name).display());
    spawn_command(
        Command::new(cloister)
            .args(["proxy", "--listen", &addr("jobs.sock")])
            .args(["--enclave", &addr("enclave.sock")])
            .args(["--relay-listen", &addr("relay.sock")])
            .args(["--kms-endpoint", "127.0.0.1:9"]),
        "jobs on",
    )
}

/// The binaries a whole job needs.
struct Binaries {
    cloister: PathBuf,
    kms: PathBuf,
    enclave: PathBuf,
}

/// A whole job end to end: MB/s of sealed input for each run of `cloister submit`, the sealed
/// size and the plaintext size.
fn whole_job(bins: &Binaries, mib: u64, runs: u64) -> (Vec<f64>, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    let run = |cmd: &mut Command| -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let pki = p("pki");
    run(Command::new(&bins.cloister)
        .args(["dev-pki", "init", "--dir"])
        .arg(&pki));
    let kms = KmsBinary::new(&bins.kms).start(
        &p("kms"),
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--trust-root",
            pki.join("root.pem").to_str().unwrap(),
        ],
    );
    let https = kms.https.clone().unwrap();
    let mut env = kms.admin_env();
    env.push(("AWS_REGION".into(), "us-east-1".into()));
    env.push(("HOME".into(), "/nonexistent".into()));
    let owner = kms.client(kms.admin());
    let rt = cloister_tests::kms::rt();
    let key_arn = rt.block_on(owner.call("CreateKey", &json!({}))).unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();

    std::fs::copy(kms.ca_pem_path(), p("kms-ca.pem")).unwrap();
    std::fs::write(
        p("enclave.toml"),
        cloister_tests::microvm::config_with_ca_file(&https, "kms-ca.pem", &key_arn),
    )
    .unwrap();
    let built: Value = serde_json::from_str(&run(Command::new(&bins.cloister)
        .args(["build-image", "--process-only", "--json", "--config"])
        .arg(p("enclave.toml"))
        .arg("--enclave-binary")
        .arg(&bins.enclave)
        .arg("--out")
        .arg(p("enclave.eif"))))
    .unwrap();
    let pcr0 = built["Measurements"]["PCR0"].as_str().unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": cloister_tests::kms::ADMIN_ARN},
         "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": cloister_tests::kms::ADMIN_ARN}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": pcr0}}}]});
    rt.block_on(owner.call(
        "PutKeyPolicy",
        &json!({"KeyId": key_arn, "Policy": policy.to_string()}),
    ))
    .unwrap();

    std::fs::create_dir_all(p("proxy")).unwrap();
    let relay = p("proxy/relay.sock");
    let launched = cloister_tests::launcher::run(
        &bins.cloister,
        &p("state"),
        &[
            "--eif",
            p("enclave.eif").to_str().unwrap(),
            "--process",
            "--dev-pki",
            pki.to_str().unwrap(),
            "--kms-relay",
            relay.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let enclave = launched.get("proxy").trim_start_matches("--enclave ");
    let jobs = format!("unix://{}", p("proxy/jobs.sock").display());
    let proxy = spawn_command(
        Command::new(&bins.cloister)
            .args(["proxy", "--listen", &jobs, "--enclave", enclave])
            .arg("--relay-listen")
            .arg(format!("unix://{}", relay.display()))
            .args(["--kms-endpoint", &https]),
        "jobs on",
    );

    // The records, sealed by the key's owner in messages of about 1 MiB.
    let mut input = String::new();
    let mut i = 0u64;
    while (input.len() as u64) < mib << 20 {
        let country = ["NZ", "FR", "JP"][usize::try_from(i % 3).unwrap()];
        input.push_str(&format!(
            "{{\"id\":{i},\"name\":\"patient-{i}\",\"amount\":{}.5,\"country\":\"{country}\"}}\n",
            i % 17
        ));
        i += 1;
    }
    let plain = input.len() as u64;
    std::fs::write(p("records.jsonl"), input).unwrap();
    let per_message = (i * (1 << 20) / plain).max(1);
    run(Command::new(&bins.cloister)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["seal", "--kms", &kms.url(), "--key-id", &key_arn])
        .args(["--context", "dataset=bench", "--records-per-message"])
        .arg(per_message.to_string())
        .arg(p("records.jsonl"))
        .arg("-o")
        .arg(p("records.sealed")));
    let sealed = std::fs::metadata(p("records.sealed")).unwrap().len();

    let mut speeds = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(&bins.cloister)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "submit",
                "--proxy",
                &jobs,
                "--op",
                "stats",
                "--group-by",
                "country",
            ])
            .arg(p("records.sealed"))
            .output()
            .unwrap();
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.contains(&format!("{i} records")),
            "cloister submit: {err}\nproxy: {}",
            proxy.1.lock().unwrap()
        );
        speeds.push(sealed as f64 / took.as_secs_f64() / 1e6);
    }
    drop(proxy);
    drop(launched);
    (speeds, sealed, plain)
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not this benchmark skips it.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"pipe".contains(a.as_str()))
    {
        return;
    }
    let mib = env_or("BENCH_PIPE_MIB", 512);
    let runs = env_or("BENCH_RUNS", 5).max(1);
    let total = mib << 20;
    let cloister = cloister_tests::bench_binary("cloister-host", "cloister");
    let dir = tempfile::tempdir().unwrap();

    let raw_path = dir.path().join("raw.sock");
    let raw_sink = UnixListener::bind(&raw_path).unwrap();
    let enclave_sink = UnixListener::bind(dir.path().join("enclave.sock")).unwrap();
    let proxy = start_proxy(&cloister, dir.path());
    let jobs = dir.path().join("jobs.sock");

    // One unmeasured transfer each way warms caches and the proxy.
    transfer(&raw_path, &raw_sink, total.min(64 << 20));
    transfer(&jobs, &enclave_sink, total.min(64 << 20));
    let (mut raw, mut piped) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        raw.push(transfer(&raw_path, &raw_sink, total));
        piped.push(transfer(&jobs, &enclave_sink, total));
    }
    let log = proxy.1.lock().unwrap().clone();
    assert!(
        !log.contains("job failed"),
        "the proxy failed a job:\n{log}"
    );
    drop(proxy);

    let (raw_best, piped_best) = (best(&raw), best(&piped));
    let ratio = piped_best / raw_best;
    println!();
    println!(
        "job pipe throughput: {mib} MiB in {} KiB writes, best of {runs} runs (MB/s = 10^6 B/s)",
        CHUNK >> 10
    );
    println!("{:<34} {:>8}   runs", "path", "MB/s");
    println!(
        "{:<34} {raw_best:>8.0}   {}",
        "raw Unix-socket copy",
        list(&raw)
    );
    println!(
        "{:<34} {piped_best:>8.0}   {}",
        "cloister proxy job pipe",
        list(&piped)
    );
    println!(
        "{:<34} {ratio:>8.2}   goal >= {GOAL}x raw: {}",
        "proxy / raw",
        if ratio >= GOAL { "PASS" } else { "MISS" }
    );

    if std::env::var("BENCH_PIPE_JOB").is_ok_and(|v| v == "0") {
        return;
    }
    let job_mib = env_or("BENCH_JOB_MIB", 64);
    let job_runs = env_or("BENCH_JOB_RUNS", 3).max(1);
    let bins = Binaries {
        cloister,
        kms: cloister_tests::bench_binary("cloister-kms", "cloister-kms"),
        enclave: cloister_tests::bench_binary("cloister-enclave", "cloister-enclave"),
    };
    // A set-up that fails costs this figure only (its panic is printed above).
    match std::thread::spawn(move || whole_job(&bins, job_mib, job_runs)).join() {
        Ok((speeds, sealed, plain)) => {
            let b = best(&speeds);
            println!(
                "{:<34} {b:>8.0}   {}   ({:.3}x raw; {job_runs} runs of `cloister submit --op stats`, \
                 {:.1} MB of records sealed into {:.1} MB, process mode)",
                "whole job, sealed input",
                list(&speeds),
                b / raw_best,
                plain as f64 / 1e6,
                sealed as f64 / 1e6
            );
        }
        Err(_) => println!(
            "{:<34} {:>8}   (its set-up failed: see above)",
            "whole job, sealed input", "-"
        ),
    }
}
