//! Token buckets: the per-account rate of cryptographic requests, and the budget of
//! unauthenticated requests audited one by one (beyond it they are counted, and the count is
//! audited as one summary entry).

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

    /// Refills at `rate` per second from now on (a node's share of a service-wide rate changes
    /// as nodes come and go).
    pub(crate) fn set_rate(&mut self, rate: f64) {
        let rate = rate.max(0.001);
        if (rate - self.rate).abs() > f64::EPSILON {
            self.rate = rate;
            self.tokens = self.tokens.min(rate.max(1.0));
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

/// Requests that were not audited one by one: how many, since when (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unaudited {
    /// How many.
    pub(crate) count: u64,
    /// When the first of them arrived.
    pub(crate) since_ms: i64,
}

/// How many unauthenticated requests get their own audit entry: a token bucket; the requests
/// beyond it are counted until [`AuditBudget::take_unaudited`] hands the count over.
#[derive(Debug)]
pub(crate) struct AuditBudget {
    bucket: TokenBucket,
    unaudited: Option<Unaudited>,
}

impl AuditBudget {
    /// A budget of `rate` individually audited requests per second.
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            bucket: TokenBucket::new(rate),
            unaudited: None,
        }
    }

    /// Whether a request arriving at `now_ms` gets its own entry; if not, it is counted.
    pub(crate) fn admit(&mut self, now_ms: i64) -> bool {
        if self.bucket.take() {
            return true;
        }
        let u = self.unaudited.get_or_insert(Unaudited {
            count: 0,
            since_ms: now_ms,
        });
        u.count = u.count.saturating_add(1);
        false
    }

    /// The requests counted since the last call, if any (the count restarts from zero).
    pub(crate) fn take_unaudited(&mut self) -> Option<Unaudited> {
        self.unaudited.take()
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

    #[test]
    fn the_budget_counts_what_it_does_not_admit_until_handed_over() {
        let mut b = AuditBudget::new(2.0);
        assert_eq!(b.take_unaudited(), None);
        let admitted = (0..10).filter(|i| b.admit(100 + i)).count();
        assert_eq!(admitted, 2);
        assert_eq!(
            b.take_unaudited(),
            Some(Unaudited {
                count: 8,
                since_ms: 102
            })
        );
        assert_eq!(b.take_unaudited(), None);
        assert!(!b.admit(500));
        assert_eq!(
            b.take_unaudited(),
            Some(Unaudited {
                count: 1,
                since_ms: 500
            })
        );
    }
}
