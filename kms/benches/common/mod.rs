//! What the KMS's benchmarks share: a child process killed with the benchmark, a client that
//! does not retry, and the load generator (`WORKERS` clients calling one operation for a while).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloister_kms_client::{KmsClient, Retry};
use cloister_sigv4::Credentials;
use serde_json::Value;

/// Concurrent clients of every figure.
pub(crate) const WORKERS: usize = 32;

/// A server process, killed when the benchmark is done with it.
pub(crate) struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client of `addr` (host:port, plain HTTP) that does not retry: errors are counted.
pub(crate) fn client(addr: &str, creds: &Credentials) -> KmsClient {
    KmsClient::http(&format!("http://{addr}"), "us-east-1", creds.clone())
        .unwrap()
        .with_retry(Retry {
            attempts: 1,
            ..Retry::default()
        })
}

/// `WORKERS` clients, spread over `addrs`, calling `op` with `input` for `secs`: (requests/s,
/// errors).
pub(crate) async fn load(
    addrs: &[String],
    creds: &Credentials,
    op: &'static str,
    input: &Value,
    secs: f64,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let c = client(&addrs[w % addrs.len()], creds);
        let (done, errors, input) = (done.clone(), errors.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let counter = if c.call(op, &input).await.is_ok() {
                    &done
                } else {
                    &errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}
