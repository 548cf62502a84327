//! What the operations on asymmetric keys share: the key-usage checks (InvalidKeyUsageException,
//! as AWS answers a key of the wrong spec or usage), and RSA ENCRYPT_DECRYPT keys in Encrypt,
//! Decrypt and ReEncrypt. An RSA ciphertext is the bare RSAES-OAEP output, as AWS's is (anyone
//! holding the public key can make one), so it names neither key nor algorithm: Decrypt needs
//! both, and no encryption context can be bound to it.

use std::collections::HashMap;

use aws_lc_rs::rsa::OaepAlgorithm;
use zeroize::Zeroizing;

use super::shared::Call;
use crate::app::App;
use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::keymaterial;
use crate::keyspec::KeyUsage;
use crate::state::KeyRecord;

/// InvalidKeyUsageException for a key whose spec or usage does not allow the operation.
pub(super) fn wrong_usage(app: &App, key: &KeyRecord) -> KmsError {
    KmsError::InvalidKeyUsage(format!(
        "{} key usage is {} and key spec is {}, which is not valid for this operation.",
        app.key_arn(&key.key_id),
        key.attrs.key_usage.as_str(),
        key.attrs.key_spec.as_str()
    ))
}

/// Refuses a key that is not an asymmetric key of `usage`.
pub(super) fn require(app: &App, key: &KeyRecord, usage: KeyUsage) -> Result<()> {
    if key.attrs.key_spec.is_asymmetric() && key.attrs.key_usage == usage {
        Ok(())
    } else {
        Err(wrong_usage(app, key))
    }
}

/// The key a `KeyId`-like member names, if it names an asymmetric key (so the ciphertext is not
/// one of the KMS's own blobs).
pub(super) fn named_asymmetric(
    app: &App,
    region: &str,
    member: &Member<String>,
    field: &str,
) -> Result<Option<String>> {
    let Some(named) = member.text(field)? else {
        return Ok(None);
    };
    let id = app.resolve_in(region, named, true)?;
    let key = app.key(&id)?;
    Ok(key.attrs.key_spec.is_asymmetric().then(|| named.to_owned()))
}

/// The OAEP algorithm `alg` names for an RSA ENCRYPT_DECRYPT key (absent means
/// SYMMETRIC_DEFAULT, which an RSA key does not do): the algorithm and AWS's name.
fn oaep_for(
    app: &App,
    key: &KeyRecord,
    alg: Option<&str>,
) -> Result<(&'static OaepAlgorithm, &'static str)> {
    require(app, key, KeyUsage::EncryptDecrypt)?;
    if !key.attrs.key_spec.is_rsa() {
        return Err(wrong_usage(app, key));
    }
    let name = alg.unwrap_or("SYMMETRIC_DEFAULT");
    let known = key
        .attrs
        .key_spec
        .encryption_algorithms()
        .iter()
        .find(|a| **a == name);
    match (known, keymaterial::oaep(name)) {
        (Some(n), Some(a)) => Ok((a, n)),
        _ => Err(KmsError::InvalidKeyUsage(format!(
            "{} key spec {} does not support encryption algorithm {name}.",
            app.key_arn(&key.key_id),
            key.attrs.key_spec.as_str()
        ))),
    }
}

/// AWS's answer to an encryption context with an asymmetric key.
fn no_context(ec: &EncryptionContext) -> Result<()> {
    if ec.is_empty() {
        return Ok(());
    }
    Err(KmsError::validation(
        "EncryptionContext is not supported when encrypting/decrypting with asymmetric CMKs.",
    ))
}

/// Encrypts under an RSA ENCRYPT_DECRYPT key; the ciphertext and AWS's algorithm name.
pub(super) fn rsa_encrypt(
    call: &mut Call<'_>,
    key: &KeyRecord,
    alg: Option<&str>,
    ec: &EncryptionContext,
    plaintext: &[u8],
) -> Result<(Vec<u8>, &'static str)> {
    let (oaep, name) = oaep_for(call.app, key, alg)?;
    no_context(ec)?;
    let spec = key.attrs.key_spec;
    let max = keymaterial::oaep_max_plaintext(spec, oaep);
    if plaintext.len() > max {
        return Err(KmsError::validation(format!(
            "Plaintext of {} bytes is longer than {name} with a {} key takes ({max} bytes).",
            plaintext.len(),
            spec.as_str()
        )));
    }
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    Ok((
        keymaterial::oaep_encrypt(spec, &material, oaep, plaintext)?,
        name,
    ))
}

/// What [`rsa_decrypt`] opens with.
pub(super) struct RsaOpening<'a> {
    /// The key reference the request names.
    pub(super) key_ref: &'a str,
    /// The `EncryptionAlgorithm` it names.
    pub(super) alg: Option<&'a str>,
    /// The encryption context it gives (must be empty).
    pub(super) ec: &'a EncryptionContext,
    /// The action authorized.
    pub(super) action: &'a str,
    /// The policy's condition keys.
    pub(super) conditions: HashMap<String, Vec<String>>,
}

/// Decrypts an RSAES-OAEP ciphertext under the RSA key named: the key, the plaintext, and AWS's
/// algorithm name. A ciphertext that does not open is InvalidCiphertextException.
pub(super) fn rsa_decrypt(
    call: &mut Call<'_>,
    ciphertext: &[u8],
    o: RsaOpening<'_>,
) -> Result<(KeyRecord, Zeroizing<Vec<u8>>, &'static str)> {
    let key = call.key_for(o.key_ref, o.action, o.conditions)?;
    call.app.check_usable(&key)?;
    let (oaep, name) = oaep_for(call.app, &key, o.alg)?;
    no_context(o.ec)?;
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    let plain = keymaterial::oaep_decrypt(key.attrs.key_spec, &material, oaep, ciphertext)?
        .ok_or_else(|| KmsError::InvalidCiphertext(String::new()))?;
    Ok((key, plain, name))
}

/// Creates a key of `spec` and `usage` in a test KMS; its id.
#[cfg(test)]
pub(super) async fn new_pair(kms: &super::testkit::Kms, spec: &str, usage: &str) -> String {
    let k = kms
        .ok(
            "CreateKey",
            serde_json::json!({"KeySpec": spec, "KeyUsage": usage}),
        )
        .await;
    k["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    use serde_json::json;

    use super::new_pair;
    use crate::input::b64;
    use crate::ops::testkit::Attested;
    use crate::ops::testkit::Kms;

    fn kind(body: &serde_json::Value) -> &str {
        body["__type"].as_str().unwrap_or_default()
    }

    // AWS API reference, Encrypt / Decrypt / ReEncrypt: an asymmetric key needs its
    // EncryptionAlgorithm, Decrypt needs KeyId and the algorithm, no encryption context.
    #[tokio::test]
    async fn rsa_keys_encrypt_decrypt_and_re_encrypt() {
        let kms = Kms::new();
        let rsa = new_pair(&kms, "RSA_2048", "ENCRYPT_DECRYPT").await;
        for alg in ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"] {
            let ct = kms
                .ok(
                    "Encrypt",
                    json!({"KeyId": rsa, "Plaintext": b64(b"hi"), "EncryptionAlgorithm": alg}),
                )
                .await;
            assert_eq!(ct["EncryptionAlgorithm"], alg);
            assert_eq!(Kms::blob(&ct["CiphertextBlob"]).len(), 256);
            let p = kms
                .ok(
                    "Decrypt",
                    json!({"KeyId": rsa, "CiphertextBlob": ct["CiphertextBlob"], "EncryptionAlgorithm": alg}),
                )
                .await;
            assert_eq!(Kms::blob(&p["Plaintext"]), b"hi");
            assert_eq!(p["EncryptionAlgorithm"], alg);
            assert_eq!(kms.last_audit().key_id.as_deref(), Some(rsa.as_str()));
        }
        // Ciphertext made outside the KMS with GetPublicKey's key opens.
        let public = kms.ok("GetPublicKey", json!({"KeyId": rsa})).await;
        let outside = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(&Kms::blob(&public["PublicKey"])).unwrap(),
        )
        .unwrap();
        let mut ct = vec![0u8; outside.ciphertext_size()];
        let ct = outside
            .encrypt(&OAEP_SHA256_MGF1SHA256, b"outside", &mut ct, None)
            .unwrap()
            .to_vec();
        let p = kms
            .ok(
                "Decrypt",
                json!({"KeyId": rsa, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
            )
            .await;
        assert_eq!(Kms::blob(&p["Plaintext"]), b"outside");
        // Wrong algorithm, none, no KeyId, a context: AWS's errors.
        for (input, want) in [
            (
                json!({"KeyId": rsa, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
                "InvalidCiphertextException",
            ),
            (
                json!({"KeyId": rsa, "CiphertextBlob": b64(&ct)}),
                "InvalidKeyUsageException",
            ),
            (
                json!({"CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
                "InvalidCiphertextException",
            ),
            (
                json!({"KeyId": rsa, "CiphertextBlob": b64(&ct), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256", "EncryptionContext": {"a": "b"}}),
                "ValidationException",
            ),
        ] {
            let (status, body) = kms.call("Decrypt", input.clone()).await;
            assert_eq!((status, kind(&body)), (400, want), "{input}");
        }
        // AWS's plaintext limits for RSA_2048: 214 bytes (SHA-1), 190 bytes (SHA-256).
        for (alg, max) in [("RSAES_OAEP_SHA_1", 214), ("RSAES_OAEP_SHA_256", 190)] {
            kms.ok(
                "Encrypt",
                json!({"KeyId": rsa, "Plaintext": b64(&vec![7; max]), "EncryptionAlgorithm": alg}),
            )
            .await;
            let (_, body) = kms
                .call(
                    "Encrypt",
                    json!({"KeyId": rsa, "Plaintext": b64(&vec![7; max + 1]), "EncryptionAlgorithm": alg}),
                )
                .await;
            assert_eq!(kind(&body), "ValidationException", "{alg}");
        }
        for input in [
            json!({"KeyId": rsa, "Plaintext": b64(b"x")}),
            json!({"KeyId": rsa, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ] {
            let (_, body) = kms.call("Encrypt", input).await;
            assert_eq!(kind(&body), "InvalidKeyUsageException");
        }
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": rsa, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1", "EncryptionContext": {"a": "b"}}),
            )
            .await;
        assert_eq!(
            body["message"],
            "1 validation error detected: EncryptionContext is not supported when encrypting/decrypting with asymmetric CMKs."
        );
        // A signing key does not encrypt; an RSA key makes no data keys.
        let signing = new_pair(&kms, "ECC_NIST_P256", "SIGN_VERIFY").await;
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": signing, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
            )
            .await;
        assert_eq!(kind(&body), "InvalidKeyUsageException");
        let (_, body) = kms
            .call(
                "GenerateDataKey",
                json!({"KeyId": rsa, "KeySpec": "AES_256"}),
            )
            .await;
        assert_eq!(kind(&body), "InvalidKeyUsageException");

        // ReEncrypt: symmetric to RSA and back.
        let sym = kms.new_key().await;
        let blob = kms
            .ok("Encrypt", json!({"KeyId": sym, "Plaintext": b64(b"moved")}))
            .await;
        let to_rsa = kms
            .ok(
                "ReEncrypt",
                json!({"CiphertextBlob": blob["CiphertextBlob"], "DestinationKeyId": rsa,
                       "DestinationEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
            )
            .await;
        assert_eq!(to_rsa["SourceEncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
        assert_eq!(
            to_rsa["DestinationEncryptionAlgorithm"],
            "RSAES_OAEP_SHA_256"
        );
        let back = kms
            .ok(
                "ReEncrypt",
                json!({"CiphertextBlob": to_rsa["CiphertextBlob"], "SourceKeyId": rsa,
                       "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "DestinationKeyId": sym}),
            )
            .await;
        assert_eq!(back["SourceKeyId"], kms.key_arn(&rsa));
        let p = kms
            .ok("Decrypt", json!({"CiphertextBlob": back["CiphertextBlob"]}))
            .await;
        assert_eq!(Kms::blob(&p["Plaintext"]), b"moved");
    }

    // AWS API reference, Decrypt / GenerateDataKeyPair / DeriveSharedSecret with Recipient: the
    // secret is only in CiphertextForRecipient (PrivateKeyPlaintext, Plaintext, SharedSecret
    // absent), as for Nitro enclaves.
    #[tokio::test]
    async fn attested_recipients_get_private_keys_and_secrets_only_wrapped() {
        use aws_lc_rs::encoding::AsDer;
        use cloister_attestation::PcrValue;

        let Attested {
            kms,
            enclave,
            recipient,
            ..
        } = Attested::new();

        let sym = kms.new_key().await;
        let pair = kms
            .ok(
                "GenerateDataKeyPair",
                json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256", "Recipient": recipient}),
            )
            .await;
        assert!(pair.get("PrivateKeyPlaintext").is_none());
        let wrapped = enclave
            .open(&Kms::blob(&pair["CiphertextForRecipient"]))
            .unwrap();
        let sealed = kms
            .ok(
                "Decrypt",
                json!({"CiphertextBlob": pair["PrivateKeyCiphertextBlob"]}),
            )
            .await;
        assert_eq!(wrapped.as_slice(), Kms::blob(&sealed["Plaintext"]));

        let agree = new_pair(&kms, "ECC_NIST_P256", "KEY_AGREEMENT").await;
        let peer =
            aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::ECDH_P256).unwrap();
        let peer_spki = b64(peer
            .compute_public_key()
            .unwrap()
            .as_der()
            .unwrap()
            .as_ref());
        let derive =
            json!({"KeyId": agree, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer_spki});
        let plain = kms.ok("DeriveSharedSecret", derive.clone()).await;
        let mut attested = derive;
        attested["Recipient"] = recipient.clone();
        let out = kms.ok("DeriveSharedSecret", attested).await;
        assert!(out.get("SharedSecret").is_none());
        let secret = enclave
            .open(&Kms::blob(&out["CiphertextForRecipient"]))
            .unwrap();
        assert_eq!(secret.as_slice(), Kms::blob(&plain["SharedSecret"]));
        assert_eq!(
            kms.last_audit().pcr0,
            Some(PcrValue::measure(b"image").to_hex())
        );

        let rsa = new_pair(&kms, "RSA_2048", "ENCRYPT_DECRYPT").await;
        let ct = kms
            .ok(
                "Encrypt",
                json!({"KeyId": rsa, "Plaintext": b64(b"for the enclave"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
            )
            .await;
        let out = kms
            .ok(
                "Decrypt",
                json!({"KeyId": rsa, "CiphertextBlob": ct["CiphertextBlob"],
                       "EncryptionAlgorithm": "RSAES_OAEP_SHA_1", "Recipient": recipient}),
            )
            .await;
        assert!(out.get("Plaintext").is_none());
        let opened = enclave
            .open(&Kms::blob(&out["CiphertextForRecipient"]))
            .unwrap();
        assert_eq!(opened.as_slice(), b"for the enclave");
    }
}
