//! Key agreement: DeriveSharedSecret with a NIST ECC KEY_AGREEMENT key pair and a peer's public
//! key (SubjectPublicKeyInfo DER on the same curve), ECDH as AWS does it (the raw shared x
//! coordinate, no KDF). With an attested `Recipient` the secret leaves only wrapped to the
//! enclave's key.

use serde::Deserialize;
use serde_json::{Value, json};

use super::asymmetric::require;
use super::crypto::recipient;
use super::shared::{Call, MAX_KEY_ID};
use crate::attested::{self, RecipientInput};
use crate::error::{KmsError, Result};
use crate::input::{Base64, Member, Structure, b64};
use crate::keymaterial;
use crate::keyspec::KeyUsage;

/// DeriveSharedSecret's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DeriveInput {
    key_id: Member<String>,
    key_agreement_algorithm: Member<String>,
    public_key: Member<Base64>,
    recipient: Member<Structure<RecipientInput>>,
}

/// Longest public key AWS takes (its model's bound).
const MAX_PUBLIC_KEY: usize = 8192;

pub(super) fn derive_shared_secret(mut call: Call<'_>) -> Result<Value> {
    let i: DeriveInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    if i.key_agreement_algorithm
        .one_of("KeyAgreementAlgorithm", &["ECDH"])?
        .is_none()
    {
        return Err(KmsError::validation(
            "Value null at 'keyAgreementAlgorithm' failed to satisfy constraint: Member must not be null",
        ));
    }
    let peer = i.public_key.req_blob("PublicKey", 1, MAX_PUBLIC_KEY)?;
    let recipient = recipient(&mut call, &i.recipient)?;
    let key = call.key_for(
        key_ref,
        "kms:DeriveSharedSecret",
        attested::with_conditions(Default::default(), recipient.as_ref()),
    )?;
    call.app.check_usable(&key)?;
    require(call.app, &key, KeyUsage::KeyAgreement)?;
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    let secret =
        keymaterial::derive_shared_secret(key.attrs.key_spec, &material, &peer)?.map_err(|_| {
            KmsError::validation(format!(
                "Value at 'publicKey' is not a DER-encoded SubjectPublicKeyInfo of a {} public key",
                key.attrs.key_spec.as_str()
            ))
        })?;
    let mut out = json!({
        "KeyId": call.app.key_arn(&key.key_id),
        "KeyAgreementAlgorithm": "ECDH",
        "KeyOrigin": key.attrs.origin.as_str(),
    });
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&secret)?)),
        None => out["SharedSecret"] = json!(b64(&secret)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
    use aws_lc_rs::encoding::AsDer;
    use serde_json::json;

    use crate::input::b64;
    use crate::ops::asymmetric::new_pair;
    use crate::ops::testkit::Kms;

    // AWS API reference, DeriveSharedSecret: ECDH with a NIST KEY_AGREEMENT key and the peer's
    // SubjectPublicKeyInfo; the raw shared secret.
    #[tokio::test]
    async fn both_peers_derive_the_same_secret() {
        let kms = Kms::new();
        let id = new_pair(&kms, "ECC_NIST_P256", "KEY_AGREEMENT").await;
        let ours = kms.ok("GetPublicKey", json!({"KeyId": id})).await;
        let peer = PrivateKey::generate(&ECDH_P256).unwrap();
        let peer_spki = peer.compute_public_key().unwrap().as_der().unwrap();
        let out = kms
            .ok(
                "DeriveSharedSecret",
                json!({"KeyId": id, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(peer_spki.as_ref())}),
            )
            .await;
        let expected = agreement::agree(
            &peer,
            UnparsedPublicKey::new(&ECDH_P256, Kms::blob(&ours["PublicKey"])),
            (),
            |s| Ok(s.to_vec()),
        )
        .unwrap();
        assert_eq!(Kms::blob(&out["SharedSecret"]), expected);
        assert_eq!(out["KeyAgreementAlgorithm"], "ECDH");
        assert_eq!(kms.last_audit().key_id.as_deref(), Some(id.as_str()));

        let p384 = new_pair(&kms, "ECC_NIST_P384", "KEY_AGREEMENT").await;
        let p384_spki =
            Kms::blob(&kms.ok("GetPublicKey", json!({"KeyId": p384})).await["PublicKey"]);
        let signing = new_pair(&kms, "ECC_NIST_P256", "SIGN_VERIFY").await;
        let raw_point = peer.compute_public_key().unwrap().as_ref().to_vec();
        let derive = |key: &str, public: &[u8]| json!({"KeyId": key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(public)});
        for (input, want) in [
            (derive(&id, &p384_spki), "ValidationException"),
            (derive(&id, &raw_point), "ValidationException"),
            (derive(&id, b"junk"), "ValidationException"),
            (
                derive(&signing, peer_spki.as_ref()),
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": id, "PublicKey": b64(peer_spki.as_ref())}),
                "ValidationException",
            ),
            (
                json!({"KeyId": id, "KeyAgreementAlgorithm": "X25519", "PublicKey": b64(peer_spki.as_ref())}),
                "ValidationException",
            ),
        ] {
            let (status, body) = kms.call("DeriveSharedSecret", input.clone()).await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, want),
                "{input}"
            );
        }
    }
}
