//! Cryptography: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
//! GenerateRandom. The encryption context is bound into every blob and offered to the key policy
//! as condition keys; with an attested `Recipient`, the secret leaves only wrapped to the
//! enclave's key. Encrypt, Decrypt and ReEncrypt also take RSA ENCRYPT_DECRYPT keys
//! (`asymmetric`).

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::asymmetric::{self, RsaOpening};
use super::shared::{Call, MAX_KEY_ID, ec_conditions, random_bytes};
use crate::app::App;
use crate::attested::{self, Recipient, RecipientInput};
use crate::blob::{self, EncryptionContext};
use crate::error::{KmsError, Result};
use crate::input::{Base64, Map, Member, Structure, b64};
use crate::keyspec::KeySpec;
use crate::state::KeyRecord;

/// Encrypt's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct EncryptInput {
    key_id: Member<String>,
    plaintext: Member<Base64>,
    encryption_context: Member<Map>,
    encryption_algorithm: Member<String>,
}

/// Decrypt's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DecryptInput {
    key_id: Member<String>,
    ciphertext_blob: Member<Base64>,
    encryption_context: Member<Map>,
    encryption_algorithm: Member<String>,
    recipient: Member<Structure<RecipientInput>>,
}

/// ReEncrypt's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ReEncryptInput {
    ciphertext_blob: Member<Base64>,
    source_encryption_context: Member<Map>,
    destination_encryption_context: Member<Map>,
    source_encryption_algorithm: Member<String>,
    destination_encryption_algorithm: Member<String>,
    source_key_id: Member<String>,
    destination_key_id: Member<String>,
}

/// GenerateDataKey's and GenerateDataKeyWithoutPlaintext's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DataKeyInput {
    key_id: Member<String>,
    key_spec: Member<String>,
    number_of_bytes: Member<i64>,
    encryption_context: Member<Map>,
    recipient: Member<Structure<RecipientInput>>,
}

/// GenerateRandom's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct RandomInput {
    custom_key_store_id: Member<String>,
    number_of_bytes: Member<i64>,
    recipient: Member<Structure<RecipientInput>>,
}

/// An `EncryptionAlgorithm` member: one of AWS's names, or absent.
fn algorithm<'a>(member: &'a Member<String>, field: &str) -> Result<Option<&'a str>> {
    member.one_of(
        field,
        &[
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "RSAES_OAEP_SHA_256",
            "SM2PKE",
        ],
    )
}

/// Refuses an algorithm other than SYMMETRIC_DEFAULT for the KMS's own ciphertexts.
fn symmetric_algorithm(alg: Option<&str>) -> Result<()> {
    match alg {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::Unsupported(format!(
            "{other} is not valid for a SYMMETRIC_DEFAULT key"
        ))),
    }
}

/// Refuses a key that is not a SYMMETRIC_DEFAULT encryption key for the operations on the KMS's
/// own ciphertexts (InvalidKeyUsageException, as AWS).
fn symmetric(app: &App, key: &KeyRecord) -> Result<()> {
    if key.attrs.key_spec == KeySpec::SymmetricDefault {
        return Ok(());
    }
    Err(asymmetric::wrong_usage(app, key))
}

/// Seals `plaintext` under the key's newest material.
pub(super) fn seal_under(
    call: &mut Call<'_>,
    key: &KeyRecord,
    plaintext: &[u8],
    ec: &EncryptionContext,
) -> Result<Vec<u8>> {
    symmetric(call.app, key)?;
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.material(&key.key_id, version)?;
    blob::seal(
        call.app.public_id(&key.key_id),
        version,
        &material,
        plaintext,
        ec,
    )
}

/// The verified recipient, if the input has one; the attempt is audited.
pub(super) fn recipient(
    call: &mut Call<'_>,
    member: &Member<Structure<RecipientInput>>,
) -> Result<Option<Recipient>> {
    match member.structure("Recipient")? {
        Some(r) => attested::verify(call.app, r, call.audit).map(Some),
        None => Ok(None),
    }
}

pub(super) fn encrypt(mut call: Call<'_>) -> Result<Value> {
    let i: EncryptInput = call.input()?;
    let plaintext = Zeroizing::new(i.plaintext.req_blob("Plaintext", 1, 4096)?);
    let ec = i.encryption_context.context("EncryptionContext")?;
    let alg = algorithm(&i.encryption_algorithm, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:Encrypt", ec_conditions(&ec))?;
    call.app.check_usable(&key)?;
    if key.attrs.key_spec.is_asymmetric() {
        let (ct, name) = asymmetric::rsa_encrypt(&mut call, &key, alg, &ec, &plaintext)?;
        return Ok(
            json!({"CiphertextBlob": b64(&ct), "KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": name}),
        );
    }
    symmetric_algorithm(alg)?;
    let ct = seal_under(&mut call, &key, &plaintext, &ec)?;
    Ok(
        json!({"CiphertextBlob": b64(&ct), "KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    )
}

/// What [`open_blob`] needs to know besides the blob.
pub(super) struct Opening<'a> {
    pub(super) ec: &'a EncryptionContext,
    pub(super) key_member: &'a Member<String>,
    pub(super) key_field: &'a str,
    pub(super) action: &'a str,
    pub(super) recipient: Option<&'a Recipient>,
}

/// Opens a blob: finds its key, checks the named key if any, policy, state, context.
pub(super) fn open_blob(
    call: &mut Call<'_>,
    blob_bytes: &[u8],
    o: Opening<'_>,
) -> Result<(KeyRecord, Zeroizing<Vec<u8>>)> {
    let header = blob::header(blob_bytes)?;
    let key = call.key_by_id(&header.key_id).map_err(|e| match e {
        KmsError::NotFound(_) => KmsError::InvalidCiphertext(String::new()),
        refused => refused,
    })?;
    call.audit.key_id = Some(key.key_id.clone());
    call.audit.key_version = Some(header.version);
    if let Some(named) = o.key_member.text(o.key_field)?
        && call.resolve(named)? != key.key_id
    {
        return Err(KmsError::IncorrectKey(
            "The key ID in the request does not identify a CMK that can perform this operation."
                .into(),
        ));
    }
    call.authorize(
        o.action,
        &key,
        attested::with_conditions(ec_conditions(o.ec), o.recipient),
    )?;
    call.app.check_usable(&key)?;
    symmetric(call.app, &key)?;
    let material = call.app.material(&key.key_id, header.version)?;
    let plain = blob::open(blob_bytes, &material, o.ec)?;
    Ok((key, plain))
}

pub(super) fn decrypt(mut call: Call<'_>) -> Result<Value> {
    let i: DecryptInput = call.input()?;
    let blob_bytes = i
        .ciphertext_blob
        .req_blob("CiphertextBlob", 1, blob::MAX_BLOB)?;
    let ec = i.encryption_context.context("EncryptionContext")?;
    let alg = algorithm(&i.encryption_algorithm, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let recipient = recipient(&mut call, &i.recipient)?;
    if let Some(key_ref) = asymmetric::named_asymmetric(call.app, call.region, &i.key_id, "KeyId")?
    {
        let (key, plain, name) = asymmetric::rsa_decrypt(
            &mut call,
            &blob_bytes,
            RsaOpening {
                key_ref: &key_ref,
                alg,
                ec: &ec,
                action: "kms:Decrypt",
                conditions: attested::with_conditions(ec_conditions(&ec), recipient.as_ref()),
            },
        )?;
        let mut out = json!({"KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": name});
        match recipient {
            Some(r) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&plain)?)),
            None => out["Plaintext"] = json!(b64(&plain)),
        }
        return Ok(out);
    }
    // Without a KeyId an asymmetric ciphertext is no blob of the KMS's: that comes first.
    blob::header(&blob_bytes)?;
    symmetric_algorithm(alg)?;
    let (key, plain) = open_blob(
        &mut call,
        &blob_bytes,
        Opening {
            ec: &ec,
            key_member: &i.key_id,
            key_field: "KeyId",
            action: "kms:Decrypt",
            recipient: recipient.as_ref(),
        },
    )?;
    let mut out =
        json!({"KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"});
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&plain)?)),
        None => out["Plaintext"] = json!(b64(&plain)),
    }
    Ok(out)
}

pub(super) fn re_encrypt(mut call: Call<'_>) -> Result<Value> {
    let i: ReEncryptInput = call.input()?;
    let blob_bytes = i
        .ciphertext_blob
        .req_blob("CiphertextBlob", 1, blob::MAX_BLOB)?;
    let source_ec = i
        .source_encryption_context
        .context("SourceEncryptionContext")?;
    let dest_ec = i
        .destination_encryption_context
        .context("DestinationEncryptionContext")?;
    let source_alg = algorithm(&i.source_encryption_algorithm, "SourceEncryptionAlgorithm")?;
    let dest_alg = algorithm(
        &i.destination_encryption_algorithm,
        "DestinationEncryptionAlgorithm",
    )?;
    let (source, plain, source_alg) =
        match asymmetric::named_asymmetric(call.app, call.region, &i.source_key_id, "SourceKeyId")?
        {
            Some(key_ref) => asymmetric::rsa_decrypt(
                &mut call,
                &blob_bytes,
                RsaOpening {
                    key_ref: &key_ref,
                    alg: source_alg,
                    ec: &source_ec,
                    action: "kms:ReEncryptFrom",
                    conditions: ec_conditions(&source_ec),
                },
            )?,
            None => {
                symmetric_algorithm(source_alg)?;
                let (key, plain) = open_blob(
                    &mut call,
                    &blob_bytes,
                    Opening {
                        ec: &source_ec,
                        key_member: &i.source_key_id,
                        key_field: "SourceKeyId",
                        action: "kms:ReEncryptFrom",
                        recipient: None,
                    },
                )?;
                (key, plain, "SYMMETRIC_DEFAULT")
            }
        };
    call.audit.encryption_context = Some(dest_ec.clone());
    let dest_ref = i
        .destination_key_id
        .required("DestinationKeyId", MAX_KEY_ID)?;
    let dest = call.key_for(dest_ref, "kms:ReEncryptTo", ec_conditions(&dest_ec))?;
    call.app.check_usable(&dest)?;
    let (ct, dest_alg) = if dest.attrs.key_spec.is_asymmetric() {
        asymmetric::rsa_encrypt(&mut call, &dest, dest_alg, &dest_ec, &plain)?
    } else {
        symmetric_algorithm(dest_alg)?;
        (
            seal_under(&mut call, &dest, &plain, &dest_ec)?,
            "SYMMETRIC_DEFAULT",
        )
    };
    Ok(json!({
        "CiphertextBlob": b64(&ct),
        "SourceKeyId": call.app.key_arn(&source.key_id),
        "KeyId": call.app.key_arn(&dest.key_id),
        "SourceEncryptionAlgorithm": source_alg,
        "DestinationEncryptionAlgorithm": dest_alg,
    }))
}

fn data_key_len(i: &DataKeyInput) -> Result<usize> {
    let spec = i.key_spec.one_of("KeySpec", &["AES_256", "AES_128"])?;
    let n = i.number_of_bytes.int_in("NumberOfBytes", 1, 1024)?;
    match (spec, n) {
        (Some("AES_128"), None) => Ok(16),
        (Some(_), None) => Ok(32),
        (None, Some(n)) => Ok(usize::try_from(n).unwrap_or(32)),
        (Some(_), Some(_)) => Err(KmsError::validation(
            "Please specify either number of bytes or key spec, not both.",
        )),
        (None, None) => Err(KmsError::validation(
            "Please specify either number of bytes or key spec.",
        )),
    }
}

/// What the data key operations (GenerateDataKey*, GenerateDataKeyPair*) name.
pub(super) struct DataKeyRequest<'a> {
    /// `KeyId`.
    pub(super) key_id: &'a Member<String>,
    /// The encryption context.
    pub(super) ec: &'a EncryptionContext,
    /// `Recipient` (read only when the answer would carry plaintext).
    pub(super) recipient: &'a Member<Structure<RecipientInput>>,
    /// Whether the answer carries the plaintext (or its CiphertextForRecipient).
    pub(super) with_plaintext: bool,
    /// The action with plaintext, and without.
    pub(super) actions: [&'a str; 2],
}

/// The key a data key request names, authorized with the context's and (when the answer
/// carries plaintext) the verified recipient's condition keys, and usable; and the recipient.
pub(super) fn data_key_target(
    call: &mut Call<'_>,
    r: DataKeyRequest<'_>,
) -> Result<(KeyRecord, Option<Recipient>)> {
    call.audit.encryption_context = Some(r.ec.clone());
    let recipient = if r.with_plaintext {
        recipient(call, r.recipient)?
    } else {
        None
    };
    let action = r.actions[usize::from(!r.with_plaintext)];
    let key_ref = r.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(
        key_ref,
        action,
        attested::with_conditions(ec_conditions(r.ec), recipient.as_ref()),
    )?;
    call.app.check_usable(&key)?;
    Ok((key, recipient))
}

pub(super) fn generate_data_key(mut call: Call<'_>, with_plaintext: bool) -> Result<Value> {
    let i: DataKeyInput = call.input()?;
    let len = data_key_len(&i)?;
    let ec = i.encryption_context.context("EncryptionContext")?;
    let (key, recipient) = data_key_target(
        &mut call,
        DataKeyRequest {
            key_id: &i.key_id,
            ec: &ec,
            recipient: &i.recipient,
            with_plaintext,
            actions: ["kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"],
        },
    )?;
    let data_key = random_bytes(len)?;
    let ct = seal_under(&mut call, &key, &data_key, &ec)?;
    let mut out = json!({"CiphertextBlob": b64(&ct), "KeyId": call.app.key_arn(&key.key_id)});
    match (with_plaintext, recipient) {
        (true, Some(r)) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&data_key)?)),
        (true, None) => out["Plaintext"] = json!(b64(&data_key)),
        (false, _) => {}
    }
    Ok(out)
}

pub(super) fn generate_random(mut call: Call<'_>) -> Result<Value> {
    let i: RandomInput = call.input()?;
    if i.custom_key_store_id.text("CustomKeyStoreId")?.is_some() {
        return Err(KmsError::Unsupported(
            "custom key stores are not supported".into(),
        ));
    }
    // AWS answers a GenerateRandom without NumberOfBytes with a ValidationException (after
    // the members' types are checked).
    let n = i.number_of_bytes.int_in("NumberOfBytes", 1, 1024)?;
    i.recipient.structure("Recipient")?;
    let n = n.ok_or_else(|| {
        KmsError::validation(
            "Value null at 'numberOfBytes' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let recipient = recipient(&mut call, &i.recipient)?;
    let bytes = random_bytes(usize::try_from(n).unwrap_or(32))?;
    Ok(match recipient {
        Some(r) => json!({"CiphertextForRecipient": b64(&r.seal(&bytes)?)}),
        None => json!({"Plaintext": b64(&bytes)}),
    })
}

#[cfg(test)]
mod tests {
    use cloister_attestation::PcrValue;
    use serde_json::json;

    use crate::input::b64;
    use crate::ops::testkit::{Attested, Kms};

    /// AWS KMS API reference, Encrypt / Decrypt `DryRun`: a request that would succeed answers
    /// DryRunOperationException (412) without its result; one that would fail answers its error.
    #[tokio::test]
    async fn dry_run_checks_and_answers_nothing() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))
            .await["CiphertextBlob"]
            .clone();
        for (op, input) in [
            (
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": true}),
            ),
            ("Decrypt", json!({"CiphertextBlob": ct, "DryRun": true})),
            (
                "GenerateDataKey",
                json!({"KeyId": id, "KeySpec": "AES_256", "DryRun": true}),
            ),
        ] {
            let (status, body) = kms.call(op, input).await;
            assert_eq!(
                (status, body["__type"].as_str()),
                (412, Some("DryRunOperationException")),
                "{op}"
            );
            assert!(body.get("Plaintext").is_none() && body.get("CiphertextBlob").is_none());
        }
        let (status, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": false}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": "yes"}),
            )
            .await;
        assert_eq!(body["__type"], "SerializationException");
        kms.ok("DisableKey", json!({"KeyId": id})).await;
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"x"), "DryRun": true}),
            )
            .await;
        assert_eq!(body["__type"], "DisabledException");
    }

    #[tokio::test]
    async fn encrypt_decrypt_and_context_binding() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let ct = kms
            .ok(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"hello"), "EncryptionContext": {"ab": "c"}}),
            )
            .await;
        assert_eq!(ct["KeyId"], kms.key_arn(&id));
        assert_eq!(kms.last_audit().encryption_context.unwrap()["ab"], "c");
        let blob = ct["CiphertextBlob"].clone();
        let p = kms
            .ok(
                "Decrypt",
                json!({"CiphertextBlob": blob, "EncryptionContext": {"ab": "c"}}),
            )
            .await;
        assert_eq!(Kms::blob(&p["Plaintext"]), b"hello");
        for wrong in [json!({"a": "bc"}), json!({}), json!({"AB": "c"})] {
            let (status, body) = kms
                .call(
                    "Decrypt",
                    json!({"CiphertextBlob": blob, "EncryptionContext": wrong}),
                )
                .await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, "InvalidCiphertextException"),
                "{wrong}"
            );
        }
        let other = kms.new_key().await;
        let (_, body) = kms
            .call(
                "Decrypt",
                json!({"CiphertextBlob": blob, "EncryptionContext": {"ab": "c"}, "KeyId": other}),
            )
            .await;
        assert_eq!(body["__type"], "IncorrectKeyException");
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(&[0; 4097])}),
            )
            .await;
        assert_eq!(
            body["message"],
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
        );
        let (_, body) = kms
            .call(
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": {"a": 1}}),
            )
            .await;
        assert_eq!(
            (
                body["__type"].as_str().unwrap(),
                body["message"].as_str().unwrap()
            ),
            (
                "SerializationException",
                "EncryptionContext values must be strings"
            )
        );
        let (_, body) = kms
            .call("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}))
            .await;
        assert_eq!(body["__type"], "UnsupportedOperationException");
        kms.ok("DisableKey", json!({"KeyId": id})).await;
        let (status, body) = kms
            .call(
                "Decrypt",
                json!({"CiphertextBlob": blob, "EncryptionContext": {"ab": "c"}}),
            )
            .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "DisabledException")
        );
    }

    #[tokio::test]
    async fn data_keys_re_encryption_and_random() {
        let kms = Kms::new();
        let a = kms.new_key().await;
        let b = kms.new_key().await;
        let gdk = kms
            .ok("GenerateDataKey", json!({"KeyId": a, "KeySpec": "AES_128"}))
            .await;
        let dk = Kms::blob(&gdk["Plaintext"]);
        assert_eq!(dk.len(), 16);
        let n = kms
            .ok("GenerateDataKey", json!({"KeyId": a, "NumberOfBytes": 7}))
            .await;
        assert_eq!(Kms::blob(&n["Plaintext"]).len(), 7);
        for bad in [
            json!({"KeyId": a}),
            json!({"KeyId": a, "KeySpec": "AES_256", "NumberOfBytes": 8}),
        ] {
            let (_, body) = kms.call("GenerateDataKey", bad.clone()).await;
            assert_eq!(body["__type"], "ValidationException", "{bad}");
        }
        let without = kms
            .ok(
                "GenerateDataKeyWithoutPlaintext",
                json!({"KeyId": a, "KeySpec": "AES_256"}),
            )
            .await;
        assert!(without.get("Plaintext").is_none());

        let re = kms
            .ok(
                "ReEncrypt",
                json!({"CiphertextBlob": gdk["CiphertextBlob"], "DestinationKeyId": b,
                "DestinationEncryptionContext": {"to": "b"}}),
            )
            .await;
        assert_eq!(re["SourceKeyId"], kms.key_arn(&a));
        assert_eq!(re["KeyId"], kms.key_arn(&b));
        let p = kms
            .ok(
                "Decrypt",
                json!({"CiphertextBlob": re["CiphertextBlob"], "EncryptionContext": {"to": "b"}}),
            )
            .await;
        assert_eq!(Kms::blob(&p["Plaintext"]), dk);
        let (_, body) = kms
            .call(
                "ReEncrypt",
                json!({"CiphertextBlob": gdk["CiphertextBlob"]}),
            )
            .await;
        assert_eq!(body["__type"], "ValidationException");

        let r = kms.ok("GenerateRandom", json!({"NumberOfBytes": 64})).await;
        assert_eq!(Kms::blob(&r["Plaintext"]).len(), 64);
        let (_, body) = kms
            .call("GenerateRandom", json!({"NumberOfBytes": 1025}))
            .await;
        assert_eq!(body["__type"], "ValidationException");
        let (_, body) = kms
            .call("GenerateRandom", json!({"CustomKeyStoreId": "cks-1"}))
            .await;
        assert_eq!(body["__type"], "UnsupportedOperationException");
    }

    #[tokio::test]
    async fn policy_conditions_on_the_context_bind_other_principals() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let role = "arn:aws:iam::111122223333:role/app";
        let app = kms.add_principal(role);
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:GenerateDataKey", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "acme"}}}
        ]});
        kms.ok(
            "PutKeyPolicy",
            json!({"KeyId": id, "Policy": policy.to_string()}),
        )
        .await;
        let (status, _) = kms
            .call_as(
                &app,
                "GenerateDataKey",
                json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"tenant": "acme"}}),
            )
            .await;
        assert_eq!(status, 200);
        let (_, body) = kms
            .call_as(&app, "GenerateDataKey", json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"tenant": "other"}}))
            .await;
        assert_eq!(body["__type"], "AccessDeniedException");
        assert!(body["message"].as_str().unwrap().contains(role));
        assert_eq!(kms.last_audit().principal, role);
    }

    #[tokio::test]
    async fn attested_recipients_get_only_wrapped_secrets() {
        let Attested {
            kms,
            enclave: key,
            doc,
            recipient,
        } = Attested::new();
        let id = kms.new_key().await;
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"secret")}))
            .await;
        let out = kms
            .ok(
                "Decrypt",
                json!({"CiphertextBlob": ct["CiphertextBlob"], "Recipient": recipient}),
            )
            .await;
        assert!(out.get("Plaintext").is_none());
        let opened = key
            .open(&Kms::blob(&out["CiphertextForRecipient"]))
            .unwrap();
        assert_eq!(opened.as_slice(), b"secret");
        let audit = kms.last_audit();
        assert_eq!(audit.pcr0, Some(PcrValue::measure(b"image").to_hex()));
        let (_, body) = kms
            .call(
                "GenerateRandom",
                json!({"Recipient": {"AttestationDocument": doc}}),
            )
            .await;
        assert_eq!(body["__type"], "ValidationException");
        let (_, body) = kms.call("GenerateRandom", json!({"Recipient": [1]})).await;
        assert_eq!(
            (
                body["__type"].as_str().unwrap(),
                body["message"].as_str().unwrap()
            ),
            ("SerializationException", "Recipient must be a structure")
        );
    }
}
