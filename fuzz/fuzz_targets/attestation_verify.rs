//! Parse and verify arbitrary bytes as an attestation document: must never panic.
//!
//! Seeds: `scripts/fuzz` copies the real Nitro documents from `testdata/nitro` into the corpus, so
//! mutations start from valid structure and reach the chain and signature code.
#![no_main]

use cloister_attestation::{Policy, Timestamp, Verifier, VerifyAt, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data);
    // An instant at which the real vectors' chains are valid, so mutated documents get far.
    let at = VerifyAt::Instant(Timestamp::from_secs(1_725_719_859));
    let policy = Policy::new().allow_debug(true);
    let _ = Verifier::aws().verify(data, at, &policy);
    let _ = Verifier::aws().verify(data, VerifyAt::DocumentTime, &policy);
});
