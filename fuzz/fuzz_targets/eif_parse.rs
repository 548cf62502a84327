//! The EIF reader on arbitrary bytes (parse, describe with signature verification, and the
//! signature section parser on its own): errors with a listed code, never panics.
#![no_main]

use cloister_common::ErrorCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = cloister_eif::describe(data) {
        assert!(cloister_eif::CODES.contains(&e.code().as_ref()));
    }
    let _ = cloister_eif::parse(data);
    let _ = cloister_eif::Signature::parse(data);
});
