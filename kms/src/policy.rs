//! Key policies: the IAM JSON policy language, as far as KMS key policies use it.
//!
//! Evaluation follows IAM: an explicit `Deny` that matches wins; otherwise any matching `Allow`
//! allows; otherwise the request is implicitly denied. A statement matches when its principal,
//! action and resource match and every condition holds (conditions are ANDed; the values listed
//! for one key are ORed). Condition key names are case-insensitive.
//!
//! Supported: Effect, Principal (`"*"`, `{"AWS": ARN | account id | [...]}`), Action and Resource
//! with `*`/`?` wildcards, Condition operators StringEquals, StringNotEquals,
//! StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, StringNotLike, Bool, Null, the
//! `ForAnyValue:`/`ForAllValues:` qualifiers and the `IfExists` suffix. NotPrincipal, NotAction
//! and NotResource are refused as MalformedPolicyDocument rather than half-implemented.
//!
//! There is no IAM here: a principal that a key policy names is the principal with exactly that
//! ARN, and an account id or `arn:aws:iam::<account>:root` names the account's root principal
//! only (on AWS it delegates to IAM policies).
//!
//! Exactness, where IAM is exact or this KMS is stricter:
//! - **Principals** match as IAM matches them: `"*"` (or `{"AWS": "*"}`) is everyone; otherwise an
//!   ARN or account id matches exactly and case-sensitively. IAM does not let a wildcard match
//!   part of a principal name or ARN, so a Principal ARN containing `*` is refused
//!   (MalformedPolicyDocument) rather than glob-matched.
//! - **Duplicate JSON keys**, at any depth, refuse the policy (MalformedPolicyDocument). Stricter
//!   than AWS, whose parser keeps one of them: a policy must not mean something its reader did
//!   not see.
//! - **Several values for a single-valued key.** A condition key such as
//!   `kms:EncryptionContext:purpose` matches context keys case-insensitively, so a context
//!   `{"Purpose": "a", "purpose": "b"}` gives it two values (AWS advises against such pairs;
//!   nothing is dropped here). Each value is a possible reading of the request, and a condition
//!   must hold the way that cannot grant more than any one reading would: in an `Allow` statement
//!   the condition must hold for *every* value, in a `Deny` statement it holds if it holds for
//!   *any* value. So `StringEquals purpose = X` allows only if all values are `X`; `StringNotEquals
//!   purpose = X` allows only if no value is `X`; a `Deny` on `StringEquals purpose = X` fires if
//!   any value is `X`, and on `StringNotEquals` if any value is not `X`. For such a key the
//!   `ForAnyValue:`/`ForAllValues:` qualifiers change nothing but the absent-key case (each reading
//!   is a one-value set). The same rule applies to an unqualified operator on a multi-valued key
//!   ([`MULTI_VALUED_KEYS`]); there the qualifiers keep IAM's set meaning.

mod findings;

use std::collections::HashMap;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub use self::findings::{ANYONE, Finding, Path, PrincipalReport, Reach, Report};

use crate::error::{KmsError, Result};

/// The largest policy document accepted.
pub(crate) const MAX_POLICY_LEN: usize = 131_072;

/// Condition keys whose request values are a set (IAM's multivalued context keys). Every other
/// key is single-valued: several values for it are alternative readings of one request.
pub const MULTI_VALUED_KEYS: &[&str] = &["kms:encryptioncontextkeys", "aws:tagkeys"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    Any,
    Arns(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Bool,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    op: Op,
    set: Option<SetQualifier>,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    principals: Principals,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed, validated key policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    statements: Vec<Statement>,
}

/// What a request presents to the policy.
#[derive(Debug, Clone, Default)]
pub struct RequestContext<'a> {
    /// The caller's principal ARN.
    pub principal_arn: &'a str,
    /// `kms:<Operation>`.
    pub action: &'a str,
    /// The key ARN.
    pub resource: &'a str,
    /// Condition keys (lower-case) to their values: a multi-valued key's set
    /// ([`MULTI_VALUED_KEYS`]), or a single-valued key's value, or its alternative values when
    /// the request is ambiguous (encryption-context keys that differ only in case).
    pub conditions: HashMap<String, Vec<String>>,
}

/// The outcome of evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement matched and no Deny did.
    Allow,
    /// A Deny statement matched.
    ExplicitDeny,
    /// Nothing matched.
    ImplicitDeny,
}

fn malformed(msg: impl Into<String>) -> KmsError {
    KmsError::MalformedPolicy(msg.into())
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(malformed(format!("{what} must hold strings"))),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        _ => Err(malformed(format!(
            "{what} must be a string or a non-empty list of strings"
        ))),
    }
}

impl KeyPolicy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() || text.len() > MAX_POLICY_LEN {
            return Err(malformed(format!(
                "policy must be 1..={MAX_POLICY_LEN} characters"
            )));
        }
        let UniqueKeys(doc) = serde_json::from_str(text)
            .map_err(|e| malformed(format!("policy is not JSON: {e}")))?;
        let Value::Object(top) = doc else {
            return Err(malformed("policy must be a JSON object"));
        };
        for key in top.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!("unknown policy element {key:?}")));
            }
        }
        if let Some(v) = top.get("Version")
            && !matches!(v.as_str(), Some("2012-10-17" | "2008-10-17"))
        {
            return Err(malformed("Version must be \"2012-10-17\""));
        }
        let statements = match top.get("Statement") {
            Some(Value::Array(items)) if !items.is_empty() => {
                items.iter().map(parse_statement).collect::<Result<_>>()?
            }
            Some(obj @ Value::Object(_)) => vec![parse_statement(obj)?],
            _ => {
                return Err(malformed(
                    "Statement must be a statement or a non-empty list",
                ));
            }
        };
        Ok(Self { statements })
    }

    /// The default policy: the account root may do everything.
    pub(crate) fn default_text(account: &str) -> String {
        serde_json::json!({
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "kms:*",
                "Resource": "*"
            }]
        })
        .to_string()
    }

    /// Evaluates the policy for a request.
    pub fn evaluate(&self, req: &RequestContext<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if !s.matches(req) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

fn parse_statement(v: &Value) -> Result<Statement> {
    let Value::Object(m) = v else {
        return Err(malformed("each Statement must be an object"));
    };
    for key in m.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
            "NotPrincipal" | "NotAction" | "NotResource" => {
                return Err(malformed(format!("{key} is not supported by this KMS")));
            }
            _ => return Err(malformed(format!("unknown statement element {key:?}"))),
        }
    }
    let sid = match m.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("Sid must be a string")),
    };
    let effect = match m.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(malformed("Effect must be \"Allow\" or \"Deny\"")),
    };
    let principals = match m.get("Principal") {
        Some(Value::String(s)) if s == "*" => Principals::Any,
        Some(Value::Object(p)) => {
            if p.keys().any(|k| k != "AWS") {
                return Err(malformed("only AWS principals are supported"));
            }
            let list = strings(p.get("AWS").unwrap_or(&Value::Null), "Principal.AWS")?;
            if list.iter().any(|a| a == "*") {
                Principals::Any
            } else {
                Principals::Arns(
                    list.iter()
                        .map(|a| principal_arn(a))
                        .collect::<Result<_>>()?,
                )
            }
        }
        _ => return Err(malformed("Principal is required in a key policy")),
    };
    let actions = strings(
        m.get("Action")
            .ok_or_else(|| malformed("Action is required"))?,
        "Action",
    )?;
    for a in &actions {
        if a != "*" && !a.to_ascii_lowercase().starts_with("kms:") {
            return Err(malformed(format!("action {a:?} is not a kms: action")));
        }
    }
    let resources = strings(
        m.get("Resource")
            .ok_or_else(|| malformed("Resource is required"))?,
        "Resource",
    )?;
    let mut conditions = Vec::new();
    if let Some(c) = m.get("Condition") {
        let Value::Object(ops) = c else {
            return Err(malformed("Condition must be an object"));
        };
        for (op_name, block) in ops {
            let (set, rest) = if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
                (Some(SetQualifier::ForAnyValue), r)
            } else if let Some(r) = op_name.strip_prefix("ForAllValues:") {
                (Some(SetQualifier::ForAllValues), r)
            } else {
                (None, op_name.as_str())
            };
            let (base, if_exists) = match rest.strip_suffix("IfExists") {
                Some(b) => (b, true),
                None => (rest, false),
            };
            let op = match base {
                "StringEquals" => Op::StringEquals,
                "StringNotEquals" => Op::StringNotEquals,
                "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
                "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
                "StringLike" => Op::StringLike,
                "StringNotLike" => Op::StringNotLike,
                "Bool" => Op::Bool,
                "Null" => Op::Null,
                other => {
                    return Err(malformed(format!(
                        "unsupported condition operator {other:?}"
                    )));
                }
            };
            let Value::Object(keys) = block else {
                return Err(malformed(format!(
                    "{op_name} must map condition keys to values"
                )));
            };
            for (key, values) in keys {
                conditions.push(Condition {
                    op,
                    set,
                    if_exists,
                    key: key.to_ascii_lowercase(),
                    values: strings(values, key)?,
                });
            }
        }
    }
    Ok(Statement {
        sid,
        effect,
        principals,
        actions,
        resources,
        conditions,
    })
}

/// The ARN a Principal entry names: an account id names the account's root; an ARN must be an
/// IAM or STS ARN without wildcards (IAM cannot match part of a principal name or ARN).
fn principal_arn(entry: &str) -> Result<String> {
    if entry.len() == 12 && entry.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("arn:aws:iam::{entry}:root"));
    }
    if !entry.starts_with("arn:aws:iam::") && !entry.starts_with("arn:aws:sts::") {
        return Err(malformed(format!("invalid principal {entry:?}")));
    }
    if entry.contains('*') {
        return Err(malformed(format!(
            "invalid principal {entry:?}: a wildcard cannot match part of a principal ARN; use \"*\" alone for everyone"
        )));
    }
    Ok(entry.to_owned())
}

/// A JSON value read with every object's keys unique, at any depth: a duplicate key is an error
/// where `serde_json::Value` would silently keep the last value.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let UniqueKeys(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `*` and `?` glob matching, optionally case-insensitive.
pub(crate) fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Statement {
    fn matches(&self, req: &RequestContext<'_>) -> bool {
        let principal_ok = match &self.principals {
            Principals::Any => true,
            Principals::Arns(list) => list.iter().any(|arn| arn == req.principal_arn),
        };
        principal_ok
            && self
                .actions
                .iter()
                .any(|a| a == "*" || glob(a, req.action, true))
            && self
                .resources
                .iter()
                .any(|r| r == "*" || glob(r, req.resource, false))
            && self
                .conditions
                .iter()
                .all(|c| c.holds(&req.conditions, self.effect))
    }
}

impl Condition {
    /// Whether the condition holds for a statement of `effect` (see the module header for
    /// several values of a single-valued key).
    fn holds(&self, ctx: &HashMap<String, Vec<String>>, effect: Effect) -> bool {
        let present = ctx.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            // {"Null": {"k": "true"}} holds when k is absent.
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return present.is_none() == want_absent;
        }
        let Some(values) = present else {
            return match (self.set, self.op) {
                (Some(SetQualifier::ForAllValues), _) => true,
                (Some(SetQualifier::ForAnyValue), _) => false,
                _ if self.if_exists => true,
                (None, Op::StringNotEquals | Op::StringNotEqualsIgnoreCase | Op::StringNotLike) => {
                    true
                }
                _ => false,
            };
        };
        let one = |v: &str| -> bool {
            match self.op {
                Op::StringEquals => self.values.iter().any(|p| p == v),
                Op::StringNotEquals => self.values.iter().all(|p| p != v),
                Op::StringEqualsIgnoreCase => self.values.iter().any(|p| p.eq_ignore_ascii_case(v)),
                Op::StringNotEqualsIgnoreCase => {
                    self.values.iter().all(|p| !p.eq_ignore_ascii_case(v))
                }
                Op::StringLike => self.values.iter().any(|p| glob(p, v, false)),
                Op::StringNotLike => self.values.iter().all(|p| !glob(p, v, false)),
                Op::Bool => self.values.iter().any(|p| p.eq_ignore_ascii_case(v)),
                Op::Null => false,
            }
        };
        let multi_valued = MULTI_VALUED_KEYS.contains(&self.key.as_str());
        match (self.set, multi_valued) {
            (Some(SetQualifier::ForAnyValue), true) => values.iter().any(|v| one(v)),
            (Some(SetQualifier::ForAllValues), true) => values.iter().all(|v| one(v)),
            // Alternative readings of one request: an Allow needs every reading to satisfy the
            // condition, a Deny fires on any (never more access than one reading would give).
            _ => match effect {
                Effect::Allow => values.iter().all(|v| one(v)),
                Effect::Deny => values.iter().any(|v| one(v)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "111122223333";

    fn ctx<'a>(
        principal: &'a str,
        action: &'a str,
        conds: &[(&str, &[&str])],
    ) -> RequestContext<'a> {
        RequestContext {
            principal_arn: principal,
            action,
            resource: "arn:aws:kms:us-east-1:111122223333:key/k",
            conditions: conds
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.iter().map(|s| (*s).to_owned()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn default_policy_allows_root_only() {
        let p = KeyPolicy::parse(&KeyPolicy::default_text(ACCT)).unwrap();
        assert_eq!(
            p.evaluate(&ctx("arn:aws:iam::111122223333:root", "kms:Decrypt", &[])),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&ctx("arn:aws:iam::111122223333:role/x", "kms:Decrypt", &[])),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn explicit_deny_wins_and_conditions_and() {
        let p = KeyPolicy::parse(r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
            {"Effect":"Deny","Principal":{"AWS":"*"},"Action":["kms:Decrypt","kms:Generate*"],"Resource":"*",
             "Condition":{"StringNotEqualsIgnoreCase":{"kms:RecipientAttestation:ImageSha384":"AB"},
                          "StringEquals":{"kms:EncryptionContext:tenant":"a"}}}]}"#).unwrap();
        let r = "arn:aws:iam::111122223333:role/x";
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Decrypt",
                &[("kms:EncryptionContext:tenant", &["a"])]
            )),
            Decision::ExplicitDeny
        );
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Decrypt",
                &[
                    ("kms:EncryptionContext:tenant", &["a"]),
                    ("kms:recipientattestation:imagesha384", &["ab"])
                ]
            )),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Decrypt",
                &[("kms:EncryptionContext:tenant", &["b"])]
            )),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:GenerateDataKey",
                &[("kms:EncryptionContext:tenant", &["a"])]
            )),
            Decision::ExplicitDeny
        );
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Encrypt",
                &[("kms:EncryptionContext:tenant", &["a"])]
            )),
            Decision::Allow
        );
    }

    #[test]
    fn set_operators_null_bool_like() {
        let p = KeyPolicy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*",
            "Condition":{"ForAllValues:StringLike":{"kms:EncryptionContextKeys":["tenant","app-*"]},
                         "Null":{"kms:EncryptionContextKeys":"false"}}}}"#,
        )
        .unwrap();
        let r = "arn:aws:iam::111122223333:role/x";
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Encrypt",
                &[("kms:EncryptionContextKeys", &["tenant", "app-1"])]
            )),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&ctx(
                r,
                "kms:Encrypt",
                &[("kms:EncryptionContextKeys", &["tenant", "other"])]
            )),
            Decision::ImplicitDeny
        );
        assert_eq!(
            p.evaluate(&ctx(r, "kms:Encrypt", &[])),
            Decision::ImplicitDeny
        );
        let any = KeyPolicy::parse(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*",
            "Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"tenant"},"Bool":{"aws:SecureTransport":"true"}}}}"#).unwrap();
        assert_eq!(
            any.evaluate(&ctx(
                r,
                "kms:Encrypt",
                &[
                    ("kms:EncryptionContextKeys", &["x", "tenant"]),
                    ("aws:SecureTransport", &["true"])
                ]
            )),
            Decision::Allow
        );
        assert_eq!(
            any.evaluate(&ctx(
                r,
                "kms:Encrypt",
                &[("kms:EncryptionContextKeys", &["x", "tenant"])]
            )),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"Statement":[]}"#,
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","NotPrincipal":"*","Action":"kms:*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericEquals":{"a":"1"}}}}"#,
            r#"{"Version":"1999","Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
        ] {
            assert_eq!(
                KeyPolicy::parse(bad).unwrap_err().aws_name(),
                "MalformedPolicyDocumentException",
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_keys_at_any_depth_are_refused() {
        let ok = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*",
            "Condition":{"StringEquals":{"kms:EncryptionContext:a":"1","kms:EncryptionContext:b":"2"}}}}"#;
        KeyPolicy::parse(ok).unwrap();
        for bad in [
            // Top level: the second Statement would silently replace the first.
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"},
                "Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
            // In a statement: which Effect?
            r#"{"Statement":{"Effect":"Deny","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
            // In a condition block, and in the Principal object.
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*",
                "Condition":{"StringEquals":{"kms:EncryptionContext:a":"1","kms:EncryptionContext:a":"2"}}}}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333","AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#,
            // Inside an array inside an object.
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Sid":"a","Sid":"b"}]}"#,
        ] {
            let err = KeyPolicy::parse(bad).unwrap_err();
            assert_eq!(err.aws_name(), "MalformedPolicyDocumentException", "{bad}");
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
    }

    #[test]
    fn principals_match_exactly_and_partial_wildcards_are_refused() {
        for bad in [
            "arn:aws:iam::111122223333:role/*",
            "arn:aws:iam::*:root",
            "arn:aws:iam::111122223333:role/app*",
            "arn:aws:sts::111122223333:assumed-role/app/*",
        ] {
            let text = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":["111122223333","{bad}"]}},"Action":"kms:*","Resource":"*"}}}}"#
            );
            assert_eq!(
                KeyPolicy::parse(&text).unwrap_err().aws_name(),
                "MalformedPolicyDocumentException",
                "{bad}"
            );
        }
        let p = KeyPolicy::parse(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/App","444455556666"]},"Action":"kms:*","Resource":"*"}}"#).unwrap();
        let decide = |arn| p.evaluate(&ctx(arn, "kms:Decrypt", &[]));
        assert_eq!(
            decide("arn:aws:iam::111122223333:role/App"),
            Decision::Allow
        );
        assert_eq!(decide("arn:aws:iam::444455556666:root"), Decision::Allow);
        for other in [
            "arn:aws:iam::111122223333:role/app",
            "arn:aws:iam::111122223333:role/App2",
            "arn:aws:iam::444455556666:role/x",
            "arn:aws:iam::111122223333:root",
        ] {
            assert_eq!(decide(other), Decision::ImplicitDeny, "{other}");
        }
        // "*" alone, bare or under AWS, is everyone.
        for any in [r#""*""#, r#"{"AWS":"*"}"#, r#"{"AWS":["*"]}"#] {
            let p = KeyPolicy::parse(&format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{any},"Action":"kms:*","Resource":"*"}}}}"#
            ))
            .unwrap();
            assert_eq!(
                p.evaluate(&ctx("arn:aws:iam::999999999999:role/z", "kms:Decrypt", &[])),
                Decision::Allow
            );
        }
    }

    /// `{"Purpose": .., "purpose": ..}` gives `kms:encryptioncontext:purpose` two values.
    const AMBIGUOUS: &str = "kms:EncryptionContext:purpose";

    fn allow_if(op: &str) -> KeyPolicy {
        KeyPolicy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*",
                "Condition":{{"{op}":{{"{AMBIGUOUS}":"x"}}}}}}}}"#
        ))
        .unwrap()
    }

    fn deny_if(op: &str) -> KeyPolicy {
        KeyPolicy::parse(&format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}},
                {{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*",
                  "Condition":{{"{op}":{{"{AMBIGUOUS}":"x"}}}}}}]}}"#
        ))
        .unwrap()
    }

    fn with_values(p: &KeyPolicy, values: &[&str]) -> Decision {
        p.evaluate(&ctx(
            "arn:aws:iam::111122223333:role/r",
            "kms:Decrypt",
            &[(AMBIGUOUS, values)],
        ))
    }

    #[test]
    fn keys_differing_in_case_never_grant_more_than_one_reading() {
        use Decision::{Allow, ExplicitDeny, ImplicitDeny};
        // Allow statements: every value must satisfy the condition.
        for op in [
            "StringEquals",
            "StringLike",
            "StringEqualsIgnoreCase",
            "ForAnyValue:StringEquals",
            "ForAllValues:StringEquals",
            "StringEqualsIfExists",
        ] {
            let p = allow_if(op);
            assert_eq!(with_values(&p, &["x"]), Allow, "{op}");
            assert_eq!(with_values(&p, &["x", "x"]), Allow, "{op}");
            assert_eq!(with_values(&p, &["x", "y"]), ImplicitDeny, "{op}");
            assert_eq!(with_values(&p, &["y", "x"]), ImplicitDeny, "{op}");
        }
        for op in [
            "StringNotEquals",
            "StringNotLike",
            "StringNotEqualsIgnoreCase",
            "ForAnyValue:StringNotEquals",
        ] {
            let p = allow_if(op);
            assert_eq!(with_values(&p, &["y"]), Allow, "{op}");
            assert_eq!(with_values(&p, &["y", "x"]), ImplicitDeny, "{op}");
            assert_eq!(with_values(&p, &["x", "y"]), ImplicitDeny, "{op}");
        }
        // Deny statements: any value satisfying the condition fires the deny.
        for op in ["StringEquals", "StringLike", "ForAllValues:StringEquals"] {
            let p = deny_if(op);
            assert_eq!(with_values(&p, &["y"]), Allow, "{op}");
            assert_eq!(with_values(&p, &["y", "x"]), ExplicitDeny, "{op}");
            assert_eq!(with_values(&p, &["x", "y"]), ExplicitDeny, "{op}");
        }
        for op in ["StringNotEquals", "StringNotLike"] {
            let p = deny_if(op);
            assert_eq!(with_values(&p, &["x"]), Allow, "{op}");
            assert_eq!(with_values(&p, &["x", "y"]), ExplicitDeny, "{op}");
        }
        // Null does not depend on the values: the key is present.
        let absent = KeyPolicy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*",
                "Condition":{{"Null":{{"{AMBIGUOUS}":"true"}}}}}}}}"#
        ))
        .unwrap();
        assert_eq!(with_values(&absent, &["a", "b"]), ImplicitDeny);
        assert_eq!(with_values(&absent, &[]), Allow);
    }

    #[test]
    fn multi_valued_keys_keep_set_semantics() {
        let p = KeyPolicy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
            {"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*",
             "Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]}}}]}"#,
        )
        .unwrap();
        let r = "arn:aws:iam::111122223333:role/r";
        let keys =
            |k: &[&str]| p.evaluate(&ctx(r, "kms:Decrypt", &[("kms:EncryptionContextKeys", k)]));
        assert_eq!(keys(&["a", "b"]), Decision::ExplicitDeny);
        assert_eq!(keys(&["a", "c"]), Decision::Allow);
    }

    #[test]
    fn glob_works() {
        assert!(glob("kms:Generate*", "kms:GenerateDataKey", false));
        assert!(glob("a?c", "abc", false));
        assert!(!glob("a?c", "abbc", false));
        assert!(glob("*", "", false));
        assert!(glob("KMS:*", "kms:decrypt", true));
    }
}
