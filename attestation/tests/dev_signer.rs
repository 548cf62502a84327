//! The emulated NSM's dev signer: its documents pass the same verification with the dev root
//! pinned, and fail with ATT-ROOT against the AWS root.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cloister_attestation::dev_signer::{
    DevPki, DocumentRequest, INTERMEDIATE_KEY_FILE, ROOT_KEY_FILE,
};
use cloister_attestation::{
    PcrIndex, PcrValue, Pcrs, Policy, Timestamp, TrustAnchor, Verifier, VerifyAt,
};

fn request() -> DocumentRequest {
    let mut pcrs = Pcrs::new();
    for i in 0..16 {
        pcrs.insert(
            PcrIndex::new(i).unwrap(),
            PcrValue::measure(format!("pcr{i}").as_bytes()),
        );
    }
    DocumentRequest {
        module_id: "i-0123456789abcdef0-enc0123456789abcdef".into(),
        pcrs,
        public_key: Some(vec![0x30; 294]),
        user_data: None,
        nonce: Some(vec![7; 32]),
    }
}

#[test]
fn dev_documents_verify_with_the_dev_root_only() {
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let doc = pki.issue(&request(), now).unwrap();

    let dev = Verifier::new(vec![pki.trust_anchor().unwrap()]);
    let policy = Policy::new()
        .expect_pcr(PcrIndex::IMAGE, PcrValue::measure(b"pcr0"))
        .nonce(vec![7; 32])
        .require_public_key(true)
        .max_age(Duration::from_secs(60));
    let v = dev.verify(&doc, VerifyAt::Now, &policy).unwrap();
    assert_eq!(v.pcrs, request().pcrs);
    assert_eq!(v.module_id, request().module_id);
    assert_eq!(v.user_data, None);

    let err = Verifier::aws()
        .verify(&doc, VerifyAt::Now, &Policy::new())
        .unwrap_err();
    assert_eq!(err.code(), "ATT-ROOT");
    // Trusting both roots (as the KMS does with --trust-root) accepts it.
    let both = Verifier::new(vec![
        TrustAnchor::aws_nitro_root_g1(),
        pki.trust_anchor().unwrap(),
    ]);
    both.verify(&doc, VerifyAt::Now, &Policy::new()).unwrap();
    // Another dev PKI's root does not.
    let other = DevPki::generate(now).unwrap();
    let err = Verifier::new(vec![other.trust_anchor().unwrap()])
        .verify(&doc, VerifyAt::Now, &Policy::new())
        .unwrap_err();
    assert_eq!(err.code(), "ATT-ROOT");
}

#[test]
fn leaf_is_reused_so_the_chain_cache_hits() {
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let verifier = Verifier::new(vec![pki.trust_anchor().unwrap()]).with_chain_cache(4);
    for i in 0..5u64 {
        let t = now.plus(Duration::from_secs(i));
        let doc = pki.issue(&request(), t).unwrap();
        verifier
            .verify(&doc, VerifyAt::Instant(t), &Policy::new())
            .unwrap();
    }
    assert_eq!(verifier.chain_cache().unwrap().stats(), (4, 1));
}

#[test]
fn leaf_lives_three_hours_and_is_renewed() {
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let doc = pki.issue(&request(), now).unwrap();
    let verifier = Verifier::new(vec![pki.trust_anchor().unwrap()]);
    let three_h = Duration::from_secs(3 * 3600);
    verifier
        .verify(
            &doc,
            VerifyAt::Instant(now.plus(three_h).minus(Duration::from_secs(1))),
            &Policy::new(),
        )
        .unwrap();
    let err = verifier
        .verify(
            &doc,
            VerifyAt::Instant(now.plus(three_h).plus(Duration::from_secs(1))),
            &Policy::new(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "ATT-CERT-TIME");
    // Two and three-quarter hours later the signer has moved to a new leaf.
    let later = now.plus(Duration::from_secs(2 * 3600 + 45 * 60));
    let doc2 = pki.issue(&request(), later).unwrap();
    verifier
        .verify(
            &doc2,
            VerifyAt::Instant(later.plus(Duration::from_secs(3600))),
            &Policy::new(),
        )
        .unwrap();
}

#[test]
fn debug_request_is_flagged() {
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let mut req = request();
    req.pcrs.insert(PcrIndex::IMAGE, PcrValue::ZERO);
    let doc = pki.issue(&req, now).unwrap();
    let verifier = Verifier::new(vec![pki.trust_anchor().unwrap()]);
    assert_eq!(
        verifier
            .verify(&doc, VerifyAt::Now, &Policy::new())
            .unwrap_err()
            .code(),
        "ATT-DEBUG"
    );
    verifier
        .verify(&doc, VerifyAt::Now, &Policy::new().allow_debug(true))
        .unwrap();
}

#[test]
fn save_and_load_keep_keys_private() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let now = Timestamp::now();
    let pki = DevPki::load_or_generate(&pki_dir, now).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pki_dir), 0o700);
    assert_eq!(mode(&pki_dir.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&pki_dir.join(INTERMEDIATE_KEY_FILE)), 0o600);

    let loaded = DevPki::load(&pki_dir).unwrap();
    assert_eq!(loaded.root_pem(), pki.root_pem());
    let doc = loaded.issue(&request(), now).unwrap();
    Verifier::new(vec![pki.trust_anchor().unwrap()])
        .verify(&doc, VerifyAt::Now, &Policy::new())
        .unwrap();

    // Saving over an existing PKI is refused, and the files are unchanged.
    let before = std::fs::read(pki_dir.join(ROOT_KEY_FILE)).unwrap();
    assert_eq!(
        DevPki::generate(now)
            .unwrap()
            .save(&pki_dir)
            .unwrap_err()
            .code(),
        "ATT-DEV-PKI"
    );
    assert_eq!(std::fs::read(pki_dir.join(ROOT_KEY_FILE)).unwrap(), before);

    // A key readable by others is refused.
    std::fs::set_permissions(
        pki_dir.join(ROOT_KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("0600"), "{err}");

    // A key that does not match its certificate is refused.
    std::fs::set_permissions(
        pki_dir.join(ROOT_KEY_FILE),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::copy(
        pki_dir.join(INTERMEDIATE_KEY_FILE),
        pki_dir.join(ROOT_KEY_FILE),
    )
    .unwrap();
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_pki_others_can_reach_or_a_linked_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    DevPki::load_or_generate(&pki_dir, Timestamp::now()).unwrap();
    // A directory group or others can enter: they could swap the keys.
    std::fs::set_permissions(&pki_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("0700"), "{err}");
    std::fs::set_permissions(&pki_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A key that is a symbolic link (to a file someone else may control).
    let elsewhere = dir.path().join("elsewhere.key");
    std::fs::rename(pki_dir.join(ROOT_KEY_FILE), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, pki_dir.join(ROOT_KEY_FILE)).unwrap();
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("regular file"), "{err}");
    // The PKI directory itself as a symbolic link.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&pki_dir, &link).unwrap();
    let err = DevPki::load(&link).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
#[ignore = "needs root to hand the PKI to another user: scripts/test runs ignored tests (CI is root)"]
fn a_pki_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    DevPki::load_or_generate(&pki_dir, Timestamp::now()).unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65_534));
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    nix::unistd::chown(&pki_dir, nobody, None).unwrap();
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("uid 65534"), "{err}");
    // Saving into someone else's directory is refused too.
    let err = DevPki::generate(Timestamp::now())
        .unwrap()
        .save(&pki_dir)
        .unwrap_err();
    assert!(err.to_string().contains("uid 65534"), "{err}");
    nix::unistd::chown(&pki_dir, Some(nix::unistd::geteuid()), None).unwrap();
    for key in [ROOT_KEY_FILE, INTERMEDIATE_KEY_FILE] {
        nix::unistd::chown(&pki_dir.join(key), nobody, None).unwrap();
    }
    let err = DevPki::load(&pki_dir).unwrap_err();
    assert!(err.to_string().contains("owned by this user"), "{err}");
}
