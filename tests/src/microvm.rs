//! Images for the launcher's tests and the boot benchmark, built from this checkout: the kernel
//! `qemu/fetch-kernel` caches, and `cloister-vinit` (a minimal PID 1 that loads the vsock
//! modules and echoes on vsock port 5000) built as a static binary.
//!
//! The image has cloister's layout: a bootstrap ramdisk with `/init`, `/dev/console`,
//! `/lib/modules/*.ko` and `/etc/cloister/modules` (one module path a line, in load order), and an
//! app ramdisk with `/etc/cloister/enclave.toml`. Like the rest of this crate it panics on a
//! broken environment: it only ever runs inside tests and benchmarks.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_eif::cpio::Entry;
use cloister_eif::{Image, Pcrs, Ramdisk};

use crate::workspace;

/// The kernel command line of the test images (the reference recipe's).
pub const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

/// The enclave configuration's vsock section, as cloister's images carry it.
pub const CONFIG: &str = "[vsock]\njobs_port = 5000\nrelay_port = 8000\nnsm_port = 9000\n";

/// The guest kernel and the vsock modules, in load order.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// bzImage.
    pub vmlinuz: PathBuf,
    /// Module files, in load order.
    pub modules: Vec<PathBuf>,
}

/// Runs `qemu/fetch-kernel` (quick once cached) and reads its answer.
pub fn kernel() -> Kernel {
    let out = Command::new(workspace().join("qemu/fetch-kernel"))
        .output()
        .expect("running qemu/fetch-kernel");
    assert!(
        out.status.success(),
        "qemu/fetch-kernel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut vmlinuz = None;
    let mut modules = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["vmlinuz", path] => vmlinuz = Some(PathBuf::from(path)),
            ["module", _, path] => modules.push(PathBuf::from(path)),
            _ => {}
        }
    }
    Kernel {
        vmlinuz: vmlinuz.expect("fetch-kernel printed no vmlinuz"),
        modules,
    }
}

/// Builds `cloister-vinit` as a static binary (release, glibc with crt-static) and returns it.
pub fn vinit() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = "x86_64-unknown-linux-gnu";
    let status = Command::new(cargo)
        .current_dir(workspace())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "cloister-vinit",
            "--target",
            target,
        ])
        .status()
        .expect("running cargo");
    assert!(status.success(), "building cloister-vinit failed");
    workspace()
        .join("target")
        .join(target)
        .join("release/cloister-vinit")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The two ramdisks of an image whose `/init` is `init`.
pub fn ramdisks(init: &Path, kernel: &Kernel, config: &str) -> Vec<Ramdisk> {
    let mut boot = vec![
        Entry::file("init", 0o755, read(init)),
        Entry::char_device("dev/console", 0o600, 5, 1),
    ];
    let mut list = String::new();
    for m in &kernel.modules {
        let name = m.file_name().and_then(|n| n.to_str()).expect("module name");
        boot.push(Entry::file(format!("lib/modules/{name}"), 0o644, read(m)));
        list.push_str(&format!("/lib/modules/{name}\n"));
    }
    boot.push(Entry::file("etc/cloister/modules", 0o644, list));
    let app = vec![Entry::file("etc/cloister/enclave.toml", 0o644, config)];
    vec![
        Ramdisk::from_entries(&boot).expect("bootstrap ramdisk"),
        Ramdisk::from_entries(&app).expect("app ramdisk"),
    ]
}

/// Writes an EIF whose `/init` is `init` to `out`; returns its PCRs.
pub fn image(out: &Path, init: &Path, kernel: &Kernel) -> Pcrs {
    let image = Image::new(
        read(&kernel.vmlinuz),
        CMDLINE,
        ramdisks(init, kernel, CONFIG),
    );
    let (bytes, pcrs) = image.build().expect("building the EIF");
    std::fs::write(out, bytes).expect("writing the EIF");
    pcrs
}

/// Writes the `cloister-vinit` image to `out`: kernel, vinit as `/init`, the modules.
pub fn vinit_image(out: &Path) -> Pcrs {
    image(out, &vinit(), &kernel())
}
