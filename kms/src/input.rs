//! Typed operation inputs: the request body, and the members of AWS's input shapes.
//!
//! An operation's input is a struct of [`Member`]s with AWS's member names. Deserializing never
//! fails on a member of the wrong JSON type: the member remembers it, and the operation reports
//! it when it reads that member, so the errors come in the order the operation checks its input
//! (AWS's order), with AWS's wording. Members the struct does not name are ignored, as AWS does.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result};

/// A request body: a JSON object (an empty body counts as `{}`).
#[derive(Debug, Clone)]
pub(crate) struct Body(Value);

impl Default for Body {
    /// `{}`.
    fn default() -> Self {
        Self(Value::Object(serde_json::Map::new()))
    }
}

impl Body {
    /// Parses a request body.
    pub(crate) fn parse(body: &[u8]) -> Result<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => Ok(Self(v)),
            Ok(_) => Err(KmsError::Serialization(
                "Start of structure or map found where not expected.".into(),
            )),
            Err(e) => Err(KmsError::Serialization(format!(
                "The request body is not valid JSON: {e}"
            ))),
        }
    }

    /// Whether the body has member `name`, not `null`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_null())
    }

    /// Whether member `name` is JSON `true`.
    pub(crate) fn is_true(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v == &Value::Bool(true))
    }

    /// The body as the operation's input shape.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.0).map_err(|e| KmsError::Serialization(e.to_string()))
    }
}

/// One member of an input: absent (or `null`), of the expected type, or of another type.
#[derive(Debug, Clone, Default)]
pub(crate) enum Member<T> {
    /// Not sent, or `null`.
    #[default]
    Absent,
    /// Sent, of the expected JSON type.
    Given(T),
    /// Sent, of another JSON type.
    Mistyped,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<T> {
    Given(T),
    Other(IgnoredAny),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Member<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<Loose<T>>::deserialize(d)? {
            None => Self::Absent,
            Some(Loose::Given(v)) => Self::Given(v),
            Some(Loose::Other(_)) => Self::Mistyped,
        })
    }
}

/// A blob member: base64 text, decoded when the operation reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct Base64(String);

/// A map member (an encryption context): string values, or some other values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Map {
    /// Every value a string.
    Strings(EncryptionContext),
    /// Some value is not a string.
    Other(#[allow(dead_code, reason = "only its shape matters")] BTreeMap<String, IgnoredAny>),
}

/// A structure member: an object, or a list (which is not one).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Structure<T> {
    /// A list where a structure belongs.
    List(#[allow(dead_code, reason = "only its shape matters")] Vec<IgnoredAny>),
    /// An object.
    Object(T),
}

/// AWS's name for a member in messages: the first letter lower-case (`keyId`).
fn member(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn not_null(name: &str) -> KmsError {
    KmsError::validation(format!(
        "Value null at '{}' failed to satisfy constraint: Member must not be null",
        member(name)
    ))
}

impl<T> Member<T> {
    fn value(&self, name: &str, what: &str) -> Result<Option<&T>> {
        match self {
            Self::Absent => Ok(None),
            Self::Given(v) => Ok(Some(v)),
            Self::Mistyped => Err(KmsError::Serialization(format!("{name} {what}"))),
        }
    }
}

impl Member<String> {
    /// An optional string.
    pub(crate) fn text(&self, name: &str) -> Result<Option<&str>> {
        Ok(self.value(name, "must be a string")?.map(String::as_str))
    }

    /// A required string of 1..=max characters.
    pub(crate) fn required(&self, name: &str, max: usize) -> Result<&str> {
        let s = self.text(name)?.ok_or_else(|| not_null(name))?;
        if s.is_empty() || s.chars().count() > max {
            return Err(KmsError::validation(format!(
                "Value '{s}' at '{}' failed to satisfy constraint: Member must have length between 1 and {max}",
                member(name)
            )));
        }
        Ok(s)
    }

    /// An optional string that must be one of `allowed`.
    pub(crate) fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>> {
        match self.text(name)? {
            Some(v) if !allowed.contains(&v) => Err(KmsError::validation(format!(
                "Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                member(name),
                allowed.join(", ")
            ))),
            other => Ok(other),
        }
    }
}

impl Member<i64> {
    /// An optional integer within min..=max.
    pub(crate) fn int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        let v = self.value(name, "must be an integer")?.copied();
        if let Some(n) = v {
            if n < min {
                return Err(KmsError::validation(format!(
                    "Value '{n}' at '{}' failed to satisfy constraint: Member must have value greater than or equal to {min}",
                    member(name)
                )));
            }
            if n > max {
                return Err(KmsError::validation(format!(
                    "Value '{n}' at '{}' failed to satisfy constraint: Member must have value less than or equal to {max}",
                    member(name)
                )));
            }
        }
        Ok(v)
    }
}

impl Member<bool> {
    /// An optional boolean, false when absent.
    pub(crate) fn flag(&self, name: &str) -> Result<bool> {
        Ok(self
            .value(name, "must be a boolean")?
            .copied()
            .unwrap_or(false))
    }
}

impl Member<Base64> {
    /// An optional blob whose decoded length must be within min..=max.
    pub(crate) fn blob(&self, name: &str, min: usize, max: usize) -> Result<Option<Vec<u8>>> {
        let Some(Base64(s)) = self.value(name, "must be a string")? else {
            return Ok(None);
        };
        let bytes = STANDARD
            .decode(s)
            .map_err(|_| KmsError::Serialization(format!("{name} is not valid base64")))?;
        if bytes.len() < min {
            return Err(KmsError::validation(format!(
                "Value at '{}' failed to satisfy constraint: Member must have length greater than or equal to {min}",
                member(name)
            )));
        }
        if bytes.len() > max {
            return Err(KmsError::validation(format!(
                "Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
                member(name)
            )));
        }
        Ok(Some(bytes))
    }

    /// A required blob.
    pub(crate) fn req_blob(&self, name: &str, min: usize, max: usize) -> Result<Vec<u8>> {
        self.blob(name, min, max)?.ok_or_else(|| not_null(name))
    }
}

/// Most characters an encryption context holds, its keys' and values' together (AWS's bound).
pub(crate) const MAX_CONTEXT_CHARS: usize = 8192;

impl Member<Map> {
    /// An encryption context, empty when absent; at most [`MAX_CONTEXT_CHARS`] characters.
    pub(crate) fn context(&self, name: &str) -> Result<EncryptionContext> {
        let ec = match self.value(name, "must be a map of strings")? {
            None => return Ok(EncryptionContext::new()),
            Some(Map::Strings(ec)) => ec,
            Some(Map::Other(_)) => {
                return Err(KmsError::Serialization(format!(
                    "{name} values must be strings"
                )));
            }
        };
        let chars: usize = ec
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum();
        if chars > MAX_CONTEXT_CHARS {
            return Err(KmsError::validation(format!(
                "Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {MAX_CONTEXT_CHARS}",
                member(name)
            )));
        }
        Ok(ec.clone())
    }
}

impl<T> Member<Structure<T>> {
    /// An optional nested structure.
    pub(crate) fn structure(&self, name: &str) -> Result<Option<&T>> {
        match self.value(name, "must be a structure")? {
            None => Ok(None),
            Some(Structure::Object(v)) => Ok(Some(v)),
            Some(Structure::List(_)) => Err(KmsError::Serialization(format!(
                "{name} must be a structure"
            ))),
        }
    }
}

/// Standard base64, as KMS blobs are sent.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct Shape {
        key_id: Member<String>,
        limit: Member<i64>,
        flag: Member<bool>,
        data: Member<Base64>,
        context: Member<Map>,
        nested: Member<Structure<Shape2>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct Shape2 {
        inner: Member<String>,
    }

    fn shape(v: Value) -> Shape {
        Body::parse(v.to_string().as_bytes())
            .unwrap()
            .decode()
            .unwrap()
    }

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(Body::parse(b"  ").is_ok());
        assert!(message(Body::parse(b"[1]")).starts_with("Start of structure"));
        assert!(message(Body::parse(b"{")).starts_with("The request body is not valid JSON"));
    }

    #[test]
    fn members_report_their_type_when_read() {
        let s = shape(json!({
            "KeyId": 5, "Limit": 1.5, "Flag": "yes", "Data": "!!", "Context": {"a": 1},
            "Nested": [1], "Unknown": true
        }));
        assert_eq!(message(s.key_id.text("KeyId")), "KeyId must be a string");
        assert_eq!(
            message(s.limit.int_in("Limit", 1, 2)),
            "Limit must be an integer"
        );
        assert_eq!(message(s.flag.flag("Flag")), "Flag must be a boolean");
        assert_eq!(
            message(s.data.blob("Data", 1, 2)),
            "Data is not valid base64"
        );
        assert_eq!(
            message(s.context.context("Context")),
            "Context values must be strings"
        );
        assert_eq!(
            message(s.nested.structure("Nested")),
            "Nested must be a structure"
        );
    }

    #[test]
    fn members_validate_with_aws_wording() {
        let s = shape(
            json!({"KeyId": "", "Limit": 0, "Data": "AAAA", "Context": {"a": "b"},
            "Nested": {"Inner": "x"}, "Flag": null}),
        );
        assert!(message(s.key_id.required("KeyId", 5)).contains("at 'keyId'"));
        assert!(message(s.limit.int_in("Limit", 1, 2)).contains("greater than or equal to 1"));
        assert!(message(s.data.blob("Data", 1, 2)).contains("less than or equal to 2"));
        assert_eq!(s.data.req_blob("Data", 1, 3).unwrap(), vec![0, 0, 0]);
        assert_eq!(s.context.context("Context").unwrap().len(), 1);
        assert!(!s.flag.flag("Flag").unwrap());
        let nested = s.nested.structure("Nested").unwrap().unwrap();
        assert_eq!(nested.inner.text("Inner").unwrap(), Some("x"));
        let empty = shape(json!({}));
        assert!(message(empty.key_id.required("KeyId", 5)).contains("Value null at 'keyId'"));
        assert!(empty.context.context("Context").unwrap().is_empty());
        let bad = shape(json!({"KeyId": "NOPE"}));
        assert!(
            message(bad.key_id.one_of("KeyId", &["A", "B"])).contains("enum value set: [A, B]")
        );
    }

    #[test]
    fn encryption_contexts_hold_at_most_8192_characters() {
        // Keys and values count together, in characters (not bytes).
        let at_limit = json!({"Context": {"k": "é".repeat(4091), "key2": "v".repeat(4096)}});
        assert_eq!(shape(at_limit).context.context("Context").unwrap().len(), 2);
        let over = json!({"Context": {"k": "é".repeat(4092), "key2": "v".repeat(4096)}});
        let err = shape(over).context.context("Context").unwrap_err();
        assert_eq!(err.aws_name(), "ValidationException");
        assert_eq!(
            err.to_string(),
            "1 validation error detected: Value at 'context' failed to satisfy constraint: Member must have length less than or equal to 8192"
        );
    }

    #[test]
    fn bodies_tell_which_members_they_have() {
        let b = Body::parse(br#"{"Recipient": {"A": 1}, "Gone": null}"#).unwrap();
        assert!(b.has("Recipient"));
        assert!(!b.has("Gone") && !b.has("Other"));
    }
}
