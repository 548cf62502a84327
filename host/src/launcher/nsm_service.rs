//! The emulated NSM of one enclave, served where only that enclave reaches it.
//!
//! - microVM: a Unix socket `private/nsm.sock` (0600, in the 0700 private folder), reached by
//!   vhost-device-vsock (which runs as the launcher's user) when the guest connects to host port
//!   `nsm_port`, through the `vm.vsock_<nsm_port>` symlink. Another user's connect is refused
//!   by the kernel (permission denied on the folder).
//! - process mode: one end of a socket pair the launcher hands the enclave; nothing on the file
//!   system.
//!
//! The emulator's PCRs come from the launcher's own measurement of the image it starts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cloister_nsm::emulator::Emulator;
use cloister_nsm::server::serve_connection;
use cloister_wire::Address;

/// A connection silent this long is closed (the enclave reconnects, or holds its pair).
const IDLE: Duration = Duration::from_secs(24 * 3600);

fn log(msg: &str) {
    eprintln!("cloister run: nsm: {msg}");
}

/// Listens on `socket` (0600) and serves every connection until the task is dropped.
pub(crate) async fn listen(
    socket: &Path,
    nsm: Arc<Emulator>,
) -> Result<tokio::task::JoinHandle<()>> {
    let address = Address::Unix {
        path: socket.to_path_buf(),
        port: None,
    };
    let listener = address.listen(0o600).await?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let nsm = nsm.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, nsm.as_ref(), IDLE).await {
                            log(&format!("connection ended: {}", cloister_common::chain(&e)));
                        }
                    });
                }
                Err(e) => log(&format!("accept: {e}")),
            }
        }
    }))
}

/// Serves the launcher's end of the enclave's socket pair until the enclave closes it.
pub(crate) fn serve_pair(
    ours: std::os::unix::net::UnixStream,
    nsm: Arc<Emulator>,
) -> Result<tokio::task::JoinHandle<()>> {
    ours.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(ours)?;
    Ok(tokio::spawn(async move {
        if let Err(e) = serve_connection(stream, nsm.as_ref(), IDLE).await {
            log(&format!(
                "the enclave's NSM connection ended: {}",
                cloister_common::chain(&e)
            ));
        }
    }))
}
