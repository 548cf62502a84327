//! Process mode: the enclave binary the launcher measured, run as a process on this machine.
//!
//! - `/init` and `/etc/cloister/enclave.toml` are taken from the EIF bytes already in memory
//!   (measured into PCR0/1/2), never from a path;
//! - the binary goes into a sealed memfd and is executed through `/proc/<launcher>/fd/<n>` with
//!   an **empty environment**: what runs is what was hashed;
//! - the configuration goes into another sealed memfd, inherited as fd N (`--config-fd N`);
//! - the NSM is one end of a socket pair, inherited as fd M (`--nsm-fd M`); the launcher serves
//!   the other end with the emulator. There is no NSM socket on the file system at all;
//! - the enclave listens on the hybrid address `unix://<id>/vm.vsock#<jobs_port>` and reaches
//!   the relay at `<id>/vm.vsock_<relay_port>`, the addresses a microVM has, so the proxy is
//!   driven the same way in both modes.
//!
//! Inheritance without `pre_exec` (which is `unsafe`): the two fds are made inheritable (no
//! `FD_CLOEXEC`) just for the spawn, from the launcher's single thread, and closed in the
//! launcher right after; their numbers are passed as arguments.

use std::ffi::OsString;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cloister_nsm::emulator::Emulator;
use cloister_wire::Address;
use nix::fcntl::{FcntlArg, FdFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::children;
use super::image::{EnclaveFiles, Ports};
use super::state::EnclaveDir;
use super::supervise::{self, Event, Signals};
use super::{Ended, RunArgs, Started};

/// Grace given to the enclave to exit on SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

/// A sealed memfd holding `bytes`, at offset 0.
fn sealed_memfd(name: &str, bytes: &[u8]) -> Result<std::fs::File> {
    let fd: OwnedFd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .with_context(|| format!("memfd_create {name}"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.seek(SeekFrom::Start(0))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(f.as_fd(), FcntlArg::F_ADD_SEALS(seals)).context("sealing a memfd")?;
    Ok(f)
}

fn inheritable(fd: impl AsFd) -> Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).context("clearing FD_CLOEXEC")?;
    Ok(())
}

/// Runs the enclave process; returns once it is stopped or has died.
pub(crate) async fn run(
    args: &RunArgs,
    files: &EnclaveFiles,
    dir: &EnclaveDir,
    ports: Ports,
    nsm: Arc<Emulator>,
    signals: &mut Signals,
    started: impl FnOnce(Started) -> Result<()>,
) -> Result<Ended> {
    if let Some(relay) = &args.kms_relay {
        dir.link_host_port(ports.relay, relay)?;
    }
    let binary = sealed_memfd("cloister-enclave", &files.init)?;
    let config = sealed_memfd("enclave.toml", &files.config)?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let program = format!("/proc/{}/fd/{}", std::process::id(), binary.as_raw_fd());
    let enclave_args: Vec<OsString> = vec![
        "--config-fd".into(),
        config.as_raw_fd().to_string().into(),
        "--nsm-fd".into(),
        theirs.as_raw_fd().to_string().into(),
        "--uds".into(),
        dir.vsock().into_os_string(),
    ];
    inheritable(&config)?;
    inheritable(&theirs)?;
    let t0 = Instant::now();
    let console = dir.private().join(super::state::CONSOLE);
    let spawned = children::spawn(
        std::path::Path::new(&program),
        "cloister-enclave",
        &enclave_args,
        true,
        &[config.as_raw_fd(), theirs.as_raw_fd()],
        &console,
    );
    // The child has its copies (or failed): the launcher keeps none.
    drop(theirs);
    drop(config);
    // The binary's memfd stays open while the enclave runs: the shim execs it by path.
    let mut enclave = spawned?;
    let nsm_task = super::nsm_service::serve_pair(ours, nsm)?;
    let address = Address::Unix {
        path: dir.vsock(),
        port: Some(ports.jobs),
    };
    let ended = {
        let mut watched = vec![("cloister-enclave", &mut enclave)];
        match supervise::ready(&address, supervise::READY_TIMEOUT, signals, &mut watched).await {
            Event::Ready => {
                // The enclave made its listener for its own user; the proxy runs as another.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.vsock(), std::fs::Permissions::from_mode(0o666))
                    .context("making vm.vsock connectable by the proxy's user")?;
                started(Started {
                    mode: "process",
                    accel: None,
                    boot: t0.elapsed(),
                    attempts: 1,
                })?;
                supervise::running(signals, &mut watched).await
            }
            other => other,
        }
    };
    nsm_task.abort();
    children::stop(&mut enclave, GRACE).await;
    drop(binary);
    match ended {
        Event::Signal(s) => Ok(Ended::Signal(s)),
        Event::Exited(name, status) => {
            let tail = super::qemu::tail(&console, 20);
            bail!(
                "{name} exited ({status}) while the enclave was running\n--- console (last lines)\n{tail}"
            )
        }
        Event::TimedOut => {
            let tail = super::qemu::tail(&console, 20);
            bail!(
                "the enclave did not answer on its jobs port within {:?}\n--- console (last lines)\n{tail}",
                supervise::READY_TIMEOUT
            )
        }
        Event::Ready => Ok(Ended::Signal("none")),
    }
}
