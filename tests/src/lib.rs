//! Helpers for cross-crate tests: locate the workspace's binaries and test vectors.
//!
//! Tests here drive `cloister`, `cloister-kms` and `cloister-enclave` as a user does,
//! as separate processes, so they exercise argument parsing, exit codes and real I/O. Helpers
//! panic on a broken environment: they only ever run inside tests. [`kms`] starts a real
//! `cloister-kms` for any test that needs one; [`microvm`] builds bootable test images, [`launcher`] drives `cloister run`, and
//! [`pipeline`] runs the whole attested pipeline in process mode.
#![allow(clippy::panic)]

pub mod kms;
pub mod launcher;
pub mod microvm;
pub mod pg;
pub mod pipeline;
pub mod proxy_status;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file under `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    workspace().join("testdata").join(rel)
}

/// Path of a workspace binary, built once per test process with the same profile as the tests.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--bins"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("building workspace binaries: {e}");
    }
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    profile_dir.join(name)
}

/// Path of a workspace binary for a benchmark: only that binary, built (or found up to date)
/// with the benchmark's own profile (`cargo build --profile bench`, into `target/release/`).
pub fn bench_binary(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            "bench",
            "-p",
            package,
            "--bin",
            name,
        ])
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        status.success(),
        "building {name}: cargo build failed: {status}"
    );
    // Benchmark executables live in target/release/deps/.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join(name))
        .unwrap_or_default()
}

/// Runs `cloister` with `args`.
pub fn cloister(args: &[&str]) -> Output {
    run(&binary("cloister"), args)
}

/// Runs a program, capturing output.
pub fn run(program: &PathBuf, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Exit code, stdout and stderr of a finished command.
pub fn outcome(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A number from the environment variable `name` (a benchmark's size or count), `default` when
/// unset; panics, naming it, when it is set but not a number.
pub fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; whether it held. For conditions
/// another process brings about (no timing is asserted: the limit is generous).
pub fn eventually(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}
