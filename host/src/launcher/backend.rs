//! The guest's vsock on the host: `vhost-device-vsock` (rust-vmm, 0.3.0, installed by
//! `qemu/setup`), one per enclave, run as the launcher's user.
//!
//! It is the vhost-user server QEMU connects to (`private/vhost.sock`), and maps the guest's
//! vsock to Unix sockets: host -> guest is `connect(vm.vsock)` + `CONNECT <port>\n`; the guest's
//! connection to host port P goes to `vm.vsock_P`, which the launcher has made a symlink (relay,
//! NSM) or left absent (refused). The host never uses AF_VSOCK (the machine's own vsock belongs
//! to its outer hypervisor).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::process::Child;

use super::children;

/// How long the backend may take to create its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running backend.
#[derive(Debug)]
pub(crate) struct Backend {
    /// The process.
    pub(crate) child: Child,
}

/// Starts the backend for guest `cid`, waits for both sockets, and makes `uds` connectable by
/// every user (0666: the proxy runs as another user; the folder is 0755 and the launcher's).
pub(crate) async fn start(cid: u32, vhost: &Path, uds: &Path, log: &Path) -> Result<Backend> {
    let program = children::find_program("vhost-device-vsock")?;
    let vm = format!(
        "guest-cid={cid},socket={},uds-path={}",
        vhost.display(),
        uds.display()
    );
    let mut child = children::spawn(
        &program,
        "vhost-device-vsock",
        &[OsString::from("--vm"), OsString::from(vm)],
        false,
        &[],
        log,
    )?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !(vhost.exists() && uds.exists()) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "vhost-device-vsock exited at start ({status}); see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            children::stop(&mut child, Duration::from_secs(1)).await;
            bail!("vhost-device-vsock did not create its sockets within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open_to_proxy(uds)?;
    Ok(Backend { child })
}

/// Makes `uds` connectable by every user (the proxy runs as another). vhost-device-vsock binds
/// `uds` anew (with the umask's mode) each time a VM connects to it, so a QEMU restarted after
/// a boot attempt that did not answer leaves a socket the proxy cannot reach: the launcher calls
/// this again once the guest answered.
pub(crate) fn open_to_proxy(uds: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(uds, std::fs::Permissions::from_mode(0o666))
}
