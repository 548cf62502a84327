//! The disclosure policy: what each operation may read and emit, as the image's configuration
//! (`[operations]` in `/etc/cloister/enclave.toml`) says. It is part of the measured image, so a
//! key policy naming the image's PCR0 also approves what the image may reveal, and nothing the
//! host sends can widen it.
//!
//! A job's request ([`Operation`]) is checked here, before any key is released or any record
//! decrypted, and resolved into a [`Plan`]: the fields, k and limits the operation then uses.
//! An operation the policy leaves out is refused; so is a field, a grouping or a target key it
//! does not name (`ENC-POLICY`).

use std::collections::BTreeMap;

use cloister_wire::message::Operation;
use serde::{Deserialize, Serialize};

use crate::error::EnclaveError;

/// Most groups any stats policy may allow.
pub const MAX_GROUPS_LIMIT: u32 = 100_000;
/// Longest budget window (30 days).
pub const MAX_WINDOW_SECS: u64 = 30 * 24 * 60 * 60;
/// Most concurrent jobs any configuration may allow.
pub const MAX_JOBS_LIMIT: u32 = 256;

/// The aggregates a stats row may carry for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// How many records of the group have the field as a number.
    Count,
    /// Their sum.
    Sum,
    /// Their mean.
    Mean,
    /// The smallest value: one record's exact value.
    Min,
    /// The largest value: one record's exact value.
    Max,
}

/// What happens to groups smaller than k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmallGroups {
    /// Folded into one `other` group (itself shown only if it reaches k).
    Other,
    /// Left out.
    Suppress,
}

/// How many jobs may use one KMS key within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Jobs per key per window (at least 1).
    pub jobs: u32,
    /// The window, seconds.
    pub window_secs: u64,
}

/// `[operations.stats]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsPolicy {
    /// Fields a job may group by (labels come only from their scalar values).
    pub group_by: Vec<String>,
    /// Numeric fields a job may aggregate.
    pub aggregate: Vec<String>,
    /// The aggregates rows carry.
    pub emit: Vec<Aggregate>,
    /// k: the smallest group shown, and the fewest values behind any field aggregate.
    pub min_group_size: u32,
    /// What happens to groups smaller than k.
    pub small_groups: SmallGroups,
    /// Most distinct groups a job may build (the job fails past it).
    pub max_groups: u32,
    /// Jobs per KMS key and window.
    pub budget: Budget,
}

/// `[operations.mask]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskPolicy {
    /// Fields masked, each keeping at most its last N characters.
    pub keep_last: BTreeMap<String, u32>,
    /// Fields emitted unchanged.
    #[serde(default)]
    pub clear: Vec<String>,
}

/// `[operations.tokenize]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizePolicy {
    /// Fields replaced by tokens.
    pub fields: Vec<String>,
    /// Fields emitted unchanged.
    #[serde(default)]
    pub clear: Vec<String>,
    /// The KMS key that wraps the tokenization key a job passes (`cloister token-key`).
    /// Exactly one of `key_arn` and `key_secret` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<String>,
    /// Or: the `[[secrets]]` entry whose value the tokenization key is derived from, fetched by
    /// the enclave itself for each job (so a job passes no key, and the key owner rotates it in
    /// Secrets Manager or Parameter Store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
}

/// Where a tokenization key comes from (a checked [`TokenizePolicy`] names exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKeySource<'a> {
    /// Wrapped by this KMS key, passed by the job.
    Wrapped(&'a str),
    /// Derived from this configured secret, fetched by the enclave.
    Secret(&'a str),
}

impl TokenizePolicy {
    /// Where the tokenization key comes from; an error for a policy naming neither or both
    /// (refused when the configuration is loaded).
    pub fn key_source(&self) -> Result<TokenKeySource<'_>, EnclaveError> {
        match (&self.key_arn, &self.key_secret) {
            (Some(arn), None) => Ok(TokenKeySource::Wrapped(arn)),
            (None, Some(name)) => Ok(TokenKeySource::Secret(name)),
            _ => Err(invalid(
                "operations.tokenize needs exactly one of key_arn and key_secret".into(),
            )),
        }
    }
}

/// `[operations.reseal]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResealPolicy {
    /// KMS keys records may be resealed to.
    pub target_keys: Vec<String>,
}

/// `[operations.secrets]`: the `secrets` operation fetches every `[[secrets]]` entry into the
/// enclave and reports one row per secret (name, ARN, version, path, outcome), never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsPolicy {
    /// Whether a row may carry the value's length in bytes (a length says something about a
    /// value: leave it out for short passwords).
    #[serde(default)]
    pub report_length: bool,
}

fn default_max_jobs() -> u32 {
    4
}

/// `[operations]`: every operation the image allows, and how. An operation left out is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operations {
    /// Jobs served at once; more are refused (`ENC-BUSY`).
    #[serde(default = "default_max_jobs")]
    pub max_jobs: u32,
    /// `stats`.
    pub stats: Option<StatsPolicy>,
    /// `mask`.
    pub mask: Option<MaskPolicy>,
    /// `tokenize`.
    pub tokenize: Option<TokenizePolicy>,
    /// `reseal`.
    pub reseal: Option<ResealPolicy>,
    /// `secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsPolicy>,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            max_jobs: default_max_jobs(),
            stats: None,
            mask: None,
            tokenize: None,
            reseal: None,
            secrets: None,
        }
    }
}

fn invalid(reason: String) -> EnclaveError {
    EnclaveError::Config(reason)
}

fn refuse(reason: String) -> EnclaveError {
    EnclaveError::Policy(reason)
}

/// A field name a policy may use: non-empty printable text.
fn check_names<'a>(
    what: &str,
    names: impl IntoIterator<Item = &'a String>,
    seen: &mut Vec<&'a str>,
) -> Result<(), EnclaveError> {
    for name in names {
        if name.is_empty() || name.chars().any(char::is_control) || name.len() > 256 {
            return Err(invalid(format!("{what}: {name:?} is not a field name")));
        }
        if seen.contains(&name.as_str()) {
            return Err(invalid(format!("{what}: {name:?} is named twice")));
        }
        seen.push(name);
    }
    Ok(())
}

fn check_arn(what: &str, arn: &str) -> Result<(), EnclaveError> {
    if !arn.starts_with("arn:") || arn.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(invalid(format!("{what}: {arn:?} is not a key ARN")));
    }
    Ok(())
}

/// A non-empty list of distinct key ARNs (`kms.accepted_keys`, `operations.reseal.target_keys`).
pub(crate) fn check_arns(what: &str, arns: &[String]) -> Result<(), EnclaveError> {
    if arns.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    for (i, arn) in arns.iter().enumerate() {
        check_arn(what, arn)?;
        if arns[..i].contains(arn) {
            return Err(invalid(format!("{what}: {arn:?} given twice")));
        }
    }
    Ok(())
}

impl Operations {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), EnclaveError> {
        if self.max_jobs == 0 || self.max_jobs > MAX_JOBS_LIMIT {
            return Err(invalid(format!(
                "operations.max_jobs {} is not in 1..={MAX_JOBS_LIMIT}",
                self.max_jobs
            )));
        }
        if let Some(s) = &self.stats {
            check_names("operations.stats.group_by", &s.group_by, &mut Vec::new())?;
            check_names("operations.stats.aggregate", &s.aggregate, &mut Vec::new())?;
            if s.emit.is_empty() {
                return Err(invalid("operations.stats.emit is empty".into()));
            }
            if s.emit
                .iter()
                .enumerate()
                .any(|(i, a)| s.emit[..i].contains(a))
            {
                return Err(invalid(
                    "operations.stats.emit names an aggregate twice".into(),
                ));
            }
            if s.min_group_size < 2 {
                return Err(invalid(format!(
                    "operations.stats.min_group_size {} is below 2 (a group of one is a record)",
                    s.min_group_size
                )));
            }
            if s.max_groups == 0 || s.max_groups > MAX_GROUPS_LIMIT {
                return Err(invalid(format!(
                    "operations.stats.max_groups {} is not in 1..={MAX_GROUPS_LIMIT}",
                    s.max_groups
                )));
            }
            let b = s.budget;
            if b.jobs == 0 {
                return Err(invalid("operations.stats.budget.jobs is 0".into()));
            }
            if b.window_secs == 0 || b.window_secs > MAX_WINDOW_SECS {
                return Err(invalid(format!(
                    "operations.stats.budget.window_secs {} is not in 1..={MAX_WINDOW_SECS}",
                    b.window_secs
                )));
            }
        }
        if let Some(m) = &self.mask {
            if m.keep_last.is_empty() && m.clear.is_empty() {
                return Err(invalid("operations.mask names no field".into()));
            }
            let mut seen = Vec::new();
            check_names("operations.mask.keep_last", m.keep_last.keys(), &mut seen)?;
            check_names("operations.mask.clear", &m.clear, &mut seen)?;
        }
        if let Some(t) = &self.tokenize {
            if t.fields.is_empty() {
                return Err(invalid("operations.tokenize.fields is empty".into()));
            }
            let mut seen = Vec::new();
            check_names("operations.tokenize.fields", &t.fields, &mut seen)?;
            check_names("operations.tokenize.clear", &t.clear, &mut seen)?;
            if let TokenKeySource::Wrapped(arn) = t.key_source()? {
                check_arn("operations.tokenize.key_arn", arn)?;
            }
        }
        if let Some(r) = &self.reseal {
            check_arns("operations.reseal.target_keys", &r.target_keys)?;
        }
        Ok(())
    }

    /// Resolves a job's request into what the operation will do, or refuses it. Nothing has
    /// been decrypted when this runs.
    pub fn plan(&self, op: &Operation) -> Result<Plan, EnclaveError> {
        let disabled =
            |name: &str| refuse(format!("this enclave's policy has no {name} operation"));
        match op {
            Operation::Stats { group_by, fields } => {
                let p = self.stats.as_ref().ok_or_else(|| disabled("stats"))?;
                if let Some(g) = group_by
                    && !p.group_by.contains(g)
                {
                    return Err(refuse(format!(
                        "stats may not group by {:?} (the policy allows {:?})",
                        printable(g),
                        p.group_by
                    )));
                }
                let fields = if fields.is_empty() {
                    p.aggregate.clone()
                } else {
                    for (i, f) in fields.iter().enumerate() {
                        if !p.aggregate.contains(f) {
                            return Err(refuse(format!(
                                "stats may not aggregate {:?} (the policy allows {:?})",
                                printable(f),
                                p.aggregate
                            )));
                        }
                        if fields[..i].contains(f) {
                            return Err(refuse(format!("{:?} asked twice", printable(f))));
                        }
                    }
                    fields.clone()
                };
                Ok(Plan::Stats(StatsPlan {
                    group_by: group_by.clone(),
                    fields,
                    emit: p.emit.clone(),
                    k: u64::from(p.min_group_size),
                    small_groups: p.small_groups,
                    max_groups: p.max_groups as usize,
                    budget: p.budget,
                }))
            }
            Operation::Mask => {
                let p = self.mask.as_ref().ok_or_else(|| disabled("mask"))?;
                Ok(Plan::Mask(p.clone()))
            }
            Operation::Tokenize { token_key } => {
                let p = self.tokenize.as_ref().ok_or_else(|| disabled("tokenize"))?;
                match p.key_source()? {
                    TokenKeySource::Wrapped(_) if token_key.is_empty() => {
                        return Err(refuse(
                            "this image's tokenization key is wrapped by \
                             operations.tokenize.key_arn: the job must pass it (--token-key)"
                                .into(),
                        ));
                    }
                    TokenKeySource::Wrapped(_) if token_key.len() > 6144 => {
                        return Err(refuse(format!(
                            "the wrapped tokenization key is {} bytes",
                            token_key.len()
                        )));
                    }
                    TokenKeySource::Secret(name) if !token_key.is_empty() => {
                        return Err(refuse(format!(
                            "this image derives its tokenization key from its secret {name:?}: \
                             a job may not pass one"
                        )));
                    }
                    _ => {}
                }
                Ok(Plan::Tokenize(p.clone()))
            }
            Operation::Reseal { target_key } => {
                let p = self.reseal.as_ref().ok_or_else(|| disabled("reseal"))?;
                if !p.target_keys.contains(target_key) {
                    return Err(refuse(format!(
                        "reseal may not target {:?} (the policy allows {:?})",
                        printable(target_key),
                        p.target_keys
                    )));
                }
                Ok(Plan::Reseal {
                    target_key: target_key.clone(),
                })
            }
            Operation::Secrets => {
                let p = self.secrets.ok_or_else(|| disabled("secrets"))?;
                Ok(Plan::Secrets(p))
            }
            _ => Err(refuse("an operation this enclave does not know".into())),
        }
    }
}

/// The host's text, bounded and without control characters, for an error reason.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// A stats job as the policy allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsPlan {
    /// The grouping field, if any.
    pub group_by: Option<String>,
    /// Fields aggregated.
    pub fields: Vec<String>,
    /// Aggregates emitted.
    pub emit: Vec<Aggregate>,
    /// The smallest group (and field count) shown.
    pub k: u64,
    /// What happens to smaller groups.
    pub small_groups: SmallGroups,
    /// Most distinct groups.
    pub max_groups: usize,
    /// Jobs per key and window.
    pub budget: Budget,
}

/// What a job will do, within the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `stats`.
    Stats(StatsPlan),
    /// `mask`.
    Mask(MaskPolicy),
    /// `tokenize`.
    Tokenize(TokenizePolicy),
    /// `reseal` to this key.
    Reseal {
        /// The target key ARN.
        target_key: String,
    },
    /// `secrets`: fetch the configured secrets.
    Secrets(SecretsPolicy),
}

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    const SOURCE: &str = r#"
[stats]
group_by = ["country"]
aggregate = ["age", "charge"]
emit = ["count", "sum", "mean"]
min_group_size = 3
small_groups = "other"
max_groups = 100
budget = { jobs = 2, window_secs = 60 }
[mask]
keep_last = { card = 4 }
clear = ["country"]
[reseal]
target_keys = ["arn:aws:kms:us-east-1:111122223333:key/new"]
"#;

    fn ops() -> Operations {
        toml::from_str(SOURCE).unwrap()
    }

    fn refused(op: Operation) -> String {
        let e = ops().plan(&op).unwrap_err();
        assert_eq!(e.code(), "ENC-POLICY", "{e}");
        e.to_string()
    }

    #[test]
    fn a_tokenize_job_brings_a_wrapped_key_or_none_as_the_image_says() {
        let mut o = ops();
        o.tokenize = Some(TokenizePolicy {
            fields: vec!["email".into()],
            clear: vec![],
            key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/tok".into()),
            key_secret: None,
        });
        let r = o
            .plan(&Operation::Tokenize { token_key: vec![] })
            .unwrap_err();
        assert_eq!(r.code(), "ENC-POLICY");
        assert!(r.to_string().contains("must pass it (--token-key)"), "{r}");
        let t = o.tokenize.as_mut().unwrap();
        t.key_arn = None;
        t.key_secret = Some("tok".into());
        assert!(matches!(
            o.plan(&Operation::Tokenize { token_key: vec![] }),
            Ok(Plan::Tokenize(_))
        ));
        let brought = o
            .plan(&Operation::Tokenize {
                token_key: vec![1; 40],
            })
            .unwrap_err();
        assert!(
            brought.to_string().contains("may not pass one"),
            "{brought}"
        );
    }

    #[test]
    fn jobs_are_resolved_within_the_policy_or_refused() {
        let o = ops();
        o.validate().unwrap();
        assert_eq!(o.max_jobs, 4);
        let Plan::Stats(s) = o
            .plan(&Operation::Stats {
                group_by: Some("country".into()),
                fields: vec![],
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(s.fields, ["age", "charge"]);
        assert_eq!(s.k, 3);
        let Plan::Stats(s) = o
            .plan(&Operation::Stats {
                group_by: None,
                fields: vec!["charge".into()],
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(s.fields, ["charge"]);
        assert!(
            refused(Operation::Stats {
                group_by: Some("ssn".into()),
                fields: vec![]
            })
            .contains("may not group by \"ssn\"")
        );
        assert!(
            refused(Operation::Stats {
                group_by: None,
                fields: vec!["ssn".into()]
            })
            .contains("may not aggregate")
        );
        assert!(
            refused(Operation::Tokenize { token_key: vec![1] }).contains("no tokenize operation")
        );
        assert!(
            refused(Operation::Reseal {
                target_key: "arn:aws:kms:us-east-1:999999999999:key/host".into()
            })
            .contains("may not target")
        );
        assert!(matches!(o.plan(&Operation::Mask), Ok(Plan::Mask(_))));
        assert!(refused(Operation::Secrets).contains("no secrets operation"));
        let mut with = ops();
        with.secrets = Some(SecretsPolicy {
            report_length: true,
        });
        assert!(matches!(
            with.plan(&Operation::Secrets),
            Ok(Plan::Secrets(SecretsPolicy {
                report_length: true
            }))
        ));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("min_group_size = 3", "min_group_size = 1"),
            ("max_groups = 100", "max_groups = 0"),
            ("jobs = 2", "jobs = 0"),
            ("window_secs = 60", "window_secs = 0"),
            ("emit = [\"count\", \"sum\", \"mean\"]", "emit = []"),
            (
                "emit = [\"count\", \"sum\", \"mean\"]",
                "emit = [\"sum\", \"sum\"]",
            ),
            ("group_by = [\"country\"]", "group_by = [\"\"]"),
            (
                "aggregate = [\"age\", \"charge\"]",
                "aggregate = [\"age\", \"age\"]",
            ),
            ("clear = [\"country\"]", "clear = [\"card\"]"),
            (
                "target_keys = [\"arn:aws:kms:us-east-1:111122223333:key/new\"]",
                "target_keys = [\"k\"]",
            ),
        ];
        for (from, to) in cases {
            assert!(SOURCE.contains(from), "{from}");
            let o: Operations = toml::from_str(&SOURCE.replacen(from, to, 1)).unwrap();
            let e = o.validate().unwrap_err();
            assert_eq!(e.code(), "ENC-CONFIG", "{from} -> {to}");
            assert!(e.to_string().contains("operations."), "{e}");
        }
    }
}
