//! Cryptography: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
//! GenerateRandom. The encryption context is bound into every blob and offered to the key policy
//! as condition keys; with an attested `Recipient`, the secret leaves only wrapped to the
//! enclave's key.

use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::shared::{Call, MAX_KEY_ID, ec_conditions, random_bytes};
use crate::attested::{self, Recipient, RecipientInput};
use crate::blob::{self, EncryptionContext};
use crate::error::{KmsError, Result};
use crate::input::{Base64, Map, Member, Structure, b64};
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

fn algorithm(member: &Member<String>, field: &str) -> Result<()> {
    match member.one_of(
        field,
        &[
            "SYMMETRIC_DEFAULT",
            "RSAES_OAEP_SHA_1",
            "RSAES_OAEP_SHA_256",
            "SM2PKE",
        ],
    )? {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::Unsupported(format!(
            "{other} is not valid for a SYMMETRIC_DEFAULT key"
        ))),
    }
}

/// Seals `plaintext` under the key's newest material.
fn seal_under(
    call: &mut Call<'_>,
    key: &KeyRecord,
    plaintext: &[u8],
    ec: &EncryptionContext,
) -> Result<Vec<u8>> {
    let version = key.current_version;
    call.audit.key_version = Some(version);
    let material = call.app.material(&key.key_id, version)?;
    blob::seal(&key.key_id, version, &material, plaintext, ec)
}

/// The verified recipient, if the input has one; the attempt is audited.
fn recipient(
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
    algorithm(&i.encryption_algorithm, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(key_ref, "kms:Encrypt", ec_conditions(&ec))?;
    call.app.check_usable(&key)?;
    let ct = seal_under(&mut call, &key, &plaintext, &ec)?;
    Ok(
        json!({"CiphertextBlob": b64(&ct), "KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    )
}

/// What [`open_blob`] needs to know besides the blob.
struct Opening<'a> {
    ec: &'a EncryptionContext,
    key_member: &'a Member<String>,
    key_field: &'a str,
    action: &'a str,
    recipient: Option<&'a Recipient>,
}

/// Opens a blob: finds its key, checks the named key if any, policy, state, context.
fn open_blob(
    call: &mut Call<'_>,
    blob_bytes: &[u8],
    o: Opening<'_>,
) -> Result<(KeyRecord, Zeroizing<Vec<u8>>)> {
    let header = blob::header(blob_bytes)?;
    let key = call
        .app
        .key(&header.key_id)
        .map_err(|_| KmsError::InvalidCiphertext(String::new()))?;
    call.audit.key_id = Some(key.key_id.clone());
    call.audit.key_version = Some(header.version);
    if let Some(named) = o.key_member.text(o.key_field)?
        && call.app.resolve(named)? != key.key_id
    {
        return Err(KmsError::IncorrectKey(
            "The key ID in the request does not identify a CMK that can perform this operation."
                .into(),
        ));
    }
    call.app.authorize(
        call.principal,
        o.action,
        &key,
        attested::with_conditions(ec_conditions(o.ec), o.recipient),
    )?;
    call.app.check_usable(&key)?;
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
    algorithm(&i.encryption_algorithm, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let recipient = recipient(&mut call, &i.recipient)?;
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
    algorithm(&i.source_encryption_algorithm, "SourceEncryptionAlgorithm")?;
    algorithm(
        &i.destination_encryption_algorithm,
        "DestinationEncryptionAlgorithm",
    )?;
    let (source, plain) = open_blob(
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
    call.audit.encryption_context = Some(dest_ec.clone());
    let dest_ref = i
        .destination_key_id
        .required("DestinationKeyId", MAX_KEY_ID)?;
    let dest = call.key_for(dest_ref, "kms:ReEncryptTo", ec_conditions(&dest_ec))?;
    call.app.check_usable(&dest)?;
    let ct = seal_under(&mut call, &dest, &plain, &dest_ec)?;
    Ok(json!({
        "CiphertextBlob": b64(&ct),
        "SourceKeyId": call.app.key_arn(&source.key_id),
        "KeyId": call.app.key_arn(&dest.key_id),
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
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

pub(super) fn generate_data_key(mut call: Call<'_>, with_plaintext: bool) -> Result<Value> {
    let i: DataKeyInput = call.input()?;
    let len = data_key_len(&i)?;
    let ec = i.encryption_context.context("EncryptionContext")?;
    call.audit.encryption_context = Some(ec.clone());
    let recipient = if with_plaintext {
        recipient(&mut call, &i.recipient)?
    } else {
        None
    };
    let action = if with_plaintext {
        "kms:GenerateDataKey"
    } else {
        "kms:GenerateDataKeyWithoutPlaintext"
    };
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let key = call.key_for(
        key_ref,
        action,
        attested::with_conditions(ec_conditions(&ec), recipient.as_ref()),
    )?;
    call.app.check_usable(&key)?;
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
    let n = i
        .number_of_bytes
        .int_in("NumberOfBytes", 1, 1024)?
        .unwrap_or(32);
    let recipient = recipient(&mut call, &i.recipient)?;
    let bytes = random_bytes(usize::try_from(n).unwrap_or(32))?;
    Ok(match recipient {
        Some(r) => json!({"CiphertextForRecipient": b64(&r.seal(&bytes)?)}),
        None => json!({"Plaintext": b64(&bytes)}),
    })
}
