//! The one error type of the crate.
//!
//! Every way a document can fail has its own variant and a stable short code (`ATT-…`) that callers,
//! logs and users can search for. Codes never change meaning; new failures get new codes.

use std::fmt;

/// Where in the certificate chain a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertPosition {
    /// `cabundle[i]`; index 0 is the root.
    Bundle(usize),
    /// The leaf `certificate` that signs the document.
    Leaf,
    /// A trust anchor given by the caller.
    Anchor,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bundle(i) => write!(f, "cabundle[{i}]"),
            Self::Leaf => f.write_str("leaf certificate"),
            Self::Anchor => f.write_str("trust anchor"),
        }
    }
}

/// Why a document (or a dev PKI operation) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a COSE_Sign1 document of the Nitro shape (ES384, attached payload,
    /// 96-byte signature, no trailing bytes, at most tag 18).
    #[error("malformed COSE_Sign1 envelope: {0}")]
    Cose(String),
    /// The payload is not a syntactically valid attestation document.
    #[error("attestation document fails syntactic checks: {0}")]
    Syntax(String),
    /// `cabundle[0]` is not one of the pinned roots.
    #[error("certificate bundle is not anchored in a pinned root: {0}")]
    Root(String),
    /// A certificate could not be parsed or uses an algorithm other than P-384/SHA-384.
    #[error("malformed certificate ({position}): {reason}")]
    Cert {
        /// Which certificate.
        position: CertPosition,
        /// What is wrong with it.
        reason: String,
    },
    /// The chain's structure is wrong: names do not link, or CA constraints are violated.
    #[error("certificate chain broken at {position}: {reason}")]
    Chain {
        /// Which certificate.
        position: CertPosition,
        /// What is wrong.
        reason: String,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("certificate signature invalid at {0}")]
    ChainSig(CertPosition),
    /// A certificate is not valid at the verification instant.
    #[error("{position} is not valid at {} (valid {} .. {})", secs(*at), secs(*not_before), secs(*not_after))]
    CertTime {
        /// Which certificate.
        position: CertPosition,
        /// The verification instant, unix seconds.
        at: i64,
        /// Start of validity, unix seconds.
        not_before: i64,
        /// End of validity, unix seconds.
        not_after: i64,
    },
    /// The COSE signature does not verify with the leaf certificate's key.
    #[error("document signature does not verify with the leaf certificate's key")]
    Sig,
    /// A PCR differs from the expected value, or is absent.
    #[error("PCR{index} mismatch: {reason}")]
    Pcr {
        /// PCR index.
        index: u8,
        /// Expected vs found.
        reason: String,
    },
    /// The document comes from a debug-mode enclave (PCR0 all zero) and debug is not allowed.
    #[error(
        "document is from a debug-mode enclave (PCR0 is all zero); debug documents are not allowed"
    )]
    Debug,
    /// The nonce differs from the expected challenge, or is absent.
    #[error("nonce mismatch: {0}")]
    Nonce(String),
    /// The document is older (or further in the future) than the allowed age.
    #[error(
        "document timestamp is {age_ms} ms away from the verification instant; at most {max_ms} ms allowed"
    )]
    Stale {
        /// |instant - timestamp| in milliseconds.
        age_ms: u64,
        /// The allowed maximum.
        max_ms: u64,
    },
    /// The policy requires a public key and the document has none.
    #[error("document carries no public_key, and the policy requires one")]
    NoPublicKey,
    /// A trust anchor given by the caller is unusable.
    #[error("unusable trust anchor: {0}")]
    Anchor(String),
    /// The emulated NSM's dev PKI could not be created, loaded, saved or used.
    #[error("dev PKI: {0}")]
    DevPki(String),
}

impl Error {
    /// The stable short code of this failure, for example `ATT-SIG`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cose(_) => "ATT-COSE",
            Self::Syntax(_) => "ATT-SYNTAX",
            Self::Root(_) => "ATT-ROOT",
            Self::Cert { .. } => "ATT-CERT",
            Self::Chain { .. } => "ATT-CHAIN",
            Self::ChainSig(_) => "ATT-CHAIN-SIG",
            Self::CertTime { .. } => "ATT-CERT-TIME",
            Self::Sig => "ATT-SIG",
            Self::Pcr { .. } => "ATT-PCR",
            Self::Debug => "ATT-DEBUG",
            Self::Nonce(_) => "ATT-NONCE",
            Self::Stale { .. } => "ATT-STALE",
            Self::NoPublicKey => "ATT-NO-KEY",
            Self::Anchor(_) => "ATT-ANCHOR",
            Self::DevPki(_) => "ATT-DEV-PKI",
        }
    }
}

/// Every code [`Error`] can produce.
pub const CODES: &[&str] = &[
    "ATT-COSE",
    "ATT-SYNTAX",
    "ATT-ROOT",
    "ATT-CERT",
    "ATT-CHAIN",
    "ATT-CHAIN-SIG",
    "ATT-CERT-TIME",
    "ATT-SIG",
    "ATT-PCR",
    "ATT-DEBUG",
    "ATT-NONCE",
    "ATT-STALE",
    "ATT-NO-KEY",
    "ATT-ANCHOR",
    "ATT-DEV-PKI",
];

impl cloister_common::ErrorCode for Error {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        Error::code(self).into()
    }
}

fn secs(s: i64) -> String {
    crate::time::Timestamp::from_secs(u64::try_from(s).unwrap_or(0)).to_rfc3339()
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn every_variant_s_code_is_listed() {
        let p = CertPosition::Leaf;
        let all = [
            Error::Cose(String::new()),
            Error::Syntax(String::new()),
            Error::Root(String::new()),
            Error::Cert {
                position: p,
                reason: String::new(),
            },
            Error::Chain {
                position: p,
                reason: String::new(),
            },
            Error::ChainSig(p),
            Error::CertTime {
                position: p,
                at: 0,
                not_before: 0,
                not_after: 0,
            },
            Error::Sig,
            Error::Pcr {
                index: 0,
                reason: String::new(),
            },
            Error::Debug,
            Error::Nonce(String::new()),
            Error::Stale {
                age_ms: 0,
                max_ms: 0,
            },
            Error::NoPublicKey,
            Error::Anchor(String::new()),
            Error::DevPki(String::new()),
        ];
        assert_eq!(all.len(), CODES.len());
        for e in all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
