//! Jobs per second through `cloister proxy` with 1, 2 and 3 enclaves, beside the same client
//! straight to one enclave without the proxy, in one run (`scripts/bench-proxy`).
//!
//! The pipeline is the tests' ([`cloister_tests::pipeline`]: cloister-kms over TLS, enclaves of
//! one image under `cloister run --process`, the proxy with its KMS relay), with the binaries
//! built for this benchmark. A job is `cloister submit --op mask` of `BENCH_PROXY_RECORDS`
//! records (default 300) sealed in 10 messages: one attested key release through the relay,
//! then decrypting, masking and returning every record; it measures the per-job path, not bulk
//! throughput (`scripts/bench-pipe` does that).
//!
//! Each configuration runs `BENCH_PROXY_JOBS` jobs (default 36) from two clients per enclave (a
//! client: a thread running `cloister submit` processes one after another), which keeps every
//! enclave's two job slots (`max_jobs = 2`) busy:
//!
//! - direct: 2 clients straight to one enclave's address (the reference);
//! - proxy, 1 enclave, pipe mode (today's proxy), and replay mode;
//! - proxy, 2 and 3 enclaves (replay mode, the default for several).
//!
//! The configurations alternate for `BENCH_RUNS` rounds (default 2) so that a busy machine
//! weighs on all alike; the best round of each is reported, and failed jobs are counted, never
//! hidden. Nothing is asserted about speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cloister_tests::env_or;
use cloister_tests::pipeline::{Pipeline, records};

/// A configuration: its name, how many enclaves and clients, and the proxy's arguments (`None`:
/// straight to the first enclave).
struct Config {
    name: &'static str,
    enclaves: usize,
    clients: usize,
    mode: Option<&'static str>,
}

/// Runs `jobs` mask jobs of `sealed` against `address` from `clients` threads: (jobs per
/// second, failed jobs, the first failure's stderr).
fn measure(
    p: &Pipeline,
    address: &str,
    sealed: &Path,
    jobs: usize,
    clients: usize,
) -> (f64, usize, String) {
    let cloister = cloister_tests::binary("cloister");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<(usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let (mut failed, mut first) = (0, String::new());
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < jobs {
                        let out = Command::new(&cloister)
                            .args(["submit", "--proxy", address, "--op", "mask"])
                            .arg(sealed)
                            .envs(p.env.iter().map(|(k, v)| (k, v)))
                            .output()
                            .unwrap();
                        if !out.status.success() {
                            failed += 1;
                            if first.is_empty() {
                                first = String::from_utf8_lossy(&out.stderr).into_owned();
                            }
                        }
                    }
                    (failed, first)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = start.elapsed().as_secs_f64();
    let failed = results.iter().map(|r| r.0).sum();
    let first = results
        .into_iter()
        .map(|r| r.1)
        .find(|e| !e.is_empty())
        .unwrap_or_default();
    (jobs as f64 / took, failed, first)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not this benchmark skips it.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"proxy".contains(a.as_str()))
    {
        return;
    }
    let n_records = usize::try_from(env_or("BENCH_PROXY_RECORDS", 300)).unwrap();
    let jobs = usize::try_from(env_or("BENCH_PROXY_JOBS", 36)).unwrap();
    let runs = env_or("BENCH_RUNS", 2).max(1);

    let mut p = Pipeline::start(None);
    let sealed = p.seal(&records(n_records), "bench", n_records.div_ceil(10).max(1));
    let state = p.dir.path().join("more-state");
    let extra: Vec<_> = (0..2).map(|_| p.launch_enclave(&state)).collect();
    let mut addresses = vec![p.enclave_addr.clone()];
    addresses.extend(
        extra
            .iter()
            .map(|l| l.get("proxy").trim_start_matches("--enclave ").to_owned()),
    );

    let configs = [
        Config {
            name: "direct to one enclave (reference)",
            enclaves: 1,
            clients: 2,
            mode: None,
        },
        Config {
            name: "proxy, 1 enclave, pipe mode",
            enclaves: 1,
            clients: 2,
            mode: Some("pipe"),
        },
        Config {
            name: "proxy, 1 enclave, replay mode",
            enclaves: 1,
            clients: 2,
            mode: Some("replay"),
        },
        Config {
            name: "proxy, 2 enclaves, replay mode",
            enclaves: 2,
            clients: 4,
            mode: Some("replay"),
        },
        Config {
            name: "proxy, 3 enclaves, replay mode",
            enclaves: 3,
            clients: 6,
            mode: Some("replay"),
        },
    ];
    let mut best = vec![0.0f64; configs.len()];
    let mut all = vec![Vec::new(); configs.len()];
    let mut failures = vec![0usize; configs.len()];
    for round in 0..runs {
        for (i, c) in configs.iter().enumerate() {
            let target = match c.mode {
                None => addresses[0].clone(),
                Some(mode) => {
                    let over: Vec<&str> =
                        addresses[..c.enclaves].iter().map(String::as_str).collect();
                    p.restart_proxy_over(&over, &["--mode", mode]);
                    p.proxy_addr.clone()
                }
            };
            // One unmeasured job per enclave warms the path.
            let _ = measure(&p, &target, &sealed, c.enclaves, c.enclaves);
            let (rate, failed, first) = measure(&p, &target, &sealed, jobs, c.clients);
            if failed > 0 {
                eprintln!(
                    "round {round}, {}: {failed} of {jobs} jobs failed; the first: {first}",
                    c.name
                );
            }
            failures[i] += failed;
            all[i].push(rate);
            best[i] = best[i].max(rate);
        }
    }
    drop(extra);

    println!();
    println!(
        "jobs through the proxy: `cloister submit --op mask` of {n_records} records in 10 messages, \
         {jobs} jobs per run, best of {runs} run(s), process-mode enclaves (max_jobs 2 each)"
    );
    println!(
        "{:<36} {:>8} {:>10} {:>10}  runs",
        "configuration", "clients", "jobs/s", "vs direct"
    );
    for (i, c) in configs.iter().enumerate() {
        let runs: Vec<String> = all[i].iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "{:<36} {:>8} {:>10.1} {:>9.2}x  {}{}",
            c.name,
            c.clients,
            best[i],
            best[i] / best[0],
            runs.join(" "),
            if failures[i] > 0 {
                format!("  ({} failed jobs)", failures[i])
            } else {
                String::new()
            }
        );
    }
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
}
