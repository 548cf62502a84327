//! The operations of the AWS KMS JSON 1.1 protocol that cloister-kms implements, by family.
//!
//! Each operation decodes its typed input from the request body, checks in AWS's order (input,
//! key exists, key policy, key state), fills in the request's audit entry (key, version,
//! context), and returns the JSON output. Changes are persisted durably before they are applied
//! in memory and answered.

mod agreement;
mod aliases;
mod asymmetric;
mod crypto;
mod grants;
mod import;
mod key_pairs;
mod keys;
mod lifecycle;
mod mac;
mod policy;
mod regions;
mod shared;
mod sign;
mod tags;
#[cfg(test)]
pub(crate) mod testkit;
pub(crate) mod via;

use serde_json::Value;

pub(crate) use self::import::refuse_expired;
use self::lifecycle::housekeeping;
use self::shared::Call;
pub(crate) use self::tags::resource_conditions;
use crate::app::App;
use crate::audit::AuditEntry;
use crate::error::{KmsError, Result};
use crate::input::Body;
use crate::state::{KeyState, Principal};

/// Whether an operation is cryptographic (rate limited).
pub(crate) fn is_cryptographic(op: &str) -> bool {
    matches!(
        op,
        "Encrypt"
            | "Decrypt"
            | "ReEncrypt"
            | "GenerateDataKey"
            | "GenerateDataKeyWithoutPlaintext"
            | "GenerateRandom"
            | "Sign"
            | "Verify"
            | "GenerateDataKeyPair"
            | "GenerateDataKeyPairWithoutPlaintext"
            | "DeriveSharedSecret"
            | "GenerateMac"
            | "VerifyMac"
    )
}

/// Runs operation `op` for `principal` in `region` with the request `body`, filling in `audit`.
pub(crate) async fn dispatch(
    op: &str,
    app: &App,
    principal: &Principal,
    region: &str,
    body: Body,
    audit: &mut AuditEntry,
) -> Result<Value> {
    let dry_run = body.has("DryRun")
        && DRY_RUN.contains(&op)
        && body.decode::<DryRunInput>()?.dry_run.flag("DryRun")?;
    let call = Call {
        app,
        principal,
        region,
        body,
        audit,
        via: None,
    };
    let answer = run(op, call).await;
    match answer {
        // The operation checked everything and changed nothing (these operations only compute);
        // its answer, plaintext included, is dropped.
        Ok(_) if dry_run => Err(grants::dry_run()),
        other => other,
    }
}

/// The side-effect-free operations whose `DryRun` member this dispatcher honours (AWS KMS API
/// reference, each operation's `DryRun`; the grant operations honour theirs themselves).
const DRY_RUN: [&str; 12] = [
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "DeriveSharedSecret",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
];

/// The `DryRun` member of an input.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct DryRunInput {
    dry_run: crate::input::Member<bool>,
}

/// Runs operation `op`.
async fn run(op: &str, call: Call<'_>) -> Result<Value> {
    match op {
        "CreateKey" => keys::create_key(call).await,
        "DescribeKey" => keys::describe_key(call),
        "ListKeys" => keys::list_keys(call),
        "EnableKey" => keys::set_state(call, "kms:EnableKey", KeyState::Enabled).await,
        "DisableKey" => keys::set_state(call, "kms:DisableKey", KeyState::Disabled).await,
        "CreateAlias" => aliases::create_alias(call).await,
        "UpdateAlias" => aliases::update_alias(call).await,
        "DeleteAlias" => aliases::delete_alias(call).await,
        "ListAliases" => aliases::list_aliases(call),
        "ScheduleKeyDeletion" => lifecycle::schedule_deletion(call).await,
        "CancelKeyDeletion" => lifecycle::cancel_deletion(call).await,
        "EnableKeyRotation" => lifecycle::set_rotation(call, true).await,
        "DisableKeyRotation" => lifecycle::set_rotation(call, false).await,
        "GetKeyRotationStatus" => lifecycle::rotation_status(call),
        "RotateKeyOnDemand" => lifecycle::rotate_on_demand(call).await,
        "PutKeyPolicy" => policy::put_policy(call).await,
        "GetKeyPolicy" => policy::get_policy(call),
        "ListKeyPolicies" => policy::list_policies(call),
        "UpdateKeyDescription" => keys::update_description(call).await,
        "ListKeyRotations" => lifecycle::list_rotations(call),
        "ReplicateKey" => regions::replicate_key(call).await,
        "UpdatePrimaryRegion" => regions::update_primary_region(call).await,
        "Encrypt" => crypto::encrypt(call),
        "Decrypt" => crypto::decrypt(call),
        "ReEncrypt" => crypto::re_encrypt(call),
        "GenerateDataKey" => crypto::generate_data_key(call, true),
        "GenerateDataKeyWithoutPlaintext" => crypto::generate_data_key(call, false),
        "GenerateRandom" => crypto::generate_random(call),
        "GetPublicKey" => key_pairs::get_public_key(call),
        "Sign" => sign::sign(call),
        "Verify" => sign::verify(call),
        "GenerateDataKeyPair" => key_pairs::generate_data_key_pair(call, true).await,
        "GenerateDataKeyPairWithoutPlaintext" => {
            key_pairs::generate_data_key_pair(call, false).await
        }
        "DeriveSharedSecret" => agreement::derive_shared_secret(call),
        "CreateGrant" => grants::create_grant(call).await,
        "ListGrants" => grants::list_grants(call),
        "ListRetirableGrants" => grants::list_retirable_grants(call),
        "RetireGrant" => grants::retire_grant(call).await,
        "RevokeGrant" => grants::revoke_grant(call).await,
        "GenerateMac" => mac::generate_mac(call),
        "VerifyMac" => mac::verify_mac(call),
        "GetParametersForImport" => import::get_parameters(call).await,
        "ImportKeyMaterial" => import::import_key_material(call).await,
        "DeleteImportedKeyMaterial" => import::delete_imported(call).await,
        "TagResource" => tags::tag_resource(call).await,
        "UntagResource" => tags::untag_resource(call).await,
        "ListResourceTags" => tags::list_resource_tags(call),
        other => Err(unknown(other)),
    }
}

impl App {
    /// Periodic housekeeping: rotates keys whose automatic rotation is due and deletes keys
    /// (and Secrets Manager secrets) whose deletion date has passed. Returns (rotated, deleted
    /// keys).
    pub async fn housekeeping(&self) -> Result<(usize, usize)> {
        let now = crate::store::now_ms();
        crate::secrets::housekeeping(self, now).await?;
        housekeeping(self, now).await
    }
}

/// AWS KMS operations this KMS does not implement: custom key stores (CloudHSM and external key
/// stores) need hardware or a proxy it does not have (see the README's differences).
const NOT_IMPLEMENTED: [&str; 6] = [
    "CreateCustomKeyStore",
    "ConnectCustomKeyStore",
    "DeleteCustomKeyStore",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "UpdateCustomKeyStore",
];

/// The answer to an operation this KMS does not run: UnsupportedOperationException for an AWS
/// KMS operation it leaves out (so a user learns it is known, not misspelt),
/// UnknownOperationException for anything else.
fn unknown(op: &str) -> KmsError {
    if NOT_IMPLEMENTED.contains(&op) {
        return KmsError::Unsupported(format!(
            "{op} is not supported by cloister-kms: it has no custom key stores"
        ));
    }
    KmsError::UnknownOperation(format!("Unknown operation TrentService.{op}"))
}

/// Decodes `body` as operation `op`'s typed input, as the server would before running it.
pub(crate) fn decode(op: &str, body: &[u8]) -> Result<()> {
    let body = Body::parse(body)?;
    match op {
        "CreateKey" => body.decode::<keys::CreateKeyInput>().map(drop),
        "DescribeKey"
        | "EnableKey"
        | "DisableKey"
        | "CancelKeyDeletion"
        | "DisableKeyRotation"
        | "GetKeyRotationStatus"
        | "RotateKeyOnDemand" => body.decode::<shared::KeyIdInput>().map(drop),
        "ListKeys" => body.decode::<shared::PageInput>().map(drop),
        "CreateAlias" | "UpdateAlias" | "DeleteAlias" => {
            body.decode::<aliases::AliasInput>().map(drop)
        }
        "ListAliases" => body.decode::<aliases::ListAliasesInput>().map(drop),
        "ScheduleKeyDeletion" => body.decode::<lifecycle::ScheduleInput>().map(drop),
        "EnableKeyRotation" => body.decode::<lifecycle::RotationInput>().map(drop),
        "PutKeyPolicy" | "GetKeyPolicy" => body.decode::<policy::PolicyInput>().map(drop),
        "ListKeyPolicies" => body.decode::<policy::PageInput>().map(drop),
        "UpdateKeyDescription" => body.decode::<keys::DescriptionInput>().map(drop),
        "ListKeyRotations" => body.decode::<lifecycle::ListRotationsInput>().map(drop),
        "ReplicateKey" => body.decode::<regions::ReplicateInput>().map(drop),
        "UpdatePrimaryRegion" => body.decode::<regions::PrimaryRegionInput>().map(drop),
        "Encrypt" => body.decode::<crypto::EncryptInput>().map(drop),
        "Decrypt" => body.decode::<crypto::DecryptInput>().map(drop),
        "ReEncrypt" => body.decode::<crypto::ReEncryptInput>().map(drop),
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            body.decode::<crypto::DataKeyInput>().map(drop)
        }
        "GenerateRandom" => body.decode::<crypto::RandomInput>().map(drop),
        "GetPublicKey" => body.decode::<key_pairs::GetPublicKeyInput>().map(drop),
        "Sign" => body.decode::<sign::SignInput>().map(drop),
        "Verify" => body.decode::<sign::VerifyInput>().map(drop),
        "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
            body.decode::<key_pairs::DataKeyPairInput>().map(drop)
        }
        "DeriveSharedSecret" => body.decode::<agreement::DeriveInput>().map(drop),
        "CreateGrant" => body.decode::<grants::CreateGrantInput>()?.check_tokens(),
        "ListGrants" => body.decode::<grants::ListGrantsInput>()?.check_tokens(),
        "ListRetirableGrants" => body.decode::<grants::ListRetirableInput>().map(drop),
        "RetireGrant" => body.decode::<grants::RetireGrantInput>()?.check_tokens(),
        "RevokeGrant" => body.decode::<grants::RevokeGrantInput>().map(drop),
        "GenerateMac" | "VerifyMac" => body.decode::<mac::MacInput>().map(drop),
        "GetParametersForImport" => body.decode::<import::ParametersInput>().map(drop),
        "ImportKeyMaterial" => body.decode::<import::ImportInput>().map(drop),
        "DeleteImportedKeyMaterial" => body.decode::<import::DeleteInput>().map(drop),
        "TagResource" => body.decode::<tags::TagResourceInput>().map(drop),
        "UntagResource" => body.decode::<tags::UntagResourceInput>().map(drop),
        "ListResourceTags" => body.decode::<tags::ListTagsInput>().map(drop),
        other => Err(unknown(other)),
    }
}
