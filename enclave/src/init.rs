//! PID 1 of the microVM: what the enclave does before it serves jobs, and how it stops.
//!
//! The kernel runs `/init` (this binary) from the bootstrap ramdisk with no file system mounted
//! and only `/dev/console` open. [`prepare`] mounts devtmpfs on `/dev`, proc on `/proc` and sysfs
//! on `/sys`, loads the kernel modules the image lists (`/etc/cloister/modules`, in order, with
//! `finit_module`; one already loaded is fine) and reads the image's configuration
//! (`/etc/cloister/enclave.toml`). Arguments and environment the kernel passes on are ignored.
//! On a fatal error [`power_off`] says so on the console and powers the VM off, rather than
//! letting PID 1 exit (a kernel panic).

use std::path::{Path, PathBuf};

use cloister_eif::layout;
use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};

use crate::config::Config;
use crate::error::EnclaveError;

/// Whether this process is PID 1 (the microVM's init).
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// An absolute path of the image's layout.
pub fn image_path(relative: &str) -> PathBuf {
    Path::new("/").join(relative)
}

fn start_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EnclaveError {
    let what = what.into();
    move |source| EnclaveError::Start { what, source }
}

fn errno(what: impl Into<String>) -> impl FnOnce(Errno) -> EnclaveError {
    let f = start_error(what);
    move |e| f(std::io::Error::from(e))
}

/// Mounts devtmpfs, proc and sysfs (each over an existing directory; one already mounted is
/// left as it is).
pub fn mount_filesystems() -> Result<(), EnclaveError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    for (fs, target) in [("devtmpfs", "/dev"), ("proc", "/proc"), ("sysfs", "/sys")] {
        std::fs::create_dir_all(target).map_err(start_error(format!("creating {target}")))?;
        match mount(Some(fs), target, Some(fs), flags, None::<&str>) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => return Err(errno(format!("mounting {fs} on {target}"))(e)),
        }
    }
    Ok(())
}

/// The module file names of a module list: one per line, blank lines skipped; a name with a
/// `/` or starting with `.` is refused.
pub fn parse_module_list(text: &str) -> Result<Vec<String>, EnclaveError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|name| {
            if name.contains('/') || name.starts_with('.') {
                Err(EnclaveError::Config(format!(
                    "module list: {name:?} is not a file name"
                )))
            } else {
                Ok(name.to_owned())
            }
        })
        .collect()
}

/// Loads the modules named in `list` from `dir`, in order; a module already loaded (EEXIST) is
/// fine. Returns their names.
pub fn load_modules(list: &Path, dir: &Path) -> Result<Vec<String>, EnclaveError> {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(start_error(format!("reading {}", list.display()))(e)),
    };
    let names = parse_module_list(&text)?;
    for name in &names {
        let path = dir.join(name);
        let file = std::fs::File::open(&path)
            .map_err(start_error(format!("opening {}", path.display())))?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(errno(format!("loading module {name}"))(e)),
        }
    }
    Ok(names)
}

/// Reads and checks the image's configuration.
pub fn read_config(path: &Path) -> Result<Config, EnclaveError> {
    let bytes = std::fs::read(path).map_err(start_error(format!("reading {}", path.display())))?;
    Config::from_bytes(&bytes)
}

/// Everything PID 1 does before serving: mounts, modules, configuration.
pub fn prepare() -> Result<Config, EnclaveError> {
    mount_filesystems()?;
    let modules = load_modules(
        &image_path(layout::MODULES_LIST),
        &image_path(layout::MODULES_DIR),
    )?;
    eprintln!("cloister-enclave: loaded {} kernel modules", modules.len());
    read_config(&image_path(layout::CONFIG))
}

/// Says why on the console and powers the VM off. PID 1 never returns from here: should the
/// power-off itself fail, it waits forever (exiting would panic the kernel).
pub fn power_off(reason: &str) -> ! {
    eprintln!("cloister-enclave: fatal: {reason}");
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    eprintln!("cloister-enclave: power-off failed: {e}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    #[test]
    fn module_lists_are_file_names_in_order() {
        let names = parse_module_list("virtio_ring.ko\n\n  virtio.ko \nvsock.ko\n").unwrap();
        assert_eq!(names, ["virtio_ring.ko", "virtio.ko", "vsock.ko"]);
        for bad in ["../etc/x.ko", "/lib/x.ko", ".hidden"] {
            assert_eq!(parse_module_list(bad).unwrap_err().code(), "ENC-CONFIG");
        }
    }

    #[test]
    fn no_module_list_loads_nothing_and_a_missing_module_is_a_start_error() {
        let dir = std::env::temp_dir().join(format!("cloister-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load_modules(&dir.join("none"), &dir).unwrap().is_empty());
        std::fs::write(dir.join("list"), "absent.ko\n").unwrap();
        let e = load_modules(&dir.join("list"), &dir).unwrap_err();
        assert_eq!(e.code(), "ENC-START");
        assert!(e.to_string().contains("absent.ko"), "{e}");
        let e = read_config(&dir.join("none.toml")).unwrap_err();
        assert_eq!(e.code(), "ENC-START");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
