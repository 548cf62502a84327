//! A token bucket: `rate` tokens per second, holding at most one second's worth.

use std::time::Instant;

/// A token bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second.
    pub(crate) fn new(rate: f64) -> Self {
        let rate = rate.max(0.001);
        Self {
            rate,
            tokens: rate.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let mut b = TokenBucket::new(5.0);
        assert_eq!((0..10).filter(|_| b.take()).count(), 5);
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(b.take());
    }
}
