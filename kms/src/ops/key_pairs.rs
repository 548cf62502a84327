//! Key pairs: GetPublicKey (an asymmetric KMS key's public key, SubjectPublicKeyInfo DER, with
//! the algorithms its usage allows) and GenerateDataKeyPair(WithoutPlaintext) (a fresh key pair
//! whose PKCS #8 private key is returned sealed under a SYMMETRIC_DEFAULT key, as
//! GenerateDataKey's data key is; with an attested `Recipient` the private key leaves only
//! wrapped to the enclave's key).

use serde::Deserialize;
use serde_json::{Value, json};

use super::crypto::{DataKeyRequest, data_key_target, seal_under};
use super::shared::{Call, MAX_KEY_ID};
use crate::attested::RecipientInput;
use crate::error::{KmsError, Result};
use crate::input::{Map, Member, Structure, b64};
use crate::keymaterial;
use crate::keyspec::{KeySpec, KeyUsage};

/// GetPublicKey's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct GetPublicKeyInput {
    key_id: Member<String>,
}

/// GenerateDataKeyPair's and GenerateDataKeyPairWithoutPlaintext's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DataKeyPairInput {
    key_id: Member<String>,
    key_pair_spec: Member<String>,
    encryption_context: Member<Map>,
    recipient: Member<Structure<RecipientInput>>,
}

/// AWS's `DataKeyPairSpec` enum.
const PAIR_SPECS: [&str; 9] = [
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
];

pub(super) fn get_public_key(mut call: Call<'_>) -> Result<Value> {
    let i: GetPublicKeyInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:GetPublicKey", Default::default())?;
    call.app.check_usable(&key)?;
    let spec = key.attrs.key_spec;
    if !spec.is_asymmetric() {
        return Err(KmsError::Unsupported(format!(
            "{} is not an asymmetric key: it has no public key.",
            call.app.key_arn(&key.key_id)
        )));
    }
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    let spki = keymaterial::public_key_der(spec, &material)?;
    let usage = key.attrs.key_usage;
    let mut out = json!({
        "KeyId": call.app.key_arn(&key.key_id),
        "PublicKey": b64(&spki),
        "CustomerMasterKeySpec": spec.as_str(),
        "KeySpec": spec.as_str(),
        "KeyUsage": usage.as_str(),
    });
    match usage {
        KeyUsage::EncryptDecrypt => {
            out["EncryptionAlgorithms"] = json!(spec.encryption_algorithms());
        }
        KeyUsage::SignVerify => out["SigningAlgorithms"] = json!(spec.signing_algorithms()),
        KeyUsage::KeyAgreement => out["KeyAgreementAlgorithms"] = json!(["ECDH"]),
        KeyUsage::GenerateVerifyMac => {}
    }
    Ok(out)
}

pub(super) async fn generate_data_key_pair(
    mut call: Call<'_>,
    with_plaintext: bool,
) -> Result<Value> {
    let i: DataKeyPairInput = call.input()?;
    let ec = i.encryption_context.context("EncryptionContext")?;
    let spec_name = i
        .key_pair_spec
        .one_of("KeyPairSpec", &PAIR_SPECS)?
        .ok_or_else(|| {
            KmsError::validation(
                "Value null at 'keyPairSpec' failed to satisfy constraint: Member must not be null",
            )
        })?;
    let spec = KeySpec::parse(spec_name)
        .filter(|s| s.is_asymmetric())
        .ok_or_else(|| {
            KmsError::Unsupported(format!(
                "KeyPairSpec {spec_name} is not supported by cloister-kms"
            ))
        })?;
    let (key, recipient) = data_key_target(
        &mut call,
        DataKeyRequest {
            key_id: &i.key_id,
            ec: &ec,
            recipient: &i.recipient,
            with_plaintext,
            actions: [
                "kms:GenerateDataKeyPair",
                "kms:GenerateDataKeyPairWithoutPlaintext",
            ],
        },
    )?;
    let private = keymaterial::generate_async(spec).await?;
    let public = keymaterial::public_key_der(spec, &private)?;
    let ct = seal_under(&mut call, &key, &private, &ec)?;
    let mut out = json!({
        "PrivateKeyCiphertextBlob": b64(&ct),
        "PublicKey": b64(&public),
        "KeyId": call.app.key_arn(&key.key_id),
        "KeyPairSpec": spec.as_str(),
    });
    match (with_plaintext, recipient) {
        (true, Some(r)) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&private)?)),
        (true, None) => out["PrivateKeyPlaintext"] = json!(b64(&private)),
        (false, _) => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
    use serde_json::json;

    use crate::ops::asymmetric::new_pair;
    use crate::ops::testkit::Kms;

    // AWS API reference, GetPublicKey: the algorithms of the key's usage, KeySpec, KeyUsage.
    #[tokio::test]
    async fn public_keys_name_their_usage_s_algorithms() {
        let kms = Kms::new();
        let rsa = new_pair(&kms, "RSA_2048", "ENCRYPT_DECRYPT").await;
        let out = kms.ok("GetPublicKey", json!({"KeyId": rsa})).await;
        assert_eq!(out["KeySpec"], "RSA_2048");
        assert_eq!(out["KeyUsage"], "ENCRYPT_DECRYPT");
        assert_eq!(
            out["EncryptionAlgorithms"],
            json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        );
        assert!(out.get("SigningAlgorithms").is_none());
        assert_eq!(Kms::blob(&out["PublicKey"])[0], 0x30);
        let agree = new_pair(&kms, "ECC_NIST_P384", "KEY_AGREEMENT").await;
        let out = kms.ok("GetPublicKey", json!({"KeyId": agree})).await;
        assert_eq!(out["KeyAgreementAlgorithms"], json!(["ECDH"]));
        let sign = new_pair(&kms, "ECC_SECG_P256K1", "SIGN_VERIFY").await;
        let out = kms.ok("GetPublicKey", json!({"KeyId": sign})).await;
        assert_eq!(out["SigningAlgorithms"], json!(["ECDSA_SHA_256"]));
        let sym = kms.new_key().await;
        let (_, body) = kms.call("GetPublicKey", json!({"KeyId": sym})).await;
        assert_eq!(body["__type"], "UnsupportedOperationException");
        let (_, body) = kms.call("GetPublicKey", json!({})).await;
        assert_eq!(body["__type"], "ValidationException");
    }

    // AWS API reference, GenerateDataKeyPair(WithoutPlaintext): PKCS #8 private key sealed
    // under a symmetric key with the context, SPKI public key, plaintext only in the first.
    #[tokio::test]
    async fn data_key_pairs_are_sealed_under_symmetric_keys() {
        let kms = Kms::new();
        let sym = kms.new_key().await;
        let out = kms
            .ok(
                "GenerateDataKeyPair",
                json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256", "EncryptionContext": {"k": "v"}}),
            )
            .await;
        assert_eq!(out["KeyPairSpec"], "ECC_NIST_P256");
        let private = Kms::blob(&out["PrivateKeyPlaintext"]);
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &private).unwrap();
        assert_eq!(
            pair.public_key().as_der().unwrap().as_ref(),
            Kms::blob(&out["PublicKey"])
        );
        let opened = kms
            .ok(
                "Decrypt",
                json!({"CiphertextBlob": out["PrivateKeyCiphertextBlob"], "EncryptionContext": {"k": "v"}}),
            )
            .await;
        assert_eq!(Kms::blob(&opened["Plaintext"]), private);
        assert_eq!(kms.last_audit().key_id.as_deref(), Some(sym.as_str()));
        let without = kms
            .ok(
                "GenerateDataKeyPairWithoutPlaintext",
                json!({"KeyId": sym, "KeyPairSpec": "RSA_2048"}),
            )
            .await;
        assert!(without.get("PrivateKeyPlaintext").is_none());
        assert!(without.get("PrivateKeyCiphertextBlob").is_some());
        let rsa = new_pair(&kms, "RSA_2048", "ENCRYPT_DECRYPT").await;
        for (input, want) in [
            (
                json!({"KeyId": rsa, "KeyPairSpec": "ECC_NIST_P256"}),
                "InvalidKeyUsageException",
            ),
            (json!({"KeyId": sym}), "ValidationException"),
            (
                json!({"KeyId": sym, "KeyPairSpec": "RSA_1024"}),
                "ValidationException",
            ),
            (
                json!({"KeyId": sym, "KeyPairSpec": "SM2"}),
                "UnsupportedOperationException",
            ),
        ] {
            let (_, body) = kms.call("GenerateDataKeyPair", input.clone()).await;
            assert_eq!(body["__type"], want, "{input}");
        }
    }

    // Each operation is its own action in the key policy: kms:GetPublicKey does not sign.
    #[tokio::test]
    async fn the_key_policy_names_each_action() {
        let kms = Kms::new();
        let id = new_pair(&kms, "ECC_NIST_P256", "SIGN_VERIFY").await;
        let role = "arn:aws:iam::111122223333:role/reader";
        let reader = kms.add_principal(role);
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": role}, "Action": ["kms:GetPublicKey", "kms:Verify"], "Resource": "*"}
        ]});
        kms.ok(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": policy.to_string()}),
        )
        .await;
        let (status, _) = kms
            .call_as(&reader, "GetPublicKey", json!({"KeyId": id}))
            .await;
        assert_eq!(status, 200);
        let sign = json!({"KeyId": id, "Message": "bQ==", "SigningAlgorithm": "ECDSA_SHA_256"});
        let (_, body) = kms.call_as(&reader, "Sign", sign.clone()).await;
        assert_eq!(body["__type"], "AccessDeniedException");
        let signature = kms.ok("Sign", sign.clone()).await["Signature"].clone();
        let mut verify = sign;
        verify["Signature"] = signature;
        let (status, body) = kms.call_as(&reader, "Verify", verify).await;
        assert_eq!((status, &body["SignatureValid"]), (200, &json!(true)));
        assert_eq!(kms.last_audit().principal, role);
    }
}
