//! microVM mode: vhost-device-vsock, the emulated NSM on its private socket, and QEMU booting
//! the measured image; then wait until the guest's jobs port answers, and supervise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
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
/// TCG: how long one boot may take before it is taken for hung, and how many are tried.
const TCG_ATTEMPT: Duration = Duration::from_secs(40);
const TCG_ATTEMPTS: u32 = 5;

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
    qemu::write_boot_files(&private, &parts)?;
    let address = Address::Unix {
        path: dir.vsock(),
        port: Some(ports.jobs),
    };
    // Under TCG, Debian's kernel sometimes fails to calibrate its clock against QEMU 7.2's PIT
    // and hangs before /init (about one boot in three on a loaded machine). Nothing measured
    // changes between attempts, so a boot that has not answered in ATTEMPT is restarted.
    let (attempts, per_attempt) = if accel.name == "tcg" {
        (TCG_ATTEMPTS, TCG_ATTEMPT)
    } else {
        (1, supervise::READY_TIMEOUT)
    };
    let mut started = Some(started);
    let mut attempt = 1;
    let (ended, mut vm) = loop {
        let mut vm = qemu::start(&cfg, &parts.cmdline)?;
        let event = {
            let mut watched = vec![
                ("qemu", &mut vm),
                ("vhost-device-vsock", &mut backend.child),
            ];
            match supervise::ready(&address, per_attempt, signals, &mut watched).await {
                Event::Ready => {
                    backend::open_to_proxy(&dir.vsock())
                        .context("making vm.vsock connectable by the proxy's user")?;
                    if let Some(report) = started.take() {
                        report(Started {
                            mode: "microvm",
                            accel: Some(format!("{} ({})", accel.name, accel.reason)),
                            boot: t0.elapsed(),
                            attempts: attempt,
                        })?;
                    }
                    supervise::running(signals, &mut watched).await
                }
                other => other,
            }
        };
        if matches!(event, Event::TimedOut) && attempt < attempts {
            eprintln!(
                "cloister run: boot attempt {attempt} did not answer within {per_attempt:?}; \
                 restarting QEMU (console: {})",
                qemu::tail(&qemu::console(&private), 1)
            );
            super::children::stop(&mut vm, GRACE).await;
            attempt += 1;
            continue;
        }
        break (event, vm);
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
        Event::TimedOut => {
            report_crash(&private);
            bail!("the enclave's jobs port did not answer after {attempts} boot attempt(s)")
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
