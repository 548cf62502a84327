//! Tags of parameters: PutParameter's `Tags` and AddTagsToResource, RemoveTagsFromResource,
//! ListTagsForResource with `ResourceType: Parameter` and the parameter's name as
//! `ResourceId`. At most 50 tags per parameter (TooManyTagsError); adding a key that exists
//! replaces its value.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::model::Parameter;
use super::{find, list, names};
use crate::error::{KmsError, Result, SsmError};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// Most tags on a parameter.
pub(super) const MAX_TAGS: usize = 50;

/// One `Tag`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct TagInput {
    key: Member<String>,
    value: Member<String>,
}

/// AddTagsToResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct AddInput {
    resource_type: Member<String>,
    resource_id: Member<String>,
    tags: Member<Vec<TagInput>>,
}

/// RemoveTagsFromResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct RemoveInput {
    resource_type: Member<String>,
    resource_id: Member<String>,
    tag_keys: Member<Vec<String>>,
}

/// ListTagsForResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListInput {
    resource_type: Member<String>,
    resource_id: Member<String>,
}

/// A tag key's or value's characters (`\p{L}\p{Z}\p{N}_.:/=+\-@`).
fn tag_text(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

fn check_key(k: &str) -> Result<()> {
    if k.is_empty() || k.chars().count() > 128 || !tag_text(k) {
        return Err(KmsError::validation(format!(
            "Value '{k}' at 'tags.member.key' failed to satisfy constraint: Member must have length between 1 and 128 and satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
        )));
    }
    Ok(())
}

/// Checks a `Tags` list (at most `max` entries as the model bounds it); the tags in order, a
/// key given twice keeping its last value.
pub(super) fn parse_tags(m: &Member<Vec<TagInput>>, max: usize) -> Result<Vec<(String, String)>> {
    let Some(items) = list(m, "Tags")? else {
        return Ok(Vec::new());
    };
    if items.len() > max {
        return Err(KmsError::validation(format!(
            "Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for t in items {
        let k = t.key.required("Key", 128)?;
        check_key(k)?;
        let v = t.value.text("Value")?.ok_or_else(|| {
            KmsError::validation(
                "Value null at 'tags.member.value' failed to satisfy constraint: Member must not be null",
            )
        })?;
        if v.chars().count() > 256 || !tag_text(v) {
            return Err(KmsError::validation(format!(
                "Value '{v}' at 'tags.member.value' failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
            )));
        }
        out.retain(|(old, _)| old != k);
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Checks `ResourceType` (Parameter: the others are resources this service does not keep)
/// and `ResourceId`.
fn resource(t: &Member<String>, id: &Member<String>) -> Result<String> {
    const TYPES: &[&str] = &[
        "Document",
        "ManagedInstance",
        "MaintenanceWindow",
        "Parameter",
        "PatchBaseline",
        "OpsItem",
        "OpsMetadata",
        "Automation",
        "Association",
    ];
    let kind = t.one_of("ResourceType", TYPES)?.ok_or_else(|| {
        KmsError::validation(
            "Value null at 'resourceType' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let id = id.text("ResourceId")?.ok_or_else(|| {
        KmsError::validation(
            "Value null at 'resourceId' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if kind != "Parameter" {
        return Err(SsmError::InvalidResourceType(format!(
            "Resource type {kind} is not served by cloister-kms"
        ))
        .into());
    }
    Ok(id.to_owned())
}

pub(super) fn parse_add(i: &AddInput) -> Result<(String, Vec<(String, String)>)> {
    let id = resource(&i.resource_type, &i.resource_id)?;
    if matches!(i.tags, Member::Absent) {
        return Err(KmsError::validation(
            "Value null at 'tags' failed to satisfy constraint: Member must not be null",
        ));
    }
    Ok((id, parse_tags(&i.tags, 1000)?))
}

pub(super) fn parse_remove(i: &RemoveInput) -> Result<(String, Vec<String>)> {
    let id = resource(&i.resource_type, &i.resource_id)?;
    let keys = list(&i.tag_keys, "TagKeys")?.ok_or_else(|| {
        KmsError::validation(
            "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
        )
    })?;
    for k in keys {
        check_key(k)?;
    }
    Ok((id, keys.clone()))
}

pub(super) fn parse_list(i: &ListInput) -> Result<String> {
    resource(&i.resource_type, &i.resource_id)
}

/// The parameter `ResourceId` names (InvalidResourceId when there is none).
fn target(call: &mut ViaCall<'_>, id: &str) -> Result<Parameter> {
    let invalid = || SsmError::InvalidResourceId(format!("Parameter {id} not found."));
    let r = names::reference(id, call.region, &call.app.cfg.account, false).ok_or_else(invalid)?;
    call.audit.resource_arn = Some(r.arn.clone());
    find(call, &r.arn)?.ok_or_else(|| invalid().into())
}

async fn write(call: &ViaCall<'_>, p: &Parameter, tags: Vec<(String, String)>) -> Result<()> {
    let mut body = (*p.body).clone();
    body.tags = tags;
    let p = Parameter {
        arn: p.arn.clone(),
        body: Arc::new(body),
    };
    super::persist(call.app, vec![p], Vec::new()).await
}

pub(super) async fn add(mut call: ViaCall<'_>) -> Result<Value> {
    let (id, new) = parse_add(&call.input()?)?;
    let _guard = call.app.mutate().await?;
    let p = target(&mut call, &id)?;
    let mut tags = p.body.tags.clone();
    for (k, v) in new {
        match tags.iter_mut().find(|(old, _)| *old == k) {
            Some(t) => t.1 = v,
            None => tags.push((k, v)),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(SsmError::TooManyTags(String::new()).into());
    }
    write(&call, &p, tags).await?;
    Ok(json!({}))
}

pub(super) async fn remove(mut call: ViaCall<'_>) -> Result<Value> {
    let (id, keys) = parse_remove(&call.input()?)?;
    let _guard = call.app.mutate().await?;
    let p = target(&mut call, &id)?;
    let mut tags = p.body.tags.clone();
    tags.retain(|(k, _)| !keys.contains(k));
    write(&call, &p, tags).await?;
    Ok(json!({}))
}

pub(super) fn list_tags(mut call: ViaCall<'_>) -> Result<Value> {
    let id = parse_list(&call.input()?)?;
    let p = target(&mut call, &id)?;
    let tags: Vec<Value> = p
        .body
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"TagList": tags}))
}
