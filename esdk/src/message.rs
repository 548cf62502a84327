//! Sealing and opening whole messages.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

use crate::error::EsdkError;
use crate::format::{ContentType, Edk, EncryptionContext, Header, Reader, Suite, parse_header};

/// The reserved context key that carries the signing suite's public key.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";
/// A 32-byte data key, zeroized on drop.
pub type DataKey = Zeroizing<[u8; 32]>;

/// A message's plaintext, as [`decrypt`] returns it: read-only, never grows (so no reallocation
/// leaves an un-zeroized copy of it behind), and zeroized when dropped.
///
/// Dropping it zeroizes at `memset` speed (`zeroize`'s slice fill behind an optimization
/// barrier). A `Zeroizing<Vec<u8>>` zeroizes with one volatile byte store at a time: 134 us per
/// MiB here against 16 us, more than the whole `decrypt` of that MiB takes (about 105 us; see
/// `enclave/benches/record_path.rs`).
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// The plaintext bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.spare_capacity_mut().zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for Plaintext {}

/// The frame length `cloister seal` writes unless told otherwise: 64 KiB. The SDKs write 4096
/// and open any frame length up to 2^31 - 1 (the Python SDK's limit; it also wants a multiple of
/// 16 when it seals). The enclave opens a message whole, so small frames buy nothing, and each
/// frame costs a fixed amount: `decrypt` of 1 MiB runs at about 7.9 GB/s with 4096-byte frames
/// and 9.7 GB/s with 64 KiB ones, no faster with larger frames or none
/// (`enclave/benches/record_path.rs`).
pub const DEFAULT_FRAME_LENGTH: u32 = 64 << 10;

const FINAL_FRAME: u32 = 0xFFFF_FFFF;
const FRAME_STRING: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_FRAME_STRING: &[u8] = b"AWSKMSEncryptionClient Final Frame";
const SINGLE_BLOCK_STRING: &[u8] = b"AWSKMSEncryptionClient Single Block";
/// The SDK writes ECDSA P-384 signatures of exactly this DER length.
const SIGNATURE_LEN: usize = 103;
/// Largest non-framed body accepted (the SDK's own limit is 2^36 - 32; records are batches).
const MAX_SINGLE_BLOCK: u64 = 1 << 32;

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The derived content key and the key commitment: HKDF-SHA512 salted with the message id, one
/// extract and two expands.
fn derive(
    data_key: &DataKey,
    message_id: &[u8; 32],
    suite: Suite,
) -> Result<(LessSafeKey, Zeroizing<[u8; 32]>), EsdkError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key.as_ref());
    let expand = |info: &[&[u8]]| -> Result<Zeroizing<[u8; 32]>, EsdkError> {
        let mut out = Zeroizing::new([0u8; 32]);
        prk.expand(info, Len(32))
            .and_then(|okm| okm.fill(out.as_mut()))
            .map_err(|_| EsdkError::Seal("HKDF failed".into()))?;
        Ok(out)
    };
    let dek = expand(&[&suite.id().to_be_bytes(), b"DERIVEKEY"])?;
    let commit = expand(&[b"COMMITKEY"])?;
    let key = UnboundKey::new(&AES_256_GCM, dek.as_ref())
        .map_err(|_| EsdkError::Seal("AES key".into()))?;
    Ok((LessSafeKey::new(key), commit))
}

fn frame_iv(seq: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// A body block's AAD (message id, kind string, sequence number, content length), on the stack.
struct BodyAad {
    buf: [u8; 32 + SINGLE_BLOCK_STRING.len() + 12],
    len: usize,
}

impl AsRef<[u8]> for BodyAad {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `kind` is one of the three block strings, at most `SINGLE_BLOCK_STRING.len()` bytes.
fn body_aad(message_id: &[u8; 32], kind: &[u8], seq: u32, len: u64) -> BodyAad {
    let mut aad = BodyAad {
        buf: [0; 32 + SINGLE_BLOCK_STRING.len() + 12],
        len: 32 + kind.len() + 12,
    };
    let (id, rest) = aad.buf.split_at_mut(32);
    id.copy_from_slice(message_id);
    let (k, rest) = rest.split_at_mut(kind.len());
    k.copy_from_slice(kind);
    rest[..4].copy_from_slice(&seq.to_be_bytes());
    rest[4..12].copy_from_slice(&len.to_be_bytes());
    aad
}

fn compress(uncompressed: &[u8]) -> Result<Vec<u8>, EsdkError> {
    if uncompressed.len() != 97 || uncompressed[0] != 0x04 {
        return Err(EsdkError::Seal("unexpected public key encoding".into()));
    }
    let mut out = vec![0x02 | (uncompressed[96] & 1)];
    out.extend_from_slice(&uncompressed[1..49]);
    Ok(out)
}

fn uncompressed_key(b64: &str) -> Result<Vec<u8>, EsdkError> {
    use p384::elliptic_curve::sec1::ToSec1Point;
    let bad = || {
        EsdkError::Malformed(format!(
            "{PUBLIC_KEY_CONTEXT_KEY} is not a P-384 public key"
        ))
    };
    let sec1 = STANDARD.decode(b64).map_err(|_| bad())?;
    let key = p384::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad())?;
    Ok(key.to_sec1_point(false).as_bytes().to_vec())
}

/// One encrypted block of a body (a frame, or a non-framed body's single block): located and its
/// shape checked (sequence number, IV, length), not opened.
struct Block<'a> {
    kind: &'static [u8],
    seq: u32,
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

/// Walks the body that starts at `r`'s position, handing every block in order to `each`; `r` is
/// left just after the body. Nothing is opened here.
fn walk_body<'a>(
    h: &Header,
    r: &mut Reader<'a>,
    mut each: impl FnMut(Block<'a>) -> Result<(), EsdkError>,
) -> Result<(), EsdkError> {
    match h.content_type {
        ContentType::NonFramed => {
            let iv = r.array::<12>("body IV")?;
            if iv != frame_iv(1) {
                return Err(EsdkError::Malformed("unexpected body IV".into()));
            }
            let len = r.u64("body length")?;
            if len > MAX_SINGLE_BLOCK {
                return Err(EsdkError::Malformed(format!("single block of {len} bytes")));
            }
            let ciphertext = r.take(
                usize::try_from(len).map_err(|_| EsdkError::Malformed("body length".into()))?,
                "body",
            )?;
            let tag = r.take(16, "body tag")?;
            each(Block {
                kind: SINGLE_BLOCK_STRING,
                seq: 1,
                ciphertext,
                tag,
            })
        }
        ContentType::Framed => {
            let frame_len = h.frame_length as usize;
            let mut seq: u32 = 1;
            loop {
                let marker = r.u32("frame sequence")?;
                let is_final = marker == FINAL_FRAME;
                let s = if is_final {
                    r.u32("final frame sequence")?
                } else {
                    marker
                };
                if s != seq {
                    return Err(EsdkError::Malformed(format!(
                        "frame {s} where {seq} was expected"
                    )));
                }
                let iv = r.array::<12>("frame IV")?;
                if iv != frame_iv(seq) {
                    return Err(EsdkError::Malformed(format!(
                        "frame {seq} has an unexpected IV"
                    )));
                }
                let len = if is_final {
                    let l = r.u32("final frame length")? as usize;
                    if l > frame_len {
                        return Err(EsdkError::Malformed(
                            "final frame longer than the frame length".into(),
                        ));
                    }
                    l
                } else {
                    frame_len
                };
                let ciphertext = r.take(len, "frame content")?;
                let tag = r.take(16, "frame tag")?;
                each(Block {
                    kind: if is_final {
                        FINAL_FRAME_STRING
                    } else {
                        FRAME_STRING
                    },
                    seq,
                    ciphertext,
                    tag,
                })?;
                if is_final {
                    return Ok(());
                }
                seq = seq
                    .checked_add(1)
                    .filter(|s| *s != FINAL_FRAME)
                    .ok_or_else(|| EsdkError::Malformed("too many frames".into()))?;
            }
        }
    }
}

/// Opens a message with its data key. Returns the plaintext only if the commitment, the header,
/// every frame and the signature (0x0578) verify.
///
/// The whole message's shape (header, every frame's sequence number, IV and length, footer, no
/// trailing bytes) is checked before anything is derived or opened, which also gives the
/// plaintext's exact length. The plaintext is then opened frame by frame straight into one
/// buffer of exactly that length (out of place, from the message: no per-frame buffers or
/// copies), so it never reallocates, and it is zeroized when dropped or on any failure.
pub fn decrypt(message: &[u8], data_key: &DataKey) -> Result<Plaintext, EsdkError> {
    let (h, header_end) = parse_header(message)?;
    let verifying_key = match (h.suite.signed(), h.context.get(PUBLIC_KEY_CONTEXT_KEY)) {
        (true, Some(k)) => Some(uncompressed_key(k)?),
        (true, None) => {
            return Err(EsdkError::Malformed(format!(
                "signed suite without {PUBLIC_KEY_CONTEXT_KEY}"
            )));
        }
        (false, _) => None,
    };

    let mut r = Reader::new(message);
    r.pos = header_end;
    // At most `message.len()`: every block's ciphertext is a distinct part of the message.
    let mut plain_len = 0usize;
    walk_body(&h, &mut r, |b| {
        plain_len += b.ciphertext.len();
        Ok(())
    })?;
    let signed_end = r.pos;
    let signature = match verifying_key {
        Some(_) => {
            let n = usize::from(r.u16("signature length")?);
            Some(r.take(n, "signature")?)
        }
        None => None,
    };
    if r.pos != message.len() {
        return Err(EsdkError::Malformed(format!(
            "{} bytes after the message",
            message.len() - r.pos
        )));
    }

    let (key, commit) = derive(data_key, &h.message_id, h.suite)?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(commit.as_ref(), &h.commitment).is_err() {
        return Err(EsdkError::Commitment);
    }
    let mut tag = h.auth_tag;
    key.open_in_place(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(&message[..h.body_len]),
        &mut tag,
    )
    .map_err(|_| EsdkError::Authentication("header".into()))?;

    // Exactly `plain_len`, zero-filled (safe Rust has no uninitialized output buffer); a Vec
    // made by `vec!` has exactly the capacity asked for, and nothing below may grow it.
    let mut plain = Plaintext(vec![0; plain_len]);
    let mut r = Reader::new(message);
    r.pos = header_end;
    let mut at = 0;
    walk_body(&h, &mut r, |b| {
        // The same blocks as the first walk: the message is borrowed, so it cannot change.
        let out = plain
            .0
            .get_mut(at..at + b.ciphertext.len())
            .ok_or_else(|| EsdkError::Malformed("body longer than measured".into()))?;
        at += b.ciphertext.len();
        let aad = body_aad(&h.message_id, b.kind, b.seq, b.ciphertext.len() as u64);
        // Out of place: 5-13% faster here than copying the frame in and opening it in
        // place (aws-lc-rs lists only open_in_place/open_within as FIPS-approved; cloister does
        // not build aws-lc-rs in FIPS mode).
        key.open_separate_gather(
            Nonce::assume_unique_for_key(frame_iv(b.seq)),
            Aad::from(aad.as_ref()),
            b.ciphertext,
            b.tag,
            out,
        )
        .map_err(|_| EsdkError::Authentication(format!("frame {}", b.seq)))?;
        Ok(())
    })?;
    debug_assert_eq!((at, plain.0.capacity()), (plain.0.len(), plain.0.len()));

    if let (Some(vk), Some(sig)) = (verifying_key, signature) {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &vk)
            .verify(&message[..signed_end], sig)
            .map_err(|_| EsdkError::Authentication("message signature".into()))?;
    }
    Ok(plain)
}

/// Splits concatenated messages (a sealed file may hold several) by walking their structure;
/// nothing is decrypted or authenticated here.
pub fn split(mut bytes: &[u8]) -> Result<Vec<&[u8]>, EsdkError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, header_end) = parse_header(bytes)?;
        let mut r = Reader::new(bytes);
        r.pos = header_end;
        match h.content_type {
            ContentType::NonFramed => {
                r.take(12, "body IV")?;
                let len = usize::try_from(r.u64("body length")?)
                    .map_err(|_| EsdkError::Malformed("body length".into()))?;
                r.take(len, "body")?;
                r.take(16, "body tag")?;
            }
            ContentType::Framed => loop {
                let is_final = r.u32("frame sequence")? == FINAL_FRAME;
                let len = if is_final {
                    r.u32("final frame sequence")?;
                    r.take(12, "frame IV")?;
                    r.u32("final frame length")? as usize
                } else {
                    r.take(12, "frame IV")?;
                    h.frame_length as usize
                };
                r.take(len, "frame content")?;
                r.take(16, "frame tag")?;
                if is_final {
                    break;
                }
            },
        }
        if h.suite.signed() {
            let n = usize::from(r.u16("signature length")?);
            r.take(n, "signature")?;
        }
        out.push(&bytes[..r.pos]);
        bytes = &bytes[r.pos..];
    }
    Ok(out)
}

/// Seals messages for one set of encryption materials (suite, context, signing key). One
/// `Encryptor` with one data key may seal several messages, as the SDK's data key cache does:
/// each message gets its own message id, so its derived keys differ.
pub struct Encryptor {
    suite: Suite,
    context: EncryptionContext,
    signing: Option<EcdsaKeyPair>,
    frame_length: Option<u32>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("suite", &self.suite)
            .field("frame_length", &self.frame_length)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Materials for `suite` with `context` (which must not use the reserved `aws-crypto-` prefix);
    /// `frame_length` None means a non-framed body. For 0x0578 a signing key is generated and its
    /// public key added to the context.
    pub fn new(
        suite: Suite,
        mut context: EncryptionContext,
        frame_length: Option<u32>,
    ) -> Result<Self, EsdkError> {
        if context.keys().any(|k| k.starts_with("aws-crypto-")) {
            return Err(EsdkError::Seal(
                "encryption context keys starting with aws-crypto- are reserved".into(),
            ));
        }
        if frame_length == Some(0) {
            return Err(EsdkError::Seal("frame length must be positive".into()));
        }
        let signing = if suite.signed() {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
                .map_err(|_| EsdkError::Seal("key generation".into()))?;
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_ref())
                .map_err(|_| EsdkError::Seal("key".into()))?;
            context.insert(
                PUBLIC_KEY_CONTEXT_KEY.into(),
                STANDARD.encode(compress(kp.public_key().as_ref())?),
            );
            Some(kp)
        } else {
            None
        };
        Ok(Self {
            suite,
            context,
            signing,
            frame_length,
        })
    }

    /// The full encryption context: what the KMS data key must be bound to.
    pub fn context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Seals `plaintext` under `data_key`, listing `edks` (the data key encrypted by the KMS).
    pub fn seal(
        &self,
        data_key: &DataKey,
        edks: Vec<Edk>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EsdkError> {
        let rng = SystemRandom::new();
        let mut message_id = [0u8; 32];
        rng.fill(&mut message_id)
            .map_err(|_| EsdkError::Seal("no randomness".into()))?;
        let (key, commit) = derive(data_key, &message_id, self.suite)?;
        let header = Header {
            suite: self.suite,
            message_id,
            context: self.context.clone(),
            edks,
            content_type: if self.frame_length.is_some() {
                ContentType::Framed
            } else {
                ContentType::NonFramed
            },
            frame_length: self.frame_length.unwrap_or(0),
            commitment: *commit,
            auth_tag: [0; 16],
            body_len: 0,
        };
        let mut out = header.body_bytes()?;
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&out),
                &mut [],
            )
            .map_err(|_| EsdkError::Seal("header tag".into()))?;
        out.extend_from_slice(tag.as_ref());
        let seal =
            |out: &mut Vec<u8>, kind: &[u8], seq: u32, chunk: &[u8]| -> Result<(), EsdkError> {
                let aad = body_aad(&message_id, kind, seq, chunk.len() as u64);
                let mut buf = chunk.to_vec();
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(frame_iv(seq)),
                        Aad::from(aad.as_ref()),
                        &mut buf,
                    )
                    .map_err(|_| EsdkError::Seal("frame".into()))?;
                out.extend_from_slice(&buf);
                out.extend_from_slice(tag.as_ref());
                Ok(())
            };
        match self.frame_length {
            None => {
                out.extend(frame_iv(1));
                out.extend((plaintext.len() as u64).to_be_bytes());
                seal(&mut out, SINGLE_BLOCK_STRING, 1, plaintext)?;
            }
            Some(fl) => {
                let fl = fl as usize;
                let full = if plaintext.is_empty() {
                    0
                } else {
                    (plaintext.len() - 1) / fl
                };
                let mut seq: u32 = 1;
                for chunk in plaintext.chunks(fl).take(full) {
                    out.extend(seq.to_be_bytes());
                    out.extend(frame_iv(seq));
                    seal(&mut out, FRAME_STRING, seq, chunk)?;
                    seq = seq
                        .checked_add(1)
                        .ok_or_else(|| EsdkError::Seal("too many frames".into()))?;
                }
                let last = &plaintext[full * fl..];
                out.extend(FINAL_FRAME.to_be_bytes());
                out.extend(seq.to_be_bytes());
                out.extend(frame_iv(seq));
                out.extend(
                    u32::try_from(last.len())
                        .map_err(|_| EsdkError::Seal("frame".into()))?
                        .to_be_bytes(),
                );
                seal(&mut out, FINAL_FRAME_STRING, seq, last)?;
            }
        }
        if let Some(kp) = &self.signing {
            // The SDK writes fixed-length (103-byte) signatures; re-sign until one has that length.
            let mut sig = kp
                .sign(&rng, &out)
                .map_err(|_| EsdkError::Seal("signature".into()))?;
            for _ in 0..256 {
                if sig.as_ref().len() == SIGNATURE_LEN {
                    break;
                }
                sig = kp
                    .sign(&rng, &out)
                    .map_err(|_| EsdkError::Seal("signature".into()))?;
            }
            out.extend(
                u16::try_from(sig.as_ref().len())
                    .map_err(|_| EsdkError::Seal("signature".into()))?
                    .to_be_bytes(),
            );
            out.extend_from_slice(sig.as_ref());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edk() -> Vec<Edk> {
        vec![Edk {
            provider_id: "aws-kms".into(),
            provider_info: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            ciphertext: vec![1; 40],
        }]
    }

    fn ec() -> EncryptionContext {
        [("tenant".to_owned(), "acme".to_owned())].into()
    }

    #[test]
    fn round_trips_every_shape() {
        let dk = DataKey::new([7; 32]);
        for suite in [Suite::Committing, Suite::CommittingEcdsaP384] {
            for frame in [None, Some(1), Some(16), Some(4096)] {
                for len in [0usize, 1, 15, 16, 17, 5000] {
                    let pt: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
                    let enc = Encryptor::new(suite, ec(), frame).unwrap();
                    let msg = enc.seal(&dk, edk(), &pt).unwrap();
                    assert_eq!(
                        decrypt(&msg, &dk).unwrap().as_slice(),
                        pt,
                        "{suite:?} {frame:?} {len}"
                    );
                    let (h, _) = parse_header(&msg).unwrap();
                    assert_eq!(h.context.get("tenant").map(String::as_str), Some("acme"));
                    assert_eq!(
                        h.context.contains_key(PUBLIC_KEY_CONTEXT_KEY),
                        suite.signed()
                    );
                }
            }
        }
    }

    #[test]
    fn the_plaintext_buffer_has_exactly_its_length_so_it_never_grew() {
        let dk = DataKey::new([7; 32]);
        for suite in [Suite::Committing, Suite::CommittingEcdsaP384] {
            for frame in [
                None,
                Some(1),
                Some(16),
                Some(4096),
                Some(DEFAULT_FRAME_LENGTH),
            ] {
                for len in [0usize, 1, 16, 17, 5000, 70_000] {
                    let pt: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
                    let msg = Encryptor::new(suite, ec(), frame)
                        .unwrap()
                        .seal(&dk, edk(), &pt)
                        .unwrap();
                    let plain = decrypt(&msg, &dk).unwrap();
                    assert_eq!(plain.as_slice(), pt, "{suite:?} {frame:?} {len}");
                    assert_eq!(plain.0.capacity(), len, "{suite:?} {frame:?} {len}");
                }
            }
        }
    }

    #[test]
    fn every_flipped_byte_and_a_wrong_key_are_refused() {
        let dk = DataKey::new([7; 32]);
        let msg = Encryptor::new(Suite::CommittingEcdsaP384, ec(), Some(8))
            .unwrap()
            .seal(&dk, edk(), b"0123456789abcdefXYZ")
            .unwrap();
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 0x01;
            assert!(decrypt(&m, &dk).is_err(), "byte {i}");
        }
        assert_eq!(
            decrypt(&msg, &DataKey::new([8; 32])).unwrap_err().code(),
            "ESDK-COMMITMENT"
        );
        assert!(decrypt(&msg[..msg.len() - 1], &dk).is_err());
        let mut more = msg.clone();
        more.push(0);
        assert!(decrypt(&more, &dk).is_err());
    }

    #[test]
    fn concatenated_messages_split() {
        let dk = DataKey::new([7; 32]);
        let a = Encryptor::new(Suite::CommittingEcdsaP384, ec(), Some(16))
            .unwrap()
            .seal(&dk, edk(), b"first message")
            .unwrap();
        let b = Encryptor::new(Suite::Committing, ec(), None)
            .unwrap()
            .seal(&dk, edk(), b"second")
            .unwrap();
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(split(&both).unwrap(), vec![a.as_slice(), b.as_slice()]);
        assert!(split(&both[..both.len() - 1]).is_err());
        assert!(split(&[]).unwrap().is_empty());
    }

    #[test]
    fn reserved_context_keys_are_refused() {
        let ec: EncryptionContext = [("aws-crypto-public-key".to_owned(), "x".to_owned())].into();
        assert!(Encryptor::new(Suite::Committing, ec, None).is_err());
    }

    #[test]
    fn signatures_have_the_sdk_length() {
        let dk = DataKey::new([1; 32]);
        for _ in 0..20 {
            let msg = Encryptor::new(Suite::CommittingEcdsaP384, ec(), Some(64))
                .unwrap()
                .seal(&dk, edk(), b"x")
                .unwrap();
            let n = msg.len();
            assert_eq!(u16::from_be_bytes([msg[n - 105], msg[n - 104]]), 103);
        }
    }
}
