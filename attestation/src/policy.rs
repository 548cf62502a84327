//! What a caller requires of a document beyond its authenticity.
//!
//! AWS's procedure ends at "the signature and chain are valid". Whether the document comes from
//! the right image (PCRs), is not from a debug-mode enclave, answers this caller's challenge
//! (nonce), is fresh, and binds a public key, is policy: each check is opt-in here except the
//! refusal of debug documents, which must be turned off explicitly.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::document::AttestationDocument;
use crate::error::{Error, Result};
use crate::pcr::{PcrIndex, PcrValue};
use crate::time::Timestamp;

/// Requirements on a verified document. The default refuses debug documents and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    expected_pcrs: BTreeMap<PcrIndex, PcrValue>,
    allow_debug: bool,
    nonce: Option<Vec<u8>>,
    max_age: Option<Duration>,
    require_public_key: bool,
}

impl Policy {
    /// The default policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires PCR `index` to equal `value`.
    #[must_use]
    pub fn expect_pcr(mut self, index: PcrIndex, value: PcrValue) -> Self {
        self.expected_pcrs.insert(index, value);
        self
    }

    /// Accepts documents from debug-mode enclaves (PCR0 all zero).
    #[must_use]
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// Requires the document's nonce to equal `nonce`.
    #[must_use]
    pub fn nonce(mut self, nonce: impl Into<Vec<u8>>) -> Self {
        self.nonce = Some(nonce.into());
        self
    }

    /// Requires the document's timestamp to be within `max_age` of the verification instant.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Requires a public key in the document.
    #[must_use]
    pub fn require_public_key(mut self, require: bool) -> Self {
        self.require_public_key = require;
        self
    }

    /// Checks `doc` (already authenticated) against the policy at instant `at`.
    pub(crate) fn check(&self, doc: &AttestationDocument, at: Timestamp) -> Result<()> {
        if doc.pcrs.is_debug() && !self.allow_debug {
            return Err(Error::Debug);
        }
        for (&index, expected) in &self.expected_pcrs {
            match doc.pcrs.get(index) {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(Error::Pcr {
                        index: index.get(),
                        reason: format!("expected {expected}, document has {found}"),
                    });
                }
                None => {
                    return Err(Error::Pcr {
                        index: index.get(),
                        reason: format!("expected {expected}, document has no PCR{index}"),
                    });
                }
            }
        }
        if let Some(expected) = &self.nonce {
            match &doc.nonce {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(Error::Nonce(format!(
                        "expected {}, document has {}",
                        hex::encode(expected),
                        hex::encode(found)
                    )));
                }
                None => return Err(Error::Nonce("document has no nonce".into())),
            }
        }
        if let Some(max_age) = self.max_age {
            let age = doc.timestamp.distance(at);
            if age > max_age {
                return Err(Error::Stale {
                    age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    max_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        if self.require_public_key && doc.public_key.is_none() {
            return Err(Error::NoPublicKey);
        }
        Ok(())
    }
}
