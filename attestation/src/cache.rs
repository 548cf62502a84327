//! A cache of verified certificate chains.
//!
//! Documents from one enclave share their chain (the `cabundle` and the leaf), so once a chain
//! has been verified, later documents cost one signature check: the COSE signature. Entries are
//! keyed by SHA-256 over the chain's exact bytes and keep each certificate's validity, so a cached
//! chain is still refused at an instant where any certificate has expired. Only chains that fully
//! verified are cached, and a cache belongs to one [`crate::Verifier`], whose roots never change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::chain::VerifiedChain;

/// A bounded map from chain bytes to a verified chain.
#[derive(Debug)]
pub struct ChainCache {
    entries: Mutex<HashMap<[u8; 32], Arc<VerifiedChain>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ChainCache {
    /// A cache that holds at most `capacity` chains (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(cabundle: &[Vec<u8>], leaf: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for cert in cabundle
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(leaf))
        {
            h.update((cert.len() as u64).to_be_bytes());
            h.update(cert);
        }
        h.finalize().into()
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<VerifiedChain>> {
        let found = self.lock().get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: [u8; 32], chain: Arc<VerifiedChain>) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Evict an arbitrary entry: chains are few (one per enclave leaf) and cheap to redo.
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(key, chain);
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Number of cached chains.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<VerifiedChain>>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_unambiguous_and_capacity_holds() {
        assert_ne!(
            ChainCache::key(&[b"ab".to_vec()], b"c"),
            ChainCache::key(&[b"a".to_vec()], b"bc")
        );
        let cache = ChainCache::new(2);
        let chain = Arc::new(VerifiedChain {
            leaf_key: vec![],
            validity: vec![],
        });
        for i in 0u8..5 {
            cache.insert([i; 32], chain.clone());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[4; 32]).is_some());
        assert_eq!(cache.stats().0, 1);
    }
}
