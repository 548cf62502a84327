//! Access key ids recently looked up in the store and not found: a bounded cache with a short
//! lifetime, so a caller signing with made-up ids costs one store query per id and TTL, not one
//! per request, and cannot grow the cache past its bound.
//!
//! The lifetime is how long a principal created by `cloister-kms principal add` while the
//! server runs can stay unknown, if its id was tried before it existed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most ids remembered.
pub(crate) const CAPACITY: usize = 4096;
/// How long an id is remembered as unknown.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// Access key ids not found in the store, each with when it was not found.
#[derive(Debug)]
pub(crate) struct UnknownKeys {
    capacity: usize,
    ttl: Duration,
    seen: HashMap<String, Instant>,
    /// Insertion order (oldest first), for eviction; an id appears once.
    order: VecDeque<String>,
}

impl UnknownKeys {
    /// An empty cache of at most `capacity` ids, each remembered for `ttl`.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` was found unknown less than the TTL before `now`.
    pub(crate) fn contains(&self, id: &str, now: Instant) -> bool {
        self.seen
            .get(id)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    /// Remembers `id` as unknown at `now`, forgetting expired ids and, when full, the oldest.
    pub(crate) fn insert(&mut self, id: &str, now: Instant) {
        while let Some(oldest) = self.order.front() {
            let expired = self
                .seen
                .get(oldest)
                .is_none_or(|at| now.saturating_duration_since(*at) >= self.ttl);
            if !expired && self.order.len() < self.capacity {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.insert(id.to_owned(), now).is_some() {
            // Re-inserted (it had expired): move it to the back.
            self.order.retain(|k| k != id);
        }
        self.order.push_back(id.to_owned());
    }

    /// Forgets `id` (it was found after all).
    pub(crate) fn remove(&mut self, id: &str) {
        if self.seen.remove(id).is_some() {
            self.order.retain(|k| k != id);
        }
    }

    /// How many ids are remembered (expired ones included until evicted).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = UnknownKeys::new(8, Duration::from_secs(30));
        c.insert("AKIAX", t0);
        assert!(c.contains("AKIAX", t0 + Duration::from_secs(29)));
        assert!(!c.contains("AKIAX", t0 + Duration::from_secs(30)));
        assert!(!c.contains("AKIAY", t0));
        // Re-inserting an expired id remembers it again, once.
        c.insert("AKIAX", t0 + Duration::from_secs(31));
        assert!(c.contains("AKIAX", t0 + Duration::from_secs(32)));
        assert_eq!(c.len(), 1);
        c.remove("AKIAX");
        assert!(!c.contains("AKIAX", t0 + Duration::from_secs(32)));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut c = UnknownKeys::new(4, Duration::from_secs(30));
        for i in 0..100 {
            c.insert(&format!("AKIA{i}"), t0);
            assert!(c.len() <= 4);
        }
        // The newest are kept, the oldest evicted.
        assert!(c.contains("AKIA99", t0) && c.contains("AKIA96", t0));
        assert!(!c.contains("AKIA95", t0));
        // Expired ids go first when a new one comes.
        c.insert("AKIANEW", t0 + Duration::from_secs(31));
        assert_eq!(c.len(), 1);
    }
}
