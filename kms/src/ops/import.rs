//! Imported key material (BYOK): GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial, and the expiry of imported material (API reference, those three
//! operations; developer guide, "Importing key material").
//!
//! A key created with Origin EXTERNAL is PendingImport until its material is imported.
//! GetParametersForImport makes a fresh RSA wrapping key pair and returns its public key with an
//! import token that carries the private key, sealed (see `import_token`). ImportKeyMaterial
//! unwraps the material (RSA-OAEP, or RSA-OAEP of an AES key and AES key wrap with padding),
//! checks that it fits the key spec, and keeps a keyed fingerprint of it so that a later
//! re-import must be the same material (IncorrectKeyMaterialException); the fingerprint is an
//! HMAC-SHA256 under a key derived from the root key's row key, never a plain hash, so the store
//! does not let anyone test guesses of the material. Material that expires (`ValidTo`) or is
//! deleted leaves memory and the store, and the key returns to PendingImport; the key's
//! ciphertexts decrypt again once the same material is imported again.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use aws_lc_rs::signature::EcdsaKeyPair;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::shared::{Call, DAY_MS, MAX_KEY_ID, material_id, persist_key, secs};
use crate::app::App;
use crate::error::{KmsError, Result};
use crate::import_token::{ImportToken, WrappingAlgorithm, WrappingKeySpec};
use crate::input::{Base64, Member, b64};
use crate::keymaterial;
use crate::keyspec::{KeySpec, MaterialInfo, Origin};
use crate::state::{KeyRecord, KeyState};
use crate::store::now_ms;

/// How long the parameters of GetParametersForImport are valid.
const PARAMETERS_VALID_MS: i64 = DAY_MS;
/// Latest `ValidTo` accepted: 365 days from the request.
const MAX_VALID_TO_MS: i64 = 365 * DAY_MS;
/// The HMAC that derives the fingerprint key from the row key.
const FINGERPRINT_LABEL: &[u8] = b"cloister-kms import-fingerprint v1";

/// AWS's `AlgorithmSpec` enum.
const ALGORITHMS: [&str; 6] = [
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
    "SM2PKE",
];
/// AWS's `WrappingKeySpec` enum.
const WRAPPING_SPECS: [&str; 4] = ["RSA_2048", "RSA_3072", "RSA_4096", "SM2"];
/// AWS's `ExpirationModelType` enum.
const EXPIRATION_MODELS: [&str; 2] = ["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"];
/// AWS's `ImportType` enum.
const IMPORT_TYPES: [&str; 2] = ["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"];

/// GetParametersForImport's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ParametersInput {
    key_id: Member<String>,
    wrapping_algorithm: Member<String>,
    wrapping_key_spec: Member<String>,
}

/// ImportKeyMaterial's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ImportInput {
    key_id: Member<String>,
    import_token: Member<Base64>,
    encrypted_key_material: Member<Base64>,
    valid_to: Member<f64>,
    expiration_model: Member<String>,
    import_type: Member<String>,
    key_material_description: Member<String>,
    key_material_id: Member<String>,
}

/// DeleteImportedKeyMaterial's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DeleteInput {
    key_id: Member<String>,
    key_material_id: Member<String>,
}

fn not_null(member: &str) -> KmsError {
    KmsError::validation(format!(
        "Value null at '{member}' failed to satisfy constraint: Member must not be null"
    ))
}

/// A `KeyMaterialId` member: 64 lower-case hex digits, if given.
fn material_id_member(m: &Member<String>) -> Result<Option<&str>> {
    let id = m.text("KeyMaterialId")?;
    if let Some(id) = id
        && (id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(KmsError::validation(format!(
            "Value '{id}' at 'keyMaterialId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-f0-9]+$ and have length 64"
        )));
    }
    Ok(id)
}

/// Refuses a key whose material is not imported (UnsupportedOperationException, as AWS) or that
/// is pending deletion (KMSInvalidStateException).
fn importable(app: &App, key: &KeyRecord) -> Result<()> {
    if key.attrs.origin != Origin::External {
        return Err(KmsError::Unsupported(format!(
            "{} origin is {}, which is not valid for this operation.",
            app.key_arn(&key.key_id),
            key.attrs.origin.as_str()
        )));
    }
    app.refuse_pending(key)
}

/// Whether imported material of `spec` may be wrapped with `alg` under an RSA key of `wrapping`
/// (API reference, GetParametersForImport `WrappingAlgorithm`): RSA private keys only with an
/// RSA_AES algorithm; ECC_NIST_P521 not with RSAES_OAEP under RSA_2048.
fn check_combination(
    spec: KeySpec,
    alg: WrappingAlgorithm,
    wrapping: WrappingKeySpec,
) -> Result<()> {
    if spec.is_rsa() && !alg.is_rsa_aes() {
        return Err(KmsError::validation(format!(
            "WrappingAlgorithm {} cannot wrap {} key material: use RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1",
            alg.as_str(),
            spec.as_str()
        )));
    }
    if spec == KeySpec::EccNistP521 && !alg.is_rsa_aes() && wrapping == WrappingKeySpec::Rsa2048 {
        return Err(KmsError::validation(format!(
            "WrappingAlgorithm {} with WrappingKeySpec RSA_2048 cannot wrap ECC_NIST_P521 key material",
            alg.as_str()
        )));
    }
    Ok(())
}

pub(super) async fn get_parameters(mut call: Call<'_>) -> Result<Value> {
    let i: ParametersInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let alg = i
        .wrapping_algorithm
        .one_of("WrappingAlgorithm", &ALGORITHMS)?
        .ok_or_else(|| not_null("wrappingAlgorithm"))?;
    let spec = i
        .wrapping_key_spec
        .one_of("WrappingKeySpec", &WRAPPING_SPECS)?
        .ok_or_else(|| not_null("wrappingKeySpec"))?;
    let key = call.key_for(key_ref, "kms:GetParametersForImport", HashMap::new())?;
    importable(call.app, &key)?;
    let alg = WrappingAlgorithm::parse(alg).ok_or_else(|| {
        KmsError::Unsupported(match alg {
            // API reference: "As of October 10, 2023, AWS KMS does not support the
            // RSAES_PKCS1_V1_5 wrapping algorithm."
            "RSAES_PKCS1_V1_5" => "The RSAES_PKCS1_V1_5 wrapping algorithm is no longer supported: use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.".into(),
            other => format!("WrappingAlgorithm {other} is supported only in the China Regions"),
        })
    })?;
    let wrapping = WrappingKeySpec::parse(spec).ok_or_else(|| {
        KmsError::Unsupported(format!(
            "WrappingKeySpec {spec} is supported only in the China Regions"
        ))
    })?;
    check_combination(key.attrs.key_spec, alg, wrapping)?;
    let size = match wrapping {
        WrappingKeySpec::Rsa2048 => KeySize::Rsa2048,
        WrappingKeySpec::Rsa3072 => KeySize::Rsa3072,
        WrappingKeySpec::Rsa4096 => KeySize::Rsa4096,
    };
    let failed = || KmsError::Internal("cannot generate the wrapping key".into());
    // RSA key generation takes a while (seconds for 4096 bits): off the request threads.
    let (public_key, private_key) = tokio::task::spawn_blocking(move || {
        let pair = PrivateDecryptingKey::generate(size).map_err(|_| failed())?;
        let public = pair.public_key().as_der().map_err(|_| failed())?;
        let private = pair.as_der().map_err(|_| failed())?;
        Ok::<_, KmsError>((
            public.as_ref().to_vec(),
            Zeroizing::new(private.as_ref().to_vec()),
        ))
    })
    .await
    .map_err(|_| failed())??;
    let valid_to_ms = now_ms() + PARAMETERS_VALID_MS;
    let token = ImportToken {
        key_id: key.key_id.clone(),
        algorithm: alg,
        spec: wrapping,
        valid_to_ms,
        private_key,
    }
    .seal(&call.app.root)?;
    Ok(json!({
        "KeyId": call.app.key_arn(&key.key_id),
        "ImportToken": b64(&token),
        "PublicKey": b64(&public_key),
        "ParametersValidTo": secs(valid_to_ms),
    }))
}

/// Unwraps `wrapped` with the token's private key and algorithm: InvalidCiphertextException if it
/// does not unwrap.
fn unwrap(token: &ImportToken, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = || KmsError::InvalidCiphertext(String::new());
    let private = PrivateDecryptingKey::from_pkcs8(&token.private_key)
        .ok()
        .filter(|k| k.key_size_bits() == token.spec.bits())
        .ok_or_else(|| KmsError::InvalidImportToken("The import token is not valid.".into()))?;
    let oaep = OaepPrivateDecryptingKey::new(private).map_err(|_| bad())?;
    let alg = match token.algorithm {
        WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
            &OAEP_SHA1_MGF1SHA1
        }
        WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            &OAEP_SHA256_MGF1SHA256
        }
    };
    let n = oaep.key_size_bytes();
    let (rsa_part, aes_part) = if token.algorithm.is_rsa_aes() {
        if wrapped.len() <= n {
            return Err(bad());
        }
        wrapped.split_at(n)
    } else {
        (wrapped, &[][..])
    };
    let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
    let len = oaep
        .decrypt(alg, rsa_part, &mut out, None)
        .map_err(|_| bad())?
        .len();
    out.truncate(len);
    if !token.algorithm.is_rsa_aes() {
        return Ok(out);
    }
    // The developer guide's RSA_AES_KEY_WRAP procedure: a 256-bit AES key.
    if out.len() != 32 {
        return Err(bad());
    }
    let kek = AesKek::new(&AES_256, &out).map_err(|_| bad())?;
    let mut material = Zeroizing::new(vec![0u8; aes_part.len()]);
    let len = kek
        .unwrap_with_padding(aes_part, &mut material)
        .map_err(|_| bad())?
        .len();
    material.truncate(len);
    Ok(material)
}

/// The lengths of HMAC key material AWS accepts for import, in bytes: from the digest length
/// to the hash's block size (developer guide, "Requirements for imported key material").
fn hmac_lengths(spec: KeySpec) -> Option<std::ops::RangeInclusive<usize>> {
    match spec {
        KeySpec::Hmac224 => Some(28..=64),
        KeySpec::Hmac256 => Some(32..=64),
        KeySpec::Hmac384 => Some(48..=128),
        KeySpec::Hmac512 => Some(64..=128),
        _ => None,
    }
}

/// The material as the key keeps it, if it fits the key spec: 32 bytes for SYMMETRIC_DEFAULT,
/// an HMAC key of an accepted length, or a PKCS #8 private key of the spec's algorithm and size
/// (re-encoded as the KMS encodes generated ones). IncorrectKeyMaterialException otherwise.
fn fitted(spec: KeySpec, material: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>> {
    let wrong = |why: String| {
        KmsError::IncorrectKeyMaterial(format!(
            "The key material is not valid for a {} key: {why}.",
            spec.as_str()
        ))
    };
    if spec == KeySpec::SymmetricDefault {
        return if material.len() == 32 {
            Ok(material)
        } else {
            Err(wrong(format!(
                "it must be 32 bytes, not {}",
                material.len()
            )))
        };
    }
    if let Some(range) = hmac_lengths(spec) {
        return if range.contains(&material.len()) {
            Ok(material)
        } else {
            Err(wrong(format!(
                "it must be {} to {} bytes, not {}",
                range.start(),
                range.end(),
                material.len()
            )))
        };
    }
    if let Some(alg) = keymaterial::ecdsa_signing(spec) {
        let pair = EcdsaKeyPair::from_pkcs8(alg, &material)
            .map_err(|_| wrong("it is not a PKCS #8 private key on the spec's curve".into()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| wrong("it cannot be re-encoded".into()))?;
        return Ok(Zeroizing::new(der.as_ref().to_vec()));
    }
    let bits = match spec {
        KeySpec::Rsa2048 => 2048,
        KeySpec::Rsa3072 => 3072,
        KeySpec::Rsa4096 => 4096,
        _ => return Err(wrong("this KMS cannot import it".into())),
    };
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&material)
        .map_err(|_| wrong("it is not a PKCS #8 RSA private key".into()))?;
    if pair.public_modulus_len() * 8 != bits {
        return Err(wrong(format!("it is not a {bits}-bit RSA key")));
    }
    let der = pair
        .as_der()
        .map_err(|_| wrong("it cannot be re-encoded".into()))?;
    Ok(Zeroizing::new(der.as_ref().to_vec()))
}

/// The fingerprint key: HMAC-SHA256 (under the row key, itself HKDF of the root key) of a fixed
/// label; never stored.
fn fingerprint_key(app: &App) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &app.root.rows().sign(FINGERPRINT_LABEL))
}

fn fingerprint_message(key_id: &str, material: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut m = Zeroizing::new(Vec::with_capacity(key_id.len() + 1 + material.len()));
    m.extend_from_slice(key_id.as_bytes());
    m.push(0);
    m.extend_from_slice(material);
    m
}

/// The keyed fingerprint of `material` imported into `key_id`, hex.
fn fingerprint(app: &App, key_id: &str, material: &[u8]) -> String {
    let tag = hmac::sign(
        &fingerprint_key(app),
        &fingerprint_message(key_id, material),
    );
    hex::encode(tag.as_ref())
}

/// Whether `material` is the material whose fingerprint is `stored` (constant time).
fn same_material(app: &App, key_id: &str, material: &[u8], stored: &str) -> bool {
    let Ok(tag) = hex::decode(stored) else {
        return false;
    };
    hmac::verify(
        &fingerprint_key(app),
        &fingerprint_message(key_id, material),
        &tag,
    )
    .is_ok()
}

/// ImportKeyMaterial's expiry: `Some(ms)` for KEY_MATERIAL_EXPIRES (ValidTo required, in the
/// future, at most 365 days ahead), `None` for KEY_MATERIAL_DOES_NOT_EXPIRE (ValidTo refused).
fn expiry(i: &ImportInput, now: i64) -> Result<Option<i64>> {
    let model = i
        .expiration_model
        .one_of("ExpirationModel", &EXPIRATION_MODELS)?;
    let valid_to = match &i.valid_to {
        Member::Absent => None,
        Member::Mistyped => {
            return Err(KmsError::Serialization(
                "ValidTo must be a timestamp".into(),
            ));
        }
        Member::Given(s) => Some(*s),
    };
    match (model, valid_to) {
        (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => Ok(None),
        (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => Err(KmsError::validation(
            "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        (_, None) => Err(KmsError::validation(
            "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES (the default)",
        )),
        (_, Some(secs)) => {
            let ms = (secs * 1000.0).round();
            if !ms.is_finite() || ms <= now as f64 {
                return Err(KmsError::validation(
                    "ValidTo must be a date and time in the future",
                ));
            }
            if ms > (now + MAX_VALID_TO_MS) as f64 {
                return Err(KmsError::validation(
                    "ValidTo must be at most 365 days from the request date",
                ));
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "ms is finite and within the next 365 days"
            )]
            let ms = ms as i64;
            Ok(Some(ms))
        }
    }
}

pub(super) async fn import_key_material(mut call: Call<'_>) -> Result<Value> {
    let i: ImportInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let sealed = i.import_token.req_blob("ImportToken", 1, 6144)?;
    let wrapped = i
        .encrypted_key_material
        .req_blob("EncryptedKeyMaterial", 1, 6144)?;
    let import_type = i.import_type.one_of("ImportType", &IMPORT_TYPES)?;
    if let Some(d) = i.key_material_description.text("KeyMaterialDescription")?
        && (d.chars().count() > 256
            || !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || ":/_.-".contains(c)))
    {
        return Err(KmsError::validation(format!(
            "Value '{d}' at 'keyMaterialDescription' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_\\s.-]+$"
        )));
    }
    let named_id = material_id_member(&i.key_material_id)?;
    let now = now_ms();
    let valid_to = expiry(&i, now)?;
    let _guard = call.app.mutate().await?;
    let mut key = call.key_for(key_ref, "kms:ImportKeyMaterial", HashMap::new())?;
    importable(call.app, &key)?;
    let token = ImportToken::open(&call.app.root, &key.key_id, &sealed, now)?;
    let material = fitted(key.attrs.key_spec, unwrap(&token, &wrapped)?)?;
    let had_material = call
        .app
        .state()
        .material
        .contains_key(&(key.key_id.clone(), 1));
    // The fingerprint binds the key's public id, which a Multi-Region key's primary and
    // replicas share: every member must hold the same material (AWS: ImportKeyMaterial, "import
    // the same key material into the primary key and each replica"), so material imported
    // into any member is what every other member must receive.
    let public_id = call.app.public_id(&key.key_id).to_owned();
    let known = key.attrs.import_fingerprint.clone().or_else(|| {
        key.attrs.multi_region.as_ref()?;
        call.app
            .state()
            .keys
            .values()
            .filter(|k| call.app.public_id(&k.key_id) == public_id)
            .find_map(|k| k.attrs.import_fingerprint.clone())
    });
    match &known {
        Some(stored) if !same_material(call.app, &public_id, &material, stored) => {
            return Err(KmsError::IncorrectKeyMaterial(
                "The key material is not the key material previously imported into this KMS key."
                    .into(),
            ));
        }
        Some(stored) => Arc::make_mut(&mut key.attrs).import_fingerprint = Some(stored.clone()),
        None => {
            Arc::make_mut(&mut key.attrs).import_fingerprint =
                Some(fingerprint(call.app, &public_id, &material));
        }
    }
    if import_type == Some("EXISTING_KEY_MATERIAL") && key.attrs.materials.is_empty() {
        return Err(KmsError::validation(
            "ImportType EXISTING_KEY_MATERIAL needs key material imported before",
        ));
    }
    if key.attrs.materials.is_empty() {
        Arc::make_mut(&mut key.attrs).materials.push(MaterialInfo {
            version: 1,
            material_id: material_id()?,
            created_ms: now,
            rotation_type: String::new(),
        });
    }
    let current_id = key
        .attrs
        .materials
        .last()
        .map(|m| m.material_id.clone())
        .unwrap_or_default();
    if named_id.is_some_and(|id| id != current_id) {
        return Err(KmsError::IncorrectKeyMaterial(
            "KeyMaterialId does not identify the key material of this KMS key.".into(),
        ));
    }
    Arc::make_mut(&mut key.attrs).valid_to_ms = valid_to;
    key.current_version = 1;
    if key.state == KeyState::PendingImport {
        key.state = KeyState::Enabled;
    }
    call.audit.key_version = Some(1);
    let arn = call.app.key_arn(&key.key_id);
    let new_material = (!had_material).then_some((1, material));
    persist_key(call.app, key, new_material).await?;
    Ok(json!({"KeyId": arn, "KeyMaterialId": current_id}))
}

/// Deletes a key's imported material from the store and memory; the key becomes PendingImport.
pub(super) async fn drop_material(app: &App, mut key: KeyRecord) -> Result<()> {
    key.state = KeyState::PendingImport;
    key.current_version = 0;
    Arc::make_mut(&mut key.attrs).valid_to_ms = None;
    app.writer.put_key_without_material(key.clone()).await?;
    app.apply(|s| {
        s.material.retain(|(id, _), _| *id != key.key_id);
        s.keys.insert(key.key_id.clone(), key);
    });
    Ok(())
}

pub(super) async fn delete_imported(mut call: Call<'_>) -> Result<Value> {
    let i: DeleteInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let named_id = material_id_member(&i.key_material_id)?;
    let _guard = call.app.mutate().await?;
    let key = call.key_for(key_ref, "kms:DeleteImportedKeyMaterial", HashMap::new())?;
    importable(call.app, &key)?;
    let current_id = key
        .attrs
        .materials
        .last()
        .map(|m| m.material_id.clone())
        .unwrap_or_default();
    if let Some(id) = named_id
        && id != current_id
    {
        return Err(KmsError::NotFound(format!(
            "Key material '{id}' of {} does not exist",
            call.app.key_arn(&key.key_id)
        )));
    }
    let arn = call.app.key_arn(&key.key_id);
    drop_material(call.app, key).await?;
    Ok(json!({"KeyId": arn, "KeyMaterialId": current_id}))
}

/// Whether imported material of `key` has expired at `now`.
pub(super) fn expired(key: &KeyRecord, now: i64) -> bool {
    key.attrs.origin == Origin::External
        && key.current_version > 0
        && key.attrs.valid_to_ms.is_some_and(|t| now >= t)
}

/// Refuses cryptographic use of a key whose imported material has expired, before housekeeping
/// deletes it (KMSInvalidStateException).
pub(crate) fn refuse_expired(app: &App, key: &KeyRecord) -> Result<()> {
    if expired(key, now_ms()) {
        return Err(KmsError::InvalidState(format!(
            "{} key material has expired.",
            app.key_arn(&key.key_id)
        )));
    }
    Ok(())
}

/// Housekeeping at `now`: deletes imported material whose `ValidTo` has passed (its key becomes
/// PendingImport; keys pending deletion are left to their deletion). Returns how many.
pub(super) async fn expire(app: &App, now: i64) -> Result<usize> {
    let due: Vec<KeyRecord> = app
        .state()
        .keys
        .values()
        .filter(|k| k.state != KeyState::PendingDeletion && expired(k, now))
        .cloned()
        .collect();
    let _guard = app.mutate().await?;
    let mut n = 0;
    for k in &due {
        // Read again under the lock: the key may have changed since.
        let Ok(key) = app.key(&k.key_id) else {
            continue;
        };
        if key.state != KeyState::PendingDeletion && expired(&key, now) {
            drop_material(app, key).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// DescribeKey's members for imported material (API reference, `KeyMetadata`): ExpirationModel
/// while a key of Origin EXTERNAL has material, and ValidTo when it expires.
pub(super) fn metadata(m: &mut Value, key: &KeyRecord) {
    if key.attrs.origin != Origin::External || key.current_version == 0 {
        return;
    }
    match key.attrs.valid_to_ms {
        Some(t) => {
            m["ExpirationModel"] = json!("KEY_MATERIAL_EXPIRES");
            m["ValidTo"] = json!(secs(t));
        }
        None => m["ExpirationModel"] = json!("KEY_MATERIAL_DOES_NOT_EXPIRE"),
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
    use aws_lc_rs::rsa::{
        OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::input::b64;
    use crate::ops::lifecycle::housekeeping;
    use crate::ops::testkit::Kms;

    async fn external_key(kms: &Kms, input: Value) -> String {
        let mut input = input;
        input["Origin"] = json!("EXTERNAL");
        let k = kms.ok("CreateKey", input).await;
        assert_eq!(k["KeyMetadata"]["KeyState"], "PendingImport");
        k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    /// Wraps `material` as a user does with the public key of GetParametersForImport (developer
    /// guide, "Encrypt the key material"): RSA-OAEP, or for RSA_AES_KEY_WRAP_* a fresh AES-256
    /// key, RSA-OAEP-wrapped, followed by the RFC 5649 wrap of the material under it.
    fn wrap(alg: &str, spki: &[u8], material: &[u8]) -> Vec<u8> {
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
        let oaep = if alg.ends_with("SHA_1") {
            &OAEP_SHA1_MGF1SHA1
        } else {
            &OAEP_SHA256_MGF1SHA256
        };
        let rsa = |plain: &[u8]| {
            let mut out = vec![0u8; public.ciphertext_size()];
            public
                .encrypt(oaep, plain, &mut out, None)
                .unwrap()
                .to_vec()
        };
        if alg.starts_with("RSAES_OAEP") {
            return rsa(material);
        }
        let aes = [0x42u8; 32];
        let mut out = rsa(&aes);
        let mut wrapped = vec![0u8; material.len() + 16];
        let w = AesKek::new(&AES_256, &aes)
            .unwrap()
            .wrap_with_padding(material, &mut wrapped)
            .unwrap();
        out.extend_from_slice(w);
        out
    }

    /// GetParametersForImport, wrap, ImportKeyMaterial: the answer (status, body).
    async fn import(
        kms: &Kms,
        id: &str,
        alg: &str,
        spec: &str,
        material: &[u8],
        extra: Value,
    ) -> (u16, Value) {
        import_in(kms, HOME, id, alg, spec, material, extra).await
    }

    /// The home region of the test KMS.
    const HOME: &str = "us-east-1";

    /// [`import`] in `region`.
    async fn import_in(
        kms: &Kms,
        region: &str,
        id: &str,
        alg: &str,
        spec: &str,
        material: &[u8],
        extra: Value,
    ) -> (u16, Value) {
        let p = kms
            .ok_in(
                region,
                "GetParametersForImport",
                json!({"KeyId": id, "WrappingAlgorithm": alg, "WrappingKeySpec": spec}),
            )
            .await;
        let wrapped = wrap(alg, &Kms::blob(&p["PublicKey"]), material);
        let mut input = json!({
            "KeyId": id, "ImportToken": p["ImportToken"], "EncryptedKeyMaterial": b64(&wrapped),
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                input.as_object_mut().unwrap().remove(k);
            } else {
                input[k] = v.clone();
            }
        }
        kms.call_in(region, "ImportKeyMaterial", input).await
    }

    // AWS API reference, ImportKeyMaterial, and the developer guide's "Importing key material
    // into multi-Region keys": the primary and every replica must receive the same material,
    // whichever is imported first, even a replica made before the primary had any.
    #[tokio::test]
    async fn every_member_of_a_multi_region_key_takes_the_same_material_only() {
        let kms = Kms::new();
        let id = external_key(&kms, json!({"MultiRegion": true})).await;
        kms.ok(
            "ReplicateKey",
            json!({"KeyId": id, "ReplicaRegion": "us-west-2"}),
        )
        .await;
        let (alg, spec) = ("RSAES_OAEP_SHA_256", "RSA_2048");
        let (status, body) = import_in(&kms, HOME, &id, alg, spec, &[1; 32], json!({})).await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = import_in(&kms, "us-west-2", &id, alg, spec, &[2; 32], json!({})).await;
        assert_eq!(body["__type"], "IncorrectKeyMaterialException", "{body}");
        let (status, body) =
            import_in(&kms, "us-west-2", &id, alg, spec, &[1; 32], json!({})).await;
        assert_eq!(status, 200, "{body}");
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"both")}))
            .await;
        let out = kms
            .ok_in(
                "us-west-2",
                "Decrypt",
                json!({"CiphertextBlob": ct["CiphertextBlob"]}),
            )
            .await;
        assert_eq!(out["Plaintext"], b64(b"both"));
        // The replica keeps the family's fingerprint: after losing its material it takes back
        // the same material only.
        kms.ok_in(
            "us-west-2",
            "DeleteImportedKeyMaterial",
            json!({"KeyId": id}),
        )
        .await;
        let (_, body) = import_in(&kms, "us-west-2", &id, alg, spec, &[3; 32], json!({})).await;
        assert_eq!(body["__type"], "IncorrectKeyMaterialException", "{body}");
        let (status, body) =
            import_in(&kms, "us-west-2", &id, alg, spec, &[1; 32], json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    // AWS API reference, GetParametersForImport: the public key is an RSA SubjectPublicKeyInfo
    // of the requested size, valid (with its token) for 24 hours; ImportKeyMaterial enables the
    // key; DeleteImportedKeyMaterial makes it PendingImport; only the same material may be
    // imported again, and then the key's old ciphertexts decrypt again.
    #[tokio::test]
    async fn symmetric_material_imports_deletes_and_reimports_only_the_same() {
        let kms = Kms::new();
        let id = external_key(&kms, json!({})).await;
        let p = kms
            .ok(
                "GetParametersForImport",
                json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
            )
            .await;
        assert_eq!(p["KeyId"], kms.key_arn(&id));
        let spki = Kms::blob(&p["PublicKey"]);
        assert_eq!(
            PublicEncryptingKey::from_der(&spki)
                .unwrap()
                .key_size_bits(),
            2048
        );
        let valid = p["ParametersValidTo"].as_f64().unwrap() * 1000.0;
        let expect = (now_ms() + DAY_MS) as f64;
        assert!((valid - expect).abs() < 60_000.0, "{valid} {expect}");

        let material = [7u8; 32];
        let (status, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            &material,
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["KeyId"], kms.key_arn(&id));
        let material_id = body["KeyMaterialId"].as_str().unwrap().to_owned();
        assert_eq!(material_id.len(), 64);
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");
        assert_eq!(
            d["KeyMetadata"]["ExpirationModel"],
            "KEY_MATERIAL_DOES_NOT_EXPIRE"
        );
        assert_eq!(
            d["KeyMetadata"]["CurrentKeyMaterialId"],
            material_id.as_str()
        );
        let ct = kms
            .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"byok")}))
            .await;
        // The material is what was wrapped, and its fingerprint is keyed, not a plain hash.
        let attrs = kms.app.state().keys[&id].attrs.clone();
        let fp = attrs.import_fingerprint.clone().unwrap();
        assert_ne!(
            fp,
            hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                &material
            ))
        );
        assert_eq!(
            kms.app.key_material(&id, 1).unwrap().as_slice(),
            material.as_slice()
        );

        let del = kms
            .ok("DeleteImportedKeyMaterial", json!({"KeyId": id}))
            .await;
        assert_eq!(del["KeyMaterialId"], material_id.as_str());
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "PendingImport");
        assert!(d["KeyMetadata"].get("ExpirationModel").is_none());
        assert!(kms.app.key_material(&id, 1).is_err(), "gone from memory");
        let (_, body) = kms
            .call("Decrypt", json!({"CiphertextBlob": ct["CiphertextBlob"]}))
            .await;
        assert_eq!(body["__type"], "KMSInvalidStateException");

        // Different material: IncorrectKeyMaterialException (API reference, ImportKeyMaterial).
        let (status, body) = import(
            &kms,
            &id,
            "RSA_AES_KEY_WRAP_SHA_1",
            "RSA_2048",
            &[8u8; 32],
            json!({}),
        )
        .await;
        assert_eq!(
            (status, body["__type"].as_str().unwrap()),
            (400, "IncorrectKeyMaterialException")
        );
        // The same material, another wrapping: the old ciphertext decrypts again.
        let (status, body) = import(
            &kms,
            &id,
            "RSA_AES_KEY_WRAP_SHA_256",
            "RSA_3072",
            &material,
            json!({"ImportType": "EXISTING_KEY_MATERIAL", "KeyMaterialId": material_id}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["KeyMaterialId"], material_id.as_str());
        let p = kms
            .ok("Decrypt", json!({"CiphertextBlob": ct["CiphertextBlob"]}))
            .await;
        assert_eq!(p["Plaintext"], b64(b"byok"));
        // Re-import while the material is there changes only its expiry.
        let valid_to = (now_ms() + 10 * DAY_MS) / 1000;
        let (status, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_1",
            "RSA_2048",
            &material,
            json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": valid_to}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
        assert_eq!(d["KeyMetadata"]["ValidTo"], json!(valid_to as f64));
    }

    // AWS API reference, ImportKeyMaterial: InvalidImportTokenException for a token of another
    // key or one that is not the KMS's, ExpiredImportTokenException after 24 hours,
    // InvalidCiphertextException when the material does not unwrap.
    #[tokio::test]
    async fn import_tokens_are_bound_to_their_key_and_expire() {
        let kms = Kms::new();
        let a = external_key(&kms, json!({})).await;
        let b = external_key(&kms, json!({})).await;
        let p = kms
            .ok(
                "GetParametersForImport",
                json!({"KeyId": a, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
            )
            .await;
        let wrapped = b64(&wrap(
            "RSAES_OAEP_SHA_256",
            &Kms::blob(&p["PublicKey"]),
            &[1; 32],
        ));
        let input = |key: &str, token: &Value, wrapped: &str| {
            json!({"KeyId": key, "ImportToken": token, "EncryptedKeyMaterial": wrapped,
                   "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
        };
        let (_, body) = kms
            .call("ImportKeyMaterial", input(&b, &p["ImportToken"], &wrapped))
            .await;
        assert_eq!(body["__type"], "InvalidImportTokenException");
        let mut forged = Kms::blob(&p["ImportToken"]);
        forged[20] ^= 1;
        let (_, body) = kms
            .call(
                "ImportKeyMaterial",
                input(&a, &json!(b64(&forged)), &wrapped),
            )
            .await;
        assert_eq!(body["__type"], "InvalidImportTokenException");
        // A token whose 24 hours are over (sealed as the KMS seals them, expiry in the past).
        let token = ImportToken::open(&kms.app.root, &a, &Kms::blob(&p["ImportToken"]), 0).unwrap();
        let stale = ImportToken {
            valid_to_ms: now_ms() - 1,
            ..token
        }
        .seal(&kms.app.root)
        .unwrap();
        let (_, body) = kms
            .call(
                "ImportKeyMaterial",
                input(&a, &json!(b64(&stale)), &wrapped),
            )
            .await;
        assert_eq!(body["__type"], "ExpiredImportTokenException");
        let mut bad = Kms::blob(&json!(wrapped));
        bad[0] ^= 1;
        let (_, body) = kms
            .call(
                "ImportKeyMaterial",
                input(&a, &p["ImportToken"], &b64(&bad)),
            )
            .await;
        assert_eq!(body["__type"], "InvalidCiphertextException");
        let (status, body) = kms
            .call("ImportKeyMaterial", input(&a, &p["ImportToken"], &wrapped))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            kms.ok("DescribeKey", json!({"KeyId": b})).await["KeyMetadata"]["KeyState"],
            "PendingImport"
        );
    }

    // AWS API reference, GetParametersForImport / ImportKeyMaterial / DeleteImportedKeyMaterial:
    // UnsupportedOperationException for a key whose Origin is not EXTERNAL and for the deprecated
    // RSAES_PKCS1_V1_5; ValidationException for the ExpirationModel / ValidTo rules (ValidTo
    // required by the default KEY_MATERIAL_EXPIRES, in the future, at most 365 days ahead);
    // IncorrectKeyMaterialException for material that is not valid for the key spec.
    #[tokio::test]
    async fn import_refuses_what_aws_refuses() {
        let kms = Kms::new();
        let own = kms.new_key().await;
        let id = external_key(&kms, json!({})).await;
        let params = |key: &str, alg: &str| json!({"KeyId": key, "WrappingAlgorithm": alg, "WrappingKeySpec": "RSA_2048"});
        for (input, name) in [
            (
                params(&own, "RSAES_OAEP_SHA_256"),
                "UnsupportedOperationException",
            ),
            (
                params(&id, "RSAES_PKCS1_V1_5"),
                "UnsupportedOperationException",
            ),
            (params(&id, "RSAES_OAEP_SHA_512"), "ValidationException"),
            (
                json!({"KeyId": id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256"}),
                "ValidationException",
            ),
            (
                params("alias/none", "RSAES_OAEP_SHA_256"),
                "NotFoundException",
            ),
        ] {
            let (status, body) = kms.call("GetParametersForImport", input.clone()).await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, name),
                "{input}"
            );
        }
        let (_, body) = kms
            .call("DeleteImportedKeyMaterial", json!({"KeyId": own}))
            .await;
        assert_eq!(body["__type"], "UnsupportedOperationException");
        let now = now_ms() / 1000;
        for (extra, name) in [
            (json!({"ExpirationModel": null}), "ValidationException"),
            (
                json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
                "ValidationException",
            ),
            (
                json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now - 10}),
                "ValidationException",
            ),
            (
                json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now + 366 * 86_400}),
                "ValidationException",
            ),
            (json!({"ValidTo": now + 86_400}), "ValidationException"),
        ] {
            let (_, body) = import(
                &kms,
                &id,
                "RSAES_OAEP_SHA_256",
                "RSA_2048",
                &[1; 32],
                extra.clone(),
            )
            .await;
            assert_eq!(body["__type"], name, "{extra}");
        }
        let (_, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            &[1; 31],
            json!({}),
        )
        .await;
        assert_eq!(body["__type"], "IncorrectKeyMaterialException");
        // An RSA key's material must come with an RSA_AES wrapping algorithm.
        let rsa = external_key(
            &kms,
            json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
        )
        .await;
        let (_, body) = kms
            .call("GetParametersForImport", params(&rsa, "RSAES_OAEP_SHA_256"))
            .await;
        assert_eq!(body["__type"], "ValidationException");
        // Pending deletion: KMSInvalidStateException.
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        let (_, body) = kms
            .call("GetParametersForImport", params(&id, "RSAES_OAEP_SHA_256"))
            .await;
        assert_eq!(body["__type"], "KMSInvalidStateException");
    }

    // Developer guide, "Importing key material": HMAC keys take material of the digest length up
    // to the block size; the imported key computes the standard HMAC of that material.
    #[tokio::test]
    async fn imported_hmac_material_computes_the_standard_hmac() {
        let kms = Kms::new();
        let id = external_key(
            &kms,
            json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .await;
        let (_, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            &[3; 65],
            json!({}),
        )
        .await;
        assert_eq!(body["__type"], "IncorrectKeyMaterialException");
        let material = [3u8; 64];
        let (status, body) = import(
            &kms,
            &id,
            "RSA_AES_KEY_WRAP_SHA_256",
            "RSA_2048",
            &material,
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let m = kms
            .ok(
                "GenerateMac",
                json!({"KeyId": id, "Message": b64(b"hello"), "MacAlgorithm": "HMAC_SHA_256"}),
            )
            .await;
        let expect = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &material), b"hello");
        assert_eq!(Kms::blob(&m["Mac"]), expect.as_ref());
    }

    // Developer guide, "Importing key material" (asymmetric keys): a PKCS #8 private key of the
    // key spec's curve, wrapped with RSA_AES_KEY_WRAP; another curve is refused.
    #[tokio::test]
    async fn ecc_private_keys_import_on_their_curve_only() {
        let kms = Kms::new();
        let id = external_key(
            &kms,
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
        )
        .await;
        let p384 = keymaterial::generate(KeySpec::EccNistP384).unwrap();
        let (_, body) = import(
            &kms,
            &id,
            "RSA_AES_KEY_WRAP_SHA_256",
            "RSA_2048",
            &p384,
            json!({}),
        )
        .await;
        assert_eq!(body["__type"], "IncorrectKeyMaterialException");
        let p256 = keymaterial::generate(KeySpec::EccNistP256).unwrap();
        let (status, body) = import(
            &kms,
            &id,
            "RSA_AES_KEY_WRAP_SHA_256",
            "RSA_2048",
            &p256,
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let stored = kms.app.key_material(&id, 1).unwrap();
        assert_eq!(
            keymaterial::public_key_der(KeySpec::EccNistP256, &stored).unwrap(),
            keymaterial::public_key_der(KeySpec::EccNistP256, &p256).unwrap()
        );
    }

    // AWS API reference, ImportKeyMaterial `ValidTo`: "When the key material expires, AWS KMS
    // deletes the key material from the KMS key"; the key is then PendingImport.
    #[tokio::test]
    async fn cancelling_deletion_leaves_a_key_without_material_pending_import() {
        // AWS API reference, CancelKeyDeletion: the key returns to Disabled, or to PendingImport
        // when it has no imported key material.
        let kms = Kms::new();
        let id = external_key(&kms, json!({})).await;
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        kms.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "PendingImport");
        let (status, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            &[4; 32],
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        kms.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
    }

    #[tokio::test]
    async fn expired_material_is_deleted_by_housekeeping() {
        let kms = Kms::new();
        let id = external_key(&kms, json!({})).await;
        let valid_to = (now_ms() + DAY_MS) / 1000;
        let (status, body) = import(
            &kms,
            &id,
            "RSAES_OAEP_SHA_256",
            "RSA_2048",
            &[9; 32],
            json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": valid_to}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(housekeeping(&kms.app, now_ms()).await.unwrap(), (0, 0));
        assert!(kms.app.key_material(&id, 1).is_ok());
        housekeeping(&kms.app, now_ms() + 2 * DAY_MS).await.unwrap();
        assert!(kms.app.key_material(&id, 1).is_err());
        let d = kms.ok("DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(d["KeyMetadata"]["KeyState"], "PendingImport");
        // And from the store: a KMS over the same data directory has no material for it.
        let store = crate::store::Store::open_read_only(kms.dir()).unwrap();
        let state = store.load(&kms.app.root).unwrap();
        assert!(!state.material.keys().any(|(k, _)| *k == id));
        assert_eq!(state.keys[&id].state, KeyState::PendingImport);
    }
}
