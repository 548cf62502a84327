//! The KMS as Secrets Manager and Parameter Store use it: for their caller, as in AWS. A
//! request to those services that encrypts or decrypts a value runs the KMS operation with the
//! caller as the principal and `kms:ViaService` set to the service's endpoint name, so a key
//! policy can allow a key's use through Secrets Manager only, and the attestation conditions of
//! a `Recipient` apply unchanged. The KMS operation's key, version and encryption context go to
//! the request's audit entry.
//!
//! When a secret or parameter names no key, the service's AWS managed key (`aws/secretsmanager`,
//! `aws/ssm`) is used, made on first use with AWS's managed key policy: every principal of the
//! account, through that service only.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::crypto::{self, Opening};
use super::keys::{NewKey, new_key_id, new_record};
use super::shared::{Call, random_bytes};
use crate::app::App;
use crate::attested::{self, Recipient, RecipientInput};
use crate::audit::AuditEntry;
use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result};
use crate::input::{Body, Member, Structure};
use crate::keymaterial;
use crate::keyspec::{KeyAttrs, KeySpec};
use crate::policy::KeyPolicy;
use crate::service::Service;
use crate::state::{Alias, KeyRecord, Principal, material_label};

/// One request to Secrets Manager or Parameter Store.
#[derive(Debug)]
pub(crate) struct ViaCall<'a> {
    /// The application.
    pub(crate) app: &'a App,
    /// The authenticated caller.
    pub(crate) principal: &'a Principal,
    /// The region the request was signed for.
    pub(crate) region: &'a str,
    /// The service called.
    pub(crate) service: Service,
    /// The request body.
    pub(crate) body: Body,
    /// The request's audit entry.
    pub(crate) audit: &'a mut AuditEntry,
}

/// A fresh data key: its plaintext and its KMS ciphertext.
pub(crate) struct DataKey {
    /// The key's ARN.
    pub(crate) key_arn: String,
    /// The data key (32 bytes).
    pub(crate) plaintext: Zeroizing<Vec<u8>>,
    /// The data key encrypted under the KMS key with the encryption context.
    pub(crate) blob: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

impl<'a> ViaCall<'a> {
    /// The body as the operation's input shape.
    pub(crate) fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.body.decode()
    }

    /// This request as a KMS call for the caller through the service.
    fn kms(&mut self) -> Call<'_> {
        Call {
            app: self.app,
            principal: self.principal,
            region: self.region,
            body: Body::default(),
            audit: self.audit,
            via: Some(self.service.via_service(self.region)),
        }
    }

    /// The verified recipient, if `member` names one; the attempt (module id, PCR0, trust root)
    /// is audited.
    pub(crate) fn recipient(
        &mut self,
        member: &Member<Structure<RecipientInput>>,
    ) -> Result<Option<Recipient>> {
        match member.structure("Recipient")? {
            Some(r) => attested::verify(self.app, r, self.audit).map(Some),
            None => Ok(None),
        }
    }

    /// The ARN of the key `key_ref` names (key id, key ARN, alias name or alias ARN) in the
    /// request's region, after `kms:DescribeKey` for the caller through the service; with no
    /// `key_ref`, the service's AWS managed key, made on first use.
    pub(crate) async fn key_arn(&mut self, key_ref: Option<&str>) -> Result<String> {
        let key = match key_ref {
            Some(r) => {
                let mut call = self.kms();
                call.key_for(r, "kms:DescribeKey", Default::default())?
            }
            None => self.managed_key().await?,
        };
        Ok(self.app.key_arn(&key.key_id))
    }

    /// A fresh 32-byte data key under `key_ref` bound to `ec` (`kms:GenerateDataKey` for the
    /// caller through the service; the key must be an enabled symmetric encryption key).
    pub(crate) fn generate_data_key(
        &mut self,
        key_ref: &str,
        ec: &EncryptionContext,
    ) -> Result<DataKey> {
        let mut call = self.kms();
        call.audit.encryption_context = Some(ec.clone());
        let key = call.key_for(
            key_ref,
            "kms:GenerateDataKey",
            super::shared::ec_conditions(ec),
        )?;
        call.app.check_usable(&key)?;
        let plaintext = random_bytes(32)?;
        let blob = crypto::seal_under(&mut call, &key, &plaintext, ec)?;
        Ok(DataKey {
            key_arn: call.app.key_arn(&key.key_id),
            plaintext,
            blob,
        })
    }

    /// `plaintext` encrypted under `key_ref` bound to `ec` (`kms:Encrypt` for the caller
    /// through the service): a KMS ciphertext blob that KMS Decrypt opens. Returns the key's
    /// ARN and the blob.
    pub(crate) fn encrypt(
        &mut self,
        key_ref: &str,
        plaintext: &[u8],
        ec: &EncryptionContext,
    ) -> Result<(String, Vec<u8>)> {
        let mut call = self.kms();
        call.audit.encryption_context = Some(ec.clone());
        let key = call.key_for(key_ref, "kms:Encrypt", super::shared::ec_conditions(ec))?;
        call.app.check_usable(&key)?;
        let blob = crypto::seal_under(&mut call, &key, plaintext, ec)?;
        Ok((call.app.key_arn(&key.key_id), blob))
    }

    /// Opens a KMS ciphertext blob bound to `ec` (`kms:Decrypt` for the caller through the
    /// service, with the recipient's attestation condition keys when there is one). Returns
    /// the key's ARN and the plaintext; the caller must return it only sealed to the
    /// recipient when there is one.
    pub(crate) fn decrypt(
        &mut self,
        blob: &[u8],
        ec: &EncryptionContext,
        recipient: Option<&Recipient>,
    ) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let mut call = self.kms();
        call.audit.encryption_context = Some(ec.clone());
        let no_key = Member::default();
        let (key, plain) = crypto::open_blob(
            &mut call,
            blob,
            Opening {
                ec,
                key_member: &no_key,
                key_field: "KeyId",
                action: "kms:Decrypt",
                recipient,
            },
        )?;
        Ok((call.app.key_arn(&key.key_id), plain))
    }

    /// The service's AWS managed key in the request's region (`alias/aws/secretsmanager`,
    /// `alias/aws/ssm`), made with its alias on first use.
    async fn managed_key(&mut self) -> Result<KeyRecord> {
        let alias = format!("alias/aws/{}", self.service.signing_name());
        let name = self.app.storage_id(self.region, &alias);
        if let Some(a) = self.app.alias(&name)? {
            return self.app.key(&a.key_id);
        }
        let _guard = self.app.mutate().await?;
        if let Some(a) = self.app.alias(&name)? {
            return self.app.key(&a.key_id);
        }
        let key_id = self.app.storage_id(self.region, &new_key_id(false));
        let policy_text = managed_policy(
            &self.app.cfg.account,
            &self.service.via_service(self.region),
        );
        let policy = KeyPolicy::parse(&policy_text)?;
        let material = keymaterial::generate_async(KeySpec::SymmetricDefault).await?;
        // A SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT key of AWS_KMS origin (the defaults).
        let attrs = KeyAttrs {
            region: (self.region != self.app.cfg.region).then(|| self.region.to_owned()),
            ..KeyAttrs::default()
        };
        let mut key = new_record(NewKey {
            key_id: key_id.clone(),
            description: format!(
                "Default key that protects my {} data when no other key is defined",
                match self.service {
                    Service::Ssm => "SSM Parameter Store",
                    _ => "Secrets Manager",
                }
            ),
            policy_text,
            policy,
            attrs,
            with_material: true,
        })?;
        // AWS managed keys rotate every year.
        key.rotation_enabled = true;
        let now = key.created_ms;
        let sealed = self.app.root.seal(&material_label(&key_id, 1), &material)?;
        let alias = Alias {
            name,
            key_id: key_id.clone(),
            created_ms: now,
            updated_ms: now,
        };
        self.app
            .writer
            .put_key_with_alias((key.clone(), vec![(1, sealed)]), alias.clone())
            .await?;
        self.app.apply(|s| {
            s.material.insert((key_id.clone(), 1), Arc::new(material));
            s.keys.insert(key_id, key.clone());
            s.aliases.insert(alias.name.clone(), alias);
        });
        Ok(key)
    }
}

/// AWS's key policy of a service's managed key: every principal of the account may use it
/// through the service (`kms:ViaService`), and the account may read its metadata.
fn managed_policy(account: &str, via: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "auto-managed-key",
        "Statement": [
            {
                "Sid": "Allow access through the service for all principals in the account that are authorized to use it",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account, "kms:ViaService": via}}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*"
            }
        ]
    })
    .to_string()
}

/// Maps a KMS refusal met while sealing or opening a value to what the service answers:
/// AccessDeniedException ("Access to KMS is not allowed") when the caller may not use the key,
/// the service's `failure` when the key is unusable (disabled, pending deletion, not found,
/// not a symmetric encryption key, the ciphertext does not open), the KMS's own failures
/// unchanged.
pub(crate) fn kms_refusal(e: KmsError, failure: impl FnOnce(String) -> KmsError) -> KmsError {
    match e {
        KmsError::AccessDenied(_) => KmsError::AccessDenied("Access to KMS is not allowed".into()),
        KmsError::NotFound(m)
        | KmsError::Disabled(m)
        | KmsError::InvalidState(m)
        | KmsError::InvalidKeyUsage(m)
        | KmsError::IncorrectKey(m)
        | KmsError::Unsupported(m) => failure(m),
        KmsError::InvalidCiphertext(_) => {
            failure("The ciphertext is not valid for this key and encryption context".into())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_managed_policy_parses_and_names_the_service() {
        let text = managed_policy("111122223333", "secretsmanager.us-east-1.amazonaws.com");
        KeyPolicy::parse(&text).unwrap();
        assert!(text.contains("secretsmanager.us-east-1.amazonaws.com"));
    }

    #[test]
    fn kms_refusals_become_the_services_answers() {
        let denied = kms_refusal(KmsError::AccessDenied("x".into()), KmsError::Internal);
        assert_eq!(denied.aws_name(), "AccessDeniedException");
        assert_eq!(denied.to_string(), "Access to KMS is not allowed");
        let failure = |m| crate::error::SecretsError::DecryptionFailure(m).into();
        assert_eq!(
            kms_refusal(KmsError::Disabled("off".into()), failure).aws_name(),
            "DecryptionFailure"
        );
        assert_eq!(
            kms_refusal(KmsError::Internal("boom".into()), failure).aws_name(),
            "KMSInternalException"
        );
    }
}
