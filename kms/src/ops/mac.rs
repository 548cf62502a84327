//! HMAC keys: GenerateMac and VerifyMac (API reference, GenerateMac and VerifyMac). The MAC
//! algorithm must be the key spec's (HMAC_256 keys compute HMAC_SHA_256 only); the key's
//! material never leaves the KMS; VerifyMac compares in constant time (aws-lc-rs `hmac::verify`)
//! and answers `MacValid: true` or KMSInvalidMacException, never `false`.

use std::collections::HashMap;

use aws_lc_rs::hmac;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::shared::{Call, MAX_KEY_ID};
use crate::error::{KmsError, Result};
use crate::input::{Base64, Member, b64};
use crate::keyspec::{KeySpec, KeyUsage};
use crate::state::KeyRecord;

/// AWS's `MacAlgorithmSpec` enum.
const MAC_ALGORITHMS: [&str; 4] = [
    "HMAC_SHA_224",
    "HMAC_SHA_256",
    "HMAC_SHA_384",
    "HMAC_SHA_512",
];

/// Most grant tokens a request carries (AWS's `GrantTokenList`).
const MAX_GRANT_TOKENS: usize = 10;
/// Longest grant token (AWS's `GrantTokenType`).
const MAX_GRANT_TOKEN: usize = 8192;

/// GenerateMac's and VerifyMac's input (VerifyMac adds `Mac`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct MacInput {
    key_id: Member<String>,
    message: Member<Base64>,
    mac_algorithm: Member<String>,
    mac: Member<Base64>,
    grant_tokens: Member<Vec<String>>,
}

/// Checks the `GrantTokens` member as AWS's shape bounds it (at most 10 tokens of 1 to 8192
/// characters). The tokens themselves are accepted, as AWS accepts tokens of grants that are
/// already in effect.
pub(super) fn grant_tokens(member: &Member<Vec<String>>) -> Result<()> {
    let tokens = match member {
        Member::Absent => return Ok(()),
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "GrantTokens must be a list of strings".into(),
            ));
        }
        Member::Given(t) => t,
    };
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(KmsError::validation(format!(
            "Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to {MAX_GRANT_TOKENS}"
        )));
    }
    if tokens
        .iter()
        .any(|t| t.is_empty() || t.chars().count() > MAX_GRANT_TOKEN)
    {
        return Err(KmsError::validation(format!(
            "Value at 'grantTokens' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to {MAX_GRANT_TOKEN}, Member must have length greater than or equal to 1]"
        )));
    }
    Ok(())
}

/// The aws-lc-rs HMAC algorithm of an HMAC key spec.
pub(super) fn hmac_algorithm(spec: KeySpec) -> Option<hmac::Algorithm> {
    match spec {
        KeySpec::Hmac224 => Some(hmac::HMAC_SHA224),
        KeySpec::Hmac256 => Some(hmac::HMAC_SHA256),
        KeySpec::Hmac384 => Some(hmac::HMAC_SHA384),
        KeySpec::Hmac512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// The request's checked members: message, algorithm, and the key (authorized for `action`,
/// usable, an HMAC key whose spec computes the algorithm), with its HMAC key.
fn prepare(call: &mut Call<'_>, i: &MacInput, action: &str) -> Result<(KeyRecord, hmac::Key)> {
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let algorithm = i
        .mac_algorithm
        .one_of("MacAlgorithm", &MAC_ALGORITHMS)?
        .ok_or_else(|| {
            KmsError::validation(
                "Value null at 'macAlgorithm' failed to satisfy constraint: Member must not be null",
            )
        })?;
    grant_tokens(&i.grant_tokens)?;
    let key = call.key_for(key_ref, action, HashMap::new())?;
    call.app.check_usable(&key)?;
    let spec = key.attrs.key_spec;
    let alg = hmac_algorithm(spec);
    let Some(alg) = alg.filter(|_| {
        key.attrs.key_usage == KeyUsage::GenerateVerifyMac
            && spec.mac_algorithms().contains(&algorithm)
    }) else {
        return Err(KmsError::InvalidKeyUsage(format!(
            "{} key usage is {} and key spec is {}, which does not support MacAlgorithm {algorithm}.",
            call.app.key_arn(&key.key_id),
            key.attrs.key_usage.as_str(),
            spec.as_str()
        )));
    };
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.key_material(&key.key_id, version)?;
    let hkey = hmac::Key::new(alg, &material);
    Ok((key, hkey))
}

pub(super) fn generate_mac(mut call: Call<'_>) -> Result<Value> {
    let i: MacInput = call.input()?;
    let message = Zeroizing::new(i.message.req_blob("Message", 1, 4096)?);
    let (key, hkey) = prepare(&mut call, &i, "kms:GenerateMac")?;
    let tag = hmac::sign(&hkey, &message);
    Ok(json!({
        "Mac": b64(tag.as_ref()),
        "MacAlgorithm": key.attrs.key_spec.mac_algorithms().first().copied().unwrap_or_default(),
        "KeyId": call.app.key_arn(&key.key_id),
    }))
}

pub(super) fn verify_mac(mut call: Call<'_>) -> Result<Value> {
    let i: MacInput = call.input()?;
    let message = Zeroizing::new(i.message.req_blob("Message", 1, 4096)?);
    let mac = i.mac.req_blob("Mac", 1, 6144)?;
    let (key, hkey) = prepare(&mut call, &i, "kms:VerifyMac")?;
    hmac::verify(&hkey, &message, &mac).map_err(|_| {
        KmsError::InvalidMac(
            "The MAC does not match the message, HMAC KMS key and MAC algorithm.".into(),
        )
    })?;
    Ok(json!({
        "MacValid": true,
        "MacAlgorithm": key.attrs.key_spec.mac_algorithms().first().copied().unwrap_or_default(),
        "KeyId": call.app.key_arn(&key.key_id),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::input::b64;
    use crate::ops::testkit::Kms;

    async fn hmac_key(kms: &Kms, spec: &str) -> String {
        let k = kms
            .ok(
                "CreateKey",
                json!({"KeySpec": spec, "KeyUsage": "GENERATE_VERIFY_MAC"}),
            )
            .await;
        k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    // AWS API reference, GenerateMac and VerifyMac: the Mac is the RFC 2104 HMAC of the message
    // under the key, of the algorithm's digest length; VerifyMac answers MacValid true.
    #[tokio::test]
    async fn every_hmac_spec_generates_and_verifies_its_own_algorithm() {
        let kms = Kms::new();
        for (spec, alg, len) in [
            ("HMAC_224", "HMAC_SHA_224", 28),
            ("HMAC_256", "HMAC_SHA_256", 32),
            ("HMAC_384", "HMAC_SHA_384", 48),
            ("HMAC_512", "HMAC_SHA_512", 64),
        ] {
            let id = hmac_key(&kms, spec).await;
            let msg = b64(b"message to authenticate");
            let m = kms
                .ok(
                    "GenerateMac",
                    json!({"KeyId": id, "Message": msg, "MacAlgorithm": alg, "GrantTokens": ["t"]}),
                )
                .await;
            assert_eq!(m["MacAlgorithm"], alg);
            assert_eq!(m["KeyId"], kms.key_arn(&id));
            let mac = Kms::blob(&m["Mac"]);
            assert_eq!(mac.len(), len, "{spec}");
            // Deterministic: the same message gives the same MAC.
            let again = kms
                .ok(
                    "GenerateMac",
                    json!({"KeyId": id, "Message": msg, "MacAlgorithm": alg}),
                )
                .await;
            assert_eq!(again["Mac"], m["Mac"]);
            let v = kms
                .ok(
                    "VerifyMac",
                    json!({"KeyId": id, "Message": msg, "MacAlgorithm": alg, "Mac": m["Mac"]}),
                )
                .await;
            assert_eq!(v["MacValid"], true);
            assert_eq!(kms.last_audit().key_version, Some(1));
        }
    }

    // AWS API reference, VerifyMac: a MAC that does not verify is KMSInvalidMacException.
    #[tokio::test]
    async fn a_flipped_bit_in_mac_or_message_is_kms_invalid_mac() {
        let kms = Kms::new();
        let id = hmac_key(&kms, "HMAC_256").await;
        let alg = "HMAC_SHA_256";
        let m = kms
            .ok(
                "GenerateMac",
                json!({"KeyId": id, "Message": b64(b"abc"), "MacAlgorithm": alg}),
            )
            .await;
        let mut mac = Kms::blob(&m["Mac"]);
        mac[31] ^= 1;
        for (msg, mac) in [
            (b64(b"abc"), b64(&mac)),
            (b64(b"abd"), m["Mac"].as_str().unwrap().to_owned()),
            (b64(b"abc"), b64(&mac[..16])),
        ] {
            let (status, body) = kms
                .call(
                    "VerifyMac",
                    json!({"KeyId": id, "Message": msg, "MacAlgorithm": alg, "Mac": mac}),
                )
                .await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, "KMSInvalidMacException")
            );
        }
        // Another HMAC key of the same spec does not verify it either.
        let other = hmac_key(&kms, "HMAC_256").await;
        let (_, body) = kms
            .call(
                "VerifyMac",
                json!({"KeyId": other, "Message": b64(b"abc"), "MacAlgorithm": alg, "Mac": m["Mac"]}),
            )
            .await;
        assert_eq!(body["__type"], "KMSInvalidMacException");
    }

    // AWS API reference, GenerateMac: InvalidKeyUsageException when the key is not a
    // GENERATE_VERIFY_MAC key or the MacAlgorithm is not the key's; ValidationException for a
    // missing member, an unknown algorithm or a Message over 4096 bytes; DisabledException.
    #[tokio::test]
    async fn generate_mac_refuses_what_aws_refuses() {
        let kms = Kms::new();
        let hmac = hmac_key(&kms, "HMAC_384").await;
        let symmetric = kms.new_key().await;
        let msg = b64(b"m");
        let cases = [
            (
                json!({"KeyId": symmetric, "Message": msg, "MacAlgorithm": "HMAC_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": hmac, "Message": msg, "MacAlgorithm": "HMAC_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": hmac, "Message": msg, "MacAlgorithm": "HMAC_MD5"}),
                "ValidationException",
            ),
            (
                json!({"KeyId": hmac, "Message": msg}),
                "ValidationException",
            ),
            (
                json!({"KeyId": hmac, "MacAlgorithm": "HMAC_SHA_384"}),
                "ValidationException",
            ),
            (
                json!({"KeyId": hmac, "Message": b64(&[0; 4097]), "MacAlgorithm": "HMAC_SHA_384"}),
                "ValidationException",
            ),
            (
                json!({"KeyId": hmac, "Message": msg, "MacAlgorithm": "HMAC_SHA_384", "GrantTokens": vec!["t"; 11]}),
                "ValidationException",
            ),
            (
                json!({"KeyId": "alias/none", "Message": msg, "MacAlgorithm": "HMAC_SHA_384"}),
                "NotFoundException",
            ),
        ];
        for (input, name) in cases {
            let (status, body) = kms.call("GenerateMac", input.clone()).await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, name),
                "{input}"
            );
        }
        kms.ok("DisableKey", json!({"KeyId": hmac})).await;
        let (_, body) = kms
            .call(
                "GenerateMac",
                json!({"KeyId": hmac, "Message": msg, "MacAlgorithm": "HMAC_SHA_384"}),
            )
            .await;
        assert_eq!(body["__type"], "DisabledException");
        // Encrypt refuses the HMAC key (InvalidKeyUsageException).
        kms.ok("EnableKey", json!({"KeyId": hmac})).await;
        let (_, body) = kms
            .call("Encrypt", json!({"KeyId": hmac, "Plaintext": msg}))
            .await;
        assert_eq!(body["__type"], "InvalidKeyUsageException");
    }

    // AWS API reference, GenerateMac: "Required permissions: kms:GenerateMac (key policy)".
    #[tokio::test]
    async fn the_key_policy_decides_mac_operations() {
        let kms = Kms::new();
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/verifier"}, "Action": "kms:VerifyMac", "Resource": "*"}
            ]
        });
        let k = kms
            .ok(
                "CreateKey",
                json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "Policy": policy.to_string()}),
            )
            .await;
        let id = k["KeyMetadata"]["KeyId"].as_str().unwrap();
        let verifier = kms.add_principal("arn:aws:iam::111122223333:role/verifier");
        let input = json!({"KeyId": id, "Message": b64(b"x"), "MacAlgorithm": "HMAC_SHA_256"});
        let (_, body) = kms.call_as(&verifier, "GenerateMac", input.clone()).await;
        assert_eq!(body["__type"], "AccessDeniedException");
        let m = kms.ok("GenerateMac", input.clone()).await;
        let mut v = input;
        v["Mac"] = m["Mac"].clone();
        let (status, body) = kms.call_as(&verifier, "VerifyMac", v).await;
        assert_eq!((status, &body["MacValid"]), (200, &json!(true)), "{body}");
    }
}
