//! Signatures: Sign and Verify with SIGN_VERIFY key pairs, every signing algorithm AWS offers for
//! RSA and ECC keys, of a message (MessageType RAW, hashed here) or of its digest (DIGEST, the
//! algorithm's digest length). Verify answers `SignatureValid: true` or, as AWS does,
//! KMSInvalidSignatureException; it never answers false.

use serde::Deserialize;
use serde_json::{Value, json};

use super::asymmetric::{require, wrong_usage};
use super::shared::{Call, MAX_KEY_ID};
use crate::error::{KmsError, Result};
use crate::input::{Base64, Member, b64};
use crate::keymaterial::{self, Message, SigningAlgorithm};
use crate::keyspec::KeyUsage;
use crate::state::KeyRecord;

/// Sign's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct SignInput {
    key_id: Member<String>,
    message: Member<Base64>,
    message_type: Member<String>,
    signing_algorithm: Member<String>,
}

/// Verify's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct VerifyInput {
    key_id: Member<String>,
    message: Member<Base64>,
    message_type: Member<String>,
    signature: Member<Base64>,
    signing_algorithm: Member<String>,
}

/// AWS's `SigningAlgorithmSpec` enum.
const ALGORITHMS: [&str; 13] = [
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
];

/// Longest message (AWS: 4096 bytes) and signature (AWS: 6144 bytes).
const MAX_MESSAGE: usize = 4096;
const MAX_SIGNATURE: usize = 6144;

/// The request's message, algorithm name and message type, checked as AWS checks input.
struct Request<'a> {
    message: Vec<u8>,
    algorithm: &'a str,
    digest: bool,
}

fn request<'a>(
    message: &Member<Base64>,
    message_type: &Member<String>,
    algorithm: &'a Member<String>,
) -> Result<Request<'a>> {
    let message = message.req_blob("Message", 1, MAX_MESSAGE)?;
    let digest = match message_type.one_of("MessageType", &["RAW", "DIGEST", "EXTERNAL_MU"])? {
        None | Some("RAW") => false,
        Some("DIGEST") => true,
        Some(other) => {
            return Err(KmsError::validation(format!(
                "MessageType {other} is only valid with ML-DSA keys"
            )));
        }
    };
    let algorithm = algorithm
        .one_of("SigningAlgorithm", &ALGORITHMS)?
        .ok_or_else(|| {
            KmsError::validation(
                "Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null",
            )
        })?;
    Ok(Request {
        message,
        algorithm,
        digest,
    })
}

impl Request<'_> {
    fn message(&self) -> Message<'_> {
        if self.digest {
            Message::Digest(&self.message)
        } else {
            Message::Raw(&self.message)
        }
    }
}

/// The signing algorithm for the key: one of its spec's, or InvalidKeyUsageException.
fn algorithm_for(call: &Call<'_>, key: &KeyRecord, name: &str) -> Result<SigningAlgorithm> {
    require(call.app, key, KeyUsage::SignVerify)?;
    if !key.attrs.key_spec.signing_algorithms().contains(&name) {
        return Err(KmsError::InvalidKeyUsage(format!(
            "{} key spec {} does not support signing algorithm {name}.",
            call.app.key_arn(&key.key_id),
            key.attrs.key_spec.as_str()
        )));
    }
    SigningAlgorithm::parse(name).ok_or_else(|| wrong_usage(call.app, key))
}

pub(super) fn sign(mut call: Call<'_>) -> Result<Value> {
    let i: SignInput = call.input()?;
    let r = request(&i.message, &i.message_type, &i.signing_algorithm)?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:Sign", Default::default())?;
    call.app.check_usable(&key)?;
    let alg = algorithm_for(&call, &key, r.algorithm)?;
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    let signature = keymaterial::sign(key.attrs.key_spec, &material, alg, r.message())?;
    Ok(json!({
        "KeyId": call.app.key_arn(&key.key_id),
        "Signature": b64(&signature),
        "SigningAlgorithm": alg.name,
    }))
}

pub(super) fn verify(mut call: Call<'_>) -> Result<Value> {
    let i: VerifyInput = call.input()?;
    let r = request(&i.message, &i.message_type, &i.signing_algorithm)?;
    let signature = i.signature.req_blob("Signature", 1, MAX_SIGNATURE)?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:Verify", Default::default())?;
    call.app.check_usable(&key)?;
    let alg = algorithm_for(&call, &key, r.algorithm)?;
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    if !keymaterial::verify(key.attrs.key_spec, &material, alg, r.message(), &signature)? {
        return Err(KmsError::InvalidSignature(String::new()));
    }
    Ok(json!({
        "KeyId": call.app.key_arn(&key.key_id),
        "SignatureValid": true,
        "SigningAlgorithm": alg.name,
    }))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::digest;
    use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
    use serde_json::json;

    use crate::input::b64;
    use crate::ops::asymmetric::new_pair;
    use crate::ops::testkit::Kms;

    /// An independent verifier (aws-lc-rs's message API, not the KMS's digest path).
    fn outside(alg: &str, spec: &str) -> &'static dyn VerificationAlgorithm {
        match (alg, spec) {
            ("RSASSA_PSS_SHA_256", _) => &signature::RSA_PSS_2048_8192_SHA256,
            ("RSASSA_PSS_SHA_384", _) => &signature::RSA_PSS_2048_8192_SHA384,
            ("RSASSA_PSS_SHA_512", _) => &signature::RSA_PSS_2048_8192_SHA512,
            ("RSASSA_PKCS1_V1_5_SHA_256", _) => &signature::RSA_PKCS1_2048_8192_SHA256,
            ("RSASSA_PKCS1_V1_5_SHA_384", _) => &signature::RSA_PKCS1_2048_8192_SHA384,
            ("RSASSA_PKCS1_V1_5_SHA_512", _) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (_, "ECC_NIST_P256") => &signature::ECDSA_P256_SHA256_ASN1,
            (_, "ECC_SECG_P256K1") => &signature::ECDSA_P256K1_SHA256_ASN1,
            (_, "ECC_NIST_P384") => &signature::ECDSA_P384_SHA384_ASN1,
            _ => &signature::ECDSA_P521_SHA512_ASN1,
        }
    }

    fn hash(alg: &str) -> &'static digest::Algorithm {
        if alg.ends_with("256") {
            &digest::SHA256
        } else if alg.ends_with("384") {
            &digest::SHA384
        } else {
            &digest::SHA512
        }
    }

    // AWS API reference, Sign and Verify: every algorithm of the key spec, MessageType RAW and
    // DIGEST; Verify answers KMSInvalidSignatureException for a bad signature.
    #[tokio::test]
    async fn every_algorithm_signs_raw_and_digest_messages() {
        let kms = Kms::new();
        let message = b"the message".to_vec();
        for spec in [
            "RSA_2048",
            "ECC_NIST_P256",
            "ECC_NIST_P384",
            "ECC_NIST_P521",
            "ECC_SECG_P256K1",
        ] {
            let id = new_pair(&kms, spec, "SIGN_VERIFY").await;
            let public = kms.ok("GetPublicKey", json!({"KeyId": id})).await;
            let spki = Kms::blob(&public["PublicKey"]);
            for alg in public["SigningAlgorithms"].as_array().unwrap() {
                let alg = alg.as_str().unwrap();
                let d = digest::digest(hash(alg), &message);
                for (m, kind) in [(message.clone(), "RAW"), (d.as_ref().to_vec(), "DIGEST")] {
                    let s = kms
                        .ok(
                            "Sign",
                            json!({"KeyId": id, "Message": b64(&m), "MessageType": kind, "SigningAlgorithm": alg}),
                        )
                        .await;
                    assert_eq!(s["SigningAlgorithm"], alg);
                    let sig = Kms::blob(&s["Signature"]);
                    UnparsedPublicKey::new(outside(alg, spec), &spki)
                        .verify(&message, &sig)
                        .unwrap_or_else(|_| panic!("{spec} {alg} {kind}"));
                    let v = kms
                        .ok(
                            "Verify",
                            json!({"KeyId": id, "Message": b64(&m), "MessageType": kind,
                                   "Signature": s["Signature"], "SigningAlgorithm": alg}),
                        )
                        .await;
                    assert_eq!(v["SignatureValid"], true);
                    assert_eq!(kms.last_audit().key_id.as_deref(), Some(id.as_str()));
                    let (status, body) = kms
                        .call(
                            "Verify",
                            json!({"KeyId": id, "Message": b64(b"another"), "MessageType": "RAW",
                                   "Signature": s["Signature"], "SigningAlgorithm": alg}),
                        )
                        .await;
                    assert_eq!(
                        (status, body["__type"].as_str().unwrap()),
                        (400, "KMSInvalidSignatureException")
                    );
                }
                // A digest of the wrong length for the algorithm.
                let (_, body) = kms
                    .call(
                        "Sign",
                        json!({"KeyId": id, "Message": b64(&[1; 20]), "MessageType": "DIGEST", "SigningAlgorithm": alg}),
                    )
                    .await;
                assert_eq!(body["__type"], "ValidationException", "{alg}");
            }
        }
    }

    #[tokio::test]
    async fn signing_refuses_wrong_keys_algorithms_and_inputs() {
        let kms = Kms::new();
        let p256 = new_pair(&kms, "ECC_NIST_P256", "SIGN_VERIFY").await;
        let agree = new_pair(&kms, "ECC_NIST_P256", "KEY_AGREEMENT").await;
        let sym = kms.new_key().await;
        let sign = |key: &str, alg: &str| json!({"KeyId": key, "Message": b64(b"m"), "SigningAlgorithm": alg});
        for (input, want) in [
            (sign(&p256, "ECDSA_SHA_384"), "InvalidKeyUsageException"),
            (
                sign(&p256, "RSASSA_PSS_SHA_256"),
                "InvalidKeyUsageException",
            ),
            (sign(&agree, "ECDSA_SHA_256"), "InvalidKeyUsageException"),
            (sign(&sym, "ECDSA_SHA_256"), "InvalidKeyUsageException"),
            (sign(&p256, "ECDSA_SHA_1"), "ValidationException"),
            (
                json!({"KeyId": p256, "Message": b64(b"m")}),
                "ValidationException",
            ),
            (
                json!({"KeyId": p256, "Message": b64(&[0; 4097]), "SigningAlgorithm": "ECDSA_SHA_256"}),
                "ValidationException",
            ),
            (
                json!({"KeyId": p256, "Message": b64(b"m"), "MessageType": "EXTERNAL_MU", "SigningAlgorithm": "ECDSA_SHA_256"}),
                "ValidationException",
            ),
        ] {
            let (status, body) = kms.call("Sign", input.clone()).await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, want),
                "{input}"
            );
        }
        let (_, body) = kms
            .call(
                "Verify",
                json!({"KeyId": p256, "Message": b64(b"m"), "Signature": b64(b"junk"), "SigningAlgorithm": "ECDSA_SHA_256"}),
            )
            .await;
        assert_eq!(body["__type"], "KMSInvalidSignatureException");
        kms.ok("DisableKey", json!({"KeyId": p256})).await;
        let (_, body) = kms.call("Sign", sign(&p256, "ECDSA_SHA_256")).await;
        assert_eq!(body["__type"], "DisabledException");
    }
}
