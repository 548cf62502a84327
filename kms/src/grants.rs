//! Grants: the typed body of a stored grant, which operations a grant may carry for which key,
//! whether a grant lets a principal perform an action (its grantee, its operations, its
//! encryption-context constraints), and grant tokens.
//!
//! A grant is stored as a `grants` row (see `store`) whose body is [`GrantBody`] as JSON. The
//! decisions follow AWS's "Grants in AWS KMS" and `GrantConstraints` pages: constraints apply only
//! to the operations that take an encryption context; in a constraint the context's keys match
//! regardless of case and its values exactly. This KMS is strongly consistent, so a grant token
//! only names its grant: [`token`] makes one, [`token_grant_id`] reads one back (a parser of
//! untrusted bytes, fuzzed through `ops::decode`).

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{KmsError, Result};
use crate::keyspec::{KeySpec, KeyUsage};

/// The condition key carrying a CreateGrant request's constraints (as JSON) when the request is
/// checked against the grants of its caller: a grant allowing CreateGrant under constraints
/// allows only grants at least as strict (AWS, "Granting CreateGrant permission").
pub(crate) const NEW_CONSTRAINTS_KEY: &str = "cloister:grantconstraints";

/// One of AWS's `GrantOperation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum GrantOperation {
    /// Decrypt.
    Decrypt,
    /// Encrypt.
    Encrypt,
    /// GenerateDataKey.
    GenerateDataKey,
    /// GenerateDataKeyWithoutPlaintext.
    GenerateDataKeyWithoutPlaintext,
    /// ReEncrypt, from this key.
    ReEncryptFrom,
    /// ReEncrypt, to this key.
    ReEncryptTo,
    /// Sign.
    Sign,
    /// Verify.
    Verify,
    /// GetPublicKey.
    GetPublicKey,
    /// CreateGrant.
    CreateGrant,
    /// RetireGrant.
    RetireGrant,
    /// DescribeKey.
    DescribeKey,
    /// GenerateDataKeyPair.
    GenerateDataKeyPair,
    /// GenerateDataKeyPairWithoutPlaintext.
    GenerateDataKeyPairWithoutPlaintext,
    /// GenerateMac.
    GenerateMac,
    /// VerifyMac.
    VerifyMac,
    /// DeriveSharedSecret.
    DeriveSharedSecret,
}

impl GrantOperation {
    /// Every grant operation, in AWS's enum order.
    pub(crate) const ALL: [Self; 17] = [
        Self::Decrypt,
        Self::Encrypt,
        Self::GenerateDataKey,
        Self::GenerateDataKeyWithoutPlaintext,
        Self::ReEncryptFrom,
        Self::ReEncryptTo,
        Self::Sign,
        Self::Verify,
        Self::GetPublicKey,
        Self::CreateGrant,
        Self::RetireGrant,
        Self::DescribeKey,
        Self::GenerateDataKeyPair,
        Self::GenerateDataKeyPairWithoutPlaintext,
        Self::GenerateMac,
        Self::VerifyMac,
        Self::DeriveSharedSecret,
    ];

    /// AWS's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Decrypt => "Decrypt",
            Self::Encrypt => "Encrypt",
            Self::GenerateDataKey => "GenerateDataKey",
            Self::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Self::ReEncryptFrom => "ReEncryptFrom",
            Self::ReEncryptTo => "ReEncryptTo",
            Self::Sign => "Sign",
            Self::Verify => "Verify",
            Self::GetPublicKey => "GetPublicKey",
            Self::CreateGrant => "CreateGrant",
            Self::RetireGrant => "RetireGrant",
            Self::DescribeKey => "DescribeKey",
            Self::GenerateDataKeyPair => "GenerateDataKeyPair",
            Self::GenerateDataKeyPairWithoutPlaintext => "GenerateDataKeyPairWithoutPlaintext",
            Self::GenerateMac => "GenerateMac",
            Self::VerifyMac => "VerifyMac",
            Self::DeriveSharedSecret => "DeriveSharedSecret",
        }
    }

    /// The operation AWS's name names.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The operation of a key-policy action (`kms:Decrypt`), if grants can allow it.
    pub(crate) fn of_action(action: &str) -> Option<Self> {
        Self::parse(action.strip_prefix("kms:")?)
    }

    /// Whether the operation takes an encryption context (on the symmetric keys, the only ones
    /// constraints may be on): only these are bound by a grant's constraints.
    fn takes_context(self) -> bool {
        matches!(
            self,
            Self::Decrypt
                | Self::Encrypt
                | Self::GenerateDataKey
                | Self::GenerateDataKeyWithoutPlaintext
                | Self::ReEncryptFrom
                | Self::ReEncryptTo
                | Self::GenerateDataKeyPair
                | Self::GenerateDataKeyPairWithoutPlaintext
        )
    }

    /// Whether a grant on a key of `spec` and `usage` may carry this operation (AWS, "Grant
    /// operations": the operations valid for each key type, plus CreateGrant, DescribeKey and
    /// RetireGrant for every key).
    pub(crate) fn valid_for(self, spec: KeySpec, usage: KeyUsage) -> bool {
        use GrantOperation::*;
        if matches!(self, CreateGrant | DescribeKey | RetireGrant) {
            return true;
        }
        if spec == KeySpec::SymmetricDefault {
            return self.takes_context();
        }
        match usage {
            KeyUsage::EncryptDecrypt => {
                matches!(
                    self,
                    Decrypt | Encrypt | ReEncryptFrom | ReEncryptTo | GetPublicKey
                )
            }
            KeyUsage::SignVerify => matches!(self, Sign | Verify | GetPublicKey),
            KeyUsage::KeyAgreement => matches!(self, DeriveSharedSecret | GetPublicKey),
            KeyUsage::GenerateVerifyMac => matches!(self, GenerateMac | VerifyMac),
        }
    }
}

/// A grant's `Constraints`: the encryption context a request must have (`EncryptionContextEquals`)
/// or include (`EncryptionContextSubset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Constraints {
    /// The context must be exactly these pairs (keys compared regardless of case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encryption_context_equals: Option<BTreeMap<String, String>>,
    /// The context must include these pairs (keys compared regardless of case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encryption_context_subset: Option<BTreeMap<String, String>>,
}

/// A map's pairs with lower-case keys, as (key, sorted values): keys that differ only in case
/// keep every value.
fn folded(pairs: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        out.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.clone());
    }
    for values in out.values_mut() {
        values.sort();
    }
    out
}

/// The request's encryption context from its condition keys (`kms:encryptioncontext:<key>`, keys
/// already lower-case), values sorted.
fn request_context(conditions: &HashMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    conditions
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("kms:encryptioncontext:")?;
            let mut values = v.clone();
            values.sort();
            Some((key.to_owned(), values))
        })
        .collect()
}

/// Whether `context` holds every pair of `required`.
fn includes(
    context: &BTreeMap<String, Vec<String>>,
    required: &BTreeMap<String, Vec<String>>,
) -> bool {
    required.iter().all(|(k, values)| {
        context
            .get(k)
            .is_some_and(|have| values.iter().all(|v| have.contains(v)))
    })
}

impl Constraints {
    /// Whether there is no constraint at all (an empty map is no constraint, as AWS treats it).
    pub(crate) fn is_empty(&self) -> bool {
        self.encryption_context_equals
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && self
                .encryption_context_subset
                .as_ref()
                .is_none_or(BTreeMap::is_empty)
    }

    /// Whether a request whose context gives the condition keys `conditions` satisfies these
    /// constraints.
    pub(crate) fn hold(&self, conditions: &HashMap<String, Vec<String>>) -> bool {
        let context = request_context(conditions);
        let equals = self
            .encryption_context_equals
            .as_ref()
            .is_none_or(|e| context == folded(e));
        let subset = self
            .encryption_context_subset
            .as_ref()
            .is_none_or(|s| includes(&context, &folded(s)));
        equals && subset
    }

    /// Whether `child` is at least as strict as these constraints: every context it allows,
    /// these allow too.
    pub(crate) fn admit(&self, child: &Self) -> bool {
        let child_equals = child.encryption_context_equals.as_ref().map(folded);
        let child_subset = child
            .encryption_context_subset
            .as_ref()
            .map(folded)
            .unwrap_or_default();
        if let Some(e) = &self.encryption_context_equals {
            // Only an Equals of exactly these pairs (with any Subset it already implies).
            let e = folded(e);
            if child_equals.as_ref() != Some(&e) {
                return false;
            }
        }
        if let Some(s) = &self.encryption_context_subset {
            let s = folded(s);
            let by_equals = child_equals.as_ref().is_some_and(|e| includes(e, &s));
            if !by_equals && !includes(&child_subset, &s) {
                return false;
            }
        }
        true
    }
}

/// A grant's body, as stored (JSON) in its `grants` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    /// Who the grant gives its operations to.
    pub(crate) grantee_principal: String,
    /// Who may retire it, besides the account and (with RetireGrant) the grantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retiring_principal: Option<String>,
    /// The operations it allows.
    pub(crate) operations: Vec<GrantOperation>,
    /// Encryption-context constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) constraints: Option<Constraints>,
    /// Its `Name`, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// The ARN of the account root that created it (`IssuingAccount`).
    pub(crate) issuing_account: String,
}

impl GrantBody {
    /// Parses a stored body.
    pub(crate) fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| KmsError::Internal(format!("a stored grant body does not parse: {e}")))
    }

    /// The body as stored.
    pub(crate) fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| KmsError::Internal(format!("a grant body does not encode: {e}")))
    }

    /// Whether this grant lets `principal_arn` perform `action` (`kms:Decrypt`) on its key, for
    /// a request whose condition keys are `conditions`.
    pub(crate) fn allows(
        &self,
        principal_arn: &str,
        action: &str,
        conditions: &HashMap<String, Vec<String>>,
    ) -> bool {
        let Some(op) = GrantOperation::of_action(action) else {
            return false;
        };
        if self.grantee_principal != principal_arn || !self.operations.contains(&op) {
            return false;
        }
        let constraints = self.constraints.clone().unwrap_or_default();
        if op.takes_context() && !constraints.hold(conditions) {
            return false;
        }
        if op == GrantOperation::CreateGrant {
            return self.admits_child(conditions, &constraints);
        }
        true
    }

    /// For CreateGrant through this grant: the new grant's operations must be among this one's,
    /// and its constraints at least as strict.
    fn admits_child(
        &self,
        conditions: &HashMap<String, Vec<String>>,
        constraints: &Constraints,
    ) -> bool {
        let ops_ok = conditions.get("kms:grantoperations").is_some_and(|ops| {
            ops.iter()
                .all(|o| GrantOperation::parse(o).is_some_and(|o| self.operations.contains(&o)))
        });
        let child: Constraints = conditions
            .get(NEW_CONSTRAINTS_KEY)
            .and_then(|v| v.first())
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        ops_ok && constraints.admit(&child)
    }
}

/// First byte of a grant token's decoded form.
const TOKEN_VERSION: u8 = 1;
/// Bytes of a grant id (64 hex digits).
const GRANT_ID_BYTES: usize = 32;
/// Random bytes making each token of one grant distinct.
const TOKEN_NONCE: usize = 16;
/// Longest grant token accepted (AWS's `GrantTokenType`).
pub(crate) const MAX_TOKEN: usize = 8192;

/// A fresh grant token naming grant `grant_id` (64 hex digits).
pub(crate) fn token(grant_id: &str, nonce: &[u8; TOKEN_NONCE]) -> Result<String> {
    let id = hex::decode(grant_id)
        .ok()
        .filter(|b| b.len() == GRANT_ID_BYTES)
        .ok_or_else(|| KmsError::Internal("a grant id is not 64 hex digits".into()))?;
    let mut raw = Vec::with_capacity(1 + GRANT_ID_BYTES + TOKEN_NONCE);
    raw.push(TOKEN_VERSION);
    raw.extend_from_slice(&id);
    raw.extend_from_slice(nonce);
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// The grant id a grant token names, or InvalidGrantTokenException.
pub(crate) fn token_grant_id(token: &str) -> Result<String> {
    let invalid = || KmsError::InvalidGrantToken("Invalid grant token".into());
    if token.len() > MAX_TOKEN {
        return Err(invalid());
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    match raw.split_first() {
        Some((&TOKEN_VERSION, rest)) if rest.len() == GRANT_ID_BYTES + TOKEN_NONCE => {
            Ok(hex::encode(&rest[..GRANT_ID_BYTES]))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conds(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut c: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            c.entry(format!("kms:encryptioncontext:{}", k.to_ascii_lowercase()))
                .or_default()
                .push((*v).to_owned());
        }
        c.insert(
            "kms:encryptioncontextkeys".into(),
            pairs.iter().map(|(k, _)| (*k).to_owned()).collect(),
        );
        c
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // AWS API reference, GrantConstraints: keys match regardless of case, values exactly.
    #[test]
    fn constraints_fold_keys_but_not_values() {
        let equals = Constraints {
            encryption_context_equals: Some(map(&[("Dept", "IT")])),
            ..Constraints::default()
        };
        assert!(equals.hold(&conds(&[("dept", "IT")])));
        assert!(!equals.hold(&conds(&[("dept", "it")])));
        assert!(!equals.hold(&conds(&[("dept", "IT"), ("x", "y")])));
        assert!(!equals.hold(&conds(&[])));
        // Two keys folding to one are both kept: no reading of them matches one pair.
        assert!(!equals.hold(&conds(&[("Dept", "IT"), ("dept", "IT")])));
        let subset = Constraints {
            encryption_context_subset: Some(map(&[("Dept", "IT")])),
            ..Constraints::default()
        };
        assert!(subset.hold(&conds(&[("DEPT", "IT"), ("x", "y")])));
        assert!(!subset.hold(&conds(&[("x", "y")])));
    }

    // AWS Developer Guide, "Granting CreateGrant permission": grants made through a grant
    // are at least as strict.
    #[test]
    fn children_are_at_least_as_strict() {
        let parent = Constraints {
            encryption_context_subset: Some(map(&[("a", "1")])),
            ..Constraints::default()
        };
        let stricter = Constraints {
            encryption_context_equals: Some(map(&[("A", "1"), ("b", "2")])),
            ..Constraints::default()
        };
        assert!(parent.admit(&stricter));
        assert!(parent.admit(&parent));
        assert!(!parent.admit(&Constraints::default()));
        assert!(!stricter.admit(&parent));
        assert!(Constraints::default().admit(&Constraints::default()));
    }

    #[test]
    fn tokens_name_their_grant_and_malformed_ones_are_refused() {
        let id = "ab".repeat(32);
        let t = token(&id, &[7; 16]).unwrap();
        assert_eq!(token_grant_id(&t).unwrap(), id);
        assert_ne!(t, token(&id, &[8; 16]).unwrap());
        for bad in [
            "",
            "x",
            "!!!!",
            &t[1..],
            &format!("{t}AA"),
            &"A".repeat(9000),
        ] {
            let e = token_grant_id(bad).unwrap_err();
            assert_eq!(e.aws_name(), "InvalidGrantTokenException", "{bad}");
        }
    }

    #[test]
    fn operations_follow_the_key_type() {
        use GrantOperation::*;
        let sym = (KeySpec::SymmetricDefault, KeyUsage::EncryptDecrypt);
        assert!(GenerateDataKeyPair.valid_for(sym.0, sym.1));
        assert!(!Sign.valid_for(sym.0, sym.1));
        assert!(!GetPublicKey.valid_for(sym.0, sym.1));
        assert!(Sign.valid_for(KeySpec::EccNistP256, KeyUsage::SignVerify));
        assert!(!Decrypt.valid_for(KeySpec::EccNistP256, KeyUsage::SignVerify));
        assert!(GenerateMac.valid_for(KeySpec::Hmac256, KeyUsage::GenerateVerifyMac));
        assert!(!GenerateDataKey.valid_for(KeySpec::Rsa2048, KeyUsage::EncryptDecrypt));
        assert!(DeriveSharedSecret.valid_for(KeySpec::EccNistP384, KeyUsage::KeyAgreement));
        for op in GrantOperation::ALL {
            assert_eq!(GrantOperation::parse(op.as_str()), Some(op));
        }
    }

    #[test]
    fn bodies_refuse_unknown_members() {
        let body = GrantBody {
            grantee_principal: "arn:aws:iam::1:role/a".into(),
            retiring_principal: None,
            operations: vec![GrantOperation::Decrypt],
            constraints: None,
            name: None,
            issuing_account: "arn:aws:iam::1:root".into(),
        };
        let json = body.to_json().unwrap();
        assert_eq!(GrantBody::parse(&json).unwrap(), body);
        let extra = json.replacen('{', r#"{"admin":true,"#, 1);
        assert!(GrantBody::parse(&extra).is_err());
    }
}
