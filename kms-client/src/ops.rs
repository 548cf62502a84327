//! The KMS operations cloister calls, typed: what the host's seal/open and the enclave's key
//! release need, and nothing builds KMS JSON by hand outside this module.
//!
//! Keys and plaintext come back in zeroizing types, decoded straight from the answer's bytes.
//! [`KmsClient::decrypt_for_recipient`] is the attested release: a fresh RSA-2048 key made for
//! this one call, an NSM document binding it, `Decrypt` with `Recipient`, and the
//! `CiphertextForRecipient` envelope opened here, so the data key exists in the clear only
//! inside the caller (the enclave).

use std::collections::BTreeMap;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_nsm::Nsm;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::client::KmsClient;
use crate::error::ClientError;

/// An encryption context: sorted, as KMS binds it.
pub type EncryptionContext = BTreeMap<String, String>;

/// A 256-bit data key, zeroized when dropped.
pub type DataKey = Zeroizing<[u8; 32]>;

/// Bytes of the nonce an attested release binds into its document.
const NONCE_LEN: usize = 32;

/// A data key fresh from `GenerateDataKey`.
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// The ARN of the KMS key that wrapped it.
    pub key_id: String,
    /// The key itself.
    pub plaintext: DataKey,
    /// The key wrapped by the KMS key, to store beside the data.
    pub ciphertext_blob: Vec<u8>,
}

/// The answer of `Encrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The ARN of the KMS key used.
    pub key_id: String,
    /// The ciphertext.
    pub ciphertext_blob: Vec<u8>,
}

/// The answer of a plaintext `Decrypt`.
#[derive(Debug)]
pub struct Decrypted {
    /// The ARN of the KMS key used.
    pub key_id: String,
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// What to decrypt: a ciphertext blob, optionally the key expected to have made it, and the
/// encryption context it was bound to.
#[derive(Debug, Clone, Copy)]
pub struct Ciphertext<'a> {
    /// The blob.
    pub blob: &'a [u8],
    /// The key id or ARN that must have made it (KMS refuses another).
    pub key_id: Option<&'a str>,
    /// Its encryption context.
    pub context: &'a EncryptionContext,
}

// ---- request shapes --------------------------------------------------------------------------

pub(crate) fn base64_bytes<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Recipient {
    pub(crate) key_encryption_algorithm: &'static str,
    #[serde(serialize_with = "base64_bytes")]
    pub(crate) attestation_document: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest<'a> {
    key_id: &'a str,
    number_of_bytes: u32,
    encryption_context: &'a EncryptionContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<Recipient>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    #[serde(serialize_with = "base64_bytes")]
    plaintext: &'a [u8],
    encryption_context: &'a EncryptionContext,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    #[serde(serialize_with = "base64_bytes")]
    ciphertext_blob: &'a [u8],
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    encryption_context: &'a EncryptionContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<Recipient>,
}

// ---- answer shapes ---------------------------------------------------------------------------

/// Base64 text decoded into bytes.
pub(crate) struct Blob(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(Blob)
            .map_err(|_| serde::de::Error::custom("not base64"))
    }
}

/// Base64 text decoded into bytes that are zeroized when dropped. The text is borrowed from the
/// (zeroizing) answer buffer, so no unzeroized copy of the plaintext is made.
pub(crate) struct SecretBlob(pub(crate) Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&'de str>::deserialize(d)?;
        let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 4 * 3 + 3));
        STANDARD
            .decode_vec(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("not base64"))?;
        Ok(Self(out))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyAnswer {
    key_id: String,
    plaintext: SecretBlob,
    ciphertext_blob: Blob,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttestedDataKeyAnswer {
    key_id: String,
    plaintext: Option<SecretBlob>,
    ciphertext_blob: Blob,
    ciphertext_for_recipient: Option<Blob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WrappedDataKeyAnswer {
    key_id: String,
    ciphertext_blob: Blob,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptAnswer {
    key_id: String,
    ciphertext_blob: Blob,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptAnswer {
    key_id: String,
    plaintext: Option<SecretBlob>,
    ciphertext_for_recipient: Option<Blob>,
}

/// Parses `bytes` as the KMS's answer to `op` as the typed operations read it; `None` for an
/// operation they do not call (for the answer fuzz target, see [`crate::decode_answer`]).
pub(crate) fn check_answer(op: &str, bytes: &[u8]) -> Option<Result<(), ClientError>> {
    Some(match op {
        "GenerateDataKey" => parse::<GenerateDataKeyAnswer>(op, bytes).map(drop),
        "GenerateDataKeyForRecipient" => parse::<AttestedDataKeyAnswer>(op, bytes).map(drop),
        "GenerateDataKeyWithoutPlaintext" => parse::<WrappedDataKeyAnswer>(op, bytes).map(drop),
        "Encrypt" => parse::<EncryptAnswer>(op, bytes).map(drop),
        "Decrypt" => parse::<DecryptAnswer>(op, bytes).map(drop),
        _ => return None,
    })
}

pub(crate) fn parse<T: DeserializeOwned>(op: &str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol(format!("{op} answer: {e}")))
}

fn data_key(plain: &[u8]) -> Result<DataKey, ClientError> {
    let mut key = DataKey::new([0; 32]);
    if plain.len() != key.len() {
        return Err(ClientError::KeyLength(plain.len()));
    }
    key.copy_from_slice(plain);
    Ok(key)
}

pub(crate) fn body(req: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))
}

impl KmsClient {
    /// `GenerateDataKey`: a fresh 256-bit data key under `key_id`, bound to `context`.
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, ClientError> {
        let req = GenerateDataKeyRequest {
            key_id,
            number_of_bytes: 32,
            encryption_context: context,
            recipient: None,
        };
        let answer = self.request("GenerateDataKey", &body(&req)?).await?;
        let a: GenerateDataKeyAnswer = parse("GenerateDataKey", &answer)?;
        Ok(GeneratedDataKey {
            key_id: a.key_id,
            plaintext: data_key(&a.plaintext.0)?,
            ciphertext_blob: a.ciphertext_blob.0,
        })
    }

    /// `Encrypt`: `plaintext` (at most 4 KiB) under `key_id`, bound to `context`.
    pub async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, ClientError> {
        let req = EncryptRequest {
            key_id,
            plaintext,
            encryption_context: context,
        };
        let answer = self.request("Encrypt", &body(&req)?).await?;
        let a: EncryptAnswer = parse("Encrypt", &answer)?;
        Ok(Encrypted {
            key_id: a.key_id,
            ciphertext_blob: a.ciphertext_blob.0,
        })
    }

    /// `Decrypt` with the plaintext returned to the caller: the key owner's path.
    pub async fn decrypt(&self, ct: Ciphertext<'_>) -> Result<Decrypted, ClientError> {
        let req = DecryptRequest {
            ciphertext_blob: ct.blob,
            key_id: ct.key_id,
            encryption_context: ct.context,
            recipient: None,
        };
        let answer = self.request("Decrypt", &body(&req)?).await?;
        let a: DecryptAnswer = parse("Decrypt", &answer)?;
        let plaintext = a
            .plaintext
            .ok_or_else(|| ClientError::Protocol("Decrypt answer lacks Plaintext".into()))?;
        Ok(Decrypted {
            key_id: a.key_id,
            plaintext: plaintext.0,
        })
    }

    /// `Decrypt` of a wrapped data key, checked to be 256 bits.
    pub async fn decrypt_data_key(&self, ct: Ciphertext<'_>) -> Result<DataKey, ClientError> {
        data_key(&self.decrypt(ct).await?.plaintext)
    }

    /// `GenerateDataKeyWithoutPlaintext`: a fresh data key under `key_id` that nobody has seen,
    /// only its wrapped form (for a key that only an attested enclave may ever unwrap).
    pub async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let req = GenerateDataKeyRequest {
            key_id,
            number_of_bytes: 32,
            encryption_context: context,
            recipient: None,
        };
        let answer = self
            .request("GenerateDataKeyWithoutPlaintext", &body(&req)?)
            .await?;
        let a: WrappedDataKeyAnswer = parse("GenerateDataKeyWithoutPlaintext", &answer)?;
        Ok((a.key_id, a.ciphertext_blob.0))
    }

    /// A one-use RSA-2048 key and an NSM document binding it (and a fresh nonce).
    pub(crate) async fn attested_recipient(
        nsm: &dyn Nsm,
    ) -> Result<(RecipientPrivateKey, Recipient), ClientError> {
        // RSA key generation takes tens of milliseconds: off the async worker threads.
        let (private, spki) = tokio::task::spawn_blocking(RecipientPrivateKey::generate)
            .await
            .map_err(ClientError::transport("RSA key generation thread"))??;
        let mut nonce = vec![0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ClientError::Config("no system randomness".into()))?;
        let document = nsm.attestation(Some(spki), Some(nonce), None).await?;
        Ok((
            private,
            Recipient {
                key_encryption_algorithm: "RSAES_OAEP_SHA_256",
                attestation_document: document,
            },
        ))
    }

    /// Opens a `CiphertextForRecipient` with the one-use key, which is then dropped; an answer
    /// that carried `Plaintext` is refused (a KMS honouring the attestation never sends it).
    fn open_for_recipient(
        private: RecipientPrivateKey,
        plaintext: Option<SecretBlob>,
        envelope: Option<Blob>,
        op: &str,
    ) -> Result<DataKey, ClientError> {
        data_key(&Self::open_envelope(
            private,
            plaintext.is_some(),
            envelope,
            op,
        )?)
    }

    /// Opens a `CiphertextForRecipient` of any length with the one-use key, which is then
    /// dropped; `plaintext_returned` (the answer also carried the value in the clear) refuses it.
    pub(crate) fn open_envelope(
        private: RecipientPrivateKey,
        plaintext_returned: bool,
        envelope: Option<Blob>,
        op: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        if plaintext_returned {
            return Err(ClientError::PlaintextReturned);
        }
        let envelope = envelope.ok_or_else(|| {
            ClientError::Protocol(format!("{op} answer lacks CiphertextForRecipient"))
        })?;
        let plain = private.open(&envelope.0)?;
        drop(private); // the one-use private key is gone
        Ok(plain)
    }

    /// Attested `Decrypt` of any ciphertext (not only a data key): the plaintext, opened from
    /// `CiphertextForRecipient` as [`Self::decrypt_for_recipient`] does, with the KMS key that
    /// made it. What the enclave uses to open a secret kept as a KMS ciphertext (path P).
    pub async fn decrypt_bytes_for_recipient(
        &self,
        ct: Ciphertext<'_>,
        nsm: &dyn Nsm,
    ) -> Result<Decrypted, ClientError> {
        let (private, recipient) = Self::attested_recipient(nsm).await?;
        let req = DecryptRequest {
            ciphertext_blob: ct.blob,
            key_id: ct.key_id,
            encryption_context: ct.context,
            recipient: Some(recipient),
        };
        let answer = self.request("Decrypt", &body(&req)?).await?;
        let a: DecryptAnswer = parse("Decrypt", &answer)?;
        let plaintext = Self::open_envelope(
            private,
            a.plaintext.is_some(),
            a.ciphertext_for_recipient,
            "Decrypt",
        )?;
        Ok(Decrypted {
            key_id: a.key_id,
            plaintext,
        })
    }

    /// Attested release of a wrapped data key: `Decrypt` with a `Recipient` whose attestation
    /// document `nsm` signs over a fresh RSA-2048 key; the KMS answers with the key encrypted
    /// to that RSA key, which is opened here and then dropped. An answer carrying `Plaintext`
    /// is refused: a KMS honouring the attestation never sends it.
    pub async fn decrypt_for_recipient(
        &self,
        ct: Ciphertext<'_>,
        nsm: &dyn Nsm,
    ) -> Result<DataKey, ClientError> {
        data_key(&self.decrypt_bytes_for_recipient(ct, nsm).await?.plaintext)
    }

    /// Attested `GenerateDataKey`: a fresh data key under `key_id` bound to `context`, released
    /// only to the enclave whose document `nsm` signs (as [`Self::decrypt_for_recipient`]).
    pub async fn generate_data_key_for_recipient(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        nsm: &dyn Nsm,
    ) -> Result<GeneratedDataKey, ClientError> {
        let (private, recipient) = Self::attested_recipient(nsm).await?;
        let req = GenerateDataKeyRequest {
            key_id,
            number_of_bytes: 32,
            encryption_context: context,
            recipient: Some(recipient),
        };
        let answer = self.request("GenerateDataKey", &body(&req)?).await?;
        let a: AttestedDataKeyAnswer = parse("GenerateDataKey", &answer)?;
        let plaintext = Self::open_for_recipient(
            private,
            a.plaintext,
            a.ciphertext_for_recipient,
            "GenerateDataKey",
        )?;
        Ok(GeneratedDataKey {
            key_id: a.key_id,
            plaintext,
            ciphertext_blob: a.ciphertext_blob.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_aws_member_names() {
        let ctx: EncryptionContext = [("purpose".to_owned(), "test".to_owned())].into();
        let req = DecryptRequest {
            ciphertext_blob: &[1, 2, 3],
            key_id: None,
            encryption_context: &ctx,
            recipient: Some(Recipient {
                key_encryption_algorithm: "RSAES_OAEP_SHA_256",
                attestation_document: vec![9],
            }),
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&req).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "CiphertextBlob": "AQID",
                "EncryptionContext": {"purpose": "test"},
                "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "CQ=="}
            })
        );
    }

    #[test]
    fn answers_are_checked() {
        let ok: GenerateDataKeyAnswer = parse(
            "GenerateDataKey",
            format!(
                r#"{{"KeyId":"arn:k","Plaintext":"{}","CiphertextBlob":"AQ=="}}"#,
                STANDARD.encode([7u8; 32])
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(*data_key(&ok.plaintext.0).unwrap(), [7u8; 32]);
        assert!(matches!(
            data_key(&[1; 16]),
            Err(ClientError::KeyLength(16))
        ));
        let bad = parse::<GenerateDataKeyAnswer>(
            "GenerateDataKey",
            br#"{"KeyId":"k","Plaintext":"%%%","CiphertextBlob":"AQ=="}"#,
        );
        assert!(matches!(bad, Err(ClientError::Protocol(_))));
        let missing = parse::<EncryptAnswer>("Encrypt", br#"{"KeyId":"k"}"#);
        assert!(matches!(missing, Err(ClientError::Protocol(_))));
    }
}
