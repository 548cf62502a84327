//! `cloister proxy`: the untrusted parent's two duties.
//!
//! - **Jobs**: accepts clients on a local address, connects each to the enclave, and forwards
//!   bytes both ways (several jobs at once; [`crate::pipe`]: spliced between Unix sockets, else
//!   copied through large buffers). It sees only sealed messages and results.
//! - **KMS relay**: the enclave dials the relay and asks `CONNECT host:port`
//!   (`cloister_wire::relay`); the relay connects only to the one configured KMS endpoint and
//!   refuses every other destination. It then relays
//!   TLS bytes it can neither read nor forge (the enclave terminates TLS against the KMS's CA).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use clap::Args;
use cloister_wire::{Address, relay};

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Where clients submit jobs (unix:///path or vsock://...).
    #[arg(long)]
    listen: Address,
    /// The enclave's job address (vsock://CID:PORT, or unix:///path[#PORT]).
    #[arg(long)]
    enclave: Address,
    /// Where the enclave reaches the KMS relay.
    #[arg(long)]
    relay_listen: Address,
    /// The only destination the relay connects to (host:port of the KMS).
    #[arg(long)]
    kms_endpoint: String,
}

#[derive(Debug, Default)]
struct Counters {
    jobs: AtomicU64,
    job_errors: AtomicU64,
    bytes: AtomicU64,
    relayed: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    fn log(&self, event: &str) {
        eprintln!(
            "cloister proxy: {event} (jobs {} errors {} bytes {} relay connections {} refused {})",
            self.jobs.load(Ordering::Relaxed),
            self.job_errors.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.relayed.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed)
        );
    }
}

async fn relay_one(
    stream: cloister_wire::Stream,
    kms_endpoint: &str,
    counters: &Counters,
) -> Result<()> {
    let pending = relay::accept(stream).await?;
    let asked = pending.request().destination().to_owned();
    if asked != kms_endpoint {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        pending.deny("destination not allowed").await?;
        counters.log(&format!("relay refused destination {asked:?}"));
        return Ok(());
    }
    let mut kms = tokio::net::TcpStream::connect(kms_endpoint).await?;
    let mut s = pending.grant().await?;
    counters.relayed.fetch_add(1, Ordering::Relaxed);
    let (a, b) = tokio::io::copy_bidirectional(&mut s, &mut kms).await?;
    counters.bytes.fetch_add(a + b, Ordering::Relaxed);
    Ok(())
}

pub(crate) async fn run(args: ProxyArgs) -> Result<()> {
    let counters = Arc::new(Counters::default());
    let jobs = args.listen.listen(0o660).await?;
    let relay = args.relay_listen.listen(0o660).await?;
    eprintln!(
        "cloister proxy: jobs on {}, enclave at {}, KMS relay on {} -> {}",
        args.listen, args.enclave, args.relay_listen, args.kms_endpoint
    );
    let relay_counters = counters.clone();
    let kms_endpoint = args.kms_endpoint.clone();
    tokio::spawn(async move {
        loop {
            match relay.accept().await {
                Ok(stream) => {
                    let (c, k) = (relay_counters.clone(), kms_endpoint.clone());
                    tokio::spawn(async move {
                        if let Err(e) = relay_one(stream, &k, &c).await {
                            c.log(&format!("relay connection failed: {e}"));
                        }
                    });
                }
                Err(e) => relay_counters.log(&format!("relay accept: {e}")),
            }
        }
    });
    loop {
        let mut client = match jobs.accept().await {
            Ok(s) => s,
            Err(e) => {
                counters.log(&format!("job accept: {e}"));
                continue;
            }
        };
        let (c, enclave) = (counters.clone(), args.enclave.clone());
        tokio::spawn(async move {
            c.jobs.fetch_add(1, Ordering::Relaxed);
            let result = async {
                let mut e = enclave.connect().await?;
                let (a, b) = crate::pipe::pipe(&mut client, &mut e).await?;
                c.bytes.fetch_add(a + b, Ordering::Relaxed);
                anyhow::Ok(())
            }
            .await;
            match result {
                Ok(()) => c.log("job finished"),
                Err(e) => {
                    c.job_errors.fetch_add(1, Ordering::Relaxed);
                    c.log(&format!("job failed: {e}"));
                }
            }
        });
    }
}
