//! Encryption SDK messages from untrusted input: splitting, header parsing and decryption with a
//! fixed data key must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_esdk::split(data);
    let _ = cloister_esdk::parse_header(data);
    let key = cloister_esdk::DataKey::new([7; 32]);
    let _ = cloister_esdk::decrypt(data, &key);
});
