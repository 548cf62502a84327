//! The stats budget: how many jobs may read one KMS key's records within a sliding window.
//!
//! k-anonymity bounds what one result reveals, not what the difference of two results reveals: a
//! host that runs the same aggregation twice, once without one record's message, learns that
//! record. The policy bounds how many such jobs it gets per key and window. The count lives in
//! the enclave's memory, so it holds for the life of the enclave (a restarted enclave starts a
//! fresh window; the README says so).
//!
//! A job is charged once per key, when its first message under that key arrives, before the
//! key is released and anything is decrypted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::EnclaveError;
use crate::policy::Budget;

/// Most keys tracked at once: the enclave accepts a configured, short list of keys, so this
/// only bounds the map against a bug.
const MAX_KEYS: usize = 4096;

/// Jobs charged per key, across all jobs of this enclave.
#[derive(Debug, Default)]
pub struct Ledger {
    spent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Charges one `op` job against `key` under `budget`, or refuses if the window is full.
    pub fn charge(
        &self,
        op: &'static str,
        key: &str,
        budget: Budget,
        now: Instant,
    ) -> Result<(), EnclaveError> {
        let window = Duration::from_secs(budget.window_secs);
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = format!("{op}\n{key}");
        if !spent.contains_key(&id) && spent.len() >= MAX_KEYS {
            spent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            if spent.len() >= MAX_KEYS {
                return Err(EnclaveError::Limit("too many keys in the budget".into()));
            }
        }
        let times = spent.entry(id).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= budget.jobs as usize {
            return Err(EnclaveError::Budget {
                op,
                jobs: budget.jobs,
                window_secs: budget.window_secs,
            });
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    #[test]
    fn a_window_allows_its_jobs_per_key_then_refuses_until_they_age_out() {
        let ledger = Ledger::new();
        let b = Budget {
            jobs: 2,
            window_secs: 60,
        };
        let t0 = Instant::now();
        ledger.charge("stats", "k1", b, t0).unwrap();
        ledger.charge("stats", "k1", b, t0).unwrap();
        let e = ledger.charge("stats", "k1", b, t0).unwrap_err();
        assert_eq!(e.code(), "ENC-BUDGET");
        assert!(e.to_string().contains("2 stats jobs per 60 s"), "{e}");
        ledger.charge("stats", "k2", b, t0).unwrap();
        let later = t0 + Duration::from_secs(60);
        ledger.charge("stats", "k1", b, later).unwrap();
    }
}
