//! The five real Nitro documents verify at their own time against the AWS root, and read back
//! exactly what the vectors' metadata (decoded independently with Python) says.
#![allow(clippy::unwrap_used)]

mod common;

use cloister_attestation::{PcrIndex, Policy, Timestamp, Verifier, VerifyAt, decode};
use common::*;

#[test]
fn every_real_document_verifies_at_its_time() {
    let verifier = Verifier::aws();
    for name in VECTORS {
        let policy = Policy::new().allow_debug(is_debug(name));
        let v = verifier
            .verify(&doc(name), VerifyAt::Instant(verify_at(name)), &policy)
            .unwrap_or_else(|e| panic!("{name}: {} {e}", e.code()));
        let m = meta(name);
        assert_eq!(v.module_id, m["module_id"].as_str().unwrap(), "{name}");
        assert_eq!(
            v.timestamp.as_millis(),
            m["timestamp_ms"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(v.pcrs.len(), 16, "{name}");
        for (index, value) in v.pcrs.iter() {
            let expected = m["pcrs"][index.get().to_string()].as_str().unwrap();
            assert_eq!(value.to_hex(), expected, "{name} PCR{index}");
        }
        for (field, got) in [
            ("public_key", &v.public_key),
            ("user_data", &v.user_data),
            ("nonce", &v.nonce),
        ] {
            let expected = m[field].as_str().map(|h| hex::decode(h).unwrap());
            assert_eq!(got, &expected, "{name} {field}");
        }
        assert!(!v.tagged());
        assert_eq!(v.verified_at(), verify_at(name));
    }
}

#[test]
fn debug_documents_need_allow_debug() {
    let verifier = Verifier::aws();
    for name in VECTORS {
        let result = verifier.verify(
            &doc(name),
            VerifyAt::Instant(verify_at(name)),
            &Policy::new(),
        );
        if is_debug(name) {
            assert_eq!(result.unwrap_err().code(), "ATT-DEBUG", "{name}");
        } else {
            assert!(result.is_ok(), "{name}");
        }
    }
}

#[test]
fn archival_mode_uses_the_document_timestamp() {
    let verifier = Verifier::aws();
    let v = verifier
        .verify(&doc(PROD), VerifyAt::DocumentTime, &Policy::new())
        .unwrap();
    assert_eq!(
        v.verified_at().as_millis(),
        meta(PROD)["timestamp_ms"].as_u64().unwrap()
    );
}

#[test]
fn live_mode_rejects_old_documents() {
    // The leaf certificates of the real vectors expired years ago.
    let err = Verifier::aws()
        .verify(&doc(PROD), VerifyAt::Now, &Policy::new())
        .unwrap_err();
    assert_eq!(err.code(), "ATT-CERT-TIME");
}

#[test]
fn tag_18_wrapped_copy_verifies() {
    let mut tagged = vec![0xd2];
    tagged.extend(doc(PROD));
    let v = Verifier::aws()
        .verify(&tagged, VerifyAt::Instant(verify_at(PROD)), &Policy::new())
        .unwrap();
    assert!(v.tagged());
    assert!(decode(&tagged).unwrap().tagged);
}

#[test]
fn expected_pcrs_and_nonce_and_key_policy() {
    let verifier = Verifier::aws();
    let at = VerifyAt::Instant(verify_at(PROD));
    let m = meta(PROD);
    let mut policy = Policy::new()
        .require_public_key(true)
        .nonce(hex::decode(m["nonce"].as_str().unwrap()).unwrap());
    for i in [0u64, 1, 2, 3, 4, 8] {
        let value = m["pcrs"][i.to_string()].as_str().unwrap().parse().unwrap();
        policy = policy.expect_pcr(PcrIndex::new(i).unwrap(), value);
    }
    verifier.verify(&doc(PROD), at, &policy).unwrap();

    // The evervault prod document has no public key.
    let ev = "nitro_evervault_2022-10-13_prod_pcr8";
    let err = verifier
        .verify(
            &doc(ev),
            VerifyAt::Instant(verify_at(ev)),
            &Policy::new().require_public_key(true),
        )
        .unwrap_err();
    assert_eq!(err.code(), "ATT-NO-KEY");
}

#[test]
fn chain_cache_verifies_the_same_and_counts_hits() {
    let verifier = Verifier::aws().with_chain_cache(8);
    let at = VerifyAt::Instant(verify_at(PROD));
    for _ in 0..3 {
        verifier.verify(&doc(PROD), at, &Policy::new()).unwrap();
    }
    let cache = verifier.chain_cache().unwrap();
    assert_eq!(cache.stats(), (2, 1));
    assert_eq!(cache.len(), 1);
    // A cached chain is still refused once its leaf has expired.
    let late = meta_time(PROD, "leaf_not_after").plus(std::time::Duration::from_secs(1));
    let err = verifier
        .verify(&doc(PROD), VerifyAt::Instant(late), &Policy::new())
        .unwrap_err();
    assert_eq!(err.code(), "ATT-CERT-TIME");
    // And a tampered signature is still caught on a cache hit.
    let mut bad = doc(PROD);
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(
        verifier
            .verify(&bad, at, &Policy::new())
            .unwrap_err()
            .code(),
        "ATT-SIG"
    );
}

#[test]
fn timestamps_parse_from_metadata() {
    assert!(meta_time(PROD, "leaf_not_after") > Timestamp::from_secs(1_725_719_859));
}
