//! Attested key release: how the enclave obtains a message's data key.
//!
//! For an `aws-kms` encrypted data key whose key ARN the enclave accepts: a fresh RSA-2048 key
//! pair (aws-lc-rs, used for one decryption and dropped), an NSM document binding its public key
//! and a random nonce, and a KMS `Decrypt` with `Recipient`. The request travels over vsock to the
//! host's relay inside TLS that the enclave terminates against the KMS CA it was configured with,
//! so the host relays bytes it can neither read nor forge. The answer's CMS envelope is opened
//! with the private key. Released keys are cached (by encrypted key and context) for a bounded
//! time and number of uses, and zeroized when dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_esdk::{DataKey, Header};
use cloister_kms_client::{Connecting, Connector, KmsClient, Stream, b64, blob};
use cloister_wire::Address;
use serde_json::json;

use crate::error::EnclaveError;
use crate::nsm::{Nsm, attestation};

/// Provider id of KMS-wrapped data keys.
pub const AWS_KMS: &str = "aws-kms";

/// Dials the host's KMS relay and asks for the KMS endpoint (`CONNECT host:port`).
#[derive(Debug, Clone)]
pub struct RelayConnector {
    relay: Address,
    destination: String,
}

impl RelayConnector {
    /// Reaches `destination` (host:port of the KMS) through the relay at `relay`.
    pub fn new(relay: Address, destination: String) -> Self {
        Self { relay, destination }
    }
}

impl Connector for RelayConnector {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let io = |e: cloister_wire::WireError| std::io::Error::other(e.to_string());
            let mut s = BufReader::new(self.relay.connect().await.map_err(io)?);
            s.get_mut()
                .write_all(format!("CONNECT {}\n", self.destination).as_bytes())
                .await?;
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_line(&mut line))
                .await
                .map_err(|_| std::io::Error::other("relay did not answer"))??;
            if line.trim_end() != "OK" {
                return Err(std::io::Error::other(format!(
                    "relay refused: {}",
                    line.trim_end()
                )));
            }
            Ok(Box::new(s) as Box<dyn Stream>)
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

fn cache_key(edk: &[u8], header: &Header) -> Vec<u8> {
    let mut k = edk.to_vec();
    for (a, b) in &header.context {
        for s in [a, b] {
            k.extend((s.len() as u64).to_be_bytes());
            k.extend(s.as_bytes());
        }
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

    fn cached(&self, id: &[u8]) -> Option<DataKey> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            .ok_or_else(|| {
                EnclaveError::KeyRelease(
                    "no aws-kms encrypted data key for a key this enclave accepts".into(),
                )
            })?;
        let id = cache_key(&edk.ciphertext, header);
        if let Some(k) = self.cached(&id) {
            return Ok(k);
        }
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| EnclaveError::KeyRelease("RSA key generation".into()))?;
        let spki = private
            .public_key()
            .as_der()
            .map_err(|_| EnclaveError::KeyRelease("RSA public key encoding".into()))?
            .as_ref()
            .to_vec();
        let mut nonce = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| EnclaveError::KeyRelease("no randomness".into()))?;
        let document = attestation(nsm, spki, nonce).await?;
        let request = json!({
            "CiphertextBlob": b64(&edk.ciphertext),
            "KeyId": edk.provider_info,
            "EncryptionContext": header.context,
            "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b64(&document)},
        });
        let answer = self
            .kms
            .call("Decrypt", &request)
            .await
            .map_err(|e| EnclaveError::Kms {
                code: e.code().to_owned(),
                message: e.to_string(),
            })?;
        if answer.get("Plaintext").is_some() {
            return Err(EnclaveError::KeyRelease(
                "the KMS returned plaintext instead of CiphertextForRecipient".into(),
            ));
        }
        let envelope = blob(&answer, "CiphertextForRecipient")
            .map_err(|e| EnclaveError::KeyRelease(e.to_string()))?;
        let opener = RecipientPrivateKey::new(private)
            .map_err(|e| EnclaveError::KeyRelease(e.to_string()))?;
        let plain = opener
            .open(&envelope)
            .map_err(|e| EnclaveError::KeyRelease(e.to_string()))?;
        drop(opener); // the one-use private key is gone
        if plain.len() != 32 {
            return Err(EnclaveError::KeyRelease(format!(
                "data key is {} bytes",
                plain.len()
            )));
        }
        let mut key = DataKey::new([0; 32]);
        key.copy_from_slice(&plain);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
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
