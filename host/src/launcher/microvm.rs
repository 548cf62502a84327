//! microVM mode: vhost-device-vsock, the emulated NSM on its private socket, and QEMU booting
//! the measured image; then wait until the guest's jobs port answers, and supervise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cloister_nsm::emulator::Emulator;
use cloister_wire::Address;

use super::backend;
use super::image::{Image, Ports};
use super::qemu::{self, VmConfig};
use super::state::EnclaveDir;
use super::supervise::{self, Event, Signals};
use super::{Ended, RunArgs, Started};

/// Grace given to QEMU and the backend to exit on SIGTERM.
const GRACE: Duration = Duration::from_secs(3);

/// Boots `image` in a microVM; returns once the enclave is stopped or has died.
pub(crate) async fn run(
    args: &RunArgs,
    image: &Image,
    dir: &EnclaveDir,
    ports: Ports,
    nsm: Arc<Emulator>,
    signals: &mut Signals,
    started: impl FnOnce(Started) -> Result<()>,
) -> Result<Ended> {
    let private = dir.private();
    let parts = image.boot_parts()?;
    let accel = qemu::accel();
    // The NSM listens before anything can ask for it.
    let nsm_socket = private.join("nsm.sock");
    let nsm_task = super::nsm_service::listen(&nsm_socket, nsm).await?;
    dir.link_host_port(ports.nsm, &nsm_socket)?;
    if let Some(relay) = &args.kms_relay {
        dir.link_host_port(ports.relay, relay)?;
    }
    let vhost = private.join("vhost.sock");
    let t0 = Instant::now();
    let mut backend =
        backend::start(args.cid, &vhost, &dir.vsock(), &private.join("backend.log")).await?;
    let cfg = VmConfig {
        private: &private,
        vhost: &vhost,
        memory: args.memory,
        cpus: args.cpus,
        accel: &accel,
    };
    let mut vm = qemu::start(&cfg, &parts)?;
    let address = Address::Unix {
        path: dir.vsock(),
        port: Some(ports.jobs),
    };
    let ended = {
        let mut watched = vec![
            ("qemu", &mut vm),
            ("vhost-device-vsock", &mut backend.child),
        ];
        match supervise::ready(&address, signals, &mut watched).await {
            Ok(Event::Ready) => {
                started(Started {
                    mode: "microvm",
                    accel: Some(format!("{} ({})", accel.name, accel.reason)),
                    boot: t0.elapsed(),
                })?;
                supervise::running(signals, &mut watched).await
            }
            Ok(other) => other,
            Err(e) => {
                report_crash(&private);
                Err(e)?
            }
        }
    };
    nsm_task.abort();
    super::children::stop(&mut vm, GRACE).await;
    super::children::stop(&mut backend.child, GRACE).await;
    match ended {
        Event::Signal(s) => Ok(Ended::Signal(s)),
        Event::Exited(name, status) => {
            report_crash(&private);
            bail!("{name} exited ({status}) while the enclave was running")
        }
        Event::Ready => Ok(Ended::Signal("none")),
    }
}

/// Prints the tails of the console and of QEMU's own log.
fn report_crash(private: &std::path::Path) {
    for (what, path) in [
        ("console", qemu::console(private)),
        ("qemu", qemu::qemu_log(private)),
        ("vhost-device-vsock", private.join("backend.log")),
    ] {
        let tail = qemu::tail(&path, 20);
        if !tail.is_empty() {
            eprintln!("--- {what} (last lines)\n{tail}");
        }
    }
}
