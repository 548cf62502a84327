//! Process mode: the enclave as an ordinary process the launcher starts, with what the microVM
//! would have given it handed over as inherited descriptors.
//!
//! - the configuration: the image's configuration bytes, which the launcher took out of the
//!   measured image and wrote into a descriptor (a memfd, a pipe) the enclave inherits;
//! - the NSM: a connected stream socket the enclave inherits, one end of a socket pair. It must
//!   not be reachable on the file system: a socket with a name (a path or an abstract name) at
//!   either end is refused;
//! - vsock: emulated as vhost-device-vsock exposes a guest's vsock on the host, under one path
//!   `P`: the enclave listens on the hybrid address `unix://P#<jobs_port>` and reaches the relay
//!   at `unix://P_<relay_port>`.
//!
//! These choose transports and where bytes come from, never whom the enclave trusts: that is in
//! the configuration. Inherited descriptors are taken over without `unsafe`: `pidfd_getfd` on the
//! enclave's own pidfd duplicates one into an owned descriptor (close-on-exec), and the inherited number is then
//! closed.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use cloister_wire::Address;
use nix::sys::socket::{SockType, UnixAddr, getpeername, getsockname, getsockopt, sockopt};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

use crate::config::{Config, MAX_CONFIG_BYTES};
use crate::error::EnclaveError;

fn start_error(what: String) -> impl FnOnce(std::io::Error) -> EnclaveError {
    move |source| EnclaveError::Start { what, source }
}

/// Takes ownership of inherited descriptor `fd` (above stderr): an owned duplicate, with the
/// inherited number closed.
pub fn take_fd(fd: RawFd) -> Result<OwnedFd, EnclaveError> {
    let what = || format!("taking inherited descriptor {fd}");
    if fd <= 2 {
        return Err(start_error(what())(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "descriptors 0, 1 and 2 are standard input and output",
        )));
    }
    let me =
        pidfd_open(getpid(), PidfdFlags::empty()).map_err(|e| start_error(what())(e.into()))?;
    let owned = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty())
        .map_err(|e| start_error(what())(e.into()))?;
    nix::unistd::close(fd).map_err(|e| start_error(what())(e.into()))?;
    Ok(owned)
}

/// Reads the configuration from a descriptor: from its start if it is seekable (a memfd the
/// launcher wrote), else to its end (a pipe). At most [`MAX_CONFIG_BYTES`].
pub fn read_config(fd: OwnedFd) -> Result<Config, EnclaveError> {
    let what = || "reading the configuration descriptor".to_owned();
    let mut file = std::fs::File::from(fd);
    match file.seek(SeekFrom::Start(0)) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::ESPIPE) => {}
        Err(e) => return Err(start_error(what())(e)),
    }
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_CONFIG_BYTES + 1).unwrap_or(u64::MAX);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(start_error(what()))?;
    Config::from_bytes(&bytes)
}

fn unnamed(addr: &UnixAddr) -> bool {
    addr.is_unnamed()
}

/// Checks that `fd` is a connected stream socket with no name at either end (one end of a
/// socket pair) and makes it a stream for the NSM client.
pub fn nsm_socket(fd: OwnedFd) -> Result<std::os::unix::net::UnixStream, EnclaveError> {
    let refuse = |why: &str| {
        start_error("checking the NSM descriptor".to_owned())(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            why.to_owned(),
        ))
    };
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(_) => return Err(refuse("not a stream socket")),
        Err(_) => return Err(refuse("not a socket")),
    }
    let ours = getsockname::<UnixAddr>(fd.as_raw_fd()).map_err(|_| refuse("not a Unix socket"))?;
    let peer = getpeername::<UnixAddr>(fd.as_raw_fd())
        .map_err(|_| refuse("not a connected Unix socket"))?;
    if !unnamed(&ours) || !unnamed(&peer) {
        return Err(refuse(
            "the NSM socket has a name (a path or an abstract name); only a socket pair is accepted",
        ));
    }
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true).map_err(start_error(
        "setting the NSM socket non-blocking".to_owned(),
    ))?;
    Ok(stream)
}

/// Where jobs arrive in process mode: the hybrid address `unix://<uds>#<jobs_port>`.
pub fn jobs_address(uds: &Path, jobs_port: u32) -> Address {
    Address::Unix {
        path: uds.to_path_buf(),
        port: Some(jobs_port),
    }
}

/// Where the relay is in process mode: `unix://<uds>_<relay_port>`, as vhost-device-vsock
/// forwards a guest's connection to host port `relay_port`.
pub fn relay_address(uds: &Path, relay_port: u32) -> Address {
    let mut path = uds.as_os_str().to_owned();
    path.push(format!("_{relay_port}"));
    Address::Unix {
        path: path.into(),
        port: None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use cloister_common::ErrorCode;

    use super::*;

    #[test]
    fn addresses_follow_vhost_device_vsock() {
        let uds = Path::new("/run/cloister/vm.vsock");
        assert_eq!(
            jobs_address(uds, 5000).to_string(),
            "unix:///run/cloister/vm.vsock#5000"
        );
        assert_eq!(
            relay_address(uds, 8000).to_string(),
            "unix:///run/cloister/vm.vsock_8000"
        );
    }

    #[test]
    fn only_an_unnamed_stream_socket_is_an_nsm() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(nsm_socket(OwnedFd::from(a)).is_ok());
        let dir = std::env::temp_dir().join(format!("cloister-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nsm.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let named = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let e = nsm_socket(OwnedFd::from(named)).unwrap_err();
        assert_eq!(e.code(), "ENC-START");
        assert!(format!("{e:?}").contains("socket pair"), "{e:?}");
        drop(listener);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(nsm_socket(OwnedFd::from(file)).is_err());
        let (d1, _d2) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert!(nsm_socket(OwnedFd::from(d1)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configuration_from_a_written_file_and_from_a_pipe() {
        let dir = std::env::temp_dir().join(format!("cloister-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join("c"))
            .unwrap();
        f.write_all(b"nsm = \"tcp\"\n").unwrap();
        // The offset is at the end: the reader rewinds, so it sees the bytes and names the field.
        let e = read_config(OwnedFd::from(f)).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"nsm = 1").unwrap();
        drop(w);
        let e = read_config(r).unwrap_err();
        assert_eq!(e.code(), "ENC-CONFIG");
        assert!(take_fd(1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_inherited_descriptor_is_taken_over() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(r);
        let owned = take_fd(raw).unwrap();
        assert_ne!(owned.as_raw_fd(), raw);
        nix::unistd::write(&w, b"x").unwrap();
        drop(w);
        let mut s = String::new();
        std::fs::File::from(owned).read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
    }
}
