//! Random mutations of real documents: never a panic, always an error.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // truncation is the point of a PRNG

mod common;

use cloister_attestation::{Policy, Verifier, VerifyAt, decode};
use common::*;
use proptest::prelude::*;

/// A small deterministic generator, so a failure names its seed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, mut d: Vec<u8>) -> Vec<u8> {
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = d.len().max(1);
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(len);
                if let Some(b) = d.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(len);
                d.truncate(i);
            }
            3 => {
                let i = rng.below(len);
                d.insert(i.min(d.len()), rng.next() as u8);
            }
            4 => {
                if !d.is_empty() {
                    let i = rng.below(d.len());
                    d.remove(i);
                }
            }
            _ => {
                let i = rng.below(len);
                if let Some(b) = d.get_mut(i) {
                    *b = [0x00, 0xff, 0xf6, 0xa0, 0x80, 0x5b, 0x9f][rng.below(7)];
                }
            }
        }
    }
    d
}

#[test]
fn mutated_real_documents_always_fail_cleanly() {
    let verifier = Verifier::aws().with_chain_cache(4);
    for name in VECTORS {
        let original = doc(name);
        let at = VerifyAt::Instant(verify_at(name));
        let policy = Policy::new().allow_debug(true);
        for seed in 1..=150u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let m = mutate(&mut rng, original.clone());
            if m == original {
                continue;
            }
            let r = std::panic::catch_unwind(|| verifier.verify(&m, at, &policy));
            match r {
                Ok(Err(e)) => assert!(e.code().starts_with("ATT-"), "{name} seed {seed}"),
                Ok(Ok(_)) => panic!("{name} seed {seed}: a mutated document verified"),
                Err(_) => panic!("{name} seed {seed}: panic"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
        prop_assert!(Verifier::aws().verify(&bytes, VerifyAt::Now, &Policy::new()).is_err());
    }

    #[test]
    fn arbitrary_payload_inside_a_valid_envelope_never_panics(bytes in proptest::collection::vec(any::<u8>(), 1..1024)) {
        let envelope = coset::CoseSign1Builder::new()
            .protected(coset::HeaderBuilder::new().algorithm(coset::iana::Algorithm::ES384).build())
            .payload(bytes)
            .signature(vec![0; 96])
            .build();
        let encoded = coset::CborSerializable::to_vec(envelope).unwrap();
        prop_assert!(Verifier::aws().verify(&encoded, VerifyAt::Now, &Policy::new()).is_err());
    }
}
