//! AWS Nitro Enclaves attestation documents: parse, verify, and (for the emulated NSM) sign.
//!
//! Everything else in cloister rests on this crate: the KMS releases a data key only to a
//! document that [`Verifier::verify`] accepts. Verification follows AWS's procedure
//! ("Verifying the root of trust", nsm-api `attestation_process.md` §3):
//!
//! 1. decode the COSE_Sign1 envelope, tagged (18) or untagged, ES384 only ([`cose`]);
//! 2. decode the payload and apply the syntactic checks ([`AttestationDocument`]);
//! 3. require `cabundle[0]` to be a pinned root, byte for byte ([`TrustAnchor`]);
//! 4. check each certificate against its predecessor: names, CA constraints, ECDSA P-384/SHA-384
//!    signature, validity at the verification instant ([`chain`]);
//! 5. check the COSE signature with the leaf's key;
//! 6. apply the caller's [`Policy`]: PCRs, debug mode, nonce, freshness, public key.
//!
//! The library does no I/O on the verification path and never reads the clock unless told to
//! ([`VerifyAt::Now`]). Every failure has a stable code ([`Error::code`]); no input panics.

mod cache;
mod certinfo;
mod chain;
mod cose;
mod document;
mod ecdsa;
mod error;
mod pcr;
mod policy;
pub mod recipient;
mod roots;
mod time;
mod verifier;

#[cfg(feature = "dev-signer")]
pub mod dev_signer;

pub use cache::ChainCache;
pub use certinfo::{CertificateInfo, p384_public_key};
pub use document::{AttestationDocument, MAX_FIELD_LEN};
pub use error::{CODES, CertPosition, Error, Result};
pub use pcr::{PCR_COUNT, PCR_LEN, ParsePcrError, PcrIndex, PcrValue, Pcrs};
pub use policy::Policy;
pub use roots::{AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256, TrustAnchor};
pub use time::Timestamp;
pub use verifier::{
    DecodedDocument, MAX_DOCUMENT_LEN, VerifiedDocument, Verifier, VerifyAt, decode,
};
