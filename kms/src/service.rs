//! The three AWS services one listener serves, told apart by `X-Amz-Target`: AWS KMS
//! (`TrentService.`), Secrets Manager (`secretsmanager.`) and SSM Parameter Store
//! (`AmazonSSM.`). Each names the service its SigV4 scope must carry (a request signed for
//! `kms` is not a Secrets Manager request, and the reverse), the way its errors are written, and
//! how its operations appear in the audit log and in `kms:ViaService`.
//!
//! Secrets Manager and Parameter Store call the KMS on the caller's behalf, as in AWS: the key
//! policy sees the caller as the principal and `kms:ViaService` as
//! `<service>.<region>.amazonaws.com`, a condition key no direct KMS request carries.

use serde_json::{Value, json};

use crate::error::KmsError;

/// A service served on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// AWS KMS (`TrentService`, signing name `kms`).
    Kms,
    /// AWS Secrets Manager (`secretsmanager`).
    SecretsManager,
    /// AWS Systems Manager Parameter Store (`AmazonSSM`, signing name `ssm`).
    Ssm,
}

impl Service {
    /// Every service, in the order targets are matched.
    pub(crate) const ALL: [Self; 3] = [Self::Kms, Self::SecretsManager, Self::Ssm];

    /// The `X-Amz-Target` prefix (with its dot).
    pub(crate) fn target_prefix(self) -> &'static str {
        match self {
            Self::Kms => "TrentService.",
            Self::SecretsManager => "secretsmanager.",
            Self::Ssm => "AmazonSSM.",
        }
    }

    /// The SigV4 signing name, which the credential scope must carry.
    pub(crate) fn signing_name(self) -> &'static str {
        match self {
            Self::Kms => "kms",
            Self::SecretsManager => "secretsmanager",
            Self::Ssm => "ssm",
        }
    }

    /// The service whose signing name is `name`.
    pub(crate) fn by_signing_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.signing_name() == name)
    }

    /// The service and operation an `X-Amz-Target` names; `None` when it names none of them
    /// (or no operation).
    pub(crate) fn parse_target(target: &str) -> Option<(Self, &str)> {
        Self::ALL.into_iter().find_map(|s| {
            target
                .strip_prefix(s.target_prefix())
                .filter(|op| !op.is_empty())
                .map(|op| (s, op))
        })
    }

    /// The operation's name in the audit log: the KMS's bare (as before other services were
    /// served), the others' as IAM names them (`secretsmanager:GetSecretValue`).
    pub(crate) fn audit_operation(self, op: &str) -> String {
        match self {
            Self::Kms => op.to_owned(),
            other => format!("{}:{op}", other.signing_name()),
        }
    }

    /// `kms:ViaService` for requests this service makes to the KMS in `region`.
    pub(crate) fn via_service(self, region: &str) -> String {
        format!("{}.{region}.amazonaws.com", self.signing_name())
    }

    /// The JSON error body for `e` in this service's shape: `__type` and the message under the
    /// member the service's model names (`message` for KMS, `Message` for Secrets Manager, per
    /// error shape for SSM); AWS's InvalidCiphertextException carries no message.
    pub(crate) fn error_body(self, e: &KmsError) -> Value {
        let member = match (self, e) {
            (_, KmsError::InvalidCiphertext(_)) => None,
            (_, KmsError::Ssm(ssm)) => ssm.message_member(),
            (Self::Kms, _) => Some("message"),
            (Self::SecretsManager | Self::Ssm, _) => Some("Message"),
        };
        let mut body = json!({"__type": e.aws_name()});
        if let Some(m) = member {
            body[m] = json!(e.to_string());
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{SecretsError, SsmError};

    #[test]
    fn targets_name_their_service_and_operation() {
        assert_eq!(
            Service::parse_target("TrentService.Decrypt"),
            Some((Service::Kms, "Decrypt"))
        );
        assert_eq!(
            Service::parse_target("secretsmanager.GetSecretValue"),
            Some((Service::SecretsManager, "GetSecretValue"))
        );
        assert_eq!(
            Service::parse_target("AmazonSSM.GetParameter"),
            Some((Service::Ssm, "GetParameter"))
        );
        for t in [
            "",
            "TrentService.",
            "trentservice.Decrypt",
            "Decrypt",
            "AmazonSSM",
        ] {
            assert_eq!(Service::parse_target(t), None, "{t}");
        }
        assert_eq!(
            Service::by_signing_name("secretsmanager"),
            Some(Service::SecretsManager)
        );
        assert_eq!(Service::by_signing_name("s3"), None);
    }

    #[test]
    fn errors_are_written_in_each_services_shape() {
        let denied = KmsError::AccessDenied("no".into());
        assert_eq!(
            Service::Kms.error_body(&denied),
            json!({"__type": "AccessDeniedException", "message": "no"})
        );
        assert_eq!(
            Service::SecretsManager
                .error_body(&SecretsError::ResourceNotFound("gone".into()).into()),
            json!({"__type": "ResourceNotFoundException", "Message": "gone"})
        );
        assert_eq!(
            Service::Ssm.error_body(&SsmError::ParameterNotFound("p".into()).into()),
            json!({"__type": "ParameterNotFound", "message": "p"})
        );
        assert_eq!(
            Service::Ssm.error_body(&SsmError::InvalidResourceId("p".into()).into()),
            json!({"__type": "InvalidResourceId"})
        );
        assert_eq!(
            Service::Kms.error_body(&KmsError::InvalidCiphertext(String::new())),
            json!({"__type": "InvalidCiphertextException"})
        );
        assert_eq!(
            Service::SecretsManager.via_service("eu-west-1"),
            "secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            Service::Ssm.audit_operation("PutParameter"),
            "ssm:PutParameter"
        );
        assert_eq!(Service::Kms.audit_operation("Decrypt"), "Decrypt");
    }
}
