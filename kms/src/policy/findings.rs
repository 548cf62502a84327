//! What a key policy lets each principal reach without attestation: `cloister-kms policy check`.
//!
//! A key owner's trust rests on one question per principal: can it get plaintext (or rewrite
//! the policy that guards plaintext) without the enclave's attestation? This module answers it
//! from the policy alone, conservatively: a condition on any key other than an attestation key
//! (`kms:RecipientAttestation:*`, `cloister:RecipientAttestation:*`) is assumed to be
//! satisfiable by the caller (who chooses its encryption context, for example), and a `Deny`
//! counts as a guard only if its conditions are all attestation conditions that hold whenever
//! no attestation is presented. So the report can over-warn, never under-warn.
//!
//! Grants are paths too ([`KeyPolicy::check_with_grants`]): a grant allowing a plaintext
//! operation gives its grantee that path without attestation (grants carry no attestation
//! condition), unless a guarding Deny of the policy covers the grantee, since an explicit Deny
//! refuses whatever a grant allows. CreateGrant, by policy or grant, is reported like a policy
//! write: it lets the caller hand plaintext operations to a principal no Deny names.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::{Condition, Effect, KeyPolicy, Principals, Statement, glob};
use crate::error::KmsError;
use crate::grants::{GrantBody, GrantOperation};

/// The actions whose answer, without a `Recipient`, is plaintext of this key's data (or lets
/// the caller re-wrap it under a key of its own).
const PLAINTEXT: [&str; 5] = [
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:DeriveSharedSecret",
];

/// Actions that rewrite who reaches plaintext: the policy itself (and so every condition in
/// it), grants (which may name a principal no Deny guards), and ReplicateKey (whose caller
/// chooses the policy of a replica holding the same key material, in another region).
const POLICY_WRITE: [&str; 3] = ["kms:PutKeyPolicy", "kms:CreateGrant", "kms:ReplicateKey"];

/// Condition key prefixes that exist only for a verified attestation document.
const ATTESTATION_KEYS: [&str; 2] = [
    "kms:recipientattestation:",
    "cloister:recipientattestation:",
];

/// Who a report line is about: an ARN, or `*` (any authenticated caller).
pub const ANYONE: &str = "*";

/// How one principal may perform one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// No statement allows it.
    NotAllowed,
    /// Allowed only with a verified attestation (by the Allow's conditions or a Deny guard).
    AttestedOnly,
    /// Allowed without attestation: a finding.
    WithoutAttestation,
}

/// One principal and action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    /// `kms:Decrypt`, ...
    pub action: &'static str,
    /// How it is reached.
    pub reach: Reach,
    /// The statements (Sid, or `#<index>` from 1) and grants (`grant <GrantId>`) allowing it
    /// without attestation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// Whether the action is a policy write rather than a plaintext path.
    pub policy_write: bool,
}

/// Every path of one principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalReport {
    /// The principal's ARN, or [`ANYONE`].
    pub principal: String,
    /// One entry per checked action.
    pub paths: Vec<Path>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Per principal named in the policy (an account id is its root ARN), then [`ANYONE`] if a
    /// statement names `*`.
    pub principals: Vec<PrincipalReport>,
    /// How many paths are reached without attestation (the findings).
    pub without_attestation: usize,
}

/// A path that reaches plaintext, or the policy, without attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<'a> {
    /// Who.
    pub principal: &'a str,
    /// The path.
    pub path: &'a Path,
}

impl std::fmt::Display for Finding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.path.action == "kms:CreateGrant" {
            "may create grants (giving plaintext operations to principals no Deny guards)"
        } else if self.path.action == "kms:ReplicateKey" {
            "may replicate this key under a policy of its choosing (the replica decrypts this key's ciphertexts)"
        } else if self.path.policy_write {
            "may rewrite this key policy (and drop any attestation condition in it)"
        } else {
            "reaches plaintext without attestation"
        };
        write!(
            f,
            "{} {what}: {} (statement {})",
            self.principal,
            self.path.action,
            self.path.statements.join(", ")
        )
    }
}

impl Report {
    /// Every path reached without attestation.
    pub fn findings(&self) -> Vec<Finding<'_>> {
        self.principals
            .iter()
            .flat_map(|p| {
                p.paths
                    .iter()
                    .filter(|path| path.reach == Reach::WithoutAttestation)
                    .map(|path| Finding {
                        principal: &p.principal,
                        path,
                    })
            })
            .collect()
    }

    /// The report as text, one block per principal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for p in &self.principals {
            let who = if p.principal == ANYONE {
                "* (any authenticated caller)"
            } else {
                &p.principal
            };
            out.push_str(&format!("principal {who}\n"));
            for path in &p.paths {
                let how = match path.reach {
                    Reach::NotAllowed => "not allowed".to_owned(),
                    Reach::AttestedOnly => "only with attestation".to_owned(),
                    Reach::WithoutAttestation if path.action == "kms:CreateGrant" => format!(
                        "ALLOWED: may create grants (statement {})",
                        path.statements.join(", ")
                    ),
                    Reach::WithoutAttestation if path.action == "kms:ReplicateKey" => format!(
                        "ALLOWED: may replicate under its own policy (statement {})",
                        path.statements.join(", ")
                    ),
                    Reach::WithoutAttestation if path.policy_write => format!(
                        "ALLOWED: may rewrite the policy (statement {})",
                        path.statements.join(", ")
                    ),
                    Reach::WithoutAttestation => format!(
                        "ALLOWED WITHOUT ATTESTATION (statement {})",
                        path.statements.join(", ")
                    ),
                };
                out.push_str(&format!("  {:<24} {how}\n", path.action));
            }
        }
        let n = self.without_attestation;
        out.push_str(&format!(
            "{n} path{} without attestation\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl KeyPolicy {
    /// Which principals reach plaintext, or the policy, without attestation.
    pub fn check(&self) -> Report {
        self.report(&[])
    }

    /// [`KeyPolicy::check`] for a key with grants, given as (grant id, stored body JSON): each
    /// grantee is reported, and a grant allowing a plaintext operation (or CreateGrant) is a
    /// path without attestation unless a guarding Deny of this policy covers its grantee.
    pub fn check_with_grants(&self, grants: &[(String, String)]) -> Result<Report, KmsError> {
        let grants = grants
            .iter()
            .map(|(id, body)| Ok((id.clone(), GrantBody::parse(body)?)))
            .collect::<Result<Vec<_>, KmsError>>()?;
        Ok(self.report(&grants))
    }

    fn report(&self, grants: &[(String, GrantBody)]) -> Report {
        let mut named: BTreeSet<String> = grants
            .iter()
            .map(|(_, g)| g.grantee_principal.clone())
            .collect();
        let mut anyone = false;
        for s in &self.statements {
            match &s.principals {
                Principals::Any => anyone = true,
                Principals::Arns(list) => named.extend(list.iter().cloned()),
            }
        }
        let mut principals: Vec<String> = named.into_iter().collect();
        if anyone {
            principals.push(ANYONE.to_owned());
        }
        let principals = principals
            .into_iter()
            .map(|p| PrincipalReport {
                paths: PLAINTEXT
                    .iter()
                    .map(|a| (a, false))
                    .chain(POLICY_WRITE.iter().map(|a| (a, true)))
                    .map(|(action, policy_write)| self.path(&p, action, policy_write, grants))
                    .collect(),
                principal: p,
            })
            .collect::<Vec<PrincipalReport>>();
        let without_attestation = principals
            .iter()
            .flat_map(|p| &p.paths)
            .filter(|p| p.reach == Reach::WithoutAttestation)
            .count();
        Report {
            principals,
            without_attestation,
        }
    }

    fn path(
        &self,
        principal: &str,
        action: &'static str,
        policy_write: bool,
        grants: &[(String, GrantBody)],
    ) -> Path {
        let applies = |s: &Statement| {
            names(s, principal) && s.actions.iter().any(|a| a == "*" || glob(a, action, true))
        };
        let mut allowed = false;
        let mut unattested = Vec::new();
        let mut guarded = false;
        for (i, s) in self.statements.iter().enumerate() {
            if !applies(s) {
                continue;
            }
            match s.effect {
                Effect::Allow => {
                    allowed = true;
                    if !s.conditions.iter().any(requires_attestation) {
                        unattested.push(s.sid.clone().unwrap_or_else(|| format!("#{}", i + 1)));
                    }
                }
                Effect::Deny => guarded |= denies_unattested(s),
            }
        }
        let op = GrantOperation::of_action(action);
        for (id, g) in grants {
            if g.grantee_principal == principal && op.is_some_and(|op| g.operations.contains(&op)) {
                allowed = true;
                unattested.push(format!("grant {id}"));
            }
        }
        let reach = match (allowed, unattested.is_empty() || guarded) {
            (false, _) => Reach::NotAllowed,
            (true, true) => Reach::AttestedOnly,
            (true, false) => Reach::WithoutAttestation,
        };
        if reach != Reach::WithoutAttestation {
            unattested.clear();
        }
        Path {
            action,
            reach,
            statements: unattested,
            policy_write,
        }
    }
}

/// Whether statement `s` names `principal` ([`ANYONE`] is named only by `*`).
fn names(s: &Statement, principal: &str) -> bool {
    match &s.principals {
        Principals::Any => true,
        Principals::Arns(list) => principal != ANYONE && list.iter().any(|a| a == principal),
    }
}

fn is_attestation_key(c: &Condition) -> bool {
    ATTESTATION_KEYS.iter().any(|p| c.key.starts_with(p))
}

/// A condition that fails when no attestation document was verified.
fn requires_attestation(c: &Condition) -> bool {
    is_attestation_key(c) && !c.holds(&HashMap::new(), Effect::Allow)
}

/// A Deny that fires whenever no attestation is presented, whatever else the caller sends, on
/// whatever key the policy is attached to: its `Resource` must include `*` (a Deny naming one
/// ARN guards only that key, and this report does not know which key it is about).
fn denies_unattested(s: &Statement) -> bool {
    s.resources.iter().any(|r| r == "*")
        && s.conditions
            .iter()
            .all(|c| is_attestation_key(c) && c.holds(&HashMap::new(), Effect::Deny))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OWNER: &str = "arn:aws:iam::111122223333:root";
    const HOST: &str = "arn:aws:iam::111122223333:role/host";
    const PCR: &str = "aa";

    fn report(statements: serde_json::Value) -> Report {
        KeyPolicy::parse(&json!({"Version": "2012-10-17", "Statement": statements}).to_string())
            .unwrap()
            .check()
    }

    fn reach(r: &Report, who: &str, action: &str) -> Reach {
        r.principals
            .iter()
            .find(|p| p.principal == who)
            .unwrap()
            .paths
            .iter()
            .find(|p| p.action == action)
            .unwrap()
            .reach
    }

    // AWS API reference, ReplicateKey: its caller sets the replica's key policy, and the replica
    // holds this key's material, so ReplicateKey reaches plaintext like PutKeyPolicy does.
    #[test]
    fn replicate_key_is_reported_as_a_policy_write() {
        let r = report(json!([
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:ReplicateKey", "Resource": "*"}
        ]));
        assert_eq!(
            reach(&r, HOST, "kms:ReplicateKey"),
            Reach::WithoutAttestation
        );
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::NotAllowed);
        let findings = r.findings();
        assert_eq!(findings.len(), 1);
        assert!(findings[0].to_string().contains("may replicate this key"));
        assert!(
            r.to_text()
                .contains("ALLOWED: may replicate under its own policy")
        );
    }

    fn attested() -> serde_json::Value {
        json!({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": PCR}})
    }

    #[test]
    fn split_principals_report_only_the_owner() {
        let r = report(json!([
            {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": "111122223333"},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt",
             "Resource": "*", "Condition": attested()},
        ]));
        assert_eq!(reach(&r, OWNER, "kms:Decrypt"), Reach::WithoutAttestation);
        assert_eq!(
            reach(&r, OWNER, "kms:PutKeyPolicy"),
            Reach::WithoutAttestation
        );
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::AttestedOnly);
        assert_eq!(reach(&r, HOST, "kms:ReEncryptFrom"), Reach::NotAllowed);
        assert_eq!(reach(&r, HOST, "kms:PutKeyPolicy"), Reach::NotAllowed);
        let findings = r.findings();
        assert!(
            findings.iter().all(|f| f.principal == OWNER),
            "{findings:?}"
        );
        assert!(findings[0].to_string().contains("statement Owner"));
    }

    #[test]
    fn reencrypt_and_wildcards_and_other_conditions_are_findings() {
        // AWS's standard key-user statement: ReEncrypt* unconditioned re-wraps the data key
        // under a key the holder controls; an encryption-context condition is the caller's to
        // satisfy.
        let r = report(json!([
            {"Effect": "Allow", "Principal": {"AWS": HOST},
             "Action": ["kms:Decrypt", "kms:ReEncrypt*"], "Resource": "*", "Condition": attested()},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:ReEncrypt*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:GenerateDataKey*",
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:dataset": "x"}}},
        ]));
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::AttestedOnly);
        assert_eq!(
            reach(&r, HOST, "kms:ReEncryptFrom"),
            Reach::WithoutAttestation
        );
        assert_eq!(
            reach(&r, HOST, "kms:GenerateDataKey"),
            Reach::WithoutAttestation
        );
        assert_eq!(
            reach(&r, HOST, "kms:GenerateDataKeyPair"),
            Reach::WithoutAttestation
        );
        assert_eq!(r.findings().len(), 3);
    }

    #[test]
    fn a_null_deny_guards_and_a_dodgeable_deny_does_not() {
        let allow = json!({"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:*",
                           "Resource": "*"});
        let guard = json!({"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*",
            "Resource": "*",
            "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}});
        let r = report(json!([allow, guard]));
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::AttestedOnly);
        assert_eq!(reach(&r, HOST, "kms:PutKeyPolicy"), Reach::AttestedOnly);
        assert!(r.findings().is_empty());
        // A Deny that also needs an encryption-context value the caller can avoid sending.
        let dodgeable = json!({"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*",
            "Resource": "*",
            "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"},
                          "StringEquals": {"kms:EncryptionContext:tier": "gold"}}});
        let r = report(json!([allow, dodgeable]));
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::WithoutAttestation);
        // A Deny naming another key's ARN (or an alias ARN) guards nothing here.
        let elsewhere = json!({"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*",
            "Resource": "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000",
            "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}});
        let r = report(json!([allow, elsewhere]));
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::WithoutAttestation);
        // An IfExists attestation condition holds when nothing is attested: no protection.
        let if_exists = json!({"Effect": "Allow", "Principal": {"AWS": HOST},
            "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEqualsIfExists": {"kms:RecipientAttestation:ImageSha384": PCR}}});
        assert_eq!(
            reach(&report(json!([if_exists])), HOST, "kms:Decrypt"),
            Reach::WithoutAttestation
        );
    }

    #[test]
    fn anyone_is_reported_and_matches_named_principals() {
        let r = report(json!([
            {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Encrypt",
             "Resource": "*"},
        ]));
        assert_eq!(reach(&r, ANYONE, "kms:Decrypt"), Reach::WithoutAttestation);
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::WithoutAttestation);
        assert_eq!(r.principals.last().unwrap().principal, ANYONE);
        let text = r.to_text();
        assert!(
            text.contains("principal * (any authenticated caller)"),
            "{text}"
        );
        assert!(text.ends_with("2 paths without attestation\n"), "{text}");
    }

    fn grant(id: &str, grantee: &str, ops: &[&str]) -> (String, String) {
        let body = json!({"grantee_principal": grantee, "operations": ops,
                          "issuing_account": OWNER});
        (id.to_owned(), body.to_string())
    }

    #[test]
    fn grants_are_paths_unless_a_deny_guards_their_grantee() {
        const OTHER: &str = "arn:aws:iam::111122223333:role/other";
        let policy = KeyPolicy::parse(
            &json!({"Statement": [
                {"Sid": "Owner", "Effect": "Allow", "Principal": {"AWS": OWNER}, "Action": "kms:*",
                 "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": HOST}, "Action": "kms:Decrypt",
                 "Resource": "*", "Condition": attested()},
                {"Effect": "Deny", "Principal": {"AWS": HOST}, "Action": "kms:*", "Resource": "*",
                 "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
            ]})
            .to_string(),
        )
        .unwrap();
        let grants = [
            grant("g-host", HOST, &["Decrypt", "GenerateDataKey"]),
            grant("g-other", OTHER, &["Decrypt", "DescribeKey", "CreateGrant"]),
        ];
        let r = policy.check_with_grants(&grants).unwrap();
        // The host's grant is covered by the Deny that binds grantees too.
        assert_eq!(reach(&r, HOST, "kms:Decrypt"), Reach::AttestedOnly);
        assert_eq!(reach(&r, HOST, "kms:GenerateDataKey"), Reach::AttestedOnly);
        // Another grantee, named only by its grant, reaches plaintext without attestation.
        assert_eq!(reach(&r, OTHER, "kms:Decrypt"), Reach::WithoutAttestation);
        assert_eq!(
            reach(&r, OTHER, "kms:CreateGrant"),
            Reach::WithoutAttestation
        );
        assert_eq!(reach(&r, OTHER, "kms:ReEncryptFrom"), Reach::NotAllowed);
        let findings = r.findings();
        let other: Vec<String> = findings
            .iter()
            .filter(|f| f.principal == OTHER)
            .map(ToString::to_string)
            .collect();
        assert_eq!(other.len(), 2, "{other:?}");
        assert!(
            other[0].contains("kms:Decrypt (statement grant g-other)"),
            "{other:?}"
        );
        assert!(other[1].contains("may create grants"), "{other:?}");
        // Without the grants, the other principal is not in the report at all.
        assert!(
            policy
                .check()
                .principals
                .iter()
                .all(|p| p.principal != OTHER)
        );
        // A body that is not a grant is an error, not a silent pass.
        assert!(
            policy
                .check_with_grants(&[("g".into(), "{}".into())])
                .is_err()
        );
    }
}
