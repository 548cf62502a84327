//! The operations of the AWS KMS JSON 1.1 protocol that cloister-kms implements.
//!
//! Each takes the caller, its JSON input and the request's audit entry (to fill in key and
//! context), checks in AWS's order (input, key exists, key policy, key state), and returns the
//! JSON output. Changes are persisted durably before they are applied in memory and answered.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::app::{App, now_ms};
use crate::attested::{self, Recipient};
use crate::audit::AuditEntry;
use crate::blob::{self, EncryptionContext};
use crate::error::{KmsError, Result};
use crate::input::{Input, b64};
use crate::policy::KeyPolicy;
use crate::state::{Alias, KeyRecord, KeyState, Principal, material_label};
use crate::store;

const DAY_MS: i64 = 86_400_000;
const MAX_KEY_ID: usize = 2048;

/// One request being served.
#[derive(Debug)]
pub struct Call<'a> {
    /// The application.
    pub app: &'a App,
    /// The authenticated caller.
    pub principal: &'a Principal,
    /// The input.
    pub input: Input,
    /// The audit entry for this request.
    pub audit: &'a mut AuditEntry,
}

/// Whether an operation is cryptographic (rate limited).
pub fn is_cryptographic(op: &str) -> bool {
    matches!(
        op,
        "Encrypt"
            | "Decrypt"
            | "ReEncrypt"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateRandom"
    )
}

/// Runs operation `op`.
pub async fn dispatch(op: &str, call: Call<'_>) -> Result<Value> {
    match op {
        "CreateKey" => create_key(call).await,
        "DescribeKey" => describe_key(call),
        "ListKeys" => list_keys(call),
        "CreateAlias" => create_alias(call).await,
        "UpdateAlias" => update_alias(call).await,
        "DeleteAlias" => delete_alias(call).await,
        "ListAliases" => list_aliases(call),
        "EnableKey" => set_state(call, "kms:EnableKey", KeyState::Enabled).await,
        "DisableKey" => set_state(call, "kms:DisableKey", KeyState::Disabled).await,
        "ScheduleKeyDeletion" => schedule_deletion(call).await,
        "CancelKeyDeletion" => cancel_deletion(call).await,
        "EnableKeyRotation" => set_rotation(call, true).await,
        "DisableKeyRotation" => set_rotation(call, false).await,
        "GetKeyRotationStatus" => rotation_status(call),
        "RotateKeyOnDemand" => rotate_on_demand(call).await,
        "PutKeyPolicy" => put_policy(call).await,
        "GetKeyPolicy" => get_policy(call),
        "Encrypt" => encrypt(call),
        "Decrypt" => decrypt(call),
        "ReEncrypt" => re_encrypt(call),
        "GenerateDataKey" => generate_data_key(call, true),
        "GenerateDataKeyWithoutPlaintext" => generate_data_key(call, false),
        "GenerateRandom" => generate_random(call),
        other => Err(KmsError::UnknownOperation(format!(
            "Unknown operation TrentService.{other}"
        ))),
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn metadata(app: &App, k: &KeyRecord) -> Value {
    let mut m = json!({
        "AWSAccountId": app.cfg.account,
        "KeyId": k.key_id,
        "Arn": app.key_arn(&k.key_id),
        "CreationDate": secs(k.created_ms),
        "Enabled": k.state == KeyState::Enabled,
        "Description": k.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": k.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let (Some(d), Some(days)) = (k.deletion_ms, k.pending_days) {
        m["DeletionDate"] = json!(secs(d));
        m["PendingDeletionWindowInDays"] = json!(days);
    }
    m
}

fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| KmsError::Internal("no randomness".into()))?;
    Ok(v)
}

fn new_material() -> Result<Zeroizing<[u8; 32]>> {
    let mut m = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(m.as_mut())
        .map_err(|_| KmsError::Internal("no randomness".into()))?;
    Ok(m)
}

/// Condition keys of an encryption context.
fn ec_conditions(ec: &EncryptionContext) -> HashMap<String, Vec<String>> {
    let mut c: HashMap<String, Vec<String>> = ec
        .iter()
        .map(|(k, v)| {
            (
                format!("kms:encryptioncontext:{}", k.to_ascii_lowercase()),
                vec![v.clone()],
            )
        })
        .collect();
    c.insert(
        "kms:encryptioncontextkeys".into(),
        ec.keys().cloned().collect(),
    );
    c
}

impl Call<'_> {
    /// Resolves `KeyId` (or another field), authorizes `action`, and records the key in the audit.
    fn key_for(
        &mut self,
        field: &str,
        action: &str,
        conditions: HashMap<String, Vec<String>>,
    ) -> Result<KeyRecord> {
        let key_ref = self.input.req_str(field, MAX_KEY_ID)?.to_owned();
        let key_id = self.app.resolve(&key_ref)?;
        let key = self.app.key(&key_id)?;
        self.audit.key_id = Some(key.key_id.clone());
        self.app
            .authorize(self.principal, action, &key, conditions)?;
        Ok(key)
    }
}

/// Persists a key row (and a new key material version, sealed under the root key), then applies
/// both to the in-memory state.
async fn persist_key(
    app: &App,
    key: KeyRecord,
    new_material: Option<(u32, Zeroizing<[u8; 32]>)>,
) -> Result<()> {
    let sealed = match &new_material {
        Some((v, m)) => Some((
            *v,
            app.root
                .seal(&material_label(&key.key_id, *v), m.as_ref())?,
        )),
        None => None,
    };
    let row = key.clone();
    app.writer
        .write(move |tx, _| {
            store::put_key(tx, &row)?;
            if let Some((v, sealed)) = sealed {
                tx.execute(
                    "INSERT INTO key_material (key_id, version, sealed, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![row.key_id, v, sealed, now_ms()],
                )
                .map_err(KmsError::store)?;
            }
            Ok(())
        })
        .await?;
    app.apply(|s| {
        if let Some((v, m)) = new_material {
            s.material.insert((key.key_id.clone(), v), m);
        }
        s.keys.insert(key.key_id.clone(), key);
    });
    Ok(())
}

async fn create_key(call: Call<'_>) -> Result<Value> {
    let i = &call.input;
    let description = i.str("Description")?.unwrap_or_default().to_owned();
    if description.chars().count() > 8192 {
        return Err(KmsError::validation(
            "Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192",
        ));
    }
    const USAGES: [&str; 5] = [
        "ENCRYPT_DECRYPT",
        "SIGN_VERIFY",
        "GENERATE_VERIFY_MAC",
        "KEY_AGREEMENT",
        "ENCAPSULATE_DECAPSULATE",
    ];
    if let Some(u) = i.enum_str("KeyUsage", &USAGES)?
        && u != "ENCRYPT_DECRYPT"
    {
        return Err(KmsError::Unsupported(format!(
            "KeyUsage {u} is not supported: only ENCRYPT_DECRYPT (symmetric) keys"
        )));
    }
    for field in ["KeySpec", "CustomerMasterKeySpec"] {
        if let Some(s) = i.str(field)?
            && s != "SYMMETRIC_DEFAULT"
        {
            return Err(KmsError::Unsupported(format!(
                "{field} {s} is not supported: only SYMMETRIC_DEFAULT"
            )));
        }
    }
    if let Some(o) = i.str("Origin")?
        && o != "AWS_KMS"
    {
        return Err(KmsError::Unsupported(format!(
            "Origin {o} is not supported: only AWS_KMS"
        )));
    }
    if i.bool("MultiRegion")? {
        return Err(KmsError::Unsupported(
            "multi-Region keys are not supported".into(),
        ));
    }
    let key_id = uuid::Uuid::new_v4().to_string();
    let (policy_text, policy) = match i.str("Policy")? {
        Some(text) => {
            let p = call.app.checked_policy(
                text,
                call.principal,
                i.bool("BypassPolicyLockoutSafetyCheck")?,
                &key_id,
            )?;
            (text.to_owned(), p)
        }
        None => {
            let text = KeyPolicy::default_text(&call.app.cfg.account);
            let p = KeyPolicy::parse(&text)?;
            (text, p)
        }
    };
    let now = now_ms();
    let key = KeyRecord {
        key_id: key_id.clone(),
        description,
        created_ms: now,
        state: KeyState::Enabled,
        deletion_ms: None,
        pending_days: None,
        rotation_enabled: false,
        rotation_period_days: 365,
        last_rotation_ms: now,
        current_version: 1,
        policy_text,
        policy: Arc::new(policy),
    };
    call.audit.key_id = Some(key_id);
    call.audit.key_version = Some(1);
    persist_key(call.app, key.clone(), Some((1, new_material()?))).await?;
    Ok(json!({ "KeyMetadata": metadata(call.app, &key) }))
}

fn describe_key(mut call: Call<'_>) -> Result<Value> {
    let key = call.key_for("KeyId", "kms:DescribeKey", HashMap::new())?;
    Ok(json!({ "KeyMetadata": metadata(call.app, &key) }))
}

fn page<T: Clone>(items: Vec<(String, T)>, input: &Input) -> Result<(Vec<T>, Option<String>)> {
    let limit = usize::try_from(input.int_in("Limit", 1, 1000)?.unwrap_or(100)).unwrap_or(100);
    let start = match input.str("Marker")? {
        None => 0,
        Some(m) => items
            .iter()
            .position(|(k, _)| k == m)
            .ok_or_else(|| KmsError::InvalidMarker(format!("Marker '{m}' is not valid")))?,
    };
    let rest = &items[start..];
    let next = rest.get(limit).map(|(k, _)| k.clone());
    Ok((
        rest.iter().take(limit).map(|(_, v)| v.clone()).collect(),
        next,
    ))
}

fn paged(list_name: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut out = json!({ list_name: items, "Truncated": next.is_some() });
    if let Some(n) = next {
        out["NextMarker"] = json!(n);
    }
    out
}

fn list_keys(call: Call<'_>) -> Result<Value> {
    let mut ids: Vec<String> = call.app.state().keys.keys().cloned().collect();
    ids.sort();
    let items = ids
        .into_iter()
        .map(|id| {
            (
                id.clone(),
                json!({"KeyId": id, "KeyArn": call.app.key_arn(&id)}),
            )
        })
        .collect();
    let (items, next) = page(items, &call.input)?;
    Ok(paged("Keys", items, next))
}

fn check_alias_name(name: &str) -> Result<()> {
    let valid = name.starts_with("alias/")
        && name.len() > "alias/".len()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-:".contains(&b));
    if !valid {
        return Err(KmsError::validation(format!(
            "Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$"
        )));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} cannot begin with the reserved prefix alias/aws/"
        )));
    }
    Ok(())
}

fn alias_target(call: &mut Call<'_>, action: &str) -> Result<KeyRecord> {
    let target = call.input.req_str("TargetKeyId", MAX_KEY_ID)?;
    if target.starts_with("alias/") || target.contains(":alias/") {
        return Err(KmsError::validation(
            "Value at 'targetKeyId' failed to satisfy constraint: an alias cannot point to another alias",
        ));
    }
    let key = call.key_for("TargetKeyId", action, HashMap::new())?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    Ok(key)
}

async fn create_alias(mut call: Call<'_>) -> Result<Value> {
    let name = call.input.req_str("AliasName", 256)?.to_owned();
    check_alias_name(&name)?;
    let key = alias_target(&mut call, "kms:CreateAlias")?;
    let _guard = call.app.mutate.lock().await;
    if call.app.state().aliases.contains_key(&name) {
        return Err(KmsError::AlreadyExists(format!(
            "An alias with the name {} already exists",
            call.app.alias_arn(&name)
        )));
    }
    let now = now_ms();
    let alias = Alias {
        name: name.clone(),
        key_id: key.key_id,
        created_ms: now,
        updated_ms: now,
    };
    write_alias(call.app, alias).await?;
    Ok(json!({}))
}

async fn write_alias(app: &App, alias: Alias) -> Result<()> {
    let row = alias.clone();
    app.writer
        .write(move |tx, _| {
            tx.execute(
                "INSERT OR REPLACE INTO aliases (name, key_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![row.name, row.key_id, row.created_ms, row.updated_ms],
            )
            .map_err(KmsError::store)?;
            Ok(())
        })
        .await?;
    app.apply(|s| {
        s.aliases.insert(alias.name.clone(), alias);
    });
    Ok(())
}

fn existing_alias(app: &App, name: &str) -> Result<Alias> {
    app.state()
        .aliases
        .get(name)
        .cloned()
        .ok_or_else(|| KmsError::NotFound(format!("Alias {} is not found.", app.alias_arn(name))))
}

async fn update_alias(mut call: Call<'_>) -> Result<Value> {
    let name = call.input.req_str("AliasName", 256)?.to_owned();
    check_alias_name(&name)?;
    let _guard = call.app.mutate.lock().await;
    let mut alias = existing_alias(call.app, &name)?;
    let old = call.app.key(&alias.key_id)?;
    call.app
        .authorize(call.principal, "kms:UpdateAlias", &old, HashMap::new())?;
    let key = alias_target(&mut call, "kms:UpdateAlias")?;
    alias.key_id = key.key_id;
    alias.updated_ms = now_ms();
    write_alias(call.app, alias).await?;
    Ok(json!({}))
}

async fn delete_alias(call: Call<'_>) -> Result<Value> {
    let name = call.input.req_str("AliasName", 256)?.to_owned();
    let _guard = call.app.mutate.lock().await;
    let alias = existing_alias(call.app, &name)?;
    let key = call.app.key(&alias.key_id)?;
    call.audit.key_id = Some(key.key_id.clone());
    call.app
        .authorize(call.principal, "kms:DeleteAlias", &key, HashMap::new())?;
    let n = name.clone();
    call.app
        .writer
        .write(move |tx, _| {
            tx.execute("DELETE FROM aliases WHERE name = ?1", [n])
                .map(|_| ())
                .map_err(KmsError::store)
        })
        .await?;
    call.app.apply(|s| {
        s.aliases.remove(&name);
    });
    Ok(json!({}))
}

fn list_aliases(call: Call<'_>) -> Result<Value> {
    let filter = match call.input.str("KeyId")? {
        Some(k) => Some(call.app.resolve(k)?),
        None => None,
    };
    let items = call
        .app
        .state()
        .aliases
        .values()
        .filter(|a| filter.as_ref().is_none_or(|f| *f == a.key_id))
        .map(|a| {
            (
                a.name.clone(),
                json!({
                    "AliasName": a.name,
                    "AliasArn": call.app.alias_arn(&a.name),
                    "TargetKeyId": a.key_id,
                    "CreationDate": secs(a.created_ms),
                    "LastUpdatedDate": secs(a.updated_ms),
                }),
            )
        })
        .collect();
    let (items, next) = page(items, &call.input)?;
    Ok(paged("Aliases", items, next))
}

async fn set_state(mut call: Call<'_>, action: &str, to: KeyState) -> Result<Value> {
    let _guard = call.app.mutate.lock().await;
    let mut key = call.key_for("KeyId", action, HashMap::new())?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    key.state = to;
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

async fn schedule_deletion(mut call: Call<'_>) -> Result<Value> {
    let days = call
        .input
        .int_in("PendingWindowInDays", 7, 30)?
        .unwrap_or(30);
    let _guard = call.app.mutate.lock().await;
    let mut key = call.key_for("KeyId", "kms:ScheduleKeyDeletion", HashMap::new())?;
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    let when = now_ms() + days * DAY_MS;
    key.state = KeyState::PendingDeletion;
    key.deletion_ms = Some(when);
    key.pending_days = Some(days);
    let arn = call.app.key_arn(&key.key_id);
    persist_key(call.app, key, None).await?;
    Ok(
        json!({"KeyId": arn, "DeletionDate": secs(when), "KeyState": "PendingDeletion", "PendingWindowInDays": days}),
    )
}

async fn cancel_deletion(mut call: Call<'_>) -> Result<Value> {
    let _guard = call.app.mutate.lock().await;
    let mut key = call.key_for("KeyId", "kms:CancelKeyDeletion", HashMap::new())?;
    if key.state != KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is not pending deletion.",
            call.app.key_arn(&key.key_id)
        )));
    }
    key.state = KeyState::Disabled;
    key.deletion_ms = None;
    key.pending_days = None;
    let arn = call.app.key_arn(&key.key_id);
    persist_key(call.app, key, None).await?;
    Ok(json!({"KeyId": arn}))
}

async fn set_rotation(mut call: Call<'_>, enable: bool) -> Result<Value> {
    let period = if enable {
        call.input.int_in("RotationPeriodInDays", 90, 2560)?
    } else {
        None
    };
    let action = if enable {
        "kms:EnableKeyRotation"
    } else {
        "kms:DisableKeyRotation"
    };
    let _guard = call.app.mutate.lock().await;
    let mut key = call.key_for("KeyId", action, HashMap::new())?;
    call.app.check_usable(&key)?;
    key.rotation_enabled = enable;
    if let Some(p) = period {
        key.rotation_period_days = p;
    }
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

fn rotation_status(mut call: Call<'_>) -> Result<Value> {
    let key = call.key_for("KeyId", "kms:GetKeyRotationStatus", HashMap::new())?;
    let mut out =
        json!({"KeyRotationEnabled": key.rotation_enabled, "KeyId": call.app.key_arn(&key.key_id)});
    if key.rotation_enabled {
        out["RotationPeriodInDays"] = json!(key.rotation_period_days);
        out["NextRotationDate"] = json!(secs(
            key.last_rotation_ms + key.rotation_period_days * DAY_MS
        ));
    }
    Ok(out)
}

/// Adds a new key material version; ciphertexts under older versions still decrypt.
pub async fn rotate(app: &App, mut key: KeyRecord) -> Result<u32> {
    let version = key.current_version + 1;
    key.current_version = version;
    key.last_rotation_ms = now_ms();
    persist_key(app, key, Some((version, new_material()?))).await?;
    Ok(version)
}

async fn rotate_on_demand(mut call: Call<'_>) -> Result<Value> {
    let _guard = call.app.mutate.lock().await;
    let key = call.key_for("KeyId", "kms:RotateKeyOnDemand", HashMap::new())?;
    call.app.check_usable(&key)?;
    let arn = call.app.key_arn(&key.key_id);
    let version = rotate(call.app, key).await?;
    call.audit.key_version = Some(version);
    Ok(json!({"KeyId": arn}))
}

fn policy_name(input: &Input) -> Result<()> {
    match input.str("PolicyName")? {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::NotFound(format!(
            "Policy {other} does not exist; the only policy name is \"default\""
        ))),
    }
}

async fn put_policy(mut call: Call<'_>) -> Result<Value> {
    policy_name(&call.input)?;
    let text = call
        .input
        .req_str("Policy", crate::policy::MAX_POLICY_LEN)?
        .to_owned();
    let bypass = call.input.bool("BypassPolicyLockoutSafetyCheck")?;
    let _guard = call.app.mutate.lock().await;
    let mut key = call.key_for("KeyId", "kms:PutKeyPolicy", HashMap::new())?;
    let policy = call
        .app
        .checked_policy(&text, call.principal, bypass, &key.key_id)?;
    key.policy_text = text;
    key.policy = Arc::new(policy);
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

fn get_policy(mut call: Call<'_>) -> Result<Value> {
    policy_name(&call.input)?;
    let key = call.key_for("KeyId", "kms:GetKeyPolicy", HashMap::new())?;
    Ok(json!({"Policy": key.policy_text, "PolicyName": "default"}))
}

fn algorithm(input: &Input, field: &str) -> Result<()> {
    match input.enum_str(
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

fn encrypt(mut call: Call<'_>) -> Result<Value> {
    let plaintext = Zeroizing::new(call.input.req_blob("Plaintext", 1, 4096)?);
    let ec = call.input.context("EncryptionContext")?;
    algorithm(&call.input, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let key = call.key_for("KeyId", "kms:Encrypt", ec_conditions(&ec))?;
    call.app.check_usable(&key)?;
    let ct = seal_under(&mut call, &key, &plaintext, &ec)?;
    Ok(
        json!({"CiphertextBlob": b64(&ct), "KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    )
}

/// Opens a blob for `action`: finds its key, checks KeyId if given, policy, state, context.
fn open_blob(
    call: &mut Call<'_>,
    blob_bytes: &[u8],
    ec: &EncryptionContext,
    key_field: &str,
    action: &str,
    recipient: Option<&Recipient>,
) -> Result<(KeyRecord, Zeroizing<Vec<u8>>)> {
    let header = blob::header(blob_bytes)?;
    let key = call
        .app
        .key(&header.key_id)
        .map_err(|_| KmsError::InvalidCiphertext(String::new()))?;
    call.audit.key_id = Some(key.key_id.clone());
    call.audit.key_version = Some(header.version);
    if let Some(named) = call.input.str(key_field)?
        && call.app.resolve(named)? != key.key_id
    {
        return Err(KmsError::IncorrectKey(
            "The key ID in the request does not identify a CMK that can perform this operation."
                .into(),
        ));
    }
    call.app.authorize(
        call.principal,
        action,
        &key,
        attested::with_conditions(ec_conditions(ec), recipient),
    )?;
    call.app.check_usable(&key)?;
    let material = call.app.material(&key.key_id, header.version)?;
    let plain = blob::open(blob_bytes, &material, ec)?;
    Ok((key, plain))
}

fn decrypt(mut call: Call<'_>) -> Result<Value> {
    let blob_bytes = call.input.req_blob("CiphertextBlob", 1, blob::MAX_BLOB)?;
    let ec = call.input.context("EncryptionContext")?;
    algorithm(&call.input, "EncryptionAlgorithm")?;
    call.audit.encryption_context = Some(ec.clone());
    let recipient = attested::from_input(call.app, &call.input, call.audit)?;
    let (key, plain) = open_blob(
        &mut call,
        &blob_bytes,
        &ec,
        "KeyId",
        "kms:Decrypt",
        recipient.as_ref(),
    )?;
    let mut out =
        json!({"KeyId": call.app.key_arn(&key.key_id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"});
    match recipient {
        Some(r) => out["CiphertextForRecipient"] = json!(b64(&r.seal(&plain)?)),
        None => out["Plaintext"] = json!(b64(&plain)),
    }
    Ok(out)
}

fn re_encrypt(mut call: Call<'_>) -> Result<Value> {
    let blob_bytes = call.input.req_blob("CiphertextBlob", 1, blob::MAX_BLOB)?;
    let source_ec = call.input.context("SourceEncryptionContext")?;
    let dest_ec = call.input.context("DestinationEncryptionContext")?;
    algorithm(&call.input, "SourceEncryptionAlgorithm")?;
    algorithm(&call.input, "DestinationEncryptionAlgorithm")?;
    let (source, plain) = open_blob(
        &mut call,
        &blob_bytes,
        &source_ec,
        "SourceKeyId",
        "kms:ReEncryptFrom",
        None,
    )?;
    call.audit.encryption_context = Some(dest_ec.clone());
    let dest = call.key_for(
        "DestinationKeyId",
        "kms:ReEncryptTo",
        ec_conditions(&dest_ec),
    )?;
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

fn data_key_len(input: &Input) -> Result<usize> {
    let spec = input.enum_str("KeySpec", &["AES_256", "AES_128"])?;
    let n = input.int_in("NumberOfBytes", 1, 1024)?;
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

fn generate_data_key(mut call: Call<'_>, with_plaintext: bool) -> Result<Value> {
    let len = data_key_len(&call.input)?;
    let ec = call.input.context("EncryptionContext")?;
    call.audit.encryption_context = Some(ec.clone());
    let recipient = if with_plaintext {
        attested::from_input(call.app, &call.input, call.audit)?
    } else {
        None
    };
    let action = if with_plaintext {
        "kms:GenerateDataKey"
    } else {
        "kms:GenerateDataKeyWithoutPlaintext"
    };
    let key = call.key_for(
        "KeyId",
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

fn generate_random(call: Call<'_>) -> Result<Value> {
    if call.input.str("CustomKeyStoreId")?.is_some() {
        return Err(KmsError::Unsupported(
            "custom key stores are not supported".into(),
        ));
    }
    let n = call.input.int_in("NumberOfBytes", 1, 1024)?.unwrap_or(32);
    let recipient = attested::from_input(call.app, &call.input, call.audit)?;
    let bytes = random_bytes(usize::try_from(n).unwrap_or(32))?;
    Ok(match recipient {
        Some(r) => json!({"CiphertextForRecipient": b64(&r.seal(&bytes)?)}),
        None => json!({"Plaintext": b64(&bytes)}),
    })
}

/// Periodic housekeeping: rotates keys whose automatic rotation is due and deletes keys whose
/// deletion date has passed. Returns (rotated, deleted).
pub async fn housekeeping(app: &App) -> Result<(usize, usize)> {
    let now = now_ms();
    let (due, expired): (Vec<KeyRecord>, Vec<KeyRecord>) = {
        let s = app.state();
        (
            s.keys
                .values()
                .filter(|k| {
                    k.state == KeyState::Enabled
                        && k.rotation_enabled
                        && now >= k.last_rotation_ms + k.rotation_period_days * DAY_MS
                })
                .cloned()
                .collect(),
            s.keys
                .values()
                .filter(|k| {
                    k.state == KeyState::PendingDeletion && k.deletion_ms.is_some_and(|d| now >= d)
                })
                .cloned()
                .collect(),
        )
    };
    let _guard = app.mutate.lock().await;
    for k in &due {
        rotate(app, k.clone()).await?;
    }
    for k in &expired {
        let id = k.key_id.clone();
        app.writer
            .write(move |tx, _| {
                for sql in [
                    "DELETE FROM key_material WHERE key_id = ?1",
                    "DELETE FROM aliases WHERE key_id = ?1",
                    "DELETE FROM keys WHERE key_id = ?1",
                ] {
                    tx.execute(sql, [&id]).map_err(KmsError::store)?;
                }
                Ok(())
            })
            .await?;
        app.apply(|s| {
            s.keys.remove(&k.key_id);
            s.material.retain(|(id, _), _| *id != k.key_id);
            s.aliases.retain(|_, a| a.key_id != k.key_id);
        });
    }
    Ok((due.len(), expired.len()))
}
