//! What cloister-kms decodes from an untrusted Secrets Manager request before any secret or key
//! is touched: each operation's typed JSON input (with GetSecretValue's `Recipient`).
#![no_main]

use cloister_kms::decode_secrets_input;
use libfuzzer_sys::fuzz_target;

const OPERATIONS: &[&str] = &[
    "CreateSecret",
    "GetSecretValue",
    "BatchGetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "DescribeSecret",
    "ListSecrets",
    "ListSecretVersionIds",
    "DeleteSecret",
    "RestoreSecret",
    "TagResource",
    "UntagResource",
    "RotateSecret",
    "GetRandomPassword",
];

fuzz_target!(|data: &[u8]| {
    for op in OPERATIONS {
        let _ = decode_secrets_input(op, data);
    }
});
