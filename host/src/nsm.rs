//! The emulated NSM: `cloister nsm serve`, run by the launcher (the "hypervisor" side).
//!
//! A thin server around `cloister_nsm::emulator`: it answers the NSM API's CBOR requests over
//! vsock (or a Unix socket in process mode) and signs attestation documents with the dev PKI,
//! over PCRs it computed itself from the image. Only the
//! enclave may reach it: a Unix socket is created 0600 inside a 0700 directory owned by the
//! launcher's user, so the proxy, running as another user, cannot ask for a document carrying
//! its own key (see "Trust in emulation" in the architecture note).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cloister_attestation::dev_signer::DevPki;
use cloister_attestation::{PcrIndex, Timestamp};
use cloister_nsm::Nsm;
use cloister_nsm::client::NsmClient;
use cloister_nsm::emulator::{self, Emulator};
use cloister_nsm::server::serve_connection;
use cloister_wire::Address;

use crate::measure;

#[derive(Debug, Subcommand)]
pub(crate) enum NsmCommand {
    /// Serve the emulated NSM for one enclave.
    Serve {
        /// The dev PKI directory (created if missing).
        #[arg(long)]
        dev_pki: PathBuf,
        /// Where the enclave reaches the NSM: vsock://CID:PORT or unix:///dir/nsm.sock.
        #[arg(long)]
        listen: Address,
        /// The enclave image (EIF) to measure.
        #[arg(long, conflicts_with = "measure", required_unless_present = "measure")]
        eif: Option<PathBuf>,
        /// Process mode: the enclave binary to measure.
        #[arg(long)]
        measure: Option<PathBuf>,
        /// Parent instance id (PCR4).
        #[arg(long)]
        parent_instance_id: Option<String>,
        /// Parent IAM role ARN (PCR3).
        #[arg(long)]
        parent_role: Option<String>,
    },
    /// Ask an NSM to describe itself (a reachability check).
    Describe {
        /// The NSM's address.
        #[arg(long)]
        nsm: Address,
    },
}

fn log(msg: &str) {
    eprintln!("cloister nsm: {msg}");
}

/// Creates the socket's directory 0700 (or checks an existing one is ours and private).
fn private_dir(listen: &Address) -> Result<()> {
    let Address::Unix { path, .. } = listen else {
        return Ok(());
    };
    let dir = path.parent().context("socket path has no directory")?;
    if dir.exists() {
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            bail!(
                "{} is not owned by this user; the NSM socket's directory must be",
                dir.display()
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

const READ_TIMEOUT: Duration = Duration::from_secs(300);

async fn serve(listen: Address, nsm: Arc<Emulator>) -> Result<()> {
    private_dir(&listen)?;
    let listener = listen.listen(0o600).await?;
    eprintln!("cloister nsm: serving the emulated NSM on {listen}");
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log(&format!("accept: {e}"));
                continue;
            }
        };
        let nsm = nsm.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, nsm.as_ref(), READ_TIMEOUT).await {
                log(&format!("connection ended: {}", cloister_common::chain(&e)));
            }
        });
    }
}

pub(crate) async fn run(cmd: NsmCommand) -> Result<()> {
    match cmd {
        NsmCommand::Serve {
            dev_pki,
            listen,
            eif,
            measure,
            parent_instance_id,
            parent_role,
        } => {
            let pcrs = measure::pcrs(
                eif.as_deref(),
                measure.as_deref(),
                parent_role.as_deref(),
                parent_instance_id.as_deref(),
            )?;
            let pki = DevPki::load_or_generate(&dev_pki, Timestamp::now())?;
            let parent = parent_instance_id.unwrap_or_else(|| "i-00000000000000000".into());
            let module_id = emulator::module_id(&parent);
            eprintln!(
                "cloister nsm: module {module_id}, PCR0 {}",
                pcrs.get(PcrIndex::IMAGE)
                    .map(|v| v.to_hex())
                    .unwrap_or_default()
            );
            serve(listen, Arc::new(Emulator::new(pki, module_id, &pcrs))).await
        }
        NsmCommand::Describe { nsm } => {
            let client = NsmClient::dial(nsm);
            let (module_id, locked_pcrs) = (&client as &dyn Nsm).describe().await?;
            println!("module_id {module_id} locked {locked_pcrs:?}");
            Ok(())
        }
    }
}
