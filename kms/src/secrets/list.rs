//! Listing secrets: ListSecrets's `Filters` (as AWS documents them: `description` is a
//! case-insensitive prefix match, `name`, `tag-key`, `tag-value`, `primary-region` and
//! `owning-service` case-sensitive prefix matches, `all` splits the value into words that must
//! each prefix-match some attribute regardless of case; a value starting with `!` negates),
//! the order (by creation date, `SortOrder` asc or desc), and the `NextToken` paging that
//! ListSecrets, ListSecretVersionIds and BatchGetSecretValue share.
//!
//! Filters combine as AWS's console search does: every filter must hold; within one filter,
//! some positive value must match (when there is one) and no negated value may.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{secs, tags_json};
use super::model::Secret;
use super::names::arn_region;
use super::versions::labels_of;
use crate::error::{KmsError, Result, SecretsError};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// One `Filter`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct FilterInput {
    key: Member<String>,
    values: Member<Vec<String>>,
}

/// ListSecrets's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ListSecretsInput {
    include_planned_deletion: Member<bool>,
    max_results: Member<i64>,
    next_token: Member<String>,
    filters: Member<Vec<FilterInput>>,
    sort_order: Member<String>,
}

/// A filter's attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Description,
    Name,
    TagKey,
    TagValue,
    PrimaryRegion,
    OwningService,
    All,
}

const KEYS: [&str; 7] = [
    "description",
    "name",
    "tag-key",
    "tag-value",
    "primary-region",
    "owning-service",
    "all",
];

/// A checked filter.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    field: Field,
    /// (negated, value without its `!`).
    values: Vec<(bool, String)>,
}

/// Checks `Filters`: at most 10, each a known key with 1..10 values of at most 512 characters
/// of `^\!?[a-zA-Z0-9 :_@\/\+\=\.\-\!]*$`. `None` when absent.
pub(crate) fn filters(m: &Member<Vec<FilterInput>>) -> Result<Option<Vec<Filter>>> {
    let list = match m {
        Member::Absent => return Ok(None),
        Member::Mistyped => return Err(KmsError::Serialization("Filters must be a list".into())),
        Member::Given(l) => l,
    };
    if list.len() > 10 {
        return Err(KmsError::validation(
            "Value at 'filters' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    let mut out = Vec::new();
    for f in list {
        let key = f
            .key
            .one_of("Key", &KEYS)?
            .ok_or_else(|| KmsError::validation("Value null at 'filters.member.key' failed to satisfy constraint: Member must not be null"))?;
        let field = match key {
            "description" => Field::Description,
            "name" => Field::Name,
            "tag-key" => Field::TagKey,
            "tag-value" => Field::TagValue,
            "primary-region" => Field::PrimaryRegion,
            "owning-service" => Field::OwningService,
            _ => Field::All,
        };
        let values = match &f.values {
            Member::Given(v) if (1..=10).contains(&v.len()) => v,
            Member::Mistyped => {
                return Err(KmsError::Serialization(
                    "Values must be a list of strings".into(),
                ));
            }
            _ => {
                return Err(KmsError::validation(
                    "Value at 'filters.member.values' failed to satisfy constraint: Member must have length between 1 and 10",
                ));
            }
        };
        let mut checked = Vec::new();
        for v in values {
            let ok = v.chars().count() <= 512
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" :_@/+=.-!".contains(&b));
            if !ok {
                return Err(KmsError::validation(format!(
                    "Value '{v}' at 'filters.member.values.member' failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$"
                )));
            }
            checked.push(match v.strip_prefix('!') {
                Some(rest) => (true, rest.to_owned()),
                None => (false, v.clone()),
            });
        }
        out.push(Filter {
            field,
            values: checked,
        });
    }
    Ok(Some(out))
}

/// Whether `value` prefix-matches any of `attrs` (ignoring case when `fold`).
fn any_prefix<'a>(mut attrs: impl Iterator<Item = &'a str>, value: &str, fold: bool) -> bool {
    attrs.any(|a| {
        if fold {
            a.to_lowercase().starts_with(&value.to_lowercase())
        } else {
            a.starts_with(value)
        }
    })
}

/// Whether `value` matches `s` on `field`.
fn matches(s: &Secret, field: Field, value: &str) -> bool {
    let m = &s.meta;
    let description = m.description.iter().map(String::as_str);
    let keys = m.tags.iter().map(|(k, _)| k.as_str());
    let values = m.tags.iter().map(|(_, v)| v.as_str());
    match field {
        Field::Description => any_prefix(description, value, true),
        Field::Name => m.name.starts_with(value),
        Field::TagKey => any_prefix(keys, value, false),
        Field::TagValue => any_prefix(values, value, false),
        Field::PrimaryRegion => arn_region(&s.arn).starts_with(value),
        // No secret here is owned by another service.
        Field::OwningService => false,
        Field::All => {
            let attrs: Vec<&str> = std::iter::once(m.name.as_str())
                .chain(description)
                .chain(keys)
                .chain(values)
                .collect();
            // Every word of the value must start an attribute or a word of one.
            let words: Vec<&str> = attrs
                .iter()
                .flat_map(|a| a.split(|c: char| !c.is_alphanumeric()))
                .chain(attrs.iter().copied())
                .filter(|w| !w.is_empty())
                .collect();
            value
                .split_whitespace()
                .all(|w| any_prefix(words.iter().copied(), w, true))
        }
    }
}

/// Whether `s` passes every filter.
pub(crate) fn passes(s: &Secret, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        let mut positives = f.values.iter().filter(|(neg, _)| !neg).peekable();
        let positive_ok =
            positives.peek().is_none() || positives.any(|(_, v)| matches(s, f.field, v));
        let negative_ok = f
            .values
            .iter()
            .filter(|(neg, _)| *neg)
            .all(|(_, v)| !matches(s, f.field, v));
        positive_ok && negative_ok
    })
}

/// The request region's secrets passing `filters`, oldest first (secrets scheduled for
/// deletion only when `include_deleted`).
pub(crate) fn matching(
    call: &ViaCall<'_>,
    filters: &[Filter],
    include_deleted: bool,
) -> Vec<Secret> {
    let state = call.app.state();
    let mut out: Vec<Secret> = state
        .secrets
        .values()
        .filter(|s| arn_region(&s.arn) == call.region)
        .filter(|s| include_deleted || s.meta.deletion_ms.is_none())
        .filter(|s| passes(s, filters))
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.meta.created_ms, &a.arn).cmp(&(b.meta.created_ms, &b.arn)));
    out
}

/// A `NextToken` for the item at `offset`.
fn token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("cloister-offset:{offset}"))
}

/// The offset a `NextToken` names.
fn offset(t: &str) -> Result<usize> {
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("cloister-offset:")?.parse().ok())
        .ok_or_else(|| {
            SecretsError::InvalidNextToken("The NextToken value is not valid.".into()).into()
        })
}

/// One page of `items`: at most `limit` from where `next` says, and the token of the rest.
pub(crate) fn page<'a, T>(
    items: &'a [T],
    limit: usize,
    next: Option<&str>,
) -> Result<(&'a [T], Option<String>)> {
    let start = match next {
        Some(t) => offset(t)?,
        None => 0,
    };
    if start > items.len() {
        return Err(
            SecretsError::InvalidNextToken("The NextToken value is not valid.".into()).into(),
        );
    }
    let end = start.saturating_add(limit).min(items.len());
    Ok((&items[start..end], (end < items.len()).then(|| token(end))))
}

/// A `NextToken` member: 1..4096 characters.
pub(crate) fn next_token(m: &Member<String>) -> Result<Option<&str>> {
    let t = m.text("NextToken")?;
    if let Some(s) = t
        && (s.is_empty() || s.len() > 4096)
    {
        return Err(KmsError::validation(
            "Value at 'nextToken' failed to satisfy constraint: Member must have length between 1 and 4096",
        ));
    }
    Ok(t)
}

/// A secret's metadata as DescribeSecret and ListSecrets answer it; `stages_member` is
/// `VersionIdsToStages` (DescribeSecret) or `SecretVersionsToStages` (ListSecrets).
pub(crate) fn metadata(s: &Secret, stages_member: &str) -> Value {
    let m = &s.meta;
    let mut out = json!({
        "ARN": s.arn,
        "Name": m.name,
        "RotationEnabled": false,
        "LastChangedDate": secs(m.last_changed_ms),
        "CreatedDate": secs(m.created_ms),
    });
    if let Some(d) = &m.description {
        out["Description"] = json!(d);
    }
    if let Some(k) = &m.kms_key_id {
        out["KmsKeyId"] = json!(k);
    }
    if let Some(d) = m.deleted_ms {
        out["DeletedDate"] = json!(secs(d));
    }
    if !m.tags.is_empty() {
        out["Tags"] = tags_json(&m.tags);
    }
    let mut by_version = serde_json::Map::new();
    for v in m.stages.values() {
        by_version.insert(v.clone(), json!(labels_of(&m.stages, v)));
    }
    if !by_version.is_empty() {
        out[stages_member] = Value::Object(by_version);
    }
    out
}

pub(crate) fn list_secrets(call: ViaCall<'_>) -> Result<Value> {
    let i: ListSecretsInput = call.input()?;
    let include_deleted = i.include_planned_deletion.flag("IncludePlannedDeletion")?;
    let limit = i.max_results.int_in("MaxResults", 1, 100)?.unwrap_or(100);
    let next = next_token(&i.next_token)?;
    let filters = filters(&i.filters)?.unwrap_or_default();
    let desc = i.sort_order.one_of("SortOrder", &["asc", "desc"])? == Some("desc");
    let mut all = matching(&call, &filters, include_deleted);
    if desc {
        all.reverse();
    }
    let (items, next) = page(&all, usize::try_from(limit).unwrap_or(100), next)?;
    let mut out = json!({
        "SecretList": items.iter().map(|s| metadata(s, "SecretVersionsToStages")).collect::<Vec<_>>(),
    });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::input::Body;
    use crate::secrets::model::SecretMeta;

    fn secret(name: &str, description: &str, tags: &[(&str, &str)]) -> Secret {
        Secret {
            arn: format!("arn:aws:secretsmanager:us-east-1:111122223333:secret:{name}-AbCdEf"),
            meta: Arc::new(SecretMeta {
                name: name.into(),
                description: Some(description.into()),
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                ..SecretMeta::default()
            }),
            versions: BTreeMap::new(),
        }
    }

    fn f(v: Value) -> Vec<Filter> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct S {
            filters: Member<Vec<FilterInput>>,
        }
        let s: S = Body::parse(json!({"Filters": v}).to_string().as_bytes())
            .unwrap()
            .decode()
            .unwrap();
        filters(&s.filters).unwrap().unwrap()
    }

    #[test]
    fn filters_match_as_aws_documents() {
        let db = secret("prod/db", "Database Password", &[("team", "payments")]);
        let api = secret("prod/api", "API token", &[("team", "search")]);
        let check = |v: Value, db_ok: bool, api_ok: bool| {
            let fs = f(v.clone());
            assert_eq!(
                (passes(&db, &fs), passes(&api, &fs)),
                (db_ok, api_ok),
                "{v}"
            );
        };
        check(json!([{"Key": "name", "Values": ["prod/"]}]), true, true);
        check(json!([{"Key": "name", "Values": ["Prod/"]}]), false, false);
        check(
            json!([{"Key": "name", "Values": ["!prod/db"]}]),
            false,
            true,
        );
        check(
            json!([{"Key": "name", "Values": ["prod/db", "prod/api"]}]),
            true,
            true,
        );
        check(
            json!([{"Key": "description", "Values": ["database"]}]),
            true,
            false,
        );
        check(json!([{"Key": "tag-key", "Values": ["te"]}]), true, true);
        check(
            json!([{"Key": "tag-value", "Values": ["pay"]}]),
            true,
            false,
        );
        check(
            json!([{"Key": "tag-value", "Values": ["!pay"]}]),
            false,
            true,
        );
        check(json!([{"Key": "all", "Values": ["TOKEN"]}]), false, true);
        check(
            json!([{"Key": "all", "Values": ["password payments"]}]),
            true,
            false,
        );
        check(
            json!([{"Key": "primary-region", "Values": ["us-east"]}]),
            true,
            true,
        );
        check(
            json!([{"Key": "owning-service", "Values": ["rds"]}]),
            false,
            false,
        );
        // Filters combine with AND.
        check(
            json!([{"Key": "name", "Values": ["prod/"]}, {"Key": "tag-value", "Values": ["search"]}]),
            false,
            true,
        );
    }

    #[test]
    fn filters_are_validated() {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct S {
            filters: Member<Vec<FilterInput>>,
        }
        let err = |v: Value| {
            let s: S = Body::parse(json!({"Filters": v}).to_string().as_bytes())
                .unwrap()
                .decode()
                .unwrap();
            filters(&s.filters).unwrap_err().aws_name()
        };
        assert_eq!(
            err(json!([{"Key": "nope", "Values": ["a"]}])),
            "ValidationException"
        );
        assert_eq!(
            err(json!([{"Key": "name", "Values": []}])),
            "ValidationException"
        );
        assert_eq!(
            err(json!([{"Key": "name", "Values": ["a*b"]}])),
            "ValidationException"
        );
        assert_eq!(err(json!([{"Key": "name"}])), "ValidationException");
        assert_eq!(err(json!({"Key": "name"})), "SerializationException");
        assert_eq!(
            err(json!(vec![json!({"Key": "name", "Values": ["a"]}); 11])),
            "ValidationException"
        );
    }

    #[test]
    fn pages_follow_their_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let (p, next) = page(&items, 2, None).unwrap();
        assert_eq!(p, [0, 1]);
        let (p, next) = page(&items, 2, next.as_deref()).unwrap();
        assert_eq!(p, [2, 3]);
        let (p, next) = page(&items, 2, next.as_deref()).unwrap();
        assert_eq!((p, next), (&[4][..], None));
        for bad in ["", "garbage", &token(6)] {
            assert_eq!(
                page(&items, 2, Some(bad)).unwrap_err().aws_name(),
                "InvalidNextTokenException"
            );
        }
    }
}
