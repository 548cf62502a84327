//! The launcher's state directory: one folder per enclave, laid out so that the proxy's user
//! reaches the enclave's job port and its own relay, and only the launcher's user reaches the
//! emulated NSM.
//!
//! ```text
//! <state>/                       0755, the launcher's user (default /run/cloister as root,
//!                                $XDG_RUNTIME_DIR/cloister otherwise)
//! <state>/dev-pki/               0700, the emulated NSM's dev PKI (default --dev-pki)
//! <state>/<id>/                  0755, the launcher's user
//!   enclave.json                 0644: id, mode, cid, launcher pid, PCRs, addresses (for `ps`)
//!   vm.vsock                     the enclave's hybrid-vsock socket (microVM: vhost-device-vsock's;
//!                                process mode: the enclave's own listener), made 0666 once it
//!                                exists so the proxy's user can connect (the folder is 0755)
//!   vm.vsock_<relay_port>  ->    the proxy's relay listener (--kms-relay), in the proxy's own dir
//!   vm.vsock_<nsm_port>    ->    private/nsm.sock (microVM only)
//!   private/                     0700, the launcher's user only
//!     nsm.sock                   0600, the emulated NSM (microVM only; process mode has none)
//!     vhost.sock, vmlinuz, initrd, console.log, qemu.log
//! ```
//!
//! The enclave's folder is removed when its launcher ends ([`EnclaveDir`] does it on drop).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The file `ps` reads in each enclave's folder.
pub(crate) const INFO_FILE: &str = "enclave.json";
/// The hybrid-vsock socket's name in an enclave's folder.
pub(crate) const VSOCK: &str = "vm.vsock";
/// The launcher-only folder's name.
pub(crate) const PRIVATE: &str = "private";
/// The console log's name in the private folder.
pub(crate) const CONSOLE: &str = "console.log";

/// The state directory: the flag, or the default for this user.
pub(crate) fn root(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/run/cloister"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("cloister")),
        _ => bail!("not root and XDG_RUNTIME_DIR is not set: give --state-dir"),
    }
}

/// Refuses a directory that someone other than root and this user could replace: every ancestor
/// must be owned by root or this user, and one that others may write must be sticky (as `/tmp`
/// is), so nobody else can rename or swap what the launcher creates below it by path.
pub(crate) fn safe_ancestors(dir: &Path) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let absolute =
        std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    for a in absolute.ancestors().skip(1) {
        let meta = std::fs::metadata(a).with_context(|| format!("reading {}", a.display()))?;
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if (meta.uid() != 0 && meta.uid() != me) || (mode & 0o022 != 0 && !sticky) {
            bail!(
                "{} is writable or owned by another user (uid {}, mode {:o}): whoever controls it \
                 could swap the enclave's state directory; choose a --state-dir under a directory \
                 only root or this user can change",
                a.display(),
                meta.uid(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

/// Creates `dir` with `mode`, or checks that an existing one is this user's, and sets `mode`.
pub(crate) fn own_dir(dir: &Path, mode: u32) -> Result<()> {
    safe_ancestors(dir)?;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
                bail!(
                    "{} exists and is not a directory of this user",
                    dir.display()
                );
            }
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// What `ps` shows of one enclave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Info {
    /// The enclave id (`enc` and 16 hex digits).
    pub(crate) id: String,
    /// `microvm` or `process`.
    pub(crate) mode: String,
    /// The guest's CID (microVM; 0 in process mode).
    pub(crate) cid: u32,
    /// The launcher's pid.
    pub(crate) pid: u32,
    /// The emulated NSM's module id.
    pub(crate) module_id: String,
    /// PCR0 as the documents carry it.
    pub(crate) pcr0: String,
    /// The proxy's `--enclave` address.
    pub(crate) enclave: String,
    /// Where the enclave reaches the relay (a symlink to the proxy's listener), if any.
    pub(crate) relay: Option<String>,
}

/// One enclave's folder; removed on drop.
#[derive(Debug)]
pub(crate) struct EnclaveDir {
    path: PathBuf,
}

impl EnclaveDir {
    /// Creates `<root>/<id>/` (0755) and `<root>/<id>/private/` (0700).
    pub(crate) fn create(root: &Path, id: &str) -> Result<Self> {
        own_dir(root, 0o755)?;
        let path = root.join(id);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let dir = Self { path };
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755))?;
        let private = dir.private();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .with_context(|| format!("creating {}", private.display()))?;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }

    /// The launcher-only folder.
    pub(crate) fn private(&self) -> PathBuf {
        self.path.join(PRIVATE)
    }

    /// The hybrid-vsock socket.
    pub(crate) fn vsock(&self) -> PathBuf {
        self.path.join(VSOCK)
    }

    /// `vm.vsock_<port>`, where the guest's connections to host port `port` go.
    pub(crate) fn host_port(&self, port: u32) -> PathBuf {
        self.path.join(format!("{VSOCK}_{port}"))
    }

    /// Points `vm.vsock_<port>` at `target` (made absolute: a relative link would resolve from
    /// the enclave's folder).
    pub(crate) fn link_host_port(&self, port: u32, target: &Path) -> Result<()> {
        let link = self.host_port(port);
        let target = std::path::absolute(target)
            .with_context(|| format!("resolving {}", target.display()))?;
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))
    }

    /// Writes `enclave.json` (0644).
    pub(crate) fn publish(&self, info: &Info) -> Result<()> {
        let json = serde_json::to_vec_pretty(info)?;
        let path = self.path.join(INFO_FILE);
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    }
}

impl Drop for EnclaveDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!(
                "cloister run: could not remove {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Whether process `pid` runs (signal 0, EPERM meaning another user's; a zombie is not running).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    };
    // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

/// The enclaves in `root` whose launcher is alive.
pub(crate) fn list(root: &Path) -> Result<Vec<Info>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(bytes) = std::fs::read(entry.path().join(INFO_FILE)) else {
            continue;
        };
        if let Ok(info) = serde_json::from_slice::<Info>(&bytes)
            && alive(info.pid)
        {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One enclave by id (its launcher alive).
pub(crate) fn find(root: &Path, id: &str) -> Result<Info> {
    list(root)?
        .into_iter()
        .find(|i| i.id == id)
        .with_context(|| format!("no running enclave {id} in {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_under_a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            safe_ancestors(&dir.path().join("state")).is_ok(),
            "/tmp is sticky"
        );
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = safe_ancestors(&open.join("state")).unwrap_err();
        assert!(err.to_string().contains("mode 777"), "{err}");
        assert!(own_dir(&open.join("state"), 0o755).is_err());
        assert!(!open.join("state").exists(), "nothing is created under it");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            safe_ancestors(&open.join("state")).is_ok(),
            "sticky, as /tmp"
        );
    }
}
