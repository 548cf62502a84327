//! QEMU, as `shared/design/reference/qemu-vsock.md` runs it: `-M microvm` (ACPI on: the Debian
//! cloud kernel finds virtio-mmio through the DSDT; `pit=on`: with Debian's QEMU 7.2 under TCG
//! the PIT is otherwise absent and the kernel hangs calibrating its clock, with no HPET or PM
//! timer to fall back on), a memfd memory backend shared with the
//! vhost-user backend, `vhost-user-vsock-device`, serial console to a file, no display, no
//! monitor, no reboot. The kernel, the initrd (the image's ramdisks concatenated) and the
//! cmdline all come from the measured image.
//!
//! KVM is used only when it can boot a stock guest: `/dev/kvm` read-write, a CPU with VMX or
//! SVM, and not `kvm_pvm` (which runs a non-PVM guest through a slow, incomplete emulator: on
//! this project's machines it cannot boot the kernel). Otherwise TCG, and the launcher says why.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::process::Child;

use super::children;
use super::image::BootParts;

/// The accelerator, and why.
#[derive(Debug, Clone)]
pub(crate) struct Accel {
    /// `kvm` or `tcg`.
    pub(crate) name: &'static str,
    /// Why this one.
    pub(crate) reason: String,
}

/// Chooses KVM or TCG, cheaply (no trial boot).
pub(crate) fn accel() -> Accel {
    let tcg = |reason: &str| Accel {
        name: "tcg",
        reason: reason.to_owned(),
    };
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return tcg("/dev/kvm is not usable");
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return tcg("/dev/kvm is kvm_pvm, which cannot boot a stock guest kernel");
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw {
        return tcg("the CPU has no VMX/SVM");
    }
    Accel {
        name: "kvm",
        reason: "/dev/kvm with hardware virtualization".into(),
    }
}

/// What one VM gets.
#[derive(Debug)]
pub(crate) struct VmConfig<'a> {
    /// The launcher-only folder (kernel, initrd, logs).
    pub(crate) private: &'a Path,
    /// The backend's vhost-user socket.
    pub(crate) vhost: &'a Path,
    /// Memory, MiB.
    pub(crate) memory: u32,
    /// vCPUs.
    pub(crate) cpus: u32,
    /// The accelerator.
    pub(crate) accel: &'a Accel,
}

/// The console log's path.
pub(crate) fn console(private: &Path) -> PathBuf {
    private.join(super::state::CONSOLE)
}

/// QEMU's own messages.
pub(crate) fn qemu_log(private: &Path) -> PathBuf {
    private.join("qemu.log")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Writes the kernel and initrd (from the measured image) into the private folder.
pub(crate) fn write_boot_files(private: &Path, parts: &BootParts) -> Result<()> {
    write_private(&private.join("vmlinuz"), &parts.kernel)?;
    write_private(&private.join("initrd"), &parts.initrd)
}

/// Starts QEMU on the files [`write_boot_files`] wrote, with the image's cmdline.
pub(crate) fn start(cfg: &VmConfig<'_>, cmdline: &str) -> Result<Child> {
    let kernel = cfg.private.join("vmlinuz");
    let initrd = cfg.private.join("initrd");
    let program = children::find_program("qemu-system-x86_64")?;
    let mem = format!("{}M", cfg.memory);
    let mut args: Vec<OsString> = Vec::new();
    let mut arg = |a: &str| args.push(OsString::from(a));
    for a in [
        "-M",
        "microvm,memory-backend=mem,pit=on",
        "-accel",
        cfg.accel.name,
        "-cpu",
        if cfg.accel.name == "kvm" {
            "host"
        } else {
            "max"
        },
        "-smp",
        &cfg.cpus.to_string(),
        "-m",
        &mem,
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
        "-kernel",
        &kernel.to_string_lossy(),
        "-initrd",
        &initrd.to_string_lossy(),
        "-append",
        cmdline,
        "-display",
        "none",
        "-serial",
        &format!("file:{}", console(cfg.private).display()),
        "-monitor",
        "none",
        "-no-reboot",
        "-chardev",
        &format!("socket,id=vsock,path={}", cfg.vhost.display()),
        "-device",
        "vhost-user-vsock-device,chardev=vsock",
    ] {
        arg(a);
    }
    children::spawn(
        &program,
        "qemu-system-x86_64",
        &args,
        false,
        &[],
        &qemu_log(cfg.private),
    )
}

/// The last `lines` lines of a file (empty if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
