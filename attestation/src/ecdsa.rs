//! ECDSA P-384 / SHA-384 signature checks, through aws-lc-rs.
//!
//! A Nitro document costs five of these when its chain is not cached (four certificates and the
//! COSE signature). On this machine aws-lc-rs verifies about 4.5x faster than the RustCrypto
//! `p384` crate (5.0k vs 1.1k verifications/s, see `benches/verify.rs`, which measures both), so
//! the verifier goes through aws-lc-rs to meet its goal of cold verification within 1.5x of five
//! aws-lc-rs verifications.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};

/// Verifies a DER (`SEQUENCE { r, s }`) signature, as X.509 certificates carry.
pub(crate) fn verify_der(public_point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, public_point)
        .verify(message, signature)
        .is_ok()
}

/// Verifies a raw 96-byte `r ‖ s` signature, as COSE carries.
pub(crate) fn verify_fixed(public_point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public_point)
        .verify(message, signature)
        .is_ok()
}
