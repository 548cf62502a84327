//! The message header: parsing and serialization (version 2).

use std::collections::BTreeMap;

use crate::error::EsdkError;

/// An encryption context: UTF-8 pairs, sorted by key.
pub type EncryptionContext = BTreeMap<String, String>;

/// Most encrypted data keys accepted in one message.
pub(crate) const MAX_EDKS: usize = 16;

/// A committing algorithm suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `0x0478` AES_256_GCM_HKDF_SHA512_COMMIT_KEY.
    Committing,
    /// `0x0578` AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384.
    CommittingEcdsaP384,
}

impl Suite {
    /// The suite id.
    pub fn id(self) -> u16 {
        match self {
            Self::Committing => 0x0478,
            Self::CommittingEcdsaP384 => 0x0578,
        }
    }

    /// From a suite id.
    pub fn from_id(id: u16) -> Result<Self, EsdkError> {
        match id {
            0x0478 => Ok(Self::Committing),
            0x0578 => Ok(Self::CommittingEcdsaP384),
            other => Err(EsdkError::Unsupported(format!(
                "algorithm suite {other:#06x} (only the committing suites 0x0478 and 0x0578)"
            ))),
        }
    }

    /// Whether the message carries a signature footer.
    pub fn signed(self) -> bool {
        self == Self::CommittingEcdsaP384
    }
}

/// Framed or single-block body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// One AES-GCM block for the whole plaintext.
    NonFramed,
    /// Frames of `frame_length` bytes.
    Framed,
}

/// An encrypted data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edk {
    /// Key provider id, `aws-kms` for KMS.
    pub provider_id: String,
    /// Provider info: for KMS, the key ARN.
    pub provider_info: String,
    /// The encrypted data key: for KMS, the CiphertextBlob.
    pub ciphertext: Vec<u8>,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The suite.
    pub suite: Suite,
    /// 32-byte message id (the HKDF salt).
    pub message_id: [u8; 32],
    /// Encryption context.
    pub context: EncryptionContext,
    /// Encrypted data keys.
    pub edks: Vec<Edk>,
    /// Body type.
    pub content_type: ContentType,
    /// Frame length (0 for non-framed).
    pub frame_length: u32,
    /// Key commitment.
    pub commitment: [u8; 32],
    /// Header authentication tag.
    pub auth_tag: [u8; 16],
    /// Length of the header bytes before the authentication tag.
    pub(crate) body_len: usize,
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

fn truncated(what: &str) -> EsdkError {
    EsdkError::Malformed(format!("truncated at {what}"))
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], EsdkError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, EsdkError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, EsdkError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, EsdkError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, EsdkError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], EsdkError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn string(&mut self, what: &str) -> Result<String, EsdkError> {
        let n = usize::from(self.u16(what)?);
        String::from_utf8(self.take(n, what)?.to_vec())
            .map_err(|_| EsdkError::Malformed(format!("{what} is not UTF-8")))
    }
}

/// Serializes an encryption context (`u16 count`, then sorted `u16 len key u16 len value`).
pub(crate) fn context_bytes(ec: &EncryptionContext) -> Result<Vec<u8>, EsdkError> {
    if ec.is_empty() {
        return Ok(Vec::new());
    }
    let too_big = || EsdkError::Seal("encryption context too large".into());
    let mut out = Vec::new();
    out.extend(
        u16::try_from(ec.len())
            .map_err(|_| too_big())?
            .to_be_bytes(),
    );
    for (k, v) in ec {
        for s in [k, v] {
            out.extend(u16::try_from(s.len()).map_err(|_| too_big())?.to_be_bytes());
            out.extend(s.as_bytes());
        }
    }
    Ok(out)
}

/// Parses a message's header (enough to find the data key: EDKs and context).
pub fn parse_header(bytes: &[u8]) -> Result<(Header, usize), EsdkError> {
    let mut r = Reader::new(bytes);
    match r.u8("version")? {
        0x02 => {}
        0x01 => {
            return Err(EsdkError::Unsupported(
                "message format version 1 (non-committing suites)".into(),
            ));
        }
        v => {
            return Err(EsdkError::Malformed(format!(
                "unknown message format version {v:#04x}"
            )));
        }
    }
    let suite = Suite::from_id(r.u16("suite id")?)?;
    let message_id = r.array::<32>("message id")?;
    let aad_len = usize::from(r.u16("AAD length")?);
    let aad = r.take(aad_len, "AAD")?;
    let mut context = EncryptionContext::new();
    if aad_len > 0 {
        let mut a = Reader::new(aad);
        let count = a.u16("context count")?;
        if count == 0 {
            return Err(EsdkError::Malformed("non-empty AAD with zero pairs".into()));
        }
        for _ in 0..count {
            let k = a.string("context key")?;
            let v = a.string("context value")?;
            if context.insert(k, v).is_some() {
                return Err(EsdkError::Malformed(
                    "duplicate encryption context key".into(),
                ));
            }
        }
        if a.pos != aad.len() {
            return Err(EsdkError::Malformed(
                "bytes after the encryption context".into(),
            ));
        }
        if context_bytes(&context)? != aad {
            return Err(EsdkError::Malformed(
                "encryption context is not sorted".into(),
            ));
        }
    }
    let edk_count = usize::from(r.u16("EDK count")?);
    if edk_count == 0 || edk_count > MAX_EDKS {
        return Err(EsdkError::Malformed(format!(
            "{edk_count} encrypted data keys (1..={MAX_EDKS} accepted)"
        )));
    }
    let mut edks = Vec::with_capacity(edk_count);
    for _ in 0..edk_count {
        let provider_id = r.string("EDK provider id")?;
        let provider_info = r.string("EDK provider info")?;
        let n = usize::from(r.u16("EDK length")?);
        edks.push(Edk {
            provider_id,
            provider_info,
            ciphertext: r.take(n, "EDK")?.to_vec(),
        });
    }
    let content_type = match r.u8("content type")? {
        0x01 => ContentType::NonFramed,
        0x02 => ContentType::Framed,
        t => return Err(EsdkError::Malformed(format!("content type {t:#04x}"))),
    };
    let frame_length = r.u32("frame length")?;
    match (content_type, frame_length) {
        (ContentType::NonFramed, 0) => {}
        (ContentType::Framed, 1..) => {}
        _ => {
            return Err(EsdkError::Malformed(format!(
                "frame length {frame_length} for {content_type:?} content"
            )));
        }
    }
    let commitment = r.array::<32>("commitment key")?;
    let body_len = r.pos;
    let auth_tag = r.array::<16>("header tag")?;
    Ok((
        Header {
            suite,
            message_id,
            context,
            edks,
            content_type,
            frame_length,
            commitment,
            auth_tag,
            body_len,
        },
        r.pos,
    ))
}

impl Header {
    /// Serializes the header up to (not including) the authentication tag.
    pub(crate) fn body_bytes(&self) -> Result<Vec<u8>, EsdkError> {
        let too_big = |w: &str| EsdkError::Seal(format!("{w} too large"));
        let mut out = vec![0x02];
        out.extend(self.suite.id().to_be_bytes());
        out.extend(self.message_id);
        let aad = context_bytes(&self.context)?;
        out.extend(
            u16::try_from(aad.len())
                .map_err(|_| too_big("encryption context"))?
                .to_be_bytes(),
        );
        out.extend(aad);
        out.extend(
            u16::try_from(self.edks.len())
                .map_err(|_| too_big("EDK list"))?
                .to_be_bytes(),
        );
        for e in &self.edks {
            for f in [
                e.provider_id.as_bytes(),
                e.provider_info.as_bytes(),
                &e.ciphertext,
            ] {
                out.extend(
                    u16::try_from(f.len())
                        .map_err(|_| too_big("EDK"))?
                        .to_be_bytes(),
                );
                out.extend(f);
            }
        }
        out.push(match self.content_type {
            ContentType::NonFramed => 0x01,
            ContentType::Framed => 0x02,
        });
        out.extend(self.frame_length.to_be_bytes());
        out.extend(self.commitment);
        Ok(out)
    }
}
