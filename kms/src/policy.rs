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

mod findings;

use std::collections::HashMap;

use serde_json::Value;

pub use self::findings::{ANYONE, Finding, Path, PrincipalReport, Reach, Report};

use crate::error::{KmsError, Result};

/// The largest policy document accepted.
pub(crate) const MAX_POLICY_LEN: usize = 131_072;

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
    /// Condition keys (lower-case) to their values; multi-valued keys have several.
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
        let doc: Value = serde_json::from_str(text)
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
                for a in &list {
                    let account_id = a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
                    if !account_id
                        && !a.starts_with("arn:aws:iam::")
                        && !a.starts_with("arn:aws:sts::")
                    {
                        return Err(malformed(format!("invalid principal {a:?}")));
                    }
                }
                Principals::Arns(list)
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
            Principals::Arns(list) => list.iter().any(|a| {
                let arn = if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) {
                    format!("arn:aws:iam::{a}:root")
                } else {
                    a.clone()
                };
                arn == req.principal_arn
                    || (arn.contains('*') && glob(&arn, req.principal_arn, false))
            }),
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
            && self.conditions.iter().all(|c| c.holds(&req.conditions))
    }
}

impl Condition {
    fn holds(&self, ctx: &HashMap<String, Vec<String>>) -> bool {
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
        match self.set {
            Some(SetQualifier::ForAnyValue) => values.iter().any(|v| one(v)),
            Some(SetQualifier::ForAllValues) => values.iter().all(|v| one(v)),
            // A single-valued key: a multi-valued one must match on every value.
            None => values.iter().all(|v| one(v)),
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
    fn glob_works() {
        assert!(glob("kms:Generate*", "kms:GenerateDataKey", false));
        assert!(glob("a?c", "abc", false));
        assert!(!glob("a?c", "abbc", false));
        assert!(glob("*", "", false));
        assert!(glob("KMS:*", "kms:decrypt", true));
    }
}
