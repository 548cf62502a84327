//! Tags: the `Tags` member of CreateKey (and, with the tag operations, of TagResource), with AWS's
//! validation (API reference, `Tag` and TagResource): at most 50 tags per key, a key of 1 to 128
//! characters and a value of 0 to 256, and no key beginning with `aws:` (reserved for AWS:
//! TagException).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{KmsError, Result};
use crate::input::Member;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
