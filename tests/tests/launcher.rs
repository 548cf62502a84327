//! `cloister run --process`, `ps`, `stop` and `console` driven as a user drives them: the launcher
//! runs the enclave binary it measured (taken from a `cloister build-image --process-only`
//! image), serves its NSM over a socket pair (no NSM socket anywhere on the file system), reports
//! the PCRs `cloister describe-image` prints, and leaves nothing behind when stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use cloister_tests::launcher::{self, children, cmdline, exists, sockets_under};
use cloister_tests::{binary, cloister, outcome, testdata};
use cloister_wire::Address;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

/// Writes `enclave.toml` (CA in a file beside it) and builds a process-only image.
fn process_image(dir: &Path) -> std::path::PathBuf {
    std::fs::copy(
        testdata("nitro/aws_nitro_enclaves_root_g1.pem"),
        dir.join("ca.pem"),
    )
    .unwrap();
    let config = cloister_tests::microvm::config_with_ca_file("127.0.0.1:1", "ca.pem", KEY);
    std::fs::write(dir.join("enclave.toml"), config).unwrap();
    let eif = dir.join("enclave.eif");
    let (code, _, err) = outcome(&cloister(&[
        "build-image",
        "--process-only",
        "--config",
        dir.join("enclave.toml").to_str().unwrap(),
        "--enclave-binary",
        binary("cloister-enclave").to_str().unwrap(),
        "--out",
        eif.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    eif
}

fn describe(eif: &Path) -> serde_json::Value {
    let (code, out, err) = outcome(&cloister(&[
        "describe-image",
        "--json",
        eif.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn process_mode_runs_the_measured_binary_with_no_nsm_on_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let eif = process_image(dir.path());
    let described = describe(&eif);
    let state = dir.path().join("state");
    // A descriptor whoever starts the launcher left inheritable: the enclave must not get it.
    let leak = std::fs::File::create(dir.path().join("leaked-descriptor")).unwrap();
    nix::fcntl::fcntl(
        &leak,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let run = launcher::run(
        &binary("cloister"),
        &state,
        &["--eif", eif.to_str().unwrap(), "--process"],
        Duration::from_secs(60),
    );
    drop(leak);
    assert_eq!(run.get("mode"), "process");
    for n in [0, 1, 2] {
        assert_eq!(
            run.get(&format!("pcr{n}")),
            described["Measurements"][format!("PCR{n}")]
                .as_str()
                .unwrap(),
            "PCR{n}"
        );
    }
    let folder = run.dir();
    assert_eq!(
        run.get("proxy"),
        format!("--enclave unix://{}/vm.vsock#5000", folder.display())
    );

    // The one socket under the state directory is the enclave's hybrid-vsock listener: no NSM
    // path for anyone to find.
    assert_eq!(sockets_under(&state), vec![folder.join("vm.vsock")]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(folder.join("vm.vsock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o666, "the proxy runs as another user");

    // The running enclave is the measured binary, from a memfd, with an empty environment.
    let kids = children(run.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    let enclave = kids[0];
    let exe = std::fs::read_link(format!("/proc/{enclave}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:cloister-enclave"),
        "{exe:?}"
    );
    assert_eq!(
        std::fs::read(format!("/proc/{enclave}/environ")).unwrap(),
        b""
    );
    assert!(
        cmdline(enclave).contains("--nsm-fd"),
        "{}",
        cmdline(enclave)
    );
    let inherited: Vec<String> = std::fs::read_dir(format!("/proc/{enclave}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    assert!(
        !inherited.iter().any(|t| t.contains("leaked-descriptor")),
        "{inherited:?}"
    );

    // The proxy's address answers the hybrid handshake.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: Address = run
        .get("proxy")
        .trim_start_matches("--enclave ")
        .parse()
        .unwrap();
    rt.block_on(addr.connect()).unwrap();

    // ps lists it; console prints what it said; stop ends it and cleans up.
    let (code, out, err) = outcome(&cloister(&["ps", "--state-dir", state.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(run.id()) && out.contains("process"), "{out}");
    assert!(out.contains(run.get("pcr0")), "{out}");
    let (code, out, err) = outcome(&cloister(&[
        "console",
        run.id(),
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cloister-enclave: ready"), "{out}");
    let id = run.id().to_owned();
    let (code, out, err) = outcome(&cloister(&[
        "stop",
        &id,
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stopped"), "{out}");
    let (status, err) = run.wait(Duration::from_secs(10));
    assert!(status.success(), "{err}");
    assert!(!folder.exists());
    assert!(!exists(enclave), "the enclave outlived its launcher");
    let (_, out, _) = outcome(&cloister(&["ps", "--state-dir", state.to_str().unwrap()]));
    assert!(!out.contains(&id), "{out}");
}

#[test]
fn a_process_only_image_is_refused_without_process_and_a_dead_enclave_fails_the_launcher() {
    let dir = tempfile::tempdir().unwrap();
    let eif = process_image(dir.path());
    let state = dir.path().join("state");
    let (code, _, err) = outcome(&cloister(&[
        "run",
        "--eif",
        eif.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("process-only image"), "{err}");

    // A debug enclave reports all-zero PCR0/1/2/8, as Nitro does.
    let debug = launcher::run(
        &binary("cloister"),
        &state,
        &[
            "--eif",
            eif.to_str().unwrap(),
            "--process",
            "--debug-console",
        ],
        Duration::from_secs(60),
    );
    for n in [0, 1, 2, 8] {
        assert_eq!(debug.get(&format!("pcr{n}")), "0".repeat(96), "PCR{n}");
    }
    // A launcher killed outright (no cleanup possible) still takes its enclave with it
    // (PR_SET_PDEATHSIG).
    let orphan = children(debug.pid())[0];
    drop(debug);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exists(orphan) {
        assert!(
            std::time::Instant::now() < deadline,
            "the enclave outlived a killed launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The enclave killed behind the launcher's back: reported, non-zero, nothing left.
    let run = launcher::run(
        &binary("cloister"),
        &state,
        &["--eif", eif.to_str().unwrap(), "--process"],
        Duration::from_secs(60),
    );
    let folder = run.dir();
    let enclave = children(run.pid())[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(enclave as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, err) = run.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cloister-enclave exited"), "{err}");
    assert!(!folder.exists());
    assert!(!exists(enclave));
}

#[test]
fn an_attested_job_runs_through_cloister_run_in_process_mode_and_an_image_one_byte_apart_is_refused()
 {
    let dir = tempfile::tempdir().unwrap();
    let enclave = binary("cloister-enclave");
    let outcome = launcher::attested_job(
        dir.path(),
        &[
            "--process-only",
            "--enclave-binary",
            enclave.to_str().unwrap(),
        ],
        &["--process"],
        Duration::from_secs(60),
    );
    outcome.assert_released_then_refused(3);
}
