//! The import token ImportKeyMaterial receives: untrusted bytes opened under the root key and
//! parsed (wrapping algorithm, key spec, expiry, key id, wrapping private key). The parser is
//! fuzzed on its own (as if the bytes had opened) and behind the seal.
#![no_main]

use cloister_kms::decode_import_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_import_token(data);
});
