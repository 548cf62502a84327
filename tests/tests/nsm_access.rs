//! Trust in emulation: only the launcher's user reaches the emulated NSM and its dev PKI; the
//! proxy's user is refused (permission denied), so it cannot obtain a document for its own key.
//!
//! Root ignores file permissions, so the test runs the NSM as one unprivileged uid and the
//! would-be proxy as another; starting processes as other uids needs root (CI runs as root).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloister_tests::{binary, outcome};

const LAUNCHER: u32 = 61_001;
const PROXY: u32 = 61_002;

fn as_user(bin: &Path, uid: u32, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).uid(uid).gid(uid).env("HOME", "/nonexistent");
    c
}

fn open_to_all(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[ignore = "needs root to start processes as two other users: scripts/test runs ignored tests (CI is root)"]
fn only_the_launcher_user_reaches_the_emulated_nsm() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: it starts the NSM and the proxy as two other users (CI does)"
    );
    let base = tempfile::tempdir().unwrap();
    open_to_all(base.path());
    // The checkout may sit in a private directory: give both users a copy of the binary.
    let bin = base.path().join("cloister");
    std::fs::copy(binary("cloister"), &bin).unwrap();
    open_to_all(&bin);
    let run = base.path().join("run");
    std::fs::create_dir(&run).unwrap();
    nix::unistd::chown(&run, Some(LAUNCHER.into()), Some(LAUNCHER.into())).unwrap();
    open_to_all(&run);
    let socket = run.join("nsm/nsm.sock");
    let addr = format!("unix://{}", socket.display());
    let pki = run.join("pki");

    let mut nsm = as_user(
        &bin,
        LAUNCHER,
        &[
            "nsm",
            "serve",
            "--dev-pki",
            pki.to_str().unwrap(),
            "--listen",
            &addr,
            "--measure",
            bin.to_str().unwrap(),
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the NSM did not start");
        assert!(nsm.try_wait().unwrap().is_none(), "the NSM exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&socket), 0o600);

    // The launcher's user (the enclave's side) is served.
    let (code, out, err) = outcome(
        &as_user(&bin, LAUNCHER, &["nsm", "describe", "--nsm", &addr])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("module_id"), "{out}");

    // The proxy's user is refused at the socket, and cannot read the dev PKI's keys.
    let (code, _, err) = outcome(
        &as_user(&bin, PROXY, &["nsm", "describe", "--nsm", &addr])
            .output()
            .unwrap(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    let cat = Command::new("cat")
        .arg(pki.join("root.key"))
        .uid(PROXY)
        .gid(PROXY)
        .output()
        .unwrap();
    assert!(!cat.status.success());
    assert!(String::from_utf8_lossy(&cat.stderr).contains("Permission denied"));

    nsm.kill().unwrap();
    nsm.wait().unwrap();
}
