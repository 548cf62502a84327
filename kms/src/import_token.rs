//! The import token of GetParametersForImport: what ImportKeyMaterial needs to unwrap key
//! material (the RSA wrapping private key, the wrapping algorithm), for which key, until when.
//!
//! The KMS keeps no state between the two calls: the token carries it, sealed under the root key
//! (AES-256-GCM) with the label `import-token/<key id>` as associated data. So a token cannot be
//! forged or altered (it does not open: InvalidImportTokenException), cannot be used for another
//! key (the label differs: InvalidImportTokenException), and is refused after its 24 hours
//! (ExpiredImportTokenException). The wrapping private key exists nowhere else.
//!
//! Opened, a token is `"cit1"`, the wrapping algorithm (1 byte), the wrapping key spec (1 byte),
//! the expiry (ms since epoch, i64 big-endian), the key id (1 length byte, UTF-8), and the
//! wrapping key's PKCS #8 DER (the rest, at least one byte).

use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::rootkey::RootKey;

const MAGIC: &[u8; 4] = b"cit1";

/// How key material is wrapped for import (AWS's `AlgorithmSpec`, those this KMS accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WrappingAlgorithm {
    /// RSA-OAEP with SHA-1 (and MGF1 SHA-1) of the material itself.
    RsaesOaepSha1,
    /// RSA-OAEP with SHA-256 (and MGF1 SHA-256) of the material itself.
    RsaesOaepSha256,
    /// RSA-OAEP SHA-1 of a 256-bit AES key, then that key's AES key wrap with padding (RFC 5649)
    /// of the material.
    RsaAesKeyWrapSha1,
    /// The same with RSA-OAEP SHA-256.
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    const ALL: [Self; 4] = [
        Self::RsaesOaepSha1,
        Self::RsaesOaepSha256,
        Self::RsaAesKeyWrapSha1,
        Self::RsaAesKeyWrapSha256,
    ];

    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            Self::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            Self::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            Self::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    /// The algorithm AWS's name names.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the material is AES-key-wrapped (RSA_AES_KEY_WRAP_*).
    pub(crate) fn is_rsa_aes(self) -> bool {
        matches!(self, Self::RsaAesKeyWrapSha1 | Self::RsaAesKeyWrapSha256)
    }

    fn code(self) -> u8 {
        match self {
            Self::RsaesOaepSha1 => 1,
            Self::RsaesOaepSha256 => 2,
            Self::RsaAesKeyWrapSha1 => 3,
            Self::RsaAesKeyWrapSha256 => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == c)
    }
}

/// The wrapping key's size (AWS's `WrappingKeySpec`, those this KMS offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WrappingKeySpec {
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
}

impl WrappingKeySpec {
    const ALL: [Self; 3] = [Self::Rsa2048, Self::Rsa3072, Self::Rsa4096];

    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
        }
    }

    /// The spec AWS's name names.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The modulus size in bits.
    pub(crate) fn bits(self) -> usize {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Rsa2048 => 1,
            Self::Rsa3072 => 2,
            Self::Rsa4096 => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == c)
    }
}

/// An import token's contents.
#[derive(Debug)]
pub(crate) struct ImportToken {
    /// The key the material is for.
    pub(crate) key_id: String,
    /// How the material is wrapped.
    pub(crate) algorithm: WrappingAlgorithm,
    /// The wrapping key's size.
    pub(crate) spec: WrappingKeySpec,
    /// When the token expires, ms since epoch (`ParametersValidTo`).
    pub(crate) valid_to_ms: i64,
    /// The wrapping private key, PKCS #8 DER.
    pub(crate) private_key: Zeroizing<Vec<u8>>,
}

/// Why bytes are not an opened token.
fn malformed(why: &str) -> KmsError {
    KmsError::InvalidImportToken(format!("The import token is not valid: {why}."))
}

fn label(key_id: &str) -> String {
    format!("import-token/{key_id}")
}

impl ImportToken {
    /// The opened token's bytes.
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let id = self.key_id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| malformed("key id too long"))?;
        let mut out = Zeroizing::new(Vec::with_capacity(16 + id.len() + self.private_key.len()));
        out.extend_from_slice(MAGIC);
        out.push(self.algorithm.code());
        out.push(self.spec.code());
        out.extend_from_slice(&self.valid_to_ms.to_be_bytes());
        out.push(id_len);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.private_key);
        Ok(out)
    }

    /// Parses an opened token's bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| malformed("unknown format"))?;
        let (&[alg, spec], rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| malformed("truncated"))?;
        let algorithm =
            WrappingAlgorithm::from_code(alg).ok_or_else(|| malformed("unknown algorithm"))?;
        let spec = WrappingKeySpec::from_code(spec).ok_or_else(|| malformed("unknown key spec"))?;
        let (valid_to, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| malformed("truncated"))?;
        let (&id_len, rest) = rest.split_first().ok_or_else(|| malformed("truncated"))?;
        if rest.len() <= usize::from(id_len) {
            return Err(malformed("truncated"));
        }
        let (id, private_key) = rest.split_at(usize::from(id_len));
        let key_id = std::str::from_utf8(id)
            .map_err(|_| malformed("key id is not UTF-8"))?
            .to_owned();
        Ok(Self {
            key_id,
            algorithm,
            spec,
            valid_to_ms: i64::from_be_bytes(*valid_to),
            private_key: Zeroizing::new(private_key.to_vec()),
        })
    }

    /// The token as GetParametersForImport returns it: sealed under the root key for its key.
    pub(crate) fn seal(&self, root: &RootKey) -> Result<Vec<u8>> {
        root.seal(&label(&self.key_id), &self.encode()?)
    }

    /// Opens a token ImportKeyMaterial received for key `key_id` at time `now_ms`:
    /// InvalidImportTokenException unless this KMS sealed it for that key,
    /// ExpiredImportTokenException after its expiry.
    pub(crate) fn open(root: &RootKey, key_id: &str, sealed: &[u8], now_ms: i64) -> Result<Self> {
        let opened = root.open(&label(key_id), sealed).map_err(|_| {
            KmsError::InvalidImportToken(
                "The import token is not valid for this KMS key: use the ImportToken of a GetParametersForImport response for the same key.".into(),
            )
        })?;
        let token = Self::decode(&opened)?;
        if token.key_id != key_id {
            return Err(malformed("it is for another key"));
        }
        if now_ms >= token.valid_to_ms {
            return Err(KmsError::ExpiredImportToken(
                "The import token has expired: call GetParametersForImport again.".into(),
            ));
        }
        Ok(token)
    }
}

/// For the fuzz target: `data` as an opened token, and as a sealed token under a fixed root key.
pub(crate) fn fuzz(data: &[u8]) -> Result<()> {
    let decoded = ImportToken::decode(data);
    let root = RootKey::from_bytes(&[0x5a; 32]);
    let opened = ImportToken::open(&root, "1234abcd-12ab-34cd-56ef-1234567890ab", data, 0);
    decoded.and(opened).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ImportToken {
        ImportToken {
            key_id: "k1".into(),
            algorithm: WrappingAlgorithm::RsaAesKeyWrapSha256,
            spec: WrappingKeySpec::Rsa3072,
            valid_to_ms: 1_000,
            private_key: Zeroizing::new(vec![0x30, 1, 2, 3]),
        }
    }

    #[test]
    fn a_token_opens_only_for_its_key_under_its_root_before_its_expiry() {
        let root = RootKey::from_bytes(&[7; 32]);
        let sealed = token().seal(&root).unwrap();
        let t = ImportToken::open(&root, "k1", &sealed, 999).unwrap();
        assert_eq!(t.algorithm, WrappingAlgorithm::RsaAesKeyWrapSha256);
        assert_eq!(t.spec, WrappingKeySpec::Rsa3072);
        assert_eq!(t.private_key.as_slice(), [0x30, 1, 2, 3]);
        let name = |r: Result<ImportToken>| r.unwrap_err().aws_name();
        assert_eq!(
            name(ImportToken::open(&root, "k1", &sealed, 1_000)),
            "ExpiredImportTokenException"
        );
        assert_eq!(
            name(ImportToken::open(&root, "k2", &sealed, 0)),
            "InvalidImportTokenException"
        );
        let other = RootKey::from_bytes(&[8; 32]);
        assert_eq!(
            name(ImportToken::open(&other, "k1", &sealed, 0)),
            "InvalidImportTokenException"
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            name(ImportToken::open(&root, "k1", &flipped, 0)),
            "InvalidImportTokenException"
        );
    }

    #[test]
    fn opened_bytes_round_trip_and_every_truncation_is_refused() {
        let bytes = token().encode().unwrap();
        let back = ImportToken::decode(&bytes).unwrap();
        assert_eq!(back.key_id, "k1");
        assert_eq!(back.valid_to_ms, 1_000);
        for n in 0..bytes.len() - 4 {
            assert!(ImportToken::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut bad = bytes.to_vec();
        bad[4] = 9;
        assert!(ImportToken::decode(&bad).is_err());
        assert!(fuzz(&bytes).is_err(), "not sealed");
        assert!(fuzz(b"").is_err());
    }
}
