//! The verifier: decoding, chain, signature and policy, in AWS's order.

use std::ops::Deref;
use std::sync::Arc;

use crate::cache::ChainCache;
use crate::chain::{self, VerifiedChain};
use crate::cose;
use crate::document::AttestationDocument;
use crate::ecdsa;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::roots::TrustAnchor;
use crate::time::Timestamp;

/// Largest encoded document accepted (the NSM's response buffer is 0x3000 bytes).
pub const MAX_DOCUMENT_LEN: usize = 0x4000;

/// The instant at which certificates must be valid and against which age is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyAt {
    /// Live verification: the system clock, read once.
    Now,
    /// Archival verification at a given instant.
    Instant(Timestamp),
    /// Archival verification at the document's own timestamp.
    DocumentTime,
}

impl VerifyAt {
    fn resolve(self, doc: &AttestationDocument) -> Timestamp {
        match self {
            Self::Now => Timestamp::now(),
            Self::Instant(t) => t,
            Self::DocumentTime => doc.timestamp,
        }
    }
}

/// A document decoded but **not verified**: for display only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedDocument {
    /// The payload's fields.
    pub document: AttestationDocument,
    /// Whether the envelope carried COSE tag 18.
    pub tagged: bool,
    /// The raw `r ‖ s` signature.
    pub signature: Vec<u8>,
}

/// Decodes a document without verifying anything but its syntax.
pub fn decode(bytes: &[u8]) -> Result<DecodedDocument> {
    let (sign1, document) = decode_parts(bytes)?;
    Ok(DecodedDocument {
        document,
        tagged: sign1.tagged,
        signature: sign1.signature.to_vec(),
    })
}

fn decode_parts(bytes: &[u8]) -> Result<(cose::Sign1, AttestationDocument)> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(Error::Cose(format!(
            "document is {} bytes, at most {MAX_DOCUMENT_LEN}",
            bytes.len()
        )));
    }
    let sign1 = cose::decode(bytes)?;
    let document = AttestationDocument::from_payload(&sign1.payload)?;
    Ok((sign1, document))
}

/// A document whose chain, signature and policy all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDocument {
    document: AttestationDocument,
    verified_at: Timestamp,
    tagged: bool,
}

impl VerifiedDocument {
    /// The instant the document was verified at.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }

    /// Whether the envelope carried COSE tag 18.
    pub fn tagged(&self) -> bool {
        self.tagged
    }

    /// The verified fields.
    pub fn into_document(self) -> AttestationDocument {
        self.document
    }
}

impl Deref for VerifiedDocument {
    type Target = AttestationDocument;
    fn deref(&self) -> &AttestationDocument {
        &self.document
    }
}

/// Verifies documents against a fixed set of pinned roots.
#[derive(Debug)]
pub struct Verifier {
    anchors: Vec<TrustAnchor>,
    cache: Option<ChainCache>,
}

impl Verifier {
    /// A verifier that trusts exactly `anchors`.
    pub fn new(anchors: Vec<TrustAnchor>) -> Self {
        Self {
            anchors,
            cache: None,
        }
    }

    /// A verifier that trusts only the AWS Nitro Enclaves Root G1.
    pub fn aws() -> Self {
        Self::new(vec![TrustAnchor::aws_nitro_root_g1()])
    }

    /// Caches up to `capacity` verified chains (see [`ChainCache`]).
    #[must_use]
    pub fn with_chain_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(ChainCache::new(capacity));
        self
    }

    /// The pinned roots.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }

    /// The chain cache, if enabled.
    pub fn chain_cache(&self) -> Option<&ChainCache> {
        self.cache.as_ref()
    }

    /// Verifies `bytes` (a COSE_Sign1 document) at `at` and applies `policy`.
    pub fn verify(&self, bytes: &[u8], at: VerifyAt, policy: &Policy) -> Result<VerifiedDocument> {
        let (sign1, document) = decode_parts(bytes)?;
        let at = at.resolve(&document);
        let chain = self.chain(&document, at)?;
        if !ecdsa::verify_fixed(&chain.leaf_key, &sign1.to_be_signed, &sign1.signature) {
            return Err(Error::Sig);
        }
        policy.check(&document, at)?;
        Ok(VerifiedDocument {
            document,
            verified_at: at,
            tagged: sign1.tagged,
        })
    }

    fn chain(&self, doc: &AttestationDocument, at: Timestamp) -> Result<Arc<VerifiedChain>> {
        let Some(cache) = &self.cache else {
            return chain::verify(&self.anchors, &doc.cabundle, &doc.certificate, at).map(Arc::new);
        };
        chain::check_root(&self.anchors, &doc.cabundle)?;
        let key = ChainCache::key(&doc.cabundle, &doc.certificate);
        if let Some(hit) = cache.get(&key) {
            hit.check_time(at)?;
            return Ok(hit);
        }
        let verified = Arc::new(chain::verify(
            &self.anchors,
            &doc.cabundle,
            &doc.certificate,
            at,
        )?);
        cache.insert(key, verified.clone());
        Ok(verified)
    }
}
