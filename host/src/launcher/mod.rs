//! The launcher: `cloister run`, `ps`, `stop` and `console`. It plays the hypervisor of one
//! enclave: it measures the image it starts, runs that enclave's emulated NSM from the
//! measurement, and starts the enclave (a QEMU microVM, or a process), so that what runs is what
//! was measured and only the enclave reaches its NSM (see "What the measurement covers" and
//! "Trust in emulation" in the architecture note).
//!
//! - [`state`]: the state directory and each enclave's folder (who may reach what);
//! - [`image`]: the EIF read once into memory, measured, and cut into what gets booted;
//! - [`nsm_service`]: the emulated NSM on a private socket (microVM) or a socket pair (process);
//! - [`backend`] and [`qemu`]: vhost-device-vsock and the microVM; [`microvm`] runs them;
//! - [`process`]: the enclave binary from the image, run from a sealed memfd;
//! - [`children`]: every child dies with the launcher (`PR_SET_PDEATHSIG` via `cloister __spawn`)
//!   and is reaped; [`supervise`]: readiness, signals, a child's end.

mod backend;
pub(crate) mod children;
mod image;
mod microvm;
mod nsm_service;
mod process;
mod qemu;
mod state;
mod supervise;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cloister_attestation::Timestamp;
use cloister_attestation::dev_signer::DevPki;
use cloister_nsm::emulator::Emulator;

use crate::measure::{ImagePcrs, boot_pcrs};

/// `cloister run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The enclave image (EIF) to measure and start.
    #[arg(long)]
    eif: PathBuf,
    /// The guest's vsock context id (microVM).
    #[arg(long, default_value_t = 16)]
    cid: u32,
    /// Guest memory, MiB (microVM).
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Guest vCPUs (microVM).
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// A debug enclave: its PCRs 0/1/2/8 are all zero, as Nitro reports a debug-mode enclave.
    #[arg(long)]
    debug_console: bool,
    /// The parent's IAM role ARN (PCR3).
    #[arg(long)]
    parent_role: Option<String>,
    /// The parent's instance id (PCR4, and the module id's prefix).
    #[arg(long)]
    parent_instance_id: Option<String>,
    /// The proxy's KMS relay listener (a Unix socket path): the enclave reaches it as host port
    /// relay_port.
    #[arg(long)]
    kms_relay: Option<PathBuf>,
    /// Process mode: run the image's /init as a process instead of booting a microVM.
    #[arg(long)]
    process: bool,
    /// The state directory [default: /run/cloister as root, else $XDG_RUNTIME_DIR/cloister].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The emulated NSM's dev PKI (created if missing) [default: <state-dir>/dev-pki].
    #[arg(long)]
    dev_pki: Option<PathBuf>,
}

/// `cloister ps`, `stop`, `console`: which state directory.
#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    /// The state directory [default: /run/cloister as root, else $XDG_RUNTIME_DIR/cloister].
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// `cloister stop` / `cloister console`.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The enclave id (`cloister ps`).
    id: String,
    #[command(flatten)]
    state: StateArgs,
}

/// What a mode reports once the enclave answers.
#[derive(Debug)]
pub(crate) struct Started {
    mode: &'static str,
    accel: Option<String>,
    boot: Duration,
    attempts: u32,
}

/// How a supervised enclave ended without error.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Stopped by this signal.
    Signal(&'static str),
}

fn random_id() -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 8];
    // A failing RNG leaves zeros; the id must only be unused, which create() checks.
    let _ = SystemRandom::new().fill(&mut b);
    format!("enc{}", hex::encode(b))
}

/// `cloister run`.
pub(crate) async fn run(args: RunArgs) -> Result<()> {
    let image = image::Image::load(&args.eif)?;
    let files = image.enclave_files()?;
    if files.process_only && !args.process {
        bail!(
            "{} is a process-only image (no kernel): add --process",
            args.eif.display()
        );
    }
    let ports = files.ports;
    let pcrs = if args.debug_console {
        ImagePcrs::debug()
    } else {
        image.pcrs
    };
    let boot = boot_pcrs(
        &pcrs,
        args.parent_role.as_deref(),
        args.parent_instance_id.as_deref(),
    )?;
    let root = state::root(args.state_dir.clone())?;
    let pki_dir = args.dev_pki.clone().unwrap_or_else(|| root.join("dev-pki"));
    state::own_dir(&root, 0o755)?;
    let pki = DevPki::load_or_generate(&pki_dir, Timestamp::now())
        .with_context(|| format!("the dev PKI in {}", pki_dir.display()))?;
    let id = random_id();
    let parent = args
        .parent_instance_id
        .clone()
        .unwrap_or_else(|| "i-00000000000000000".into());
    let module_id = format!("{parent}-{id}");
    let nsm = Arc::new(Emulator::new(pki, module_id.clone(), &boot));
    let mut signals = supervise::Signals::install()?;
    let dir = state::EnclaveDir::create(&root, &id)?;
    let enclave = format!("unix://{}#{}", dir.vsock().display(), ports.jobs);
    let relay = args
        .kms_relay
        .as_ref()
        .map(|_| dir.host_port(ports.relay).display().to_string());
    let info = state::Info {
        id: id.clone(),
        mode: if args.process { "process" } else { "microvm" }.into(),
        cid: if args.process { 0 } else { args.cid },
        pid: std::process::id(),
        module_id,
        pcr0: pcrs.pcr0.to_hex(),
        enclave: enclave.clone(),
        relay: relay.clone(),
    };
    let started = |s: Started| -> Result<()> {
        dir.publish(&info)?;
        println!("enclave {id}");
        println!("mode {}", s.mode);
        if let Some(accel) = &s.accel {
            println!("accel {accel}");
        }
        if !args.process {
            println!("cid {}", args.cid);
        }
        println!("module_id {}", info.module_id);
        for (n, v) in [
            (0, pcrs.pcr0),
            (1, pcrs.pcr1),
            (2, pcrs.pcr2),
            (8, pcrs.pcr8),
        ] {
            println!("pcr{n} {}", v.to_hex());
        }
        println!("ready_ms {}", s.boot.as_millis());
        println!("boot_attempts {}", s.attempts);
        println!("proxy --enclave {enclave}");
        match &relay {
            Some(r) => println!(
                "relay {r} -> {}",
                args.kms_relay
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            None => println!("relay none (no --kms-relay)"),
        }
        println!("dev_pki_root {}", pki_dir.join("root.pem").display());
        use std::io::Write;
        std::io::stdout().flush()?;
        Ok(())
    };
    let ended = if args.process {
        process::run(&args, &files, &dir, ports, nsm, &mut signals, started).await?
    } else {
        microvm::run(&args, &image, &dir, ports, nsm, &mut signals, started).await?
    };
    let Ended::Signal(s) = ended;
    eprintln!("cloister run: enclave {id} stopped ({s})");
    Ok(())
}

/// `cloister ps`.
pub(crate) fn ps(args: StateArgs) -> Result<()> {
    let root = state::root(args.state_dir)?;
    println!("{:<20} {:<8} {:>5} {:>8}  PCR0", "ID", "MODE", "CID", "PID");
    for i in state::list(&root)? {
        println!(
            "{:<20} {:<8} {:>5} {:>8}  {}",
            i.id, i.mode, i.cid, i.pid, i.pcr0
        );
    }
    Ok(())
}

/// `cloister stop`: SIGTERM to the launcher, then wait until it has cleaned up.
pub(crate) async fn stop(args: IdArgs) -> Result<()> {
    let root = state::root(args.state.state_dir)?;
    let info = state::find(&root, &args.id)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(info.pid).context("pid")?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("signalling the launcher {}", info.pid))?;
    let folder = root.join(&info.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while state::alive(info.pid) || folder.exists() {
        if std::time::Instant::now() > deadline {
            bail!("enclave {} did not stop within 30 s", info.id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("stopped {}", info.id);
    Ok(())
}

/// `cloister console`: the console log (the launcher's user only: it is in the private folder).
pub(crate) fn console(args: IdArgs) -> Result<()> {
    let root = state::root(args.state.state_dir)?;
    let info = state::find(&root, &args.id)?;
    let path = root
        .join(&info.id)
        .join(state::PRIVATE)
        .join(state::CONSOLE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    use std::io::Write;
    std::io::stdout().write_all(&bytes)?;
    Ok(())
}
