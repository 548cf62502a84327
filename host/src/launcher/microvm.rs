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
/// TCG: how long one boot may take to reach the enclave's init before it is taken for hung,
/// and how many are tried. (A longer wait does not help: a kernel that failed to calibrate
/// its TSC against the PIT never gets there. In a trial with two CPU hogs and two VMs on a
/// 2-core machine, every boot stopped right after "tsc: Unable to calibrate against PIT".)
const TCG_ATTEMPT: Duration = Duration::from_secs(40);
const TCG_ATTEMPTS: u32 = 5;
/// How much longer a boot that has reached the enclave's init (it wrote to the console: the
/// known hang is earlier, in the kernel) may take to answer before it is restarted.
const PAST_INIT_GRACE: Duration = Duration::from_secs(60);

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
    // changes between attempts, so a boot that has not answered in its time and has not reached
    // the enclave's init is restarted; one that has reached init is slow, not hung, and is
    // given PAST_INIT_GRACE more.
    let tcg = accel.name == "tcg";
    let attempts = if tcg { TCG_ATTEMPTS } else { 1 };
    let mut started = Some(started);
    let mut attempt = 1;
    let (ended, mut vm) = loop {
        let per_attempt = if tcg {
            TCG_ATTEMPT
        } else {
            supervise::READY_TIMEOUT
        };
        let mut vm = qemu::start(&cfg, &parts.cmdline)?;
        let event = {
            let mut watched = vec![
                ("qemu", &mut vm),
                ("vhost-device-vsock", &mut backend.child),
            ];
            let mut event = supervise::ready(&address, per_attempt, signals, &mut watched).await;
            if tcg && matches!(event, Event::TimedOut) && reached_init(&private) {
                eprintln!(
                    "cloister run: boot attempt {attempt} has not answered within \
                     {per_attempt:?} but has reached the enclave's init (console: {}); \
                     waiting up to {PAST_INIT_GRACE:?} more",
                    qemu::tail(&qemu::console(&private), 1)
                );
                event = supervise::ready(&address, PAST_INIT_GRACE, signals, &mut watched).await;
            }
            match event {
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

/// Whether this boot's console (QEMU truncates it at every start) shows the enclave's init
/// running: the kernel is quiet (its measured cmdline), so its first lines are the enclave's.
fn reached_init(private: &std::path::Path) -> bool {
    std::fs::read(qemu::console(private))
        .is_ok_and(|c| c.windows(INIT_MARK.len()).any(|w| w == INIT_MARK))
}

/// How the enclave's own console lines begin.
const INIT_MARK: &[u8] = b"cloister-enclave:";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_has_reached_init_once_the_enclave_wrote_to_its_console() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!reached_init(dir.path()), "no console yet");
        let console = qemu::console(dir.path());
        std::fs::write(&console, b"").unwrap();
        assert!(!reached_init(dir.path()), "an empty console");
        std::fs::write(&console, b"[    0.0] a kernel warning\r\n").unwrap();
        assert!(!reached_init(dir.path()), "only the kernel");
        std::fs::write(
            &console,
            b"[    0.0] a kernel warning\r\ncloister-enclave: loaded 3 kernel modules\r\n",
        )
        .unwrap();
        assert!(reached_init(dir.path()));
    }
}
