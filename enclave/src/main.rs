//! `cloister-enclave`: the attested worker. Everything that decides whom it trusts comes from
//! the configuration in its own (measured) image; it reads no environment variable and takes
//! no flag that could change that.
//!
//! - As PID 1 of a microVM (the image's `/init`): mounts, loads the image's kernel modules,
//!   reads `/etc/cloister/enclave.toml`, asks the NSM the configuration names (`vsock`: the
//!   emulated NSM on host CID 2; `device`: `/dev/nsm`), listens on `vsock://any:<jobs_port>`
//!   and relays KMS traffic through `vsock://2:<relay_port>`. Arguments are ignored. On a fatal
//!   error it prints `cloister-enclave: fatal: <error>` and powers the VM off.
//! - In process mode (any other PID), started by the launcher:
//!   `cloister-enclave --config-fd N --nsm-fd M --uds PATH`, where N holds the image's
//!   configuration bytes, M is one end of a socket pair to the emulated NSM, and vsock is
//!   emulated under PATH as vhost-device-vsock does (jobs on `unix://PATH#<jobs_port>`, the relay
//!   at `unix://PATH_<relay_port>`).
//!
//! It prints `cloister-enclave: ready` once it listens.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;
use cloister_enclave::config::{Config, HOST_CID, NsmKind};
use cloister_enclave::job::Shared;
use cloister_enclave::{init, process, serve};
use cloister_nsm::Nsm;
use cloister_nsm::client::NsmClient;
use cloister_nsm::device::DeviceNsm;
use cloister_wire::Address;

/// cloister-enclave in process mode (as PID 1 of a microVM it takes no argument).
#[derive(Debug, Parser)]
#[command(name = "cloister-enclave", version, about)]
struct ProcessCli {
    /// Inherited descriptor holding the image's configuration (what the launcher took out of
    /// the measured image).
    #[arg(long, value_name = "N")]
    config_fd: RawFd,
    /// Inherited connected stream socket to the emulated NSM (one end of a socket pair).
    #[arg(long, value_name = "M")]
    nsm_fd: RawFd,
    /// The emulated vsock's Unix socket path: jobs on PATH#<jobs_port>, the relay at
    /// PATH_<relay_port>.
    #[arg(long, value_name = "PATH")]
    uds: PathBuf,
}

/// Listens, says so, and serves forever.
async fn run(
    config: &Config,
    listen: Address,
    relay: Address,
    nsm: Arc<dyn Nsm>,
) -> Result<std::convert::Infallible> {
    let listener = listen.listen(0o660).await?;
    eprintln!("cloister-enclave: listening on {listen}, relay {relay}");
    eprintln!("cloister-enclave: ready");
    let kms = Arc::new(config.kms_config(relay));
    let shared = Arc::new(Shared::with_secrets(
        config.operations.clone(),
        config.secrets.clone(),
    ));
    serve::serve_forever(listener, kms, shared, nsm).await;
    anyhow::bail!("the accept loop ended")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// PID 1: prepare, then serve on vsock.
fn pid1() -> Result<std::convert::Infallible> {
    let config = init::prepare()?;
    let nsm: Arc<dyn Nsm> = match config.nsm {
        NsmKind::Vsock => Arc::new(NsmClient::dial(Address::Vsock {
            cid: HOST_CID,
            port: config.vsock.nsm_port,
        })),
        NsmKind::Device => Arc::new(DeviceNsm::open()?),
    };
    let listen = Address::Vsock {
        cid: u32::MAX,
        port: config.vsock.jobs_port,
    };
    let relay = Address::Vsock {
        cid: HOST_CID,
        port: config.vsock.relay_port,
    };
    runtime()?.block_on(run(&config, listen, relay, nsm))
}

/// Process mode: the launcher's descriptors and socket path.
fn process_mode(cli: ProcessCli) -> Result<std::convert::Infallible> {
    anyhow::ensure!(
        cli.config_fd != cli.nsm_fd,
        "--config-fd and --nsm-fd are the same descriptor"
    );
    let config_fd = process::take_fd(cli.config_fd)?;
    let nsm_fd = process::take_fd(cli.nsm_fd)?;
    let config = process::read_config(config_fd)?;
    anyhow::ensure!(
        config.nsm == NsmKind::Vsock,
        "process mode needs nsm = \"vsock\" (the launcher's NSM), the image says {:?}",
        config.nsm
    );
    let nsm_socket = process::nsm_socket(nsm_fd)?;
    let listen = process::jobs_address(&cli.uds, config.vsock.jobs_port);
    let relay = process::relay_address(&cli.uds, config.vsock.relay_port);
    runtime()?.block_on(async move {
        let stream = tokio::net::UnixStream::from_std(nsm_socket)?;
        let nsm: Arc<dyn Nsm> = Arc::new(NsmClient::over(stream));
        run(&config, listen, relay, nsm).await
    })
}

/// The error and its causes on one line, with the first stable code found.
fn describe(e: &anyhow::Error) -> String {
    let code = e
        .chain()
        .find_map(|c| {
            use cloister_common::ErrorCode;
            if let Some(e) = c.downcast_ref::<cloister_enclave::EnclaveError>() {
                return Some(e.code().into_owned());
            }
            if let Some(e) = c.downcast_ref::<cloister_nsm::NsmError>() {
                return Some(e.code().into_owned());
            }
            c.downcast_ref::<cloister_wire::WireError>()
                .map(|e| ErrorCode::code(e).into_owned())
        })
        .unwrap_or_else(|| "ENC-START".to_owned());
    format!("error[{code}]: {e:#}")
}

fn main() -> ExitCode {
    if init::is_pid1() {
        match pid1() {
            Ok(never) => match never {},
            Err(e) => init::power_off(&describe(&e)),
        }
    }
    let cli = ProcessCli::parse();
    match process_mode(cli) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("cloister-enclave: fatal: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::ProcessCli::command().debug_assert();
    }
}
