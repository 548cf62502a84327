//! What the KMS decodes from an untrusted request before any key is touched: the SigV4
//! Authorization header, the JSON input and its fields, and a ciphertext blob's header.
#![no_main]

use cloister_kms::{blob, input::Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cloister_sigv4::parse_authorization(s);
    }
    let _ = blob::header(data);
    if let Ok(input) = Input::parse(data) {
        let _ = input.req_str("KeyId", 2048);
        let _ = input.context("EncryptionContext");
        let _ = input.blob("CiphertextBlob", 1, 6144);
        let _ = input.int_in("NumberOfBytes", 1, 1024);
        let _ = input.enum_str("KeySpec", &["AES_256", "AES_128"]);
        if let Ok(Some(r)) = input.object("Recipient") {
            let _ = r.req_blob("AttestationDocument", 1, 262_144);
        }
    }
});
