//! The enclave's NSM client against a real `cloister nsm serve`: documents verify with the
//! dev root, carry the PCRs the launcher measured from the image, and bind the enclave's key.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use cloister_attestation::{PcrIndex, PcrValue, Policy, TrustAnchor, Verifier, VerifyAt};
use cloister_nsm::api::ErrorCode;
use cloister_nsm::client::NsmClient;
use cloister_nsm::{Nsm, NsmError};
use cloister_tests::binary;
use sha2::{Digest, Sha384};

#[test]
fn enclave_gets_verifiable_documents_over_the_pcrs_the_launcher_measured() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("enclave-image.bin");
    std::fs::write(&image, b"pretend this is the enclave binary").unwrap();
    let socket = dir.path().join("nsm/nsm.sock");
    let addr = format!("unix://{}", socket.display());
    let pki = dir.path().join("pki");
    let mut nsm_proc = std::process::Command::new(binary("cloister"))
        .args([
            "nsm",
            "serve",
            "--dev-pki",
            pki.to_str().unwrap(),
            "--listen",
            &addr,
            "--measure",
            image.to_str().unwrap(),
            "--parent-instance-id",
            "i-0123456789abcdef0",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the NSM did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = NsmClient::dial(addr.parse().unwrap());
    let nsm: &dyn Nsm = &client;
    let doc = rt
        .block_on(nsm.attestation(Some(vec![0x30; 294]), Some(vec![9; 32]), None))
        .unwrap();
    let root =
        TrustAnchor::from_pem(&std::fs::read_to_string(pki.join("root.pem")).unwrap()).unwrap();
    let v = Verifier::new(vec![root])
        .verify(
            &doc,
            VerifyAt::Now,
            &Policy::new().nonce(vec![9; 32]).require_public_key(true),
        )
        .unwrap();
    let expected = PcrValue::measure(&Sha384::digest(b"pretend this is the enclave binary"));
    assert_eq!(v.pcrs.get(PcrIndex::IMAGE), Some(&expected));
    assert_eq!(
        v.pcrs.get(PcrIndex::new(4).unwrap()),
        Some(&PcrValue::measure(b"i-0123456789abcdef0"))
    );
    assert!(v.module_id.starts_with("i-0123456789abcdef0-enc"));
    // The boot PCRs cannot be changed by the enclave.
    let r = rt.block_on(nsm.extend_pcr(0, b"evil".to_vec()));
    assert!(
        matches!(r, Err(NsmError::Refused(ErrorCode::ReadOnlyIndex))),
        "{r:?}"
    );
    nsm_proc.kill().unwrap();
    nsm_proc.wait().unwrap();
}
