//! The ciphertext blob that Encrypt and GenerateDataKey return, and the encryption context's
//! canonical encoding.
//!
//! ```text
//! blob = 0x01 | key id (36 ASCII bytes, a UUID or a Multi-Region `mrk-` id) | u32 key-material version | 12-byte nonce | AES-256-GCM(ct ‖ tag)
//! AAD  = blob[0..41] | canonical(encryption context)
//! canonical(ec) = u32 count | for each pair sorted by key bytes: u32 len | key | u32 len | value
//! ```
//! Every field of the header is authenticated, so a blob cannot be replayed under another key or
//! version. The context encoding is length-prefixed, so `{"ab":"c"}` and `{"a":"bc"}` differ
//! (moto, LocalStack and local-kms concatenate `k‖v` and confuse them).

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};

const VERSION: u8 = 0x01;
const KEY_ID_LEN: usize = 36;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + 4;
const TAG_LEN: usize = 16;
/// Largest blob KMS accepts.
pub(crate) const MAX_BLOB: usize = 6144;

/// An encryption context: string pairs, ordered by key.
pub(crate) type EncryptionContext = BTreeMap<String, String>;

/// The length-prefixed, sorted encoding of a context.
pub(crate) fn canonical_context(ec: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::new();
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len32(ec.len()));
    for (k, v) in ec {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&len32(v.len()));
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The header of a blob: which key and version sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// Key id (a UUID, or `mrk-` and 32 hex digits): the same in every region of a
    /// Multi-Region key, so a replica decrypts what another replica encrypted.
    pub key_id: String,
    /// Key material version.
    pub version: u32,
}

fn invalid() -> KmsError {
    KmsError::InvalidCiphertext(String::new())
}

/// Reads the header of a blob without decrypting it.
pub fn header(blob: &[u8]) -> Result<BlobHeader> {
    if blob.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || blob.len() > MAX_BLOB || blob[0] != VERSION
    {
        return Err(invalid());
    }
    let key_id = std::str::from_utf8(&blob[1..1 + KEY_ID_LEN])
        .map_err(|_| invalid())?
        .to_owned();
    if !crate::app::is_key_id(&key_id) {
        return Err(invalid());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&blob[1 + KEY_ID_LEN..HEADER_LEN]);
    Ok(BlobHeader {
        key_id,
        version: u32::from_be_bytes(v),
    })
}

fn aead(material: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).unwrap_or_else(|_| unreachable!()))
}

/// Seals `plaintext` under `material` (key `key_id`, version `version`) bound to `ec`.
pub(crate) fn seal(
    key_id: &str,
    version: u32,
    material: &[u8; 32],
    plaintext: &[u8],
    ec: &EncryptionContext,
) -> Result<Vec<u8>> {
    if key_id.len() != KEY_ID_LEN {
        return Err(KmsError::Internal("key id is not a UUID".into()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KmsError::no_randomness())?;
    let mut blob = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
    blob.push(VERSION);
    blob.extend_from_slice(key_id.as_bytes());
    blob.extend_from_slice(&version.to_be_bytes());
    let mut aad = blob.clone();
    aad.extend(canonical_context(ec));
    blob.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    aead(material)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut body,
        )
        .map_err(|_| KmsError::Internal("encryption failed".into()))?;
    blob.extend_from_slice(&body);
    Ok(blob)
}

/// Opens a blob with the material its header names; any mismatch is InvalidCiphertext.
pub(crate) fn open(
    blob: &[u8],
    material: &[u8; 32],
    ec: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>> {
    header(blob)?;
    let mut aad = blob[..HEADER_LEN].to_vec();
    aad.extend(canonical_context(ec));
    let nonce = Nonce::try_assume_unique_for_key(&blob[HEADER_LEN..HEADER_LEN + NONCE_LEN])
        .map_err(|_| invalid())?;
    let mut body = Zeroizing::new(blob[HEADER_LEN + NONCE_LEN..].to_vec());
    let n = aead(material)
        .open_in_place(nonce, Aad::from(&aad), &mut body)
        .map_err(|_| invalid())?
        .len();
    body.truncate(n);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const ID: &str = "0b1e2d3c-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

    #[test]
    fn context_encoding_is_unambiguous() {
        assert_ne!(
            canonical_context(&ec(&[("ab", "c")])),
            canonical_context(&ec(&[("a", "bc")]))
        );
        let blob = seal(ID, 1, &[3; 32], b"x", &ec(&[("ab", "c")])).unwrap();
        assert!(open(&blob, &[3; 32], &ec(&[("a", "bc")])).is_err());
        assert_eq!(
            open(&blob, &[3; 32], &ec(&[("ab", "c")]))
                .unwrap()
                .as_slice(),
            b"x"
        );
    }

    #[test]
    fn header_is_authenticated() {
        let blob = seal(ID, 1, &[3; 32], b"x", &EncryptionContext::new()).unwrap();
        assert_eq!(
            header(&blob).unwrap(),
            BlobHeader {
                key_id: ID.into(),
                version: 1
            }
        );
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 1;
            assert!(
                open(&t, &[3; 32], &EncryptionContext::new()).is_err(),
                "byte {i}"
            );
        }
        assert!(header(&blob[..20]).is_err());
    }
}
