//! Shared helpers: the real Nitro vectors in `testdata/nitro` and their metadata.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cloister_attestation::{AttestationDocument, Timestamp};
use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, iana};

pub const VECTORS: [&str; 5] = [
    "nitro_blocky_2024-09-07_prod",
    "nitro_blocky_2024-09-07_debug",
    "nitro_evervault_2023-09-18_debug",
    "nitro_evervault_2022-10-13_prod_pcr8",
    "nitro_evervault_2022-10-12_debug",
];
pub const PROD: &str = "nitro_blocky_2024-09-07_prod";

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/nitro")
}

pub fn doc(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.cbor"))).unwrap()
}

pub fn meta(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn verify_at(name: &str) -> Timestamp {
    Timestamp::from_secs(meta(name)["verify_at_unix_s"].as_u64().unwrap())
}

pub fn meta_time(name: &str, field: &str) -> Timestamp {
    Timestamp::parse(meta(name)[field].as_str().unwrap()).unwrap()
}

pub fn is_debug(name: &str) -> bool {
    meta(name)["debug_mode_zero_pcr012"].as_bool().unwrap()
}

/// Rebuilds an untagged ES384 COSE_Sign1 around `payload` with the given signature.
pub fn rewrap(payload: &AttestationDocument, signature: Vec<u8>) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .build(),
        )
        .payload(payload.to_payload())
        .signature(signature)
        .build()
        .to_vec()
        .unwrap()
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}
