//! `cloister-enclave`: PID 1 of the microVM (or a process in process mode). Listens for jobs on
//! vsock, obtains data keys by attested release, and returns only results.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use cloister_common::ErrorCode;
use cloister_enclave::job::{self, KmsConfig};
use cloister_enclave::kms::CacheLimits;
use cloister_nsm::Nsm;
use cloister_nsm::client::NsmClient;
use cloister_nsm::device::DeviceNsm;
use cloister_wire::Address;

/// cloister-enclave: the attested worker.
#[derive(Debug, Parser)]
#[command(name = "cloister-enclave", version, about)]
struct Cli {
    /// Where jobs arrive: vsock://any:5000, or unix:///path in process mode.
    #[arg(long)]
    listen: Address,
    /// The NSM: `device` for /dev/nsm, or the emulated NSM's address.
    #[arg(long, default_value = "device")]
    nsm: String,
    /// The host's KMS relay.
    #[arg(long)]
    kms_relay: Address,
    /// The KMS endpoint (host:port) the relay connects to.
    #[arg(long)]
    kms_endpoint: String,
    /// TLS server name of the KMS.
    #[arg(long, default_value = "localhost")]
    kms_server_name: String,
    /// The KMS CA certificate (PEM), part of the enclave image.
    #[arg(long)]
    kms_ca: PathBuf,
    /// KMS key ARNs whose data keys this enclave requests. Repeatable.
    #[arg(long = "accept-key", required = true)]
    accept_keys: Vec<String>,
    /// Longest a released data key is reused, seconds.
    #[arg(long, default_value_t = 300)]
    key_cache_age: u64,
    /// Most messages one released data key opens.
    #[arg(long, default_value_t = 10_000)]
    key_cache_uses: u32,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let nsm: Arc<dyn Nsm> = if cli.nsm == "device" {
        Arc::new(DeviceNsm::open()?)
    } else {
        Arc::new(NsmClient::dial(cli.nsm.parse().context("--nsm")?))
    };
    let cfg = Arc::new(KmsConfig {
        relay: cli.kms_relay,
        endpoint: cli.kms_endpoint,
        server_name: cli.kms_server_name,
        ca_pem: std::fs::read(&cli.kms_ca)
            .with_context(|| format!("reading {}", cli.kms_ca.display()))?,
        accepted_keys: cli.accept_keys,
        cache: CacheLimits {
            max_age: Duration::from_secs(cli.key_cache_age),
            max_uses: cli.key_cache_uses,
        },
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = cli.listen.listen(0o660).await?;
        eprintln!("cloister-enclave: listening on {}", cli.listen);
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cloister-enclave: accept: {e}");
                    continue;
                }
            };
            let (cfg, nsm) = (cfg.clone(), nsm.clone());
            tokio::spawn(async move {
                match job::serve(&cfg, nsm.as_ref(), stream).await {
                    Ok(()) => eprintln!("cloister-enclave: job done"),
                    Err(e) => eprintln!(
                        "cloister-enclave: job failed: error[{}]: {}",
                        e.code(),
                        cloister_common::chain(&e)
                    ),
                }
            });
        }
    })
}
