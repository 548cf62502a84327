//! Secret names and ARNs: the characters a name may hold, the ARN Secrets Manager gives a
//! secret (`arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 random alphanumerics>`),
//! and how a `SecretId` finds a secret: by its full ARN, by its name, or by a partial ARN (the
//! ARN without its 6-character suffix), always within the request's region.

use std::collections::BTreeMap;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

use super::model::Secret;
use crate::error::{KmsError, Result, SecretsError};

/// Longest secret name (`NameType`).
pub(crate) const MAX_NAME: usize = 512;
/// Longest `SecretId` (`SecretIdType`).
pub(crate) const MAX_SECRET_ID: usize = 2048;
/// Characters of the random suffix.
const SUFFIX_LEN: usize = 6;
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Checks a new secret's name: 1..512 ASCII letters, digits and `/_+=.@-` (AWS answers
/// InvalidParameterException for other characters).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(KmsError::validation(format!(
            "Value '{name}' at 'name' failed to satisfy constraint: Member must have length between 1 and {MAX_NAME}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(SecretsError::InvalidParameter(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!".into(),
        )
        .into());
    }
    Ok(())
}

/// The prefix of every secret ARN in `region` of `account`.
fn arn_prefix(region: &str, account: &str) -> String {
    format!("arn:aws:secretsmanager:{region}:{account}:secret:")
}

/// A new secret's ARN: its name and a random 6-character suffix.
pub(crate) fn new_arn(region: &str, account: &str, name: &str) -> Result<String> {
    let mut raw = [0u8; SUFFIX_LEN];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| KmsError::no_randomness())?;
    let suffix: String = raw
        .iter()
        .map(|b| char::from(ALNUM[usize::from(*b) % ALNUM.len()]))
        .collect();
    Ok(format!("{}{name}-{suffix}", arn_prefix(region, account)))
}

/// The region an ARN names (`""` if it is no ARN).
pub(crate) fn arn_region(arn: &str) -> &str {
    arn.split(':').nth(3).unwrap_or_default()
}

/// The ARN of the secret `id` names in `region`, among `secrets`: a full ARN, a name, or a
/// partial ARN (the full ARN less `-` and the suffix). A name is looked up before a partial
/// ARN, as AWS recommends full ARNs because of that ambiguity.
pub(crate) fn resolve(
    secrets: &BTreeMap<String, Secret>,
    region: &str,
    account: &str,
    id: &str,
) -> Option<String> {
    if secrets.contains_key(id) {
        return (arn_region(id) == region).then(|| id.to_owned());
    }
    let prefix = arn_prefix(region, account);
    let in_region = || secrets.keys().filter(|a| a.starts_with(&prefix));
    if let Some(a) = in_region().find(|a| secrets[*a].meta.name == id) {
        return Some(a.clone());
    }
    let partial = id.strip_prefix(&prefix)?;
    in_region()
        .find(|a| {
            a.len() == id.len() + 1 + SUFFIX_LEN
                && a.starts_with(id)
                && a.as_bytes()[id.len()] == b'-'
                && secrets[*a].meta.name == partial
        })
        .cloned()
}

/// The answer for a `SecretId` that names no secret.
pub(crate) fn not_found() -> KmsError {
    SecretsError::ResourceNotFound("Secrets Manager can't find the specified secret.".into()).into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::model::SecretMeta;

    fn secret(arn: &str, name: &str) -> (String, Secret) {
        let meta = SecretMeta {
            name: name.into(),
            ..SecretMeta::default()
        };
        (
            arn.into(),
            Secret {
                arn: arn.into(),
                meta: Arc::new(meta),
                versions: BTreeMap::new(),
            },
        )
    }

    #[test]
    fn names_allow_only_awss_characters() {
        for ok in ["db", "a/b_c+d=e.f@g-h", &"x".repeat(512)] {
            check_name(ok).unwrap();
        }
        assert_eq!(
            check_name("").unwrap_err().aws_name(),
            "ValidationException"
        );
        assert_eq!(
            check_name(&"x".repeat(513)).unwrap_err().aws_name(),
            "ValidationException"
        );
        for bad in ["a b", "a:b", "é", "a!b", "a\0"] {
            assert_eq!(
                check_name(bad).unwrap_err().aws_name(),
                "InvalidParameterException",
                "{bad}"
            );
        }
    }

    #[test]
    fn arns_carry_a_random_six_character_suffix() {
        let a = new_arn("us-east-1", "111122223333", "app/db").unwrap();
        let b = new_arn("us-east-1", "111122223333", "app/db").unwrap();
        assert_ne!(a, b);
        let suffix = a
            .strip_prefix("arn:aws:secretsmanager:us-east-1:111122223333:secret:app/db-")
            .unwrap();
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(arn_region(&a), "us-east-1");
    }

    #[test]
    fn secret_ids_are_full_arns_names_or_partial_arns_in_the_region() {
        let p = "arn:aws:secretsmanager:us-east-1:111122223333:secret:";
        let w = "arn:aws:secretsmanager:us-west-2:111122223333:secret:";
        let secrets: BTreeMap<String, Secret> = [
            secret(&format!("{p}db-AbC123"), "db"),
            secret(&format!("{p}db-AbC123-XyZ789"), "db-AbC123"),
            secret(&format!("{w}db-QQQQQQ"), "db"),
        ]
        .into_iter()
        .collect();
        let r = |id: &str| resolve(&secrets, "us-east-1", "111122223333", id);
        assert_eq!(r("db").unwrap(), format!("{p}db-AbC123"));
        assert_eq!(
            r(&format!("{p}db-AbC123")).unwrap(),
            format!("{p}db-AbC123")
        );
        assert_eq!(r(&format!("{p}db")).unwrap(), format!("{p}db-AbC123"));
        // A name that looks like a full ARN's tail is a name first.
        assert_eq!(r("db-AbC123").unwrap(), format!("{p}db-AbC123-XyZ789"));
        assert_eq!(
            r(&format!("{p}db-AbC123-XyZ789")).unwrap(),
            format!("{p}db-AbC123-XyZ789")
        );
        // Another region's ARN is not served in this one; unknown names are unknown.
        assert_eq!(r(&format!("{w}db-QQQQQQ")), None);
        assert_eq!(r("nope"), None);
        assert_eq!(r(&format!("{p}d")), None);
        assert_eq!(
            resolve(&secrets, "us-west-2", "111122223333", "db").unwrap(),
            format!("{w}db-QQQQQQ")
        );
    }
}
