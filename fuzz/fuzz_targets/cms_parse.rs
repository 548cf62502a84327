//! The CMS EnvelopedData (BER) parser the enclave runs on CiphertextForRecipient.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_attestation::recipient::parse(data);
});
