//! Audit log proofs, checkpoints and public keys on arbitrary bytes: errors, never panics.
//!
//! The input is a proof, optionally followed by a NUL and a checkpoint (which makes it a
//! consistency proof); both are checked under a fixed public key, and the input is also read as
//! a public key PEM.
#![no_main]

use cloister_kms::TreeKey;
use cloister_kms::audit_proof::{self, InclusionProof};
use libfuzzer_sys::fuzz_target;

/// An Ed25519 public key (any will do: the parsers and the Merkle checks run before or
/// regardless of the signature check).
const PUBLIC_KEY: &[u8] = b"-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAms6U50zbSOC7meBGQ13JD0XYFF/f2Y3cu1wAtkiLFag=
-----END PUBLIC KEY-----
";

fuzz_target!(|data: &[u8]| {
    let _ = TreeKey::from_pem(data);
    match data.iter().position(|b| *b == 0) {
        None => {
            let _ = audit_proof::check(PUBLIC_KEY, data, None);
            if let Ok(p) = InclusionProof::parse(data) {
                // The Merkle arithmetic on whatever index, size and path the proof claims.
                let _ = p.computed_root();
                let again = InclusionProof::parse(p.to_json().as_bytes());
                assert_eq!(again.as_ref(), Ok(&p), "a parsed proof writes back to itself");
            }
        }
        Some(i) => {
            let _ = audit_proof::check(PUBLIC_KEY, &data[..i], Some(&data[i + 1..]));
        }
    }
});
