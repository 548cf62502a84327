//! The KMS `CiphertextForRecipient` envelope: CMS `EnvelopedData` (RFC 5652) to an enclave's key.
//!
//! When a request carries a verified attestation document, the KMS does not return plaintext: it
//! encrypts it to the RSA public key inside the document. AWS's shape, which
//! aws-nitro-enclaves-sdk-c parses and this module writes, is `ContentInfo(envelopedData)` →
//! `EnvelopedData` v2 → one `KeyTransRecipientInfo` v2 identified by a subjectKeyIdentifier,
//! RSAES-OAEP with SHA-256 / MGF1-SHA-256 wrapping a fresh AES-256 key → the content encrypted
//! with AES-256-CBC and PKCS#7 padding. Real KMS responses are BER with indefinite lengths; this
//! module writes DER (a subset of BER) and reads both.
//!
//! The envelope is not authenticated (CBC, no MAC) and the host can see the enclave's public key:
//! a host could substitute its own envelope. Use what it carries as a key only with an AEAD that
//! authenticates the data (as the Encryption SDK's committing suites do).
//!
//! RSA goes through aws-lc-rs only (constant time; the `rsa` crate's decryption is open to the
//! Marvin attack).

use aws_lc_rs::cipher::{
    AES_256, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why an envelope could not be made or opened. Codes `CMS-*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmsError {
    /// The recipient public key is not an RSA SubjectPublicKeyInfo of 2048..=4096 bits.
    #[error("recipient key is not an RSA SubjectPublicKeyInfo of 2048 to 4096 bits: {0}")]
    RecipientKey(String),
    /// The bytes are not an EnvelopedData of the expected shape.
    #[error("malformed CMS EnvelopedData: {0}")]
    Malformed(String),
    /// Decryption failed (wrong key, or tampered envelope).
    #[error("cannot decrypt CMS EnvelopedData: {0}")]
    Decrypt(String),
    /// A cryptographic primitive failed while building an envelope.
    #[error("cannot build CMS EnvelopedData: {0}")]
    Encrypt(String),
}

impl CmsError {
    /// Stable short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RecipientKey(_) => "CMS-KEY",
            Self::Malformed(_) => "CMS-FORMAT",
            Self::Decrypt(_) => "CMS-DECRYPT",
            Self::Encrypt(_) => "CMS-ENCRYPT",
        }
    }
}

/// Every code [`CmsError`] can produce.
pub const CMS_CODES: &[&str] = &["CMS-KEY", "CMS-FORMAT", "CMS-DECRYPT", "CMS-ENCRYPT"];

impl cloister_common::ErrorCode for CmsError {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        CmsError::code(self).into()
    }
}

type Result<T> = std::result::Result<T, CmsError>;

// Object identifiers, DER-encoded contents (without tag and length).
const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;
/// Largest envelope accepted by the parser (KMS caps CiphertextForRecipient at 6144 bytes).
pub const MAX_ENVELOPE_LEN: usize = 16 * 1024;

/// The recipient's public key, checked to be RSA 2048..=4096 bits.
pub struct RecipientKey {
    key: OaepPublicEncryptingKey,
    ski: [u8; 32],
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecipientKey(rsa-{}, ski {})",
            self.key.key_size_bits(),
            hex::encode(self.ski)
        )
    }
}

impl RecipientKey {
    /// Parses a DER SubjectPublicKeyInfo (as an attestation document's `public_key` carries).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self> {
        let public = PublicEncryptingKey::from_der(spki)
            .map_err(|_| CmsError::RecipientKey("not an RSA SubjectPublicKeyInfo".into()))?;
        let bits = public.key_size_bits();
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(CmsError::RecipientKey(format!("{bits} bits")));
        }
        let key = OaepPublicEncryptingKey::new(public)
            .map_err(|_| CmsError::RecipientKey("unusable".into()))?;
        Ok(Self {
            key,
            ski: Sha256::digest(spki).into(),
        })
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }
}

/// Encrypts `plaintext` to `recipient`, returning a DER `ContentInfo(EnvelopedData)`.
pub fn seal(recipient: &RecipientKey, plaintext: &[u8]) -> Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill(cek.as_mut())
        .map_err(|_| CmsError::Encrypt("no randomness".into()))?;
    let mut iv = [0u8; 16];
    rng.fill(&mut iv)
        .map_err(|_| CmsError::Encrypt("no randomness".into()))?;

    let mut wrapped = vec![0u8; recipient.key.ciphertext_size()];
    let wrapped_len = recipient
        .key
        .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut wrapped, None)
        .map_err(|_| CmsError::Encrypt("RSA-OAEP failed".into()))?
        .len();
    wrapped.truncate(wrapped_len);

    let key = UnboundCipherKey::new(&AES_256, cek.as_ref())
        .map_err(|_| CmsError::Encrypt("AES key".into()))?;
    let enc = PaddedBlockEncryptingKey::cbc_pkcs7(key)
        .map_err(|_| CmsError::Encrypt("AES-CBC".into()))?;
    let mut content = plaintext.to_vec();
    enc.less_safe_encrypt(
        &mut content,
        aws_lc_rs::cipher::EncryptionContext::Iv128(iv.into()),
    )
    .map_err(|_| CmsError::Encrypt("AES-CBC encrypt".into()))?;

    let sha256_alg = der::seq(&[der::oid(OID_SHA256), der::null()]);
    let oaep_params = der::seq(&[
        der::tlv(0xa0, &sha256_alg),
        der::tlv(0xa1, &der::seq(&[der::oid(OID_MGF1), sha256_alg.clone()])),
    ]);
    let ktri = der::seq(&[
        der::int_small(2),
        der::tlv(0x80, &recipient.ski),
        der::seq(&[der::oid(OID_RSAES_OAEP), oaep_params]),
        der::tlv(0x04, &wrapped),
    ]);
    let eci = der::seq(&[
        der::oid(OID_DATA),
        der::seq(&[der::oid(OID_AES256_CBC), der::tlv(0x04, &iv)]),
        der::tlv(0x80, &content),
    ]);
    let enveloped = der::seq(&[der::int_small(2), der::tlv(0x31, &ktri), eci]);
    Ok(der::seq(&[
        der::oid(OID_ENVELOPED_DATA),
        der::tlv(0xa0, &enveloped),
    ]))
}

/// The parts of an EnvelopedData that a recipient needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The RSA-OAEP-wrapped content-encryption key.
    pub encrypted_key: Vec<u8>,
    /// The AES-256-CBC IV.
    pub iv: [u8; 16],
    /// The AES-256-CBC ciphertext (PKCS#7 padded).
    pub ciphertext: Vec<u8>,
}

/// Parses BER or DER `ContentInfo(EnvelopedData)` of the KMS shape, as aws-nitro-enclaves-sdk-c
/// does: version 2, exactly one KeyTransRecipientInfo version 2, content type data, AES-256-CBC.
pub fn parse(bytes: &[u8]) -> Result<Envelope> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(CmsError::Malformed(format!(
            "{} bytes, at most {MAX_ENVELOPE_LEN}",
            bytes.len()
        )));
    }
    let (content_info, rest) = ber::read(bytes, 0)?;
    if !rest.is_empty() {
        return Err(CmsError::Malformed("trailing bytes".into()));
    }
    let [oid, explicit] = content_info.expect(0x30)?.children_exact::<2>()?;
    oid.expect_oid(OID_ENVELOPED_DATA, "content type")?;
    let [enveloped] = explicit.expect(0xa0)?.children_exact::<1>()?;
    let mut parts = enveloped.expect(0x30)?.children()?.into_iter();
    let mut next = |what: &str| {
        parts
            .next()
            .ok_or_else(|| CmsError::Malformed(format!("missing {what}")))
    };
    next("version")?.expect_int_small(2, "EnvelopedData version")?;
    let mut item = next("recipientInfos")?;
    if item.tag == 0xa0 {
        item = next("recipientInfos")?; // originatorInfo [0] is allowed and skipped
    }
    let [ktri] = item.expect(0x31)?.children_exact::<1>()?;
    let ktri_parts = ktri.expect(0x30)?.children()?;
    let [version, _rid, _alg, encrypted_key] = <[ber::Node<'_>; 4]>::try_from(ktri_parts)
        .map_err(|_| CmsError::Malformed("KeyTransRecipientInfo must have 4 fields".into()))?;
    version.expect_int_small(2, "KeyTransRecipientInfo version (subjectKeyIdentifier)")?;
    let encrypted_key = encrypted_key.expect(0x04)?.octets()?;

    let eci = next("encryptedContentInfo")?.expect(0x30)?.children()?;
    let [content_type, alg, content] = <[ber::Node<'_>; 3]>::try_from(eci)
        .map_err(|_| CmsError::Malformed("EncryptedContentInfo must have 3 fields".into()))?;
    content_type.expect_oid(OID_DATA, "content type")?;
    let [alg_oid, iv] = alg.expect(0x30)?.children_exact::<2>()?;
    alg_oid.expect_oid(OID_AES256_CBC, "content encryption algorithm")?;
    let iv = <[u8; 16]>::try_from(iv.expect(0x04)?.octets()?.as_slice())
        .map_err(|_| CmsError::Malformed("IV must be 16 bytes".into()))?;
    let ciphertext = match content.tag {
        0x80 | 0xa0 => content.octets()?,
        t => {
            return Err(CmsError::Malformed(format!(
                "encryptedContent has tag {t:#04x}"
            )));
        }
    };
    Ok(Envelope {
        encrypted_key,
        iv,
        ciphertext,
    })
}

/// An RSA private key that opens envelopes: the enclave's side.
pub struct RecipientPrivateKey {
    key: OaepPrivateDecryptingKey,
}

impl std::fmt::Debug for RecipientPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecipientPrivateKey(..)")
    }
}

impl RecipientPrivateKey {
    /// A fresh RSA-2048 key, for one release, and its public key as a DER SubjectPublicKeyInfo
    /// (what an attestation document's `public_key` carries).
    pub fn generate() -> Result<(Self, Vec<u8>)> {
        use aws_lc_rs::encoding::AsDer;
        let private = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| CmsError::RecipientKey("RSA key generation failed".into()))?;
        let spki = private
            .public_key()
            .as_der()
            .map_err(|_| CmsError::RecipientKey("RSA public key encoding failed".into()))?
            .as_ref()
            .to_vec();
        Ok((Self::new(private)?, spki))
    }

    /// Wraps an aws-lc-rs RSA private key.
    pub fn new(key: PrivateDecryptingKey) -> Result<Self> {
        let key = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| CmsError::RecipientKey("unusable private key".into()))?;
        Ok(Self { key })
    }

    /// Decrypts an envelope to its plaintext (zeroized on drop).
    pub fn open(&self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let env = parse(bytes)?;
        let mut cek = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let n = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, &env.encrypted_key, &mut cek, None)
            .map_err(|_| CmsError::Decrypt("RSA-OAEP".into()))?
            .len();
        if n != 32 {
            return Err(CmsError::Decrypt(format!(
                "content key is {n} bytes, expected 32"
            )));
        }
        let key = UnboundCipherKey::new(&AES_256, &cek[..32])
            .map_err(|_| CmsError::Decrypt("AES key".into()))?;
        let dec = PaddedBlockDecryptingKey::cbc_pkcs7(key)
            .map_err(|_| CmsError::Decrypt("AES-CBC".into()))?;
        let mut buf = Zeroizing::new(env.ciphertext);
        let plain_len = dec
            .decrypt(
                &mut buf,
                aws_lc_rs::cipher::DecryptionContext::Iv128(env.iv.into()),
            )
            .map_err(|_| CmsError::Decrypt("AES-CBC padding".into()))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// Minimal DER writer: just what the envelope needs.
mod der {
    #[allow(clippy::cast_possible_truncation)] // len < 0x80, and a usize has at most 8 length bytes
    pub(super) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(value);
        out
    }
    pub(super) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }
    pub(super) fn oid(content: &[u8]) -> Vec<u8> {
        tlv(0x06, content)
    }
    pub(super) fn null() -> Vec<u8> {
        vec![0x05, 0x00]
    }
    pub(super) fn int_small(v: u8) -> Vec<u8> {
        tlv(0x02, &[v])
    }
}

/// Minimal BER reader: single-byte tags, definite lengths up to 4 bytes, indefinite lengths on
/// constructed values, bounded nesting. Enough for CMS as KMS emits it.
mod ber {
    use super::{CmsError, Result};

    const MAX_DEPTH: usize = 16;

    #[derive(Debug, Clone)]
    pub(super) struct Node<'a> {
        pub(super) tag: u8,
        /// Content bytes for definite lengths; for indefinite ones, the content up to the EOC.
        content: &'a [u8],
        depth: usize,
    }

    fn bad(msg: &str) -> CmsError {
        CmsError::Malformed(msg.into())
    }

    /// Reads one element, returning it and the bytes after it.
    pub(super) fn read(input: &[u8], depth: usize) -> Result<(Node<'_>, &[u8])> {
        if depth > MAX_DEPTH {
            return Err(bad("nested too deeply"));
        }
        let (&tag, rest) = input.split_first().ok_or_else(|| bad("truncated (tag)"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte tags are not used by CMS envelopes"));
        }
        let (&first, rest) = rest
            .split_first()
            .ok_or_else(|| bad("truncated (length)"))?;
        if first == 0x80 {
            if tag & 0x20 == 0 {
                return Err(bad("indefinite length on a primitive value"));
            }
            // Walk children until end-of-contents (00 00).
            let mut cursor = rest;
            loop {
                if cursor.len() >= 2 && cursor[0] == 0 && cursor[1] == 0 {
                    let used = rest.len() - cursor.len();
                    return Ok((
                        Node {
                            tag,
                            content: &rest[..used],
                            depth,
                        },
                        &cursor[2..],
                    ));
                }
                let (_, after) = read(cursor, depth + 1)?;
                cursor = after;
            }
        }
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad("bad length"));
            }
            rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let header = if first < 0x80 {
            0
        } else {
            usize::from(first & 0x7f)
        };
        let body = &rest[header..];
        if body.len() < len {
            return Err(bad("truncated (content)"));
        }
        Ok((
            Node {
                tag,
                content: &body[..len],
                depth,
            },
            &body[len..],
        ))
    }

    impl<'a> Node<'a> {
        pub(super) fn expect(self, tag: u8) -> Result<Self> {
            if self.tag == tag {
                Ok(self)
            } else {
                Err(CmsError::Malformed(format!(
                    "expected tag {tag:#04x}, found {:#04x}",
                    self.tag
                )))
            }
        }

        pub(super) fn children(&self) -> Result<Vec<Node<'a>>> {
            if self.tag & 0x20 == 0 {
                return Err(bad("expected a constructed value"));
            }
            let mut out = Vec::new();
            let mut cursor = self.content;
            while !cursor.is_empty() {
                let (child, rest) = read(cursor, self.depth + 1)?;
                out.push(child);
                cursor = rest;
            }
            Ok(out)
        }

        pub(super) fn children_exact<const N: usize>(&self) -> Result<[Node<'a>; N]> {
            <[Node<'a>; N]>::try_from(self.children()?).map_err(|v| {
                CmsError::Malformed(format!("expected {N} elements, found {}", v.len()))
            })
        }

        /// Bytes of an OCTET STRING-like value: primitive content, or the concatenation of the
        /// OCTET STRING chunks of a constructed one.
        pub(super) fn octets(&self) -> Result<Vec<u8>> {
            if self.tag & 0x20 == 0 {
                return Ok(self.content.to_vec());
            }
            let mut out = Vec::new();
            for chunk in self.children()? {
                out.extend(chunk.expect(0x04)?.octets()?);
            }
            Ok(out)
        }

        pub(super) fn expect_oid(&self, oid: &[u8], what: &str) -> Result<()> {
            if self.tag == 0x06 && self.content == oid {
                Ok(())
            } else {
                Err(CmsError::Malformed(format!("unexpected {what}")))
            }
        }

        pub(super) fn expect_int_small(&self, v: u8, what: &str) -> Result<()> {
            if self.tag == 0x02 && self.content == [v] {
                Ok(())
            } else {
                Err(CmsError::Malformed(format!("{what} must be {v}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_s_code_is_listed() {
        let all = [
            CmsError::RecipientKey(String::new()),
            CmsError::Malformed(String::new()),
            CmsError::Decrypt(String::new()),
            CmsError::Encrypt(String::new()),
        ];
        assert_eq!(all.len(), CMS_CODES.len());
        for e in all {
            assert!(CMS_CODES.contains(&e.code()), "{}", e.code());
        }
    }
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;

    fn keypair() -> (PrivateDecryptingKey, Vec<u8>) {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
        (private, spki)
    }

    #[test]
    fn parses_the_real_kms_response() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/kms/kms_recipient_response.ber"
        ))
        .unwrap();
        let expected = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/kms/expected.txt"
        ))
        .unwrap();
        let field = |name: &str| {
            let line = expected.lines().find(|l| l.starts_with(name)).unwrap();
            hex::decode(line.split_once('=').unwrap().1.trim()).unwrap()
        };
        let env = parse(&bytes).unwrap();
        assert_eq!(env.encrypted_key, field("encrypted_key_hex"));
        assert_eq!(env.iv.to_vec(), field("iv_hex"));
        assert_eq!(env.ciphertext, field("ciphertext_hex"));
    }

    #[test]
    fn seal_then_open_round_trips_and_has_the_kms_shape() {
        let (private, spki) = keypair();
        let recipient = RecipientKey::from_spki_der(&spki).unwrap();
        let sealed = seal(&recipient, &[0x42; 32]).unwrap();
        let env = parse(&sealed).unwrap();
        assert_eq!(env.encrypted_key.len(), 256);
        assert_eq!(env.ciphertext.len(), 48);
        let opened = RecipientPrivateKey::new(private)
            .unwrap()
            .open(&sealed)
            .unwrap();
        assert_eq!(opened.as_slice(), &[0x42; 32]);
    }

    #[test]
    fn wrong_key_and_tampering_fail() {
        let (_, spki) = keypair();
        let (other, _) = keypair();
        let sealed = seal(&RecipientKey::from_spki_der(&spki).unwrap(), b"secret").unwrap();
        let err = RecipientPrivateKey::new(other)
            .unwrap()
            .open(&sealed)
            .unwrap_err();
        assert_eq!(err.code(), "CMS-DECRYPT");
        assert_eq!(
            parse(&sealed[..sealed.len() - 1]).unwrap_err().code(),
            "CMS-FORMAT"
        );
        let mut more = sealed.clone();
        more.push(0);
        assert_eq!(parse(&more).unwrap_err().code(), "CMS-FORMAT");
    }

    #[test]
    fn recipient_key_must_be_rsa_2048_to_4096() {
        assert_eq!(
            RecipientKey::from_spki_der(b"my super secret key")
                .unwrap_err()
                .code(),
            "CMS-KEY"
        );
        let small = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = small.public_key().as_der().unwrap().as_ref().to_vec();
        assert_eq!(RecipientKey::from_spki_der(&spki).unwrap().bits(), 2048);
    }

    #[test]
    fn ber_reader_survives_garbage() {
        for bytes in [
            &[][..],
            &[0x30, 0x80],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x04, 0x80, 0x00, 0x00],
        ] {
            assert!(parse(bytes).is_err());
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 100).flatten().collect();
        assert!(parse(&deep).is_err());
    }
}
