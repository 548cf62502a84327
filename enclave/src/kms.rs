//! Attested key release: how the enclave obtains a message's data key.
//!
//! For an `aws-kms` encrypted data key whose key ARN the enclave accepts, the typed KMS client's
//! [`decrypt_for_recipient`](cloister_kms_client::KmsClient::decrypt_for_recipient) makes a
//! fresh RSA key, has the NSM attest it, and opens the KMS's `CiphertextForRecipient`. The request
//! travels over vsock to the host's relay ([`RelayConnector`]) inside TLS that the enclave
//! terminates against the KMS CA of its configuration, so the host relays bytes it can neither
//! read nor forge. Released keys are cached (by encrypted key and context) for a bounded time
//! and number of uses, and zeroized when dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloister_esdk::Header;
use cloister_kms_client::{Ciphertext, Connecting, Connector, DataKey, KmsClient, Stream};
use cloister_nsm::Nsm;
use cloister_wire::relay::{self, Connect};
use cloister_wire::{Address, WireError};

use crate::error::EnclaveError;

/// Provider id of KMS-wrapped data keys.
pub const AWS_KMS: &str = "aws-kms";

/// Dials the host's KMS relay and asks for the KMS endpoint.
#[derive(Debug, Clone)]
pub struct RelayConnector {
    relay: Address,
    request: Connect,
}

impl RelayConnector {
    /// Reaches `destination` (host:port of the KMS) through the relay at `relay`.
    pub fn new(relay: Address, destination: &str) -> Result<Self, WireError> {
        Ok(Self {
            relay,
            request: Connect::new(destination)?,
        })
    }
}

impl Connector for RelayConnector {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let stream = self.relay.connect().await.map_err(std::io::Error::other)?;
            let stream = relay::connect(stream, &self.request)
                .await
                .map_err(std::io::Error::other)?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}

/// How long and how often a released data key may be reused.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Oldest a cached key may be.
    pub max_age: Duration,
    /// Most messages one key may open.
    pub max_uses: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_uses: 10_000,
        }
    }
}

struct Cached {
    key: DataKey,
    born: Instant,
    uses: u32,
}

/// Releases data keys into the enclave.
pub struct KeyRelease {
    kms: KmsClient,
    accepted_keys: Vec<String>,
    limits: CacheLimits,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
}

impl std::fmt::Debug for KeyRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRelease")
            .field("accepted_keys", &self.accepted_keys)
            .finish_non_exhaustive()
    }
}

/// The cache's key: the wrapped key and its context, each length-prefixed (no two different
/// pairs give the same bytes).
fn cache_key(edk: &[u8], header: &Header) -> Vec<u8> {
    let mut k = Vec::with_capacity(edk.len() + 64);
    for s in std::iter::once(edk).chain(
        header
            .context
            .iter()
            .flat_map(|(a, b)| [a.as_bytes(), b.as_bytes()]),
    ) {
        k.extend((s.len() as u64).to_be_bytes());
        k.extend(s);
    }
    k
}

impl KeyRelease {
    /// Key release through `kms` for the key ARNs in `accepted_keys`.
    pub fn new(kms: KmsClient, accepted_keys: Vec<String>, limits: CacheLimits) -> Self {
        Self {
            kms,
            accepted_keys,
            limits,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, id: &[u8]) -> Option<DataKey> {
        let mut cache = self.cache();
        cache
            .retain(|_, c| c.born.elapsed() < self.limits.max_age && c.uses < self.limits.max_uses);
        cache.get_mut(id).map(|c| {
            c.uses += 1;
            c.key.clone()
        })
    }

    /// The data key of a message whose header is `header`.
    pub async fn data_key(&self, nsm: &dyn Nsm, header: &Header) -> Result<DataKey, EnclaveError> {
        let edk = header
            .edks
            .iter()
            .find(|e| e.provider_id == AWS_KMS && self.accepted_keys.contains(&e.provider_info))
            .ok_or(EnclaveError::NoAcceptedKey)?;
        let id = cache_key(&edk.ciphertext, header);
        if let Some(k) = self.cached(&id) {
            return Ok(k);
        }
        let ct = Ciphertext {
            blob: &edk.ciphertext,
            key_id: Some(&edk.provider_info),
            context: &header.context,
        };
        let key = self.kms.decrypt_for_recipient(ct, nsm).await?;
        self.cache().insert(
            id,
            Cached {
                key: key.clone(),
                born: Instant::now(),
                uses: 1,
            },
        );
        Ok(key)
    }
}
