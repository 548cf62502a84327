//! Retries with exponential backoff and full jitter, as AWS's SDKs do.

use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Retry settings: attempts and the backoff base and cap.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Full jitter: a random delay in `[0, min(cap, base * 2^attempt))`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let mut r = [0u8; 8];
        let _ = SystemRandom::new().fill(&mut r);
        let fraction = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        };
        for attempt in 0..20 {
            assert!(r.delay(attempt) <= Duration::from_millis(100));
        }
        let delays: Vec<Duration> = (0..20).map(|_| r.delay(3)).collect();
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter varies");
    }
}
