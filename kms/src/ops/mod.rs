//! The operations of the AWS KMS JSON 1.1 protocol that cloister-kms implements, by family.
//!
//! Each operation decodes its typed input from the request body, checks in AWS's order (input,
//! key exists, key policy, key state), fills in the request's audit entry (key, version,
//! context), and returns the JSON output. Changes are persisted durably before they are applied
//! in memory and answered.

mod aliases;
mod crypto;
mod import;
mod keys;
mod lifecycle;
mod mac;
mod policy;
mod shared;
mod tags;
#[cfg(test)]
mod testkit;

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
            | "GenerateMac"
            | "VerifyMac"
    )
}

/// Runs operation `op` for `principal` with the request `body`, filling in `audit`.
pub(crate) async fn dispatch(
    op: &str,
    app: &App,
    principal: &Principal,
    body: Body,
    audit: &mut AuditEntry,
) -> Result<Value> {
    let call = Call {
        app,
        principal,
        body,
        audit,
    };
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
        "Encrypt" => crypto::encrypt(call),
        "Decrypt" => crypto::decrypt(call),
        "ReEncrypt" => crypto::re_encrypt(call),
        "GenerateDataKey" => crypto::generate_data_key(call, true),
        "GenerateDataKeyWithoutPlaintext" => crypto::generate_data_key(call, false),
        "GenerateRandom" => crypto::generate_random(call),
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
    /// whose deletion date has passed. Returns (rotated, deleted).
    pub async fn housekeeping(&self) -> Result<(usize, usize)> {
        housekeeping(self, crate::store::now_ms()).await
    }
}

fn unknown(op: &str) -> KmsError {
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
        "Encrypt" => body.decode::<crypto::EncryptInput>().map(drop),
        "Decrypt" => body.decode::<crypto::DecryptInput>().map(drop),
        "ReEncrypt" => body.decode::<crypto::ReEncryptInput>().map(drop),
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            body.decode::<crypto::DataKeyInput>().map(drop)
        }
        "GenerateRandom" => body.decode::<crypto::RandomInput>().map(drop),
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
