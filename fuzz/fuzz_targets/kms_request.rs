//! What the KMS decodes from an untrusted request before any key is touched: the SigV4
//! Authorization header, each operation's typed JSON input, and a ciphertext blob's header.
#![no_main]

use cloister_kms::{blob, decode_input};
use libfuzzer_sys::fuzz_target;

const OPERATIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "CreateAlias",
    "ListAliases",
    "ScheduleKeyDeletion",
    "EnableKeyRotation",
    "PutKeyPolicy",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GetPublicKey",
    "Sign",
    "Verify",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "DeriveSharedSecret",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "ListKeyPolicies",
    "UpdateKeyDescription",
    "ListKeyRotations",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "GenerateMac",
    "VerifyMac",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "GenerateDataKeyWithoutPlaintext",
    "UpdateAlias",
    "CancelKeyDeletion",
    "DisableKey",
    "GetKeyRotationStatus",
    "GetKeyPolicy",
    "DeleteAlias",
    "EnableKey",
    "DisableKeyRotation",
    "RotateKeyOnDemand",
];

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cloister_sigv4::parse_authorization(s);
    }
    let _ = blob::header(data);
    for op in OPERATIONS.iter().chain(&["GenerateRandom"]) {
        let _ = decode_input(op, data);
    }
});
