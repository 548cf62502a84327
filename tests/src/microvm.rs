//! Images for the launcher's tests and the boot benchmark, built from this checkout: the kernel
//! `qemu/fetch-kernel` caches, and `cloister-vinit` (a minimal PID 1 that loads the vsock
//! modules and echoes on vsock port 5000) built as a static binary.
//!
//! The image has cloister's layout (`cloister_eif::layout`): a bootstrap ramdisk with `/init`,
//! `/dev/console`, `/lib/modules/*.ko` and `/etc/cloister/modules`, and an application ramdisk
//! with `/etc/cloister/enclave.toml`. Like the rest of this crate it panics on a
//! broken environment: it only ever runs inside tests and benchmarks.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_eif::layout;
use cloister_eif::{Image, Pcrs, Ramdisk};

use crate::workspace;

/// The kernel command line of the test images (the reference recipe's).
pub const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

/// The test images' disclosure policy unless a test gives its own: stats only, grouped by
/// `country`, aggregating `amount`, `age` and `charge`, k = 5.
pub const STATS_POLICY: &str = r#"[operations]
max_jobs = 4
[operations.stats]
group_by = ["country"]
aggregate = ["amount", "age", "charge"]
emit = ["count", "sum", "mean"]
min_group_size = 5
small_groups = "other"
max_groups = 1000
budget = { jobs = 1000, window_secs = 3600 }
"#;

/// An enclave configuration (the image's form) for a KMS at `endpoint` with CA `ca_pem`,
/// accepting `key`, with cloister's default ports (jobs 5000, relay 8000, NSM 9000) and
/// [`STATS_POLICY`].
pub fn config(endpoint: &str, ca_pem: &str, key: &str) -> String {
    template(
        endpoint,
        &format!(r#"ca_pem = """{ca_pem}""""#),
        key,
        STATS_POLICY,
    )
}

/// The same configuration in the builder's form, naming the CA's file (`build-image` inlines
/// it, relative to the configuration's directory).
pub fn config_with_ca_file(endpoint: &str, ca_file: &str, key: &str) -> String {
    config_with_operations(endpoint, ca_file, key, STATS_POLICY)
}

/// The builder's form with the CA's file and `operations` (an `[operations]` table, as TOML).
pub fn config_with_operations(
    endpoint: &str,
    ca_file: &str,
    key: &str,
    operations: &str,
) -> String {
    template(
        endpoint,
        &format!(r#"ca_file = "{ca_file}""#),
        key,
        operations,
    )
}

fn template(endpoint: &str, ca: &str, key: &str, operations: &str) -> String {
    format!(
        r#"nsm = "vsock"
[kms]
endpoint = "{endpoint}"
server_name = "localhost"
{ca}
accepted_keys = ["{key}"]
[cache]
max_age_secs = 300
max_uses = 10000
[vsock]
jobs_port = 5000
relay_port = 8000
nsm_port = 9000
{operations}"#
    )
}

/// A placeholder configuration, for images that never reach a KMS (`cloister-vinit`).
pub fn placeholder_config() -> String {
    let ca = std::fs::read_to_string(crate::testdata("nitro/aws_nitro_enclaves_root_g1.pem"))
        .expect("the AWS root in testdata");
    config(
        "127.0.0.1:1",
        &ca,
        "arn:aws:kms:us-east-1:111122223333:key/placeholder",
    )
}

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

/// The two ramdisks of an image whose `/init` is `init` (cloister's layout).
pub fn ramdisks(init: &Path, kernel: &Kernel, config: &str) -> Vec<Ramdisk> {
    let modules: Vec<(String, Vec<u8>)> = kernel
        .modules
        .iter()
        .map(|m| {
            let name = m.file_name().and_then(|n| n.to_str()).expect("module name");
            (name.to_owned(), read(m))
        })
        .collect();
    vec![
        layout::bootstrap_ramdisk(read(init), &modules).expect("bootstrap ramdisk"),
        layout::application_ramdisk(config.as_bytes().to_vec()).expect("application ramdisk"),
    ]
}

/// Writes an EIF (kernel, `/init` = `init`, `config`) to `out`; returns its PCRs.
pub fn image(out: &Path, init: &Path, kernel: &Kernel, config: &str) -> Pcrs {
    let image = Image::new(
        read(&kernel.vmlinuz),
        CMDLINE,
        ramdisks(init, kernel, config),
    );
    let (bytes, pcrs) = image.build().expect("building the EIF");
    std::fs::write(out, bytes).expect("writing the EIF");
    pcrs
}

/// Writes the `cloister-vinit` image to `out`: kernel, vinit as `/init`, the modules.
pub fn vinit_image(out: &Path) -> Pcrs {
    image(out, &vinit(), &kernel(), &placeholder_config())
}
