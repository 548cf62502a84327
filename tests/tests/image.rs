//! `cloister build-image` / `describe-image` driven as a user drives them, and the enclave's
//! process mode started by hand as the launcher will start it.
//!
//! Images here use a small fake kernel and fake modules (the measurement does not care what the
//! bytes are); the process-mode test uses the real `cloister-enclave` taken back out of a
//! `--process-only` image, with the configuration in a memfd and the emulated NSM at the other
//! end of a socket pair, and connects to its job port through the hybrid-vsock handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::{Pcrs, Timestamp};
use cloister_nsm::emulator::Emulator;
use cloister_tests::{binary, cloister, outcome, testdata};
use cloister_wire::{Address, FrameReader, FrameWriter, Message};
use serde_json::Value;

const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/k1";

fn config_text(endpoint: &str) -> String {
    cloister_tests::microvm::config_with_ca_file(endpoint, "ca.pem", KEY)
}

/// A directory with a fake kernel, fake modules, a fake enclave binary and a configuration.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("vmlinuz"), b"not really a bzImage").unwrap();
        std::fs::create_dir(p.join("modules")).unwrap();
        for m in [
            "virtio_ring",
            "virtio",
            "virtio_mmio",
            "vsock",
            "vmw_vsock_virtio_transport_common",
            "vmw_vsock_virtio_transport",
        ] {
            std::fs::write(p.join("modules").join(format!("{m}.ko")), m).unwrap();
        }
        std::fs::write(p.join("enclave-bin"), static_elf_stub()).unwrap();
        std::fs::copy(
            testdata("nitro/aws_nitro_enclaves_root_g1.pem"),
            p.join("ca.pem"),
        )
        .unwrap();
        std::fs::write(p.join("enclave.toml"), config_text("127.0.0.1:4600")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `cloister build-image --json` with the fake kernel; returns the image bytes and output.
    fn build(&self, out: &str, extra: &[&str]) -> (Vec<u8>, Value) {
        let (config, kernel, bin, out_path) = (
            self.path("enclave.toml"),
            self.path("vmlinuz"),
            self.path("enclave-bin"),
            self.path(out),
        );
        let mut args = vec![
            "build-image",
            "--config",
            &config,
            "--kernel",
            &kernel,
            "--enclave-binary",
            &bin,
            "--out",
            &out_path,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = outcome(&cloister(&args));
        assert_eq!(code, 0, "{stderr}");
        (
            std::fs::read(&out_path).unwrap(),
            serde_json::from_str(&stdout).unwrap(),
        )
    }
}

fn printed_pcr(out: &Value, n: u8) -> String {
    out["Measurements"][format!("PCR{n}")]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn builds_are_reproducible_and_print_what_the_image_measures() {
    let inputs = Inputs::new();
    let (a, out_a) = inputs.build("a.eif", &[]);
    let (b, out_b) = inputs.build("b.eif", &[]);
    assert_eq!(a, b, "same inputs, same bytes");
    assert_eq!(out_a["Measurements"], out_b["Measurements"]);
    let measured = cloister_eif::measure(&a).unwrap();
    assert_eq!(printed_pcr(&out_a, 0), measured.pcr0.to_hex());
    assert_eq!(printed_pcr(&out_a, 1), measured.pcr1.to_hex());
    assert_eq!(printed_pcr(&out_a, 2), measured.pcr2.to_hex());
    assert!(out_a["Measurements"].get("PCR8").is_none());
    assert_eq!(out_a["process_only"], false);

    // The image is laid out as the launcher and the enclave expect.
    let files = cloister_eif::image_files(&a).unwrap();
    assert_eq!(files.init, static_elf_stub());
    assert_eq!(files.modules.len(), 6);
    assert_eq!(files.modules[0], "virtio_ring.ko");
    assert!(!files.process_only);
    let config =
        cloister_enclave::config::Config::from_bytes(&files.config).expect("canonical config");
    assert!(
        config.kms.ca_pem.contains("BEGIN CERTIFICATE"),
        "CA inlined"
    );
    assert_eq!(config.kms.accepted_keys, [KEY]);
    let eif = cloister_eif::parse(&a).unwrap();
    let cmdline = eif.first(cloister_eif::SectionType::Cmdline).unwrap();
    assert_eq!(cmdline, b"console=ttyS0 reboot=t panic=-1 quiet");
}

#[test]
fn the_configuration_is_measured_into_pcr0_and_pcr2_not_pcr1() {
    let inputs = Inputs::new();
    let (_, before) = inputs.build("a.eif", &[]);
    // One byte of the configuration: the endpoint's port.
    std::fs::write(
        inputs.dir.path().join("enclave.toml"),
        config_text("127.0.0.1:4601"),
    )
    .unwrap();
    let (_, after) = inputs.build("b.eif", &[]);
    assert_ne!(printed_pcr(&before, 0), printed_pcr(&after, 0));
    assert_ne!(printed_pcr(&before, 2), printed_pcr(&after, 2));
    assert_eq!(printed_pcr(&before, 1), printed_pcr(&after, 1));
    // The kernel command line is part of the bootstrap measurement.
    let (_, cmdline) = inputs.build("c.eif", &["--cmdline", "console=ttyS0"]);
    assert_ne!(printed_pcr(&after, 1), printed_pcr(&cmdline, 1));
    assert_eq!(printed_pcr(&after, 2), printed_pcr(&cmdline, 2));
}

#[test]
fn describe_image_shows_sections_pcrs_and_the_configuration() {
    let inputs = Inputs::new();
    let (bytes, built) = inputs.build("a.eif", &[]);
    let eif = inputs.path("a.eif");
    let (code, stdout, stderr) = outcome(&cloister(&["describe-image", &eif, "--json"]));
    assert_eq!(code, 0, "{stderr}");
    let d: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["Measurements"], built["Measurements"]);
    assert_eq!(d["size"], bytes.len());
    let kinds: Vec<&str> = d["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(d["config_check"], "valid");
    let config = d["config"].as_str().unwrap();
    assert!(config.contains("endpoint = \"127.0.0.1:4600\""), "{config}");
    assert!(config.contains(KEY), "{config}");

    let (code, text, stderr) = outcome(&cloister(&["describe-image", &eif]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!("PCR0 {}", printed_pcr(&built, 0))),
        "{text}"
    );
    assert!(text.contains("configuration (valid):"), "{text}");
    assert!(text.contains("127.0.0.1:4600"), "{text}");

    std::fs::write(inputs.path("bad.eif"), &bytes[..100]).unwrap();
    let (code, _, stderr) = outcome(&cloister(&["describe-image", &inputs.path("bad.eif")]));
    assert_eq!(code, 1);
    assert!(stderr.contains("error[EIF-TRUNCATED]"), "{stderr}");
}

#[test]
fn bad_inputs_are_refused_with_their_codes() {
    let inputs = Inputs::new();
    let config = inputs.path("enclave.toml");
    let bin = inputs.path("enclave-bin");
    let out = inputs.path("x.eif");
    // No kernel and not --process-only: a usage error.
    let (code, _, stderr) = outcome(&cloister(&[
        "build-image",
        "--config",
        &config,
        "--enclave-binary",
        &bin,
        "--out",
        &out,
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--kernel"), "{stderr}");
    // An invalid configuration names its field and code.
    std::fs::write(
        &config,
        config_text("127.0.0.1:4600").replace("max_uses = 10000", "max_uses = 0"),
    )
    .unwrap();
    let (code, _, stderr) = outcome(&cloister(&[
        "build-image",
        "--config",
        &config,
        "--process-only",
        "--enclave-binary",
        &bin,
        "--out",
        &out,
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error[ENC-CONFIG]"), "{stderr}");
    assert!(stderr.contains("cache.max_uses"), "{stderr}");
    assert!(!Path::new(&out).exists());
    // A missing module is named.
    std::fs::write(&config, config_text("127.0.0.1:4600")).unwrap();
    std::fs::remove_file(inputs.dir.path().join("modules/vsock.ko")).unwrap();
    let kernel = inputs.path("vmlinuz");
    let (code, _, stderr) = outcome(&cloister(&[
        "build-image",
        "--config",
        &config,
        "--kernel",
        &kernel,
        "--enclave-binary",
        &bin,
        "--out",
        &out,
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("vsock.ko"), "{stderr}");
}

/// The enclave's stderr, line by line, until it says `ready` (or gives up).
fn wait_ready(child: &mut Child) -> Vec<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let ready = line == "cloister-enclave: ready";
                lines.push(line);
                if ready {
                    return lines;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    lines
}

/// Descriptors the child inherits (no close-on-exec): the configuration in a memfd, and the
/// enclave's end of a socket pair whose other end (close-on-exec) stays here.
fn launcher_fds(config: &[u8]) -> (OwnedFd, OwnedFd, OwnedFd) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let memfd =
        nix::sys::memfd::memfd_create("enclave.toml", nix::sys::memfd::MFdFlags::empty()).unwrap();
    nix::unistd::write(&memfd, config).unwrap();
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .unwrap();
    nix::fcntl::fcntl(
        ours.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    (memfd, ours, theirs)
}

fn enclave_from_image(dir: &Path, eif: &[u8]) -> (PathBuf, Vec<u8>) {
    let files = cloister_eif::image_files(eif).unwrap();
    assert!(files.process_only);
    let exe = dir.join("init");
    std::fs::write(&exe, &files.init).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (exe, files.config)
}

#[tokio::test(flavor = "multi_thread")]
async fn process_mode_runs_the_measured_enclave_and_accepts_a_job_connection() {
    let inputs = Inputs::new();
    let real = binary("cloister-enclave").display().to_string();
    let config = inputs.path("enclave.toml");
    let out = inputs.path("p.eif");
    let (code, stdout, stderr) = outcome(&cloister(&[
        "build-image",
        "--config",
        &config,
        "--process-only",
        "--enclave-binary",
        &real,
        "--out",
        &out,
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("process-only image"), "{stdout}");
    let eif = std::fs::read(&out).unwrap();
    let (exe, config_bytes) = enclave_from_image(inputs.dir.path(), &eif);

    // The emulated NSM, measuring this image, on our end of the socket pair.
    let (memfd, ours, theirs) = launcher_fds(&config_bytes);
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let nsm = Arc::new(Emulator::new(
        pki,
        "i-0test-enc0123456789abcdef".into(),
        &Pcrs::new(),
    ));
    let ours = std::os::unix::net::UnixStream::from(ours);
    ours.set_nonblocking(true).unwrap();
    let ours = tokio::net::UnixStream::from_std(ours).unwrap();
    let served = tokio::spawn(async move {
        cloister_nsm::server::serve_connection(ours, nsm.as_ref(), Duration::from_secs(60)).await
    });

    let uds = inputs.dir.path().join("vm.vsock");
    let mut child = Command::new(&exe)
        .args(["--config-fd", &memfd.as_raw_fd().to_string()])
        .args(["--nsm-fd", &theirs.as_raw_fd().to_string()])
        .arg("--uds")
        .arg(&uds)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop((memfd, theirs));
    let lines = tokio::task::block_in_place(|| wait_ready(&mut child));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("cloister-enclave: ready"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("unix://{}#5000", uds.display()))
                && l.contains(&format!("relay unix://{}_8000", uds.display()))),
        "{lines:?}"
    );

    // A job connection through the hybrid-vsock handshake; the enclave speaks the protocol.
    let addr: Address = format!("unix://{}#5000", uds.display()).parse().unwrap();
    let stream = addr.connect().await.unwrap();
    let (r, w) = tokio::io::split(stream);
    let mut writer = FrameWriter::new(w);
    writer.send(&Message::EndOfInput).await.unwrap();
    let mut reader = FrameReader::new(r, Duration::from_secs(10));
    match reader.next().await.unwrap() {
        Some(Message::Failed { code, .. }) => assert_eq!(code, "ENC-PROTOCOL"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // A wrong port is refused by the handshake.
    let wrong: Address = format!("unix://{}#5001", uds.display()).parse().unwrap();
    assert!(wrong.connect().await.is_err());

    child.kill().unwrap();
    child.wait().unwrap();
    // The enclave's end closed: the NSM server sees the end of its connection.
    let done = tokio::time::timeout(Duration::from_secs(10), served).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn process_mode_refuses_an_nsm_on_the_file_system_and_the_old_flags() {
    let inputs = Inputs::new();
    let enclave = binary("cloister-enclave");
    let config = std::fs::read(inputs.path("enclave.toml")).unwrap();
    let config = cloister_enclave::config::Config::from_source(
        std::str::from_utf8(&config).unwrap(),
        inputs.dir.path(),
    )
    .unwrap()
    .to_toml()
    .unwrap();
    let (memfd, _, _) = launcher_fds(config.as_bytes());
    // An NSM reached through a named socket: refused.
    let path = inputs.dir.path().join("nsm.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let named = OwnedFd::from(std::os::unix::net::UnixStream::connect(&path).unwrap());
    let inheritable = nix::unistd::dup(&named).unwrap();
    let uds = inputs.dir.path().join("vm.vsock");
    let out = Command::new(&enclave)
        .args(["--config-fd", &memfd.as_raw_fd().to_string()])
        .args(["--nsm-fd", &inheritable.as_raw_fd().to_string()])
        .arg("--uds")
        .arg(&uds)
        .env_clear()
        .output()
        .unwrap();
    let (code, _, stderr) = outcome(&out);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cloister-enclave: fatal:"), "{stderr}");
    assert!(stderr.contains("socket pair"), "{stderr}");
    assert!(!uds.exists(), "it must not listen");
    // The flags that used to choose whom the enclave trusts are gone.
    for old in [
        &["--kms-ca", "/tmp/ca.pem"][..],
        &["--accept-key", KEY],
        &["--kms-endpoint", "evil:443"],
        &["--nsm", "unix:///tmp/nsm.sock"],
        &["--listen", "unix:///tmp/x"],
    ] {
        let (code, _, stderr) = outcome(&cloister_tests::run(&enclave, old));
        assert_eq!(code, 2, "{old:?}: {stderr}");
        assert!(stderr.contains("unexpected argument"), "{old:?}: {stderr}");
    }
}

/// The smallest file the builder takes for a static executable: a 64-bit ELF header with no
/// program headers, so no PT_INTERP (the images here are built and measured, never run).
fn static_elf_stub() -> Vec<u8> {
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf.extend_from_slice(b"fake enclave");
    elf
}
