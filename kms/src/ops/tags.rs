//! Tags: the `Tags` member of CreateKey, and TagResource, UntagResource and ListResourceTags,
//! with AWS's validation (API reference, `Tag` and TagResource): at most 50 tags per key, a key
//! of 1 to 128 characters and a value of 0 to 256, and no key beginning with `aws:` (reserved for
//! AWS: TagException). A key's tags are offered to its key policy as `aws:ResourceTag/<key>`;
//! the tags a request adds or removes as `aws:RequestTag/<key>` and `aws:TagKeys`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::shared::{Call, MAX_KEY_ID, persist_key};
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::keyspec::KeyAttrs;

/// Most tags on one key.
pub(super) const MAX_TAGS: usize = 50;

/// One `Tag` of an input list.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct TagInput {
    tag_key: Member<String>,
    tag_value: Member<String>,
}

/// A tag key, checked.
pub(super) fn tag_key(key: &str) -> Result<&str> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(KmsError::validation(format!(
            "Value '{key}' at 'tagKey' failed to satisfy constraint: Member must have length between 1 and 128"
        )));
    }
    if key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:") {
        return Err(KmsError::Tag(
            "Tags beginning with aws: are reserved".into(),
        ));
    }
    Ok(key)
}

/// The tags of an input's `Tags` list (absent: none), checked; a key given twice keeps its last
/// value.
pub(super) fn from_input(tags: &Member<Vec<TagInput>>) -> Result<BTreeMap<String, String>> {
    let list = match tags {
        Member::Absent => return Ok(BTreeMap::new()),
        Member::Mistyped => return Err(KmsError::Serialization("Tags must be a list".into())),
        Member::Given(l) => l,
    };
    let mut out = BTreeMap::new();
    for t in list {
        let key = tag_key(t.tag_key.text("TagKey")?.ok_or_else(|| {
            KmsError::validation("Value null at 'tags.member.tagKey' failed to satisfy constraint: Member must not be null")
        })?)?;
        let value = t.tag_value.text("TagValue")?.ok_or_else(|| {
            KmsError::validation("Value null at 'tags.member.tagValue' failed to satisfy constraint: Member must not be null")
        })?;
        if value.chars().count() > 256 {
            return Err(KmsError::validation(format!(
                "Value '{value}' at 'tagValue' failed to satisfy constraint: Member must have length less than or equal to 256"
            )));
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    if out.len() > MAX_TAGS {
        return Err(KmsError::Tag(format!(
            "A KMS key can have at most {MAX_TAGS} tags"
        )));
    }
    Ok(out)
}

/// TagResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct TagResourceInput {
    key_id: Member<String>,
    tags: Member<Vec<TagInput>>,
}

/// UntagResource's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct UntagResourceInput {
    key_id: Member<String>,
    tag_keys: Member<Vec<String>>,
}

/// ListResourceTags' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ListTagsInput {
    key_id: Member<String>,
    limit: Member<i64>,
    marker: Member<String>,
}

/// The condition keys of a key's tags: `aws:resourcetag/<key>` (condition keys are
/// case-insensitive, so tag keys that differ only in case give one condition key both values).
pub(crate) fn resource_conditions(attrs: &KeyAttrs) -> HashMap<String, Vec<String>> {
    let mut c: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &attrs.tags {
        c.entry(format!("aws:resourcetag/{}", k.to_ascii_lowercase()))
            .or_default()
            .push(v.clone());
    }
    c
}

/// The condition keys of the tags a request adds: `aws:requesttag/<key>`, and `aws:tagkeys`.
fn request_conditions(tags: &BTreeMap<String, String>) -> HashMap<String, Vec<String>> {
    let mut c: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in tags {
        c.entry(format!("aws:requesttag/{}", k.to_ascii_lowercase()))
            .or_default()
            .push(v.clone());
    }
    c.insert("aws:tagkeys".into(), tags.keys().cloned().collect());
    c
}

fn required_list<'a, T>(member: &'a Member<Vec<T>>, name: &str) -> Result<&'a Vec<T>> {
    match member {
        Member::Given(l) => Ok(l),
        Member::Mistyped => Err(KmsError::Serialization(format!("{name} must be a list"))),
        Member::Absent => Err(KmsError::validation(format!(
            "Value null at '{}' failed to satisfy constraint: Member must not be null",
            if name == "Tags" { "tags" } else { "tagKeys" }
        ))),
    }
}

/// TagResource: adds tags, replacing the value of a key the key already has; refused for a key
/// pending deletion (KMSInvalidStateException) and beyond 50 tags (TagException).
pub(super) async fn tag_resource(mut call: Call<'_>) -> Result<Value> {
    let i: TagResourceInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    required_list(&i.tags, "Tags")?;
    let tags = from_input(&i.tags)?;
    let _guard = call.app.mutate().await?;
    let mut key = call.key_for(key_ref, "kms:TagResource", request_conditions(&tags))?;
    call.app.refuse_pending(&key)?;
    Arc::make_mut(&mut key.attrs).tags.extend(tags);
    if key.attrs.tags.len() > MAX_TAGS {
        return Err(KmsError::Tag(format!(
            "A KMS key can have at most {MAX_TAGS} tags"
        )));
    }
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

/// UntagResource: removes tags by key (a key the key does not have is no error).
pub(super) async fn untag_resource(mut call: Call<'_>) -> Result<Value> {
    let i: UntagResourceInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let keys = required_list(&i.tag_keys, "TagKeys")?;
    for k in keys {
        tag_key(k)?;
    }
    let _guard = call.app.mutate().await?;
    let conditions = HashMap::from([("aws:tagkeys".to_owned(), keys.clone())]);
    let mut key = call.key_for(key_ref, "kms:UntagResource", conditions)?;
    call.app.refuse_pending(&key)?;
    for k in keys {
        Arc::make_mut(&mut key.attrs).tags.remove(k);
    }
    persist_key(call.app, key, None).await?;
    Ok(json!({}))
}

/// ListResourceTags: the key's tags by tag key, `Limit` (1 to 50, default 50) at a time.
pub(super) fn list_resource_tags(mut call: Call<'_>) -> Result<Value> {
    let i: ListTagsInput = call.input()?;
    let key_ref = i.key_id.required("KeyId", MAX_KEY_ID)?;
    let limit = usize::try_from(i.limit.int_in("Limit", 1, 50)?.unwrap_or(50)).unwrap_or(50);
    let marker = i.marker.text("Marker")?;
    let key = call.key_for(key_ref, "kms:ListResourceTags", HashMap::new())?;
    let tags = &key.attrs.tags;
    let rest: Vec<(&String, &String)> = match marker {
        None => tags.iter().collect(),
        Some(m) if tags.contains_key(m) => tags.range(m.to_owned()..).collect(),
        Some(m) => {
            return Err(KmsError::InvalidMarker(format!(
                "Marker '{m}' is not valid"
            )));
        }
    };
    let page: Vec<Value> = rest
        .iter()
        .take(limit)
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    let mut out = json!({"Tags": page, "Truncated": rest.len() > limit});
    if let Some((next, _)) = rest.get(limit) {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testkit::Kms;

    fn tags(v: serde_json::Value) -> Result<BTreeMap<String, String>> {
        let m: Member<Vec<TagInput>> = serde_json::from_value(v).unwrap();
        from_input(&m)
    }

    #[test]
    fn tags_are_checked_as_aws_checks_them() {
        let ok = tags(serde_json::json!([{"TagKey": "env", "TagValue": ""}])).unwrap();
        assert_eq!(ok["env"], "");
        let e = tags(serde_json::json!([{"TagKey": "AWS:x", "TagValue": "v"}])).unwrap_err();
        assert_eq!(e.aws_name(), "TagException");
        let e = tags(serde_json::json!([{"TagKey": "", "TagValue": "v"}])).unwrap_err();
        assert_eq!(e.aws_name(), "ValidationException");
        let e =
            tags(serde_json::json!([{"TagKey": "k", "TagValue": "v".repeat(257)}])).unwrap_err();
        assert_eq!(e.aws_name(), "ValidationException");
        let many: Vec<_> = (0..51)
            .map(|i| serde_json::json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
            .collect();
        assert_eq!(
            tags(serde_json::json!(many)).unwrap_err().aws_name(),
            "TagException"
        );
        assert!(tags(serde_json::json!([{"TagKey": "k"}])).is_err());
    }

    async fn tags_of(kms: &Kms, id: &str) -> Vec<(String, String)> {
        let out = kms.ok("ListResourceTags", json!({"KeyId": id})).await;
        out["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["TagKey"].as_str().unwrap().to_owned(),
                    t["TagValue"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    // AWS API reference, TagResource / UntagResource / ListResourceTags: TagResource adds or
    // replaces, UntagResource removes (an absent key is no error), ListResourceTags pages with
    // Limit / NextMarker / Truncated.
    #[tokio::test]
    async fn tag_untag_and_list_with_paging() {
        let kms = Kms::new();
        let k = kms
            .ok(
                "CreateKey",
                json!({"Tags": [{"TagKey": "env", "TagValue": "dev"}]}),
            )
            .await;
        let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        kms.ok(
            "TagResource",
            json!({"KeyId": kms.key_arn(&id), "Tags": [
                {"TagKey": "env", "TagValue": "prod"},
                {"TagKey": "team", "TagValue": "core"},
                {"TagKey": "cost", "TagValue": ""}
            ]}),
        )
        .await;
        assert_eq!(
            tags_of(&kms, &id).await,
            [("cost", ""), ("env", "prod"), ("team", "core")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let first = kms
            .ok("ListResourceTags", json!({"KeyId": id, "Limit": 2}))
            .await;
        assert_eq!(first["Tags"].as_array().unwrap().len(), 2);
        assert_eq!(first["Truncated"], true);
        assert_eq!(first["NextMarker"], "team");
        let rest = kms
            .ok(
                "ListResourceTags",
                json!({"KeyId": id, "Limit": 2, "Marker": first["NextMarker"]}),
            )
            .await;
        assert_eq!(
            rest["Tags"],
            json!([{"TagKey": "team", "TagValue": "core"}])
        );
        assert_eq!(rest["Truncated"], false);
        assert!(rest.get("NextMarker").is_none());
        kms.ok(
            "UntagResource",
            json!({"KeyId": id, "TagKeys": ["env", "absent"]}),
        )
        .await;
        assert_eq!(tags_of(&kms, &id).await.len(), 2);
        // Tags persist: a restarted App over the same store has them.
        let kept = kms.app.state().keys[&id].attrs.tags.clone();
        assert_eq!(kept.len(), 2);
    }

    // AWS API reference, TagResource: TagException for an `aws:` key and beyond 50 tags;
    // ValidationException for lengths, a missing list, and a Limit outside 1..50
    // (ListResourceTags); InvalidMarkerException; KMSInvalidStateException pending deletion.
    #[tokio::test]
    async fn tag_operations_refuse_what_aws_refuses() {
        let kms = Kms::new();
        let id = kms.new_key().await;
        let full: Vec<_> = (0..50)
            .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
            .collect();
        kms.ok("TagResource", json!({"KeyId": id, "Tags": full}))
            .await;
        let cases = [
            (
                "TagResource",
                json!({"KeyId": id, "Tags": [{"TagKey": "one-more", "TagValue": "v"}]}),
                "TagException",
            ),
            (
                "TagResource",
                json!({"KeyId": id, "Tags": [{"TagKey": "aws:x", "TagValue": "v"}]}),
                "TagException",
            ),
            ("TagResource", json!({"KeyId": id}), "ValidationException"),
            (
                "TagResource",
                json!({"KeyId": id, "Tags": [{"TagKey": "k".repeat(129), "TagValue": "v"}]}),
                "ValidationException",
            ),
            (
                "UntagResource",
                json!({"KeyId": id, "TagKeys": ["aws:x"]}),
                "TagException",
            ),
            ("UntagResource", json!({"KeyId": id}), "ValidationException"),
            (
                "ListResourceTags",
                json!({"KeyId": id, "Limit": 51}),
                "ValidationException",
            ),
            (
                "ListResourceTags",
                json!({"KeyId": id, "Marker": "nope"}),
                "InvalidMarkerException",
            ),
            (
                "ListResourceTags",
                json!({"KeyId": "00000000-0000-4000-8000-000000000000"}),
                "NotFoundException",
            ),
        ];
        for (op, input, name) in cases {
            let (status, body) = kms.call(op, input.clone()).await;
            assert_eq!(
                (status, body["__type"].as_str().unwrap()),
                (400, name),
                "{op} {input}"
            );
        }
        // Replacing a value at 50 tags is fine.
        kms.ok(
            "TagResource",
            json!({"KeyId": id, "Tags": [{"TagKey": "k0", "TagValue": "w"}]}),
        )
        .await;
        kms.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await;
        let (_, body) = kms
            .call(
                "TagResource",
                json!({"KeyId": id, "Tags": [{"TagKey": "k0", "TagValue": "x"}]}),
            )
            .await;
        assert_eq!(body["__type"], "KMSInvalidStateException");
        assert_eq!(
            kms.ok("ListResourceTags", json!({"KeyId": id})).await["Tags"]
                .as_array()
                .unwrap()
                .len(),
            50
        );
    }

    // IAM's global condition keys as AWS KMS supports them (AWS KMS developer guide, "ABAC for
    // AWS KMS"): aws:ResourceTag/<key> is the key's tag; aws:RequestTag/<key> and aws:TagKeys
    // are the tags a TagResource request adds.
    #[tokio::test]
    async fn policies_see_resource_and_request_tags() {
        let kms = Kms::new();
        let role = "arn:aws:iam::111122223333:role/app";
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:Encrypt", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/Project": "alpha"}}},
                {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:TagResource", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:RequestTag/Project": "alpha"},
                               "ForAllValues:StringEquals": {"aws:TagKeys": ["Project"]}}}
            ]
        });
        let k = kms
            .ok("CreateKey", json!({"Policy": policy.to_string()}))
            .await;
        let id = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let app = kms.add_principal(role);
        let enc = json!({"KeyId": id, "Plaintext": "AA=="});
        let (_, body) = kms.call_as(&app, "Encrypt", enc.clone()).await;
        assert_eq!(body["__type"], "AccessDeniedException");
        for denied in [
            json!([{"TagKey": "Project", "TagValue": "beta"}]),
            json!([{"TagKey": "Project", "TagValue": "alpha"}, {"TagKey": "Other", "TagValue": "x"}]),
        ] {
            let (_, body) = kms
                .call_as(&app, "TagResource", json!({"KeyId": id, "Tags": denied}))
                .await;
            assert_eq!(body["__type"], "AccessDeniedException", "{denied}");
        }
        let (status, body) = kms
            .call_as(
                &app,
                "TagResource",
                json!({"KeyId": id, "Tags": [{"TagKey": "Project", "TagValue": "alpha"}]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = kms.call_as(&app, "Encrypt", enc).await;
        assert_eq!(status, 200, "{body}");
    }
}
