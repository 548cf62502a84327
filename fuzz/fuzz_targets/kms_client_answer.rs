//! What the KMS client reads from an answer: an error body for any status but 200, else the
//! typed answer of each operation cloister calls (KMS, Secrets Manager, Parameter Store). The
//! first byte picks the operation and whether the answer is an error; the rest is the body.
#![no_main]

use cloister_kms_client::{ANSWERED_OPERATIONS, decode_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = ANSWERED_OPERATIONS[usize::from(pick) % ANSWERED_OPERATIONS.len()];
    let status = if pick & 0x80 == 0 { 200 } else { 400 };
    let _ = decode_answer(op, status, body);
});
