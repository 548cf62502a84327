//! `cloister proxy`: the untrusted parent's duties, over one or more enclaves.
//!
//! - **Jobs**: accepts clients on a local address and sends each job to an enclave of the pool
//!   ([`pool`]: the one with the fewest outstanding jobs among those up, ties round robin), each
//!   enclave checked every `--health-interval` ([`health`]) and taken out while it does not
//!   answer. Two modes:
//!   - *pipe* (the default for one `--enclave`): bytes forwarded both ways as they come
//!     ([`crate::pipe`]: spliced between Unix sockets, else copied through large buffers);
//!     results stream to the client, and a job whose enclave dies fails.
//!   - *replay* (the default for several): the proxy reads the protocol's frames ([`job`]),
//!     holds results until the enclave says `Done` or `Failed`, and re-runs a job whose enclave
//!     died on another enclave, so no job is lost or counted twice.
//!
//!   Either way the proxy sees only sealed messages and results.
//! - **Status**: with `--status-listen`, `cloister proxy status` shows each enclave's state and
//!   load ([`status`]).
//! - **KMS relay**: the enclave dials the relay and asks `CONNECT host:port`
//!   (`cloister_wire::relay`); the relay connects only to the one configured KMS endpoint and
//!   refuses every other destination. It then relays
//!   TLS bytes it can neither read nor forge (the enclave terminates TLS against the KMS's CA).
//!
//! Nothing here is a security boundary (a hostile host runs the proxy anyway), but a bad client
//! or enclave costs only its own job: a clear error to that client, and the proxy goes on.

mod health;
mod job;
mod pool;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use cloister_wire::{Address, relay};

use self::pool::{Outcome, Pool};

/// How long an accept loop waits after a failed accept. Out of descriptors (`EMFILE`), the
/// connection stays in the backlog and accept fails again at once: retrying without a pause
/// would spin a core and write a log line per retry until a descriptor is freed.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// `cloister proxy [ARGS]` runs the proxy; `cloister proxy status` asks a running one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ProxyCommand {
    #[command(subcommand)]
    command: Option<ProxySubcommand>,
    #[command(flatten)]
    run: ProxyArgs,
}

#[derive(Debug, Subcommand)]
enum ProxySubcommand {
    /// Show a running proxy's enclaves: state (up/down), outstanding jobs, jobs done, failed
    /// and re-run, last health check.
    Status(status::StatusArgs),
}

/// How jobs are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// pipe for one --enclave, replay for several.
    Auto,
    /// Bytes both ways as they come: results stream, a job whose enclave dies fails.
    Pipe,
    /// Frames read, results held until the job ends, a job whose enclave dies re-run elsewhere.
    Replay,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// Where clients submit jobs (unix:///path or vsock://...).
    #[arg(long, required = true)]
    listen: Option<Address>,
    /// An enclave's job address (vsock://CID:PORT, or unix:///path[#PORT]); repeat for several.
    #[arg(long = "enclave", required = true)]
    enclaves: Vec<Address>,
    /// Where the enclave reaches the KMS relay.
    #[arg(long, required = true)]
    relay_listen: Option<Address>,
    /// The only destination the relay connects to (host:port of the KMS).
    #[arg(long, required = true)]
    kms_endpoint: Option<String>,
    /// Serve `cloister proxy status` on this Unix socket (mode 0600: this user only).
    #[arg(long)]
    status_listen: Option<Address>,
    /// How jobs are forwarded.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// replay: most bytes held per job for a re-run (its input and held results together,
    /// e.g. 256MiB, 64KiB, or bytes). A larger job still runs but cannot be re-run.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    replay_buffer: usize,
    /// replay: most enclaves a job is sent to (1: never re-run).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Seconds between health checks of each enclave (0: none) [default: 2 with several
    /// enclaves, 0 with one, which has no other to choose].
    #[arg(long)]
    health_interval: Option<f64>,
    /// Seconds the proxy waits for a client's or an enclave's next frame, and for a client to
    /// take one (hidden: the protocol's 300 s; tests shorten it).
    #[arg(long, hide = true, default_value_t = cloister_enclave::job::IO_TIMEOUT.as_secs_f64())]
    io_timeout: f64,
}

/// A size: bytes, or a number with KiB, MiB or GiB.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" => 10,
        "MiB" | "M" => 20,
        "GiB" | "G" => 30,
        other => return Err(format!("unknown unit {other:?} (KiB, MiB or GiB)")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
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

/// `cloister proxy` and `cloister proxy status`.
pub(crate) async fn run(cmd: ProxyCommand) -> Result<()> {
    match cmd.command {
        Some(ProxySubcommand::Status(args)) => status::run(args).await,
        None => serve(cmd.run).await,
    }
}

/// Runs the proxy until it is killed.
async fn serve(args: ProxyArgs) -> Result<()> {
    let (Some(listen), Some(relay_listen), Some(kms_endpoint)) =
        (args.listen, args.relay_listen, args.kms_endpoint)
    else {
        bail!("--listen, --relay-listen and --kms-endpoint are required");
    };
    if args.enclaves.is_empty() {
        bail!("give at least one --enclave");
    }
    let every = args
        .health_interval
        .unwrap_or(if args.enclaves.len() > 1 { 2.0 } else { 0.0 });
    let health_interval = if every == 0.0 {
        None
    } else {
        Some(
            Duration::try_from_secs_f64(every)
                .ok()
                .filter(|d| *d >= Duration::from_millis(10))
                .ok_or_else(|| {
                    anyhow::anyhow!("--health-interval must be 0 or at least 0.01 seconds")
                })?,
        )
    };
    let replay = match args.mode {
        Mode::Pipe => false,
        Mode::Replay => true,
        Mode::Auto => args.enclaves.len() > 1,
    };
    let limits = job::Limits {
        replay_buffer: args.replay_buffer,
        max_attempts: args.max_attempts,
        io_timeout: Duration::try_from_secs_f64(args.io_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("--io-timeout must be a positive number of seconds"))?,
    };
    let counters = Arc::new(Counters::default());
    let pool = Arc::new(Pool::new(args.enclaves));
    let jobs = listen.listen(0o660).await?;
    let relay = relay_listen.listen(0o660).await?;
    let status = match &args.status_listen {
        Some(a) => Some(a.listen(0o600).await?),
        None => None,
    };
    let enclaves: Vec<String> = (0..pool.len())
        .map(|i| pool.address(i).to_string())
        .collect();
    let mode = if replay { "replay" } else { "pipe" };
    // The status socket's server (and the descriptor it keeps in reserve) exists before the
    // proxy says it is ready.
    let status = if let (Some(l), Some(a)) = (status, &args.status_listen) {
        let header = status::Header {
            listen: listen.to_string(),
            mode,
            replay_buffer: args.replay_buffer,
            max_attempts: if replay { args.max_attempts } else { 1 },
            health_interval_ms: health_interval
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        Some((a, status::serve(l, header, pool.clone())))
    } else {
        None
    };
    eprintln!(
        "cloister proxy: jobs on {listen}, enclave{} at {} ({mode} mode), KMS relay on {relay_listen} -> {kms_endpoint}",
        if enclaves.len() > 1 { "s" } else { "" },
        enclaves.join(", "),
    );
    if let Some((a, server)) = status {
        eprintln!("cloister proxy: status on {a}");
        tokio::spawn(server);
    }
    if let Some(every) = health_interval {
        tokio::spawn(health::run(pool.clone(), every));
    }
    let relay_counters = counters.clone();
    tokio::spawn(async move {
        loop {
            let stream = accept(&relay, "relay", &relay_counters).await;
            let (c, k) = (relay_counters.clone(), kms_endpoint.clone());
            tokio::spawn(async move {
                if let Err(e) = relay_one(stream, &k, &c).await {
                    c.log(&format!("relay connection failed: {e}"));
                }
            });
        }
    });
    let limits = Arc::new(limits);
    loop {
        let client = accept(&jobs, "job", &counters).await;
        let (c, pool, limits) = (counters.clone(), pool.clone(), limits.clone());
        tokio::spawn(async move {
            c.jobs.fetch_add(1, Ordering::Relaxed);
            let result = if replay {
                job::run(client, &pool, &limits).await
            } else {
                pipe_job(client, &pool, &c).await
            };
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

/// The next connection on `listener`; a failed accept is logged ("`what` accept: ...") and
/// retried after [`ACCEPT_BACKOFF`].
async fn accept(
    listener: &cloister_wire::Listener,
    what: &str,
    counters: &Counters,
) -> cloister_wire::Stream {
    loop {
        match listener.accept().await {
            Ok(s) => return s,
            Err(e) => {
                counters.log(&format!("{what} accept: {e}"));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One job in pipe mode: the first enclave that accepts the connection gets the job's bytes.
async fn pipe_job(
    mut client: cloister_wire::Stream,
    pool: &Pool,
    counters: &Counters,
) -> Result<(), String> {
    let mut unreachable = Vec::new();
    let mut why_unreachable = Vec::new();
    loop {
        let Some(lease) = pool.choose(&unreachable) else {
            let why = format!(
                "no enclave could be reached: {}",
                why_unreachable.join("; ")
            );
            if let Ok(frame) = cloister_wire::frame::encode(&cloister_wire::Message::Failed {
                code: job::NO_ENCLAVE.into(),
                reason: why.clone(),
            }) {
                use tokio::io::AsyncWriteExt;
                let _ = client.write_all(&frame).await;
                let _ = client.shutdown().await;
            }
            return Err(why);
        };
        let index = lease.index;
        let connected = tokio::time::timeout(job::CONNECT_TIMEOUT, lease.address().connect()).await;
        let mut enclave = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let why = format!("{}: {e}", lease.address());
                if !pool::own_shortage(&e) {
                    pool.mark_down(index, &why);
                }
                unreachable.push(index);
                why_unreachable.push(why);
                continue;
            }
            Err(_) => {
                let why = format!(
                    "{}: no connection within {:?}",
                    lease.address(),
                    job::CONNECT_TIMEOUT
                );
                pool.mark_down(index, &why);
                unreachable.push(index);
                why_unreachable.push(why);
                continue;
            }
        };
        return match crate::pipe::pipe(&mut client, &mut enclave).await {
            Ok((a, b)) => {
                counters.bytes.fetch_add(a + b, Ordering::Relaxed);
                pool.count(index, Outcome::Done);
                Ok(())
            }
            Err(e) => {
                pool.count(index, Outcome::Failed);
                Err(e.to_string())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "MiB", "12 parsecs", "-1", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
