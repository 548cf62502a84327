//! `reseal`: each message re-encrypted under a new data key of a target KMS key the policy
//! names, as an Encryption SDK message: "decrypt with the old key, encrypt with the new" after a
//! key compromise, without the host ever seeing plaintext.
//!
//! The new data key comes from an attested `GenerateDataKey` (with `Recipient`), so it exists in
//! the clear only here. The output keeps the input's suite, framing and encryption context
//! (less the SDK's reserved `aws-crypto-` keys, which the new message sets itself); one data key
//! serves every message of the job with the same context, as the SDK's data key cache would.

use std::collections::HashMap;

use cloister_esdk::{ContentType, DataKey, Edk, EncryptionContext, Encryptor, Header};
use cloister_nsm::Nsm;

use crate::error::EnclaveError;
use crate::kms::{AWS_KMS, KeyRelease};

/// Most distinct encryption contexts one reseal job may use (each costs a KMS call).
const MAX_CONTEXTS: usize = 256;

struct Materials {
    encryptor: Encryptor,
    key: DataKey,
    edk: Edk,
}

/// A reseal job's state: the target and the materials made so far.
pub struct Resealer {
    target: String,
    materials: HashMap<EncryptionContext, Materials>,
}

impl std::fmt::Debug for Resealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resealer")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Resealer {
    /// Reseals to `target` (already checked against the policy).
    pub fn new(target: String) -> Self {
        Self {
            target,
            materials: HashMap::new(),
        }
    }

    /// The message of `header` whose plaintext is `plain`, sealed again under the target key.
    pub async fn reseal(
        &mut self,
        release: &KeyRelease,
        nsm: &dyn Nsm,
        header: &Header,
        plain: &[u8],
    ) -> Result<Vec<u8>, EnclaveError> {
        let context: EncryptionContext = header
            .context
            .iter()
            .filter(|(k, _)| !k.starts_with("aws-crypto-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.materials.contains_key(&context) {
            if self.materials.len() >= MAX_CONTEXTS {
                return Err(EnclaveError::Limit(format!(
                    "more than {MAX_CONTEXTS} encryption contexts in one reseal job"
                )));
            }
            let frame = match header.content_type {
                ContentType::Framed => Some(header.frame_length),
                ContentType::NonFramed => None,
            };
            let encryptor = Encryptor::new(header.suite, context.clone(), frame)?;
            let generated = release
                .generate(nsm, &self.target, encryptor.context())
                .await?;
            let edk = Edk {
                provider_id: AWS_KMS.into(),
                provider_info: generated.key_id,
                ciphertext: generated.ciphertext_blob,
            };
            self.materials.insert(
                context.clone(),
                Materials {
                    encryptor,
                    key: generated.plaintext,
                    edk,
                },
            );
        }
        let m = self
            .materials
            .get(&context)
            .ok_or(EnclaveError::Protocol("reseal materials vanished"))?;
        Ok(m.encryptor.seal(&m.key, vec![m.edk.clone()], plain)?)
    }
}
