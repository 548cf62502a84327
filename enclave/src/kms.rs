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
use cloister_kms_client::{
    Ciphertext, Connecting, Connector, DataKey, EncryptionContext, GeneratedDataKey, KmsClient,
    Stream,
};
use cloister_nsm::Nsm;
use cloister_wire::relay::{self, Connect};
use cloister_wire::{Address, WireError};

use crate::error::EnclaveError;

/// Provider id of KMS-wrapped data keys.
pub const AWS_KMS: &str = "aws-kms";

/// The encryption context a tokenization key is bound to: a wrapped data key made for records
/// cannot be passed off as a tokenization key (KMS refuses the other context).
pub const TOKEN_KEY_CONTEXT: (&str, &str) = ("cloister:purpose", "tokenization");

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

    /// The job's KMS client (over the relayed TLS, with the job's credentials).
    pub fn client(&self) -> &KmsClient {
        &self.kms
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

    /// The ARN of the accepted KMS key whose data key `header` carries (what a key release for
    /// it would ask for).
    pub fn accepted_key<'h>(&self, header: &'h Header) -> Result<&'h str, EnclaveError> {
        header
            .edks
            .iter()
            .find(|e| e.provider_id == AWS_KMS && self.accepted_keys.contains(&e.provider_info))
            .map(|e| e.provider_info.as_str())
            .ok_or(EnclaveError::NoAcceptedKey)
    }

    /// A fresh data key of `key_arn` bound to `context`, released only to this enclave.
    pub async fn generate(
        &self,
        nsm: &dyn Nsm,
        key_arn: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, EnclaveError> {
        Ok(self
            .kms
            .generate_data_key_for_recipient(key_arn, context, nsm)
            .await?)
    }

    /// The tokenization key wrapped in `blob` by `key_arn`, under [`TOKEN_KEY_CONTEXT`].
    pub async fn token_key(
        &self,
        nsm: &dyn Nsm,
        key_arn: &str,
        blob: &[u8],
    ) -> Result<DataKey, EnclaveError> {
        let context: EncryptionContext = [(
            TOKEN_KEY_CONTEXT.0.to_owned(),
            TOKEN_KEY_CONTEXT.1.to_owned(),
        )]
        .into();
        let ct = Ciphertext {
            blob,
            key_id: Some(key_arn),
            context: &context,
        };
        Ok(self.kms.decrypt_for_recipient(ct, nsm).await?)
    }

    /// The data key of a message whose header is `header`.
    pub async fn data_key(&self, nsm: &dyn Nsm, header: &Header) -> Result<DataKey, EnclaveError> {
        let arn = self.accepted_key(header)?;
        let edk = header
            .edks
            .iter()
            .find(|e| e.provider_id == AWS_KMS && e.provider_info == arn)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    use cloister_attestation::PcrValue;
    use cloister_common::ErrorCode;
    use cloister_esdk::{Edk, Encryptor, Suite};

    use super::*;
    use crate::testing::{self, Behaviour, DATA_KEY, FakeKms, KEY_ARN, WRAPPED};

    fn header(key_arn: &str, context: &[(&str, &str)]) -> Header {
        let ctx: BTreeMap<String, String> = context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let msg = Encryptor::new(Suite::from_id(0x0478).unwrap(), ctx, Some(4096))
            .unwrap()
            .seal(
                &DataKey::new(DATA_KEY),
                vec![Edk {
                    provider_id: AWS_KMS.into(),
                    provider_info: key_arn.into(),
                    ciphertext: WRAPPED.to_vec(),
                }],
                b"{}\n",
            )
            .unwrap();
        cloister_esdk::parse_header(&msg).unwrap().0
    }

    fn release(kms: &std::sync::Arc<FakeKms>, limits: CacheLimits) -> KeyRelease {
        KeyRelease::new(testing::client(kms), vec![KEY_ARN.into()], limits)
    }

    #[tokio::test]
    async fn a_key_is_released_to_the_attested_enclave_once_then_cached_within_limits() {
        let pcr0 = PcrValue::measure(b"this image");
        let (nsm, root) = testing::nsm(pcr0);
        let kms = FakeKms::new(root, pcr0, Behaviour::Release);
        let r = release(
            &kms,
            CacheLimits {
                max_age: Duration::from_secs(60),
                max_uses: 2,
            },
        );
        let h = header(KEY_ARN, &[("job", "1")]);
        for _ in 0..2 {
            assert_eq!(*r.data_key(&nsm, &h).await.unwrap(), DATA_KEY);
        }
        assert_eq!(
            kms.decrypts.load(Ordering::SeqCst),
            1,
            "the second use is cached"
        );
        // Past max_uses the key is released again; another context is another cache entry.
        r.data_key(&nsm, &h).await.unwrap();
        r.data_key(&nsm, &header(KEY_ARN, &[("job", "2")]))
            .await
            .unwrap();
        assert_eq!(kms.decrypts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refusals_keep_their_codes_and_nothing_is_cached() {
        let pcr0 = PcrValue::measure(b"this image");
        let h = header(KEY_ARN, &[]);
        for (behaviour, kms_pcr0, code) in [
            (
                Behaviour::Release,
                PcrValue::measure(b"another image"),
                "KMS-AccessDeniedException",
            ),
            (Behaviour::Deny, pcr0, "KMS-AccessDeniedException"),
            (Behaviour::Plaintext, pcr0, "KMS-PLAINTEXT-RETURNED"),
            (Behaviour::BrokenEnvelope, pcr0, "CMS-FORMAT"),
        ] {
            let (nsm, root) = testing::nsm(pcr0);
            let kms = FakeKms::new(root, kms_pcr0, behaviour);
            let r = release(&kms, CacheLimits::default());
            for attempt in 1..=2 {
                let e = r.data_key(&nsm, &h).await.unwrap_err();
                assert_eq!(e.code(), code, "{behaviour:?}: {e}");
                assert!(e.is_fatal());
                assert_eq!(kms.decrypts.load(Ordering::SeqCst), attempt, "not cached");
            }
        }
    }

    #[tokio::test]
    async fn keys_of_other_kms_keys_are_not_requested() {
        let pcr0 = PcrValue::measure(b"this image");
        let (nsm, root) = testing::nsm(pcr0);
        let kms = FakeKms::new(root, pcr0, Behaviour::Release);
        let r = release(&kms, CacheLimits::default());
        let other = header("arn:aws:kms:us-east-1:111122223333:key/other", &[]);
        let e = r.data_key(&nsm, &other).await.unwrap_err();
        assert_eq!(e.code(), "ENC-NO-KEY");
        assert_eq!(kms.decrypts.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn relay_destinations_are_checked() {
        let relay: Address = "unix:///tmp/relay.sock".parse().unwrap();
        assert!(RelayConnector::new(relay.clone(), "127.0.0.1:4600").is_ok());
        assert_eq!(
            RelayConnector::new(relay, "evil host:1")
                .unwrap_err()
                .code(),
            "WIRE-HANDSHAKE"
        );
    }
}
