//! `cloister run` booting a real image in QEMU (microvm, TCG here) with a real
//! vhost-device-vsock: the image `cloister build-image` makes from the static enclave
//! (`scripts/build-enclave`) and the kernel `qemu/fetch-kernel` caches. It checks that the
//! guest's jobs port answers through the backend; that the emulated NSM's documents carry
//! exactly the PCRs `cloister describe-image` prints (asked the way the guest asks, on the
//! private socket, as the launcher's user); that another user (the would-be proxy) gets
//! permission denied on `vm.vsock_9000` but reaches the jobs port; and that a killed QEMU is
//! reported, fails the launcher and leaves no child and no folder behind.
//!
//! Needs `qemu/setup` (scripts/test runs it) and root (to act as another user).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cloister_attestation::{PcrIndex, Policy, TrustAnchor, Verifier, VerifyAt};
use cloister_nsm::Nsm;
use cloister_nsm::client::NsmClient;
use cloister_tests::launcher::{self, children, cmdline, exists};
use cloister_tests::{binary, cloister, outcome, testdata, workspace};

const PROXY_UID: u32 = 61_012;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

/// The static enclave, built by the project's script.
fn static_enclave() -> std::path::PathBuf {
    let out = Command::new(workspace().join("scripts/build-enclave"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    workspace().join(String::from_utf8_lossy(&out.stdout).trim())
}

/// `cloister build-image` of the real enclave with the cached kernel.
fn microvm_image(dir: &Path) -> std::path::PathBuf {
    std::fs::copy(
        testdata("nitro/aws_nitro_enclaves_root_g1.pem"),
        dir.join("ca.pem"),
    )
    .unwrap();
    let config = cloister_tests::microvm::config_with_ca_file("127.0.0.1:1", "ca.pem", KEY);
    std::fs::write(dir.join("enclave.toml"), config).unwrap();
    let kernel = cloister_tests::microvm::kernel();
    let eif = dir.join("enclave.eif");
    let (code, _, err) = outcome(&cloister(&[
        "build-image",
        "--config",
        dir.join("enclave.toml").to_str().unwrap(),
        "--kernel",
        kernel.vmlinuz.to_str().unwrap(),
        "--enclave-binary",
        static_enclave().to_str().unwrap(),
        "--out",
        eif.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    eif
}

/// The QEMU tests take turns: each boot wants a whole core under TCG, and this machine has two.
fn one_vm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    VM.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_to_all(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn as_proxy(program: &str, args: &[&str]) -> (i32, String, String) {
    outcome(
        &Command::new(program)
            .args(args)
            .uid(PROXY_UID)
            .gid(PROXY_UID)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap(),
    )
}

#[test]
#[ignore = "boots QEMU: scripts/test runs ignored tests"]
fn an_image_boots_in_qemu_and_only_the_launcher_user_reaches_its_nsm() {
    let _vm = one_vm_at_a_time();
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: it acts as another user (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    open_to_all(dir.path());
    let eif = microvm_image(dir.path());
    let (code, described, err) = outcome(&cloister(&[
        "describe-image",
        "--json",
        eif.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    let state = dir.path().join("state");
    let run = launcher::run(
        &binary("cloister"),
        &state,
        &[
            "--eif",
            eif.to_str().unwrap(),
            "--parent-instance-id",
            "i-0123456789abcdef0",
        ],
        Duration::from_secs(420),
    );
    assert_eq!(run.get("mode"), "microvm");
    assert!(run.get("accel").starts_with("tcg") || run.get("accel").starts_with("kvm"));
    let folder = run.dir();

    // The emulated NSM, asked as the guest asks it (length-prefixed CBOR), on its private
    // socket, as the launcher's user: documents carry exactly describe-image's PCRs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let private_nsm = folder.join("private/nsm.sock");
    let client = NsmClient::dial(format!("unix://{}", private_nsm.display()).parse().unwrap());
    let nsm: &dyn Nsm = &client;
    let doc = rt
        .block_on(nsm.attestation(Some(vec![0x30; 64]), Some(vec![7; 32]), None))
        .unwrap();
    let root =
        TrustAnchor::from_pem(&std::fs::read_to_string(state.join("dev-pki/root.pem")).unwrap())
            .unwrap();
    let v = Verifier::new(vec![root])
        .verify(&doc, VerifyAt::Now, &Policy::new().nonce(vec![7; 32]))
        .unwrap();
    for n in [0u64, 1, 2] {
        let want = described["Measurements"][format!("PCR{n}")]
            .as_str()
            .unwrap();
        assert_eq!(
            v.pcrs.get(PcrIndex::new(n).unwrap()).unwrap().to_hex(),
            want,
            "PCR{n}"
        );
        assert_eq!(run.get(&format!("pcr{n}")), want);
    }
    assert!(
        v.module_id.starts_with("i-0123456789abcdef0-enc"),
        "{}",
        v.module_id
    );

    // Another user: the NSM's way in is refused by the kernel; the jobs port is reachable.
    let bin = dir.path().join("cloister");
    std::fs::copy(binary("cloister"), &bin).unwrap();
    open_to_all(&bin);
    let via_link = format!("unix://{}/vm.vsock_9000", folder.display());
    let (code, _, err) = as_proxy(
        bin.to_str().unwrap(),
        &["nsm", "describe", "--nsm", &via_link],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    let probe = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                 s.sendall(b'CONNECT 5000\\n')\nprint(s.recv(64).decode().strip())";
    let vsock = folder.join("vm.vsock");
    let (code, out, err) = as_proxy("/usr/bin/python3", &["-c", probe, vsock.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (0, "OK 5000"), "{err}");

    // ps shows it; then QEMU dies: reported with the console, non-zero, nothing left behind.
    let (_, out, _) = outcome(&cloister(&["ps", "--state-dir", state.to_str().unwrap()]));
    assert!(out.contains(run.id()) && out.contains("microvm"), "{out}");
    let kids = children(run.pid());
    assert_eq!(kids.len(), 2, "backend and QEMU: {kids:?}");
    let qemu = *kids
        .iter()
        .find(|p| cmdline(**p).contains("qemu-system"))
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(qemu).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, err) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("qemu exited"), "{err}");
    assert!(err.contains("--- console"), "{err}");
    for k in kids {
        assert!(!exists(k), "child {k} left behind");
    }
    assert!(!folder.exists());
}

#[test]
#[ignore = "boots QEMU: scripts/test runs ignored tests"]
fn an_attested_job_runs_in_a_microvm_and_an_image_one_byte_apart_is_refused() {
    let _vm = one_vm_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let kernel = cloister_tests::microvm::kernel();
    let enclave = static_enclave();
    let outcome = launcher::attested_job(
        dir.path(),
        &[
            "--kernel",
            kernel.vmlinuz.to_str().unwrap(),
            "--enclave-binary",
            enclave.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(420),
    );
    outcome.assert_released_then_refused(3);
}
