//! Waiting on an enclave: until its jobs port answers, then until a signal or a child's end.
//!
//! Readiness is the proxy's own check: connect to the enclave's hybrid-vsock address and
//! complete the `CONNECT <jobs_port>` / `OK` handshake. While waiting, and afterwards, the
//! launcher also watches its children and SIGTERM/SIGINT: whichever comes first decides.

use std::time::Duration;

use anyhow::Result;
use cloister_wire::Address;
use tokio::process::Child;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long an enclave may take to answer on its jobs port, in all (TCG boots take 2-3 s).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// SIGTERM and SIGINT.
#[derive(Debug)]
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (before any child starts, so none is missed).
    pub(crate) fn install() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next one, by name.
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// What ended the wait.
#[derive(Debug)]
pub(crate) enum Event {
    /// The enclave's jobs port answered.
    Ready,
    /// It did not answer in the time given.
    TimedOut,
    /// A signal.
    Signal(&'static str),
    /// The named child ended.
    Exited(&'static str, std::process::ExitStatus),
}

/// Connects until the handshake succeeds.
async fn until_ready(address: &Address) {
    loop {
        if address.connect().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The children watched, by name.
pub(crate) type Watched<'a> = Vec<(&'static str, &'a mut Child)>;

async fn first_exit(children: &mut Watched<'_>) -> (&'static str, std::process::ExitStatus) {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return (*name, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `address` answers (or `timeout` passes), a signal, or a child ends.
pub(crate) async fn ready(
    address: &Address,
    timeout: Duration,
    signals: &mut Signals,
    children: &mut Watched<'_>,
) -> Event {
    tokio::select! {
        t = tokio::time::timeout(timeout, until_ready(address)) => match t {
            Ok(()) => Event::Ready,
            Err(_) => Event::TimedOut,
        },
        s = signals.next() => Event::Signal(s),
        (name, status) = first_exit(children) => Event::Exited(name, status),
    }
}

/// Waits for a signal or a child's end.
pub(crate) async fn running(signals: &mut Signals, children: &mut Watched<'_>) -> Event {
    tokio::select! {
        s = signals.next() => Event::Signal(s),
        (name, status) = first_exit(children) => Event::Exited(name, status),
    }
}
