//! How fast is a Nitro document verified, next to the raw signature checks it contains?
//!
//! A cold verification of a real document does five ECDSA P-384 verifications (four certificates
//! and the COSE signature) plus parsing. This benchmark measures, in one run:
//! - `cold`: a real document with no chain cache;
//! - `cached`: the same with the chain cache warm (only the COSE signature is checked);
//! - `ref_aws_lc_5x`: the same five verifications done directly with aws-lc-rs;
//! - `ref_p384_5x`: the same five with the RustCrypto `p384` crate (why the verifier uses aws-lc-rs).
//!
//! It asserts nothing. After criterion's report it prints a summary with the ratios.
//! Run: `cargo bench -p cloister-attestation --features dev-signer --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::{
    PcrIndex, PcrValue, Pcrs, Policy, Timestamp, Verifier, VerifyAt, decode,
};
use coset::CborSerializable;
use criterion::Criterion;
use p384::ecdsa::signature::Verifier as _;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One signature check: key (SEC1), message, signature, and whether the signature is DER.
struct Check {
    key: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
    der: bool,
}

fn checks_of(doc: &[u8]) -> Vec<Check> {
    let d = decode(doc).unwrap().document;
    let mut certs: Vec<&[u8]> = d.cabundle.iter().map(Vec::as_slice).collect();
    certs.push(&d.certificate);
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .map(|c| X509Certificate::from_der(c).unwrap().1)
        .collect();
    let mut checks: Vec<Check> = parsed
        .windows(2)
        .map(|w| Check {
            key: w[0].public_key().subject_public_key.data.to_vec(),
            msg: w[1].tbs_certificate.as_ref().to_vec(),
            sig: w[1].signature_value.data.to_vec(),
            der: true,
        })
        .collect();
    let sign1 = coset::CoseSign1::from_slice(doc).unwrap();
    checks.push(Check {
        key: parsed
            .last()
            .unwrap()
            .public_key()
            .subject_public_key
            .data
            .to_vec(),
        msg: sign1.tbs_data(&[]),
        sig: sign1.signature.clone(),
        der: false,
    });
    checks
}

fn aws_lc_all(checks: &[Check]) -> bool {
    checks.iter().all(|c| {
        let alg = if c.der {
            &ECDSA_P384_SHA384_ASN1
        } else {
            &ECDSA_P384_SHA384_FIXED
        };
        UnparsedPublicKey::new(alg, &c.key)
            .verify(&c.msg, &c.sig)
            .is_ok()
    })
}

fn p384_all(checks: &[Check]) -> bool {
    checks.iter().all(|c| {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&c.key).unwrap();
        let sig = if c.der {
            p384::ecdsa::DerSignature::try_from(c.sig.as_slice())
                .unwrap()
                .try_into()
                .unwrap()
        } else {
            p384::ecdsa::Signature::from_slice(&c.sig).unwrap()
        };
        key.verify(&c.msg, &sig).is_ok()
    })
}

/// Mean time per call over about `budget`, best of three runs.
fn time_per_op(budget: Duration, mut f: impl FnMut()) -> Duration {
    let mut n = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() > budget / 10 || n > 1 << 24 {
            break;
        }
        n *= 2;
    }
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed() / n
        })
        .min()
        .unwrap()
}

fn main() {
    let doc = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/nitro/nitro_blocky_2024-09-07_prod.cbor"
    ))
    .unwrap();
    let at = VerifyAt::Instant(Timestamp::from_secs(1_725_719_859));
    let policy = Policy::new();
    let cold = Verifier::aws();
    let cached = Verifier::aws().with_chain_cache(16);
    let checks = checks_of(&doc);
    assert_eq!(checks.len(), 5);
    assert!(
        aws_lc_all(&checks) && p384_all(&checks),
        "reference checks must verify"
    );

    // A dev-signed document, as the KMS sees from an emulated enclave.
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let mut pcrs = Pcrs::new();
    for i in 0..16 {
        pcrs.insert(
            PcrIndex::new(i).unwrap(),
            PcrValue::measure(&i.to_be_bytes()),
        );
    }
    let req = DocumentRequest {
        module_id: "i-0-enc0".into(),
        pcrs,
        public_key: Some(vec![1; 294]),
        ..Default::default()
    };
    let dev_doc = pki.issue(&req, now).unwrap();
    let dev_cached = Verifier::new(vec![pki.trust_anchor().unwrap()]).with_chain_cache(16);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("nitro_document");
    g.bench_function("cold", |b| {
        b.iter(|| cold.verify(black_box(&doc), at, &policy).unwrap())
    });
    g.bench_function("cached", |b| {
        b.iter(|| cached.verify(black_box(&doc), at, &policy).unwrap())
    });
    g.bench_function("dev_signed_cached", |b| {
        b.iter(|| {
            dev_cached
                .verify(black_box(&dev_doc), VerifyAt::Instant(now), &policy)
                .unwrap()
        })
    });
    g.bench_function("ref_aws_lc_5x", |b| {
        b.iter(|| assert!(aws_lc_all(black_box(&checks))))
    });
    g.bench_function("ref_p384_5x", |b| {
        b.iter(|| assert!(p384_all(black_box(&checks))))
    });
    g.finish();
    c.final_summary();

    // The summary: same-run figures side by side, with the ratio the goal is stated in.
    let budget = Duration::from_millis(600);
    let t_cold = time_per_op(budget, || {
        black_box(cold.verify(&doc, at, &policy).is_ok());
    });
    let t_cached = time_per_op(budget, || {
        black_box(cached.verify(&doc, at, &policy).is_ok());
    });
    let t_awslc = time_per_op(budget, || {
        black_box(aws_lc_all(&checks));
    });
    let t_p384 = time_per_op(budget, || {
        black_box(p384_all(&checks));
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nsummary (best of 3, this run):");
    println!(
        "  cold verify (real document)      {:>8.1} µs  = {:.2}x the aws-lc-rs reference (goal <= 1.5x)",
        us(t_cold),
        us(t_cold) / us(t_awslc)
    );
    println!(
        "  cached-chain verify              {:>8.1} µs  = {:.0} documents/s",
        us(t_cached),
        1e6 / us(t_cached)
    );
    println!("  reference: 5x aws-lc-rs verify   {:>8.1} µs", us(t_awslc));
    println!(
        "  reference: 5x p384-crate verify  {:>8.1} µs  = {:.2}x aws-lc-rs",
        us(t_p384),
        us(t_p384) / us(t_awslc)
    );
}
