//! The NSM API decoder on arbitrary bytes, both directions (the emulated NSM decodes the
//! enclave's requests; the enclave decodes the NSM's responses): errors, never panics, and
//! whatever decodes re-encodes to a value that decodes the same.
#![no_main]

use cloister_nsm::api::{MAX_REQUEST, MAX_RESPONSE, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::from_cbor(data) {
        let again = req.to_cbor();
        if again.len() <= MAX_REQUEST {
            assert_eq!(Request::from_cbor(&again).ok(), Some(req));
        }
    }
    if let Ok(resp) = Response::from_cbor(data) {
        let again = resp.to_cbor();
        if again.len() <= MAX_RESPONSE {
            assert_eq!(Response::from_cbor(&again).ok(), Some(resp));
        }
    }
});
