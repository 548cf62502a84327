//! Every kind of tampering is refused with its own error code.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use cloister_attestation::{
    AttestationDocument, CertPosition, Error, PcrIndex, PcrValue, Policy, Verifier, VerifyAt,
    decode,
};
use common::*;

fn code_of(bytes: &[u8]) -> &'static str {
    Verifier::aws()
        .verify(bytes, VerifyAt::Instant(verify_at(PROD)), &Policy::new())
        .map(|_| "OK")
        .unwrap_or_else(|e| e.code())
}

fn payload() -> (AttestationDocument, Vec<u8>) {
    let d = decode(&doc(PROD)).unwrap();
    (d.document, d.signature)
}

#[test]
fn untouched_document_passes() {
    assert_eq!(code_of(&doc(PROD)), "OK");
}

#[test]
fn flipped_signature_byte() {
    let mut d = doc(PROD);
    let n = d.len();
    d[n - 10] ^= 0x01;
    assert_eq!(code_of(&d), "ATT-SIG");
}

#[test]
fn flipped_payload_byte() {
    let mut d = doc(PROD);
    let pcr0 = hex::decode(meta(PROD)["pcrs"]["0"].as_str().unwrap()).unwrap();
    let at = find(&d, &pcr0);
    d[at + 5] ^= 0x80;
    assert_eq!(code_of(&d), "ATT-SIG");
}

#[test]
fn flipped_protected_header_byte() {
    let mut d = doc(PROD);
    assert_eq!(&d[1..6], &[0x44, 0xa1, 0x01, 0x38, 0x22]);
    d[5] ^= 0x01; // alg -35 -> -36
    assert_eq!(code_of(&d), "ATT-COSE");
    let mut d = doc(PROD);
    d[3] ^= 0x02; // label 1 -> 3 (content type): no alg at all
    assert_eq!(code_of(&d), "ATT-COSE");
}

#[test]
fn flipped_leaf_certificate_byte() {
    let (p, _) = payload();
    let (_, leaf) = x509_parser::parse_x509_certificate(&p.certificate).unwrap();
    let key = leaf.public_key().subject_public_key.data.to_vec();
    let mut d = doc(PROD);
    let at = find(&d, &key);
    d[at + key.len() - 1] ^= 0x01;
    assert_eq!(code_of(&d), "ATT-CHAIN-SIG");
}

#[test]
fn root_replaced_by_another_self_signed_p384_root() {
    let (mut p, sig) = payload();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aws.nitro-enclaves");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let fake = params.self_signed(&key).unwrap();
    p.cabundle[0] = fake.der().to_vec();
    assert_eq!(code_of(&rewrap(&p, sig)), "ATT-ROOT");
}

#[test]
fn cabundle_entry_dropped() {
    let (p, sig) = payload();
    for drop in 0..p.cabundle.len() {
        let mut q = p.clone();
        q.cabundle.remove(drop);
        let expected = if drop == 0 { "ATT-ROOT" } else { "ATT-CHAIN" };
        assert_eq!(
            code_of(&rewrap(&q, sig.clone())),
            expected,
            "dropped cabundle[{drop}]"
        );
    }
}

#[test]
fn cabundle_reordered() {
    let (p, sig) = payload();
    let mut q = p.clone();
    q.cabundle.swap(1, 2);
    assert_eq!(code_of(&rewrap(&q, sig.clone())), "ATT-CHAIN");
    let mut q = p.clone();
    q.cabundle.reverse(); // leaf-first order, as PKIX APIs want: the root is no longer first
    assert_eq!(code_of(&rewrap(&q, sig)), "ATT-ROOT");
}

#[test]
fn rewrapped_but_unchanged_payload_still_verifies() {
    // The rewrap helper itself is faithful, so the failures above come from the tampering.
    let (p, sig) = payload();
    assert_eq!(code_of(&rewrap(&p, sig)), "OK");
}

#[test]
fn one_second_outside_the_leaf_validity() {
    let verifier = Verifier::aws();
    let not_after = meta_time(PROD, "leaf_not_after");
    let not_before = meta_time(PROD, "leaf_not_before");
    let one = Duration::from_secs(1);
    for (at, ok) in [
        (not_after, true),
        (not_after.plus(one), false),
        (not_before, true),
        (not_before.minus(one), false),
    ] {
        let r = verifier.verify(&doc(PROD), VerifyAt::Instant(at), &Policy::new());
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(Error::CertTime { position, .. }), false) => {
                assert_eq!(position, CertPosition::Leaf)
            }
            (other, _) => panic!("at {at}: {other:?}"),
        }
    }
}

#[test]
fn wrong_expected_pcr() {
    let policy = Policy::new().expect_pcr(PcrIndex::IMAGE, PcrValue::measure(b"another image"));
    let err = Verifier::aws()
        .verify(&doc(PROD), VerifyAt::Instant(verify_at(PROD)), &policy)
        .unwrap_err();
    assert_eq!(err.code(), "ATT-PCR");
    // An expected PCR the document does not carry.
    let policy = Policy::new().expect_pcr(PcrIndex::new(20).unwrap(), PcrValue::ZERO);
    let err = Verifier::aws()
        .verify(&doc(PROD), VerifyAt::Instant(verify_at(PROD)), &policy)
        .unwrap_err();
    assert_eq!(err.code(), "ATT-PCR");
}

#[test]
fn wrong_nonce() {
    let policy = Policy::new().nonce(vec![1u8; 32]);
    let err = Verifier::aws()
        .verify(&doc(PROD), VerifyAt::Instant(verify_at(PROD)), &policy)
        .unwrap_err();
    assert_eq!(err.code(), "ATT-NONCE");
    let ev = "nitro_evervault_2022-10-12_debug"; // nonce is null
    let policy = Policy::new().allow_debug(true).nonce(vec![]);
    let err = Verifier::aws()
        .verify(&doc(ev), VerifyAt::Instant(verify_at(ev)), &policy)
        .unwrap_err();
    assert_eq!(err.code(), "ATT-NONCE");
}

#[test]
fn stale_beyond_max_age() {
    let verifier = Verifier::aws();
    let policy = Policy::new().max_age(Duration::from_secs(300));
    let ts =
        cloister_attestation::Timestamp::from_millis(meta(PROD)["timestamp_ms"].as_u64().unwrap());
    verifier
        .verify(
            &doc(PROD),
            VerifyAt::Instant(ts.plus(Duration::from_secs(300))),
            &policy,
        )
        .unwrap();
    let err = verifier
        .verify(
            &doc(PROD),
            VerifyAt::Instant(ts.plus(Duration::from_secs(301))),
            &policy,
        )
        .unwrap_err();
    assert_eq!(err.code(), "ATT-STALE");
}

#[test]
fn truncated_and_trailing_garbage() {
    let d = doc(PROD);
    for cut in [1, 2, 100, d.len() / 2, d.len() - 1] {
        assert_eq!(code_of(&d[..d.len() - cut]), "ATT-COSE", "cut {cut}");
    }
    let mut more = d.clone();
    more.push(0x00);
    assert_eq!(code_of(&more), "ATT-COSE");
    let mut tagged_more = vec![0xd2];
    tagged_more.extend(&d);
    tagged_more.extend(b"junk");
    assert_eq!(code_of(&tagged_more), "ATT-COSE");
    assert_eq!(code_of(&[]), "ATT-COSE");
}

#[test]
fn other_tags_refused() {
    let mut d = vec![0xd8, 0x62]; // tag 98 (COSE_Sign)
    d.extend(doc(PROD));
    assert_eq!(code_of(&d), "ATT-COSE");
}
