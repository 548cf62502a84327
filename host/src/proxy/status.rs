//! `cloister proxy status`: the running proxy's enclaves, their state and load.
//!
//! The proxy (with `--status-listen`) listens on a Unix socket of mode 0600 (its own user only)
//! and, to each connection, writes one JSON document and closes: it reads nothing from the
//! socket, so there is no input to parse. `cloister proxy status` connects, reads at most
//! [`MAX_STATUS`] bytes within [`STATUS_TIMEOUT`], and prints a table (or, with `--json`, the
//! document as the proxy wrote it).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cloister_wire::Address;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pool::{Pool, now_ms, out_of_descriptors};

/// Largest status document `status` reads.
const MAX_STATUS: u64 = 4 << 20;
/// How long `status` waits for the document.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// `cloister proxy status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The running proxy's status socket (its --status-listen).
    #[arg(long)]
    status_listen: Address,
    /// Print the proxy's JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// What the proxy is, for the document's header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) listen: String,
    pub(crate) mode: &'static str,
    pub(crate) replay_buffer: usize,
    pub(crate) max_attempts: u32,
    pub(crate) health_interval_ms: u64,
}

/// The status document.
pub(crate) fn document(header: &Header, pool: &Pool) -> Value {
    let now = now_ms();
    let enclaves: Vec<Value> = pool
        .snapshot()
        .into_iter()
        .map(|(address, s)| {
            json!({
                "address": address,
                "state": if s.up { "up" } else { "down" },
                "down_reason": s.down_reason,
                "since_ms": s.since_ms,
                "outstanding": s.outstanding,
                "done": s.done,
                "failed": s.failed,
                "rerun": s.rerun,
                "last_check_ms": s.last_check_ms,
                "last_check_ok": s.last_check_ms.map(|_| s.last_check_error.is_none()),
                "last_check_error": s.last_check_error,
            })
        })
        .collect();
    json!({
        "now_ms": now,
        "listen": header.listen,
        "mode": header.mode,
        "replay_buffer": header.replay_buffer,
        "max_attempts": header.max_attempts,
        "health_interval_ms": header.health_interval_ms,
        "enclaves": enclaves,
    })
}

/// Serves the status socket forever: one document per connection.
///
/// The status is most wanted when the proxy is in trouble, including out of file descriptors
/// (every one held by jobs): the socket keeps one descriptor in reserve (`/dev/null`, opened at
/// start) and, when accept fails for want of descriptors, gives it up for the one connection,
/// answers it, and takes the reserve back once that connection is closed.
/// The reserve is opened before this returns, so before the proxy says it is ready.
pub(crate) fn serve(
    listener: cloister_wire::Listener,
    header: Header,
    pool: Arc<Pool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let reserve = Arc::new(std::sync::Mutex::new(Reserve::open()));
    async move { serve_with(listener, header, pool, reserve).await }
}

async fn serve_with(
    listener: cloister_wire::Listener,
    header: Header,
    pool: Arc<Pool>,
    reserve: Arc<std::sync::Mutex<Reserve>>,
) {
    loop {
        let accepted = match listener.accept().await {
            Err(e) if out_of_descriptors(&e) && reserve_lock(&reserve).release() => {
                listener.accept().await
            }
            other => other,
        };
        match accepted {
            Ok(mut s) => {
                let mut text = document(&header, &pool).to_string();
                text.push('\n');
                let reserve = reserve.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(STATUS_TIMEOUT, async {
                        let _ = s.write_all(text.as_bytes()).await;
                        let _ = s.shutdown().await;
                    })
                    .await;
                    drop(s);
                    reserve_lock(&reserve).refill();
                });
            }
            Err(e) => {
                eprintln!("cloister proxy: status accept: {e}");
                // The reserve given up may have been taken by another task: try to get it back.
                reserve_lock(&reserve).refill();
                tokio::time::sleep(super::ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// One file descriptor kept so the status socket can answer when the process has none left.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn open() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    /// Closes the reserve descriptor; false if there was none to give up.
    fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Reopens the reserve if it was given up (it stays empty while no descriptor is free).
    fn refill(&mut self) {
        if self.0.is_none() {
            *self = Self::open();
        }
    }
}

fn reserve_lock(r: &std::sync::Mutex<Reserve>) -> std::sync::MutexGuard<'_, Reserve> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `cloister proxy status`: prints the running proxy's status.
pub(crate) async fn run(args: StatusArgs) -> Result<()> {
    let text = tokio::time::timeout(STATUS_TIMEOUT, async {
        let s = args.status_listen.connect().await.with_context(|| {
            format!(
                "connecting to the proxy's status socket {}",
                args.status_listen
            )
        })?;
        let mut text = String::new();
        s.take(MAX_STATUS)
            .read_to_string(&mut text)
            .await
            .context("reading the proxy's status")?;
        anyhow::Ok(text)
    })
    .await
    .with_context(|| {
        format!(
            "no status from {} within {STATUS_TIMEOUT:?}",
            args.status_listen
        )
    })??;
    let doc: Value = serde_json::from_str(&text).context("the proxy's status is not JSON")?;
    if args.json {
        println!("{}", doc);
        return Ok(());
    }
    print!("{}", table(&doc)?);
    Ok(())
}

/// The status as a table for people.
fn table(doc: &Value) -> Result<String> {
    let Some(enclaves) = doc["enclaves"].as_array() else {
        bail!("the proxy's status has no enclaves list");
    };
    let now = doc["now_ms"].as_u64().unwrap_or(0);
    let ago = |ms: &Value| match ms.as_u64() {
        Some(t) => format!("{:.1}s ago", now.saturating_sub(t) as f64 / 1000.0),
        None => "never".to_owned(),
    };
    let mut out = format!(
        "proxy on {} ({} mode, replay buffer {} bytes, at most {} attempts per job)\n",
        clean(&doc["listen"]),
        clean(&doc["mode"]),
        doc["replay_buffer"],
        doc["max_attempts"]
    );
    out.push_str(&format!(
        "{:<48} {:<5} {:>11} {:>8} {:>8} {:>8}  {}\n",
        "ENCLAVE", "STATE", "OUTSTANDING", "DONE", "FAILED", "RE-RUN", "LAST CHECK"
    ));
    for e in enclaves {
        let check = match e["last_check_ok"].as_bool() {
            Some(true) => format!("ok {}", ago(&e["last_check_ms"])),
            Some(false) => format!(
                "failed {}: {}",
                ago(&e["last_check_ms"]),
                clean(&e["last_check_error"])
            ),
            None => "not yet".to_owned(),
        };
        out.push_str(&format!(
            "{:<48} {:<5} {:>11} {:>8} {:>8} {:>8}  {}\n",
            clean(&e["address"]),
            clean(&e["state"]),
            count(&e["outstanding"]),
            count(&e["done"]),
            count(&e["failed"]),
            count(&e["rerun"]),
            check
        ));
    }
    Ok(out)
}

/// A count field ("?" if it is not a count).
fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// A string field without control characters (the document came over a socket).
fn clean(v: &Value) -> String {
    v.as_str()
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_enclave_and_cleans_what_it_prints() {
        let pool = Pool::new(vec![
            "unix:///a.sock#5000".parse().unwrap(),
            "unix:///b.sock#5000".parse().unwrap(),
        ]);
        pool.checked(1, Err("refused\u{1b}[2J".into()));
        let header = Header {
            listen: "unix:///jobs.sock".into(),
            mode: "replay",
            replay_buffer: 1 << 20,
            max_attempts: 3,
            health_interval_ms: 2000,
        };
        let doc = document(&header, &pool);
        assert_eq!(doc["enclaves"][1]["state"], "down");
        assert_eq!(doc["enclaves"][0]["last_check_ok"], Value::Null);
        let t = table(&doc).unwrap();
        assert!(t.contains("unix:///a.sock#5000"), "{t}");
        // Counts are right-aligned in their columns.
        let row = t.lines().nth(2).unwrap();
        assert!(
            row.contains("up              0        0        0        0  not yet"),
            "{t}"
        );
        assert!(t.contains("failed") && t.contains("refused?[2J"), "{t}");
        assert!(!t.contains('\u{1b}'));
        assert!(table(&json!({"x": 1})).is_err());
    }
}
