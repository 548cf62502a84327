//! Attested release: a key leaves the KMS only wrapped to an enclave whose document verifies and
//! whose PCRs satisfy the key policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::recipient::RecipientPrivateKey;
use cloister_attestation::{PcrIndex, PcrValue, Pcrs, Timestamp};
use cloister_kms_client::{b64, blob};
use cloister_tests::kms::{KmsBinary, rt};
use serde_json::{Value, json};

/// The binary under test.
fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

const ENCLAVE_ROLE: &str = "arn:aws:iam::111122223333:role/enclave";

fn pcrs(image: &[u8]) -> Pcrs {
    let mut p = Pcrs::new();
    for i in 0..16 {
        p.insert(PcrIndex::new(i).unwrap(), PcrValue::ZERO);
    }
    p.insert(PcrIndex::IMAGE, PcrValue::measure(image));
    p.insert(
        PcrIndex::new(4).unwrap(),
        PcrValue::measure(b"i-0123456789abcdef0"),
    );
    p
}

struct Enclave {
    key: RecipientPrivateKey,
    spki: Vec<u8>,
}

fn enclave() -> Enclave {
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap().as_ref().to_vec();
    Enclave {
        key: RecipientPrivateKey::new(private).unwrap(),
        spki,
    }
}

fn doc(pki: &DevPki, pcrs: Pcrs, public_key: Option<Vec<u8>>, at: Timestamp) -> String {
    let req = DocumentRequest {
        module_id: "i-0123456789abcdef0-enc0000000000000001".into(),
        pcrs,
        public_key,
        user_data: None,
        nonce: Some(vec![9; 16]),
    };
    b64(&pki.issue(&req, at).unwrap())
}

fn recipient(doc: &str) -> Value {
    json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc})
}

#[test]
fn keys_are_released_only_to_attested_enclaves_with_the_right_pcrs() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let pki = DevPki::generate(now).unwrap();
    let root_pem = dir.path().join("dev-root.pem");
    std::fs::write(&root_pem, pki.root_pem()).unwrap();
    let data = dir.path().join("kms");
    let admin_creds = kms_bin().admin(&data);
    let enclave_creds = kms_bin().add_principal(&data, ENCLAVE_ROLE);
    let server = kms_bin().start(
        &data,
        &[
            "--trust-root",
            root_pem.to_str().unwrap(),
            "--max-attestation-age",
            "300",
        ],
    );
    let (kms, host) = (server.client(admin_creds), server.client(enclave_creds));
    let good_image = PcrValue::measure(b"image-a").to_hex();

    rt().block_on(async {
        let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext"], "Resource": "*"},
            {"Sid": "enclave", "Effect": "Allow", "Principal": {"AWS": ENCLAVE_ROLE},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": good_image.to_uppercase()}}}
        ]});
        kms.call("PutKeyPolicy", &json!({"KeyId": id, "Policy": policy.to_string()})).await.unwrap();
        let sealed = kms.call("Encrypt", &json!({"KeyId": id, "Plaintext": b64(b"the data key"), "EncryptionContext": {"job": "1"}})).await.unwrap();
        let ct = sealed["CiphertextBlob"].clone();
        let e = enclave();

        // Without a document the PCR condition cannot hold.
        let r = host.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}})).await;
        assert_eq!(r.unwrap_err().aws_name(), Some("AccessDeniedException"));

        // The right image: the answer is wrapped to the enclave's key, never plaintext.
        let good = doc(&pki, pcrs(b"image-a"), Some(e.spki.clone()), Timestamp::now());
        let ok = host.call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}, "Recipient": recipient(&good)})).await.unwrap();
        assert!(ok.get("Plaintext").is_none(), "{ok}");
        let opened = e.key.open(&blob(&ok, "CiphertextForRecipient").unwrap()).unwrap();
        assert_eq!(opened.as_slice(), b"the data key");

        // GenerateDataKey: the wrapped key is the one CiphertextBlob carries.
        let gdk = host.call("GenerateDataKey", &json!({"KeyId": id, "KeySpec": "AES_256", "Recipient": recipient(&good)})).await.unwrap();
        assert!(gdk.get("Plaintext").is_none());
        let dk = e.key.open(&blob(&gdk, "CiphertextForRecipient").unwrap()).unwrap();
        let again = host.call("Decrypt", &json!({"CiphertextBlob": gdk["CiphertextBlob"], "Recipient": recipient(&good)})).await.unwrap();
        assert_eq!(e.key.open(&blob(&again, "CiphertextForRecipient").unwrap()).unwrap(), dk);
        assert_eq!(dk.len(), 32);

        // GenerateRandom with a recipient.
        let rnd = host.call("GenerateRandom", &json!({"NumberOfBytes": 48, "Recipient": recipient(&good)})).await.unwrap();
        assert_eq!(e.key.open(&blob(&rnd, "CiphertextForRecipient").unwrap()).unwrap().len(), 48);

        // Refusals, each with its reason.
        let other = DevPki::generate(now).unwrap();
        let mut debug = pcrs(b"image-a");
        debug.insert(PcrIndex::IMAGE, PcrValue::ZERO);
        let cases = [
            ("wrong PCR0", doc(&pki, pcrs(b"image-b"), Some(e.spki.clone()), Timestamp::now()), "AccessDeniedException", "not authorized"),
            ("debug", doc(&pki, debug, Some(e.spki.clone()), Timestamp::now()), "AccessDeniedException", "ATT-DEBUG"),
            ("stale", doc(&pki, pcrs(b"image-a"), Some(e.spki.clone()), Timestamp::now().minus(Duration::from_secs(600))), "AccessDeniedException", "ATT-STALE"),
            ("untrusted root", doc(&other, pcrs(b"image-a"), Some(e.spki.clone()), Timestamp::now()), "AccessDeniedException", "ATT-ROOT"),
            ("no public key", doc(&pki, pcrs(b"image-a"), None, Timestamp::now()), "ValidationException", "ATT-NO-KEY"),
            ("not RSA", doc(&pki, pcrs(b"image-a"), Some(b"my super secret key".to_vec()), Timestamp::now()), "ValidationException", "public key"),
        ];
        for (what, d, name, reason) in &cases {
            let err = host
                .call("Decrypt", &json!({"CiphertextBlob": ct, "EncryptionContext": {"job": "1"}, "Recipient": recipient(d)}))
                .await
                .unwrap_err();
            assert_eq!(err.aws_name(), Some(*name), "{what}: {err}");
            assert!(err.to_string().contains(reason), "{what}: {err}");
        }
        let bad_alg = json!({"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1", "AttestationDocument": good});
        assert_eq!(host.call("Decrypt", &json!({"CiphertextBlob": ct, "Recipient": bad_alg})).await.unwrap_err().aws_name(), Some("ValidationException"));
    });

    // The audit log saw every attempt, with the document's module id and PCR0 (as claims only
    // when the document was refused).
    let audit = server.audit_tail(40);
    let attested: Vec<&Value> = audit
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e.get("module_id").is_some() || e.get("claimed_module_id").is_some())
        .collect();
    assert!(attested.len() >= 10, "{attested:?}");
    assert!(
        attested
            .iter()
            .any(|e| e["outcome"] == "ok" && e["pcr0"] == good_image.as_str())
    );
    let refused = attested.iter().filter(|e| e["outcome"] == "error").count();
    assert!(refused >= 6, "{refused} refusals audited");
    assert!(attested.iter().any(|e| {
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("ATT-STALE")
            && e["claimed_pcr0"] == good_image.as_str()
            && e.get("pcr0").is_none()
    }));
    assert!(attested.iter().all(|e| e["principal"] == ENCLAVE_ROLE));
    let (intact, report) = kms_bin().audit_verify(&data);
    assert!(intact, "{report}");
}

#[test]
fn without_trust_root_the_dev_pki_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(dir.path(), &[]);
    let kms = server.client(creds);
    let pki = DevPki::generate(Timestamp::now()).unwrap();
    let e = enclave();
    rt().block_on(async {
        let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
        let d = doc(
            &pki,
            pcrs(b"image-a"),
            Some(e.spki.clone()),
            Timestamp::now(),
        );
        let err = kms
            .call(
                "GenerateDataKey",
                &json!({"KeyId": id, "KeySpec": "AES_256", "Recipient": recipient(&d)}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.aws_name(), Some("AccessDeniedException"));
        assert!(err.to_string().contains("ATT-ROOT"), "{err}");
    });
}
