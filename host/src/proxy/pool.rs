//! The proxy's enclaves: each one's address, state (up or down) and counters, and the choice
//! of the enclave a job goes to.
//!
//! A job goes to the enclave with the fewest outstanding jobs among those that are up; ties go
//! round robin (a cursor moves past each enclave chosen). When every enclave is down, the
//! least loaded down one is still tried: a probe's verdict may be up to one interval old, and
//! with a single enclave this keeps today's behaviour (each job tries it). The counters are what
//! `cloister proxy status` shows.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use cloister_wire::Address;
use nix::errno::Errno;
use serde::Serialize;

/// One enclave as the proxy sees it.
#[derive(Debug)]
pub(crate) struct Enclave {
    pub(crate) address: Address,
    state: Mutex<State>,
}

/// What `status` shows of one enclave (and what the pool decides by).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct State {
    /// `up` or `down`.
    pub(crate) up: bool,
    /// Why it is down (the last failure), if it is.
    pub(crate) down_reason: Option<String>,
    /// When it last changed state (Unix ms).
    pub(crate) since_ms: u64,
    /// Jobs running on it now.
    pub(crate) outstanding: u64,
    /// Jobs it finished (`Done`; in pipe mode, connections that ended cleanly).
    pub(crate) done: u64,
    /// Jobs it answered `Failed` (and jobs that failed on it for another reason).
    pub(crate) failed: u64,
    /// Jobs it lost (its connection died before `Done`/`Failed`) that were re-run elsewhere.
    pub(crate) rerun: u64,
    /// The last health check: when (Unix ms), and its error if it failed.
    pub(crate) last_check_ms: Option<u64>,
    pub(crate) last_check_error: Option<String>,
}

/// Whether a failure to connect to an enclave is the proxy's own shortage (out of file
/// descriptors or memory), not the enclave's fault: the enclave is then not taken out (nor
/// put in by a probe's verdict), since every enclave would fail the same way.
pub(crate) fn own_shortage(e: &cloister_wire::WireError) -> bool {
    io_errno_in(
        e,
        &[Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM],
    )
}

/// Whether an I/O call failed because this process (`EMFILE`) or the system (`ENFILE`) has no
/// file descriptor left.
pub(crate) fn out_of_descriptors(e: &cloister_wire::WireError) -> bool {
    io_errno_in(e, &[Errno::EMFILE, Errno::ENFILE])
}

/// Whether `e` is an I/O error with one of `errnos`.
fn io_errno_in(e: &cloister_wire::WireError, errnos: &[Errno]) -> bool {
    let cloister_wire::WireError::Io { source, .. } = e else {
        return false;
    };
    source
        .raw_os_error()
        .is_some_and(|n| errnos.iter().any(|x| *x as i32 == n))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How a job ended on an enclave, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Failed,
    /// Lost (the connection died) and re-run on another enclave.
    Rerun,
}

/// All the enclaves.
#[derive(Debug)]
pub(crate) struct Pool {
    enclaves: Vec<Enclave>,
    cursor: AtomicUsize,
}

/// A job's hold on an enclave: counted as outstanding until dropped.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    pub(crate) index: usize,
}

impl Lease<'_> {
    pub(crate) fn address(&self) -> &Address {
        &self.pool.enclaves[self.index].address
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut s = self.pool.lock(self.index);
        s.outstanding = s.outstanding.saturating_sub(1);
    }
}

impl Pool {
    /// Enclaves at `addresses`, all assumed up until checked.
    pub(crate) fn new(addresses: Vec<Address>) -> Self {
        let since_ms = now_ms();
        let enclaves = addresses
            .into_iter()
            .map(|address| Enclave {
                address,
                state: Mutex::new(State {
                    up: true,
                    down_reason: None,
                    since_ms,
                    outstanding: 0,
                    done: 0,
                    failed: 0,
                    rerun: 0,
                    last_check_ms: None,
                    last_check_error: None,
                }),
            })
            .collect();
        Self {
            enclaves,
            cursor: AtomicUsize::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.enclaves.len()
    }

    pub(crate) fn address(&self, index: usize) -> &Address {
        &self.enclaves[index].address
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave a counter half-written: take it anyway.
        self.enclaves[index]
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every enclave's address and state.
    pub(crate) fn snapshot(&self) -> Vec<(String, State)> {
        (0..self.enclaves.len())
            .map(|i| (self.enclaves[i].address.to_string(), self.lock(i).clone()))
            .collect()
    }

    /// The enclave for the next job, not one of `skip`: the up one with the fewest outstanding
    /// jobs (ties round robin), else the least loaded down one; `None` if all are skipped.
    pub(crate) fn choose(&self, skip: &[usize]) -> Option<Lease<'_>> {
        let n = self.enclaves.len();
        let start = self.cursor.load(Ordering::Relaxed) % n.max(1);
        let mut best: Option<(bool, u64, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if skip.contains(&i) {
                continue;
            }
            let s = self.lock(i);
            let key = (!s.up, s.outstanding);
            if best.is_none_or(|(down, load, _)| key < (down, load)) {
                best = Some((key.0, key.1, i));
            }
        }
        let (_, _, index) = best?;
        self.lock(index).outstanding += 1;
        self.cursor.store(index + 1, Ordering::Relaxed);
        Some(Lease { pool: self, index })
    }

    /// Counts a job's end on enclave `index`.
    pub(crate) fn count(&self, index: usize, outcome: Outcome) {
        let mut s = self.lock(index);
        match outcome {
            Outcome::Done => s.done += 1,
            Outcome::Failed => s.failed += 1,
            Outcome::Rerun => s.rerun += 1,
        }
    }

    /// Records a health check's result, and puts the enclave up or down accordingly.
    pub(crate) fn checked(&self, index: usize, result: Result<(), String>) {
        {
            let mut s = self.lock(index);
            s.last_check_ms = Some(now_ms());
            s.last_check_error = result.as_ref().err().cloned();
        }
        match result {
            Ok(()) => self.mark_up(index),
            Err(e) => self.mark_down(index, &format!("health check failed: {e}")),
        }
    }

    /// Takes enclave `index` out (no-op if it is down), logging the change.
    pub(crate) fn mark_down(&self, index: usize, why: &str) {
        let mut s = self.lock(index);
        if s.up {
            s.up = false;
            s.since_ms = now_ms();
            eprintln!(
                "cloister proxy: enclave {} is down: {why}",
                self.enclaves[index].address
            );
        }
        s.down_reason = Some(why.to_owned());
    }

    /// Puts enclave `index` back in (no-op if it is up), logging the change.
    fn mark_up(&self, index: usize) {
        let mut s = self.lock(index);
        if !s.up {
            s.up = true;
            s.down_reason = None;
            s.since_ms = now_ms();
            eprintln!(
                "cloister proxy: enclave {} is up",
                self.enclaves[index].address
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| format!("unix:///e{i}#5000").parse().unwrap())
                .collect(),
        )
    }

    #[test]
    fn least_outstanding_first_and_ties_round_robin() {
        let p = pool(3);
        // Ties: 0, 1, 2 in turn while each lease is dropped at once.
        let order: Vec<usize> = (0..6).map(|_| p.choose(&[]).unwrap().index).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        // Held leases: the least loaded wins.
        let a = p.choose(&[]).unwrap();
        let b = p.choose(&[]).unwrap();
        assert_ne!(a.index, b.index);
        let c = p.choose(&[]).unwrap();
        let loads: Vec<u64> = p.snapshot().iter().map(|(_, s)| s.outstanding).collect();
        assert_eq!(loads, [1, 1, 1]);
        drop(b);
        let again = p.choose(&[]).unwrap();
        assert_eq!(again.index, 1, "the one freed has the fewest");
        drop((a, c, again));
        assert!(p.snapshot().iter().all(|(_, s)| s.outstanding == 0));
    }

    #[test]
    fn down_enclaves_only_when_none_is_up_and_skips_are_honoured() {
        let p = pool(3);
        p.mark_down(0, "test");
        p.mark_down(1, "test");
        let held: Vec<Lease<'_>> = (0..3).map(|_| p.choose(&[]).unwrap()).collect();
        assert!(held.iter().all(|l| l.index == 2), "only 2 is up");
        assert_eq!(p.choose(&[2]).unwrap().index, 0);
        assert!(p.choose(&[0, 1, 2]).is_none());
        p.checked(1, Ok(()));
        assert_eq!(p.choose(&[]).unwrap().index, 1);
        let snap = p.snapshot();
        assert!(!snap[0].1.up && snap[1].1.up && snap[1].1.last_check_ms.is_some());
        assert_eq!(snap[0].1.down_reason.as_deref(), Some("test"));
        p.checked(2, Err("refused".into()));
        let snap = p.snapshot();
        assert!(!snap[2].1.up);
        assert_eq!(snap[2].1.last_check_error.as_deref(), Some("refused"));
    }
}
