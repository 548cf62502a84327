//! Health checks: every interval, each enclave is probed, and put up or down by the answer.
//!
//! A probe connects (for a hybrid-vsock address that includes the `CONNECT`/`OK` handshake,
//! which fails when nothing listens on the port) and sends `Ping` instead of a `Job`; any
//! well-formed frame back proves the enclave serves: `Pong`, or `Failed` from an enclave older
//! than `Ping`. A probe takes no job slot in the enclave. Each probe has [`PROBE_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use cloister_wire::{Address, FrameReader, FrameWriter, Message};

use super::pool::Pool;

/// How long a probe may take in all.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A probe that could not be made for want of the proxy's own resources: no verdict.
const OWN_SHORTAGE: &str = "the proxy is short of descriptors or memory";

/// Probes `address` once: `Ok` if it answered a frame.
pub(crate) async fn probe(address: &Address) -> Result<(), String> {
    let attempt = async {
        let stream = address.connect().await.map_err(|e| {
            if super::pool::own_shortage(&e) {
                OWN_SHORTAGE.to_owned()
            } else {
                e.to_string()
            }
        })?;
        let (r, w) = tokio::io::split(stream);
        FrameWriter::new(w)
            .send(&Message::Ping)
            .await
            .map_err(|e| e.to_string())?;
        match FrameReader::new(r, PROBE_TIMEOUT).next().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("closed without an answer".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Probes every enclave now and then every `interval`, forever.
pub(crate) async fn run(pool: Arc<Pool>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes = (0..pool.len()).map(|i| {
            let pool = pool.clone();
            async move {
                let result = probe(pool.address(i)).await;
                // The proxy's own shortage says nothing of the enclave.
                if result.as_ref().err().is_none_or(|e| e != OWN_SHORTAGE) {
                    pool.checked(i, result);
                }
            }
        });
        all(probes).await;
    }
}

/// Runs the probes concurrently (one task each), waiting for all.
async fn all<F>(futures: impl Iterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}
