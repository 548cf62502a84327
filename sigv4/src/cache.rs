//! A small bounded cache of derived SigV4 signing keys, for servers.
//!
//! Deriving a signing key costs four HMACs; it depends only on the secret, the scope's date, region
//! and service, so a server needs it once per principal per day. The cache is keyed by access key
//! id, SHA-256 of the secret, date, region and service: a rotated secret misses (its old entry
//! is never looked up again), so a cached key can never make a signature by another secret verify.
//! Cached keys are zeroized when dropped; when the cache is full it is emptied (the valid keys are
//! at most two dates per principal, since the scope date must be the request's date within the
//! allowed skew, so a full cache means many principals, not an attack).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::signing_key;

/// What a signing key is derived from (the secret only as its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    access_key_id: String,
    secret_sha256: [u8; 32],
    date: String,
    region: String,
    service: String,
}

/// Derived signing keys, at most `capacity` of them.
pub struct SigningKeyCache {
    keys: Mutex<HashMap<Scope, Zeroizing<Vec<u8>>>>,
    capacity: usize,
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SigningKeyCache {
    /// An empty cache holding at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The signing key for `secret` (of `access_key_id`) and the scope `date/region/service`,
    /// derived on a miss.
    pub fn signing_key(
        &self,
        access_key_id: &str,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Zeroizing<Vec<u8>> {
        let mut secret_sha256 = [0u8; 32];
        secret_sha256.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
        let scope = Scope {
            access_key_id: access_key_id.to_owned(),
            secret_sha256,
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        };
        if let Some(key) = self.lock().get(&scope) {
            return key.clone();
        }
        // Derived outside the lock; two racing misses derive the same key.
        let key = signing_key(secret, date, region, service);
        let mut keys = self.lock();
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(scope, key.clone());
        key
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, Zeroizing<Vec<u8>>>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_equal_fresh_derivations_and_rotation_misses() {
        let cache = SigningKeyCache::new(8);
        let fresh = signing_key("s1", "20250101", "us-east-1", "kms");
        assert_eq!(
            cache.signing_key("AK", "s1", "20250101", "us-east-1", "kms"),
            fresh
        );
        assert_eq!(
            cache.signing_key("AK", "s1", "20250101", "us-east-1", "kms"),
            fresh
        );
        assert_eq!(cache.len(), 1);
        // Same access key, new secret: a new derivation, not the cached key.
        assert_eq!(
            cache.signing_key("AK", "s2", "20250101", "us-east-1", "kms"),
            signing_key("s2", "20250101", "us-east-1", "kms")
        );
        assert_ne!(
            cache.signing_key("AK", "s2", "20250102", "us-east-1", "kms"),
            fresh
        );
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_full_cache_is_emptied() {
        let cache = SigningKeyCache::new(3);
        for i in 0..3 {
            cache.signing_key(&format!("AK{i}"), "s", "20250101", "us-east-1", "kms");
        }
        assert_eq!(cache.len(), 3);
        cache.signing_key("AK3", "s", "20250101", "us-east-1", "kms");
        assert_eq!(cache.len(), 1);
    }
}
