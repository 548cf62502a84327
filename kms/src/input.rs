//! Reading an operation's JSON input with AWS's validation wording.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result};

/// An operation's input object.
#[derive(Debug)]
pub struct Input(pub Map<String, Value>);

fn member(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

impl Input {
    /// Parses a request body: a JSON object (an empty body counts as `{}`).
    pub fn parse(body: &[u8]) -> Result<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            Ok(_) => Err(KmsError::Serialization(
                "Start of structure or map found where not expected.".into(),
            )),
            Err(e) => Err(KmsError::Serialization(format!(
                "The request body is not valid JSON: {e}"
            ))),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub fn str(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KmsError::Serialization(format!("{name} must be a string"))),
        }
    }

    /// A required string of 1..=max characters.
    pub fn req_str(&self, name: &str, max: usize) -> Result<&str> {
        let s = self.str(name)?.ok_or_else(|| {
            KmsError::validation(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                member(name)
            ))
        })?;
        if s.is_empty() || s.chars().count() > max {
            return Err(KmsError::validation(format!(
                "Value '{s}' at '{}' failed to satisfy constraint: Member must have length between 1 and {max}",
                member(name)
            )));
        }
        Ok(s)
    }

    /// An optional integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| KmsError::Serialization(format!("{name} must be an integer"))),
            Some(_) => Err(KmsError::Serialization(format!(
                "{name} must be an integer"
            ))),
        }
    }

    /// An integer within a range, if present.
    pub fn int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        let v = self.int(name)?;
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

    /// An optional boolean.
    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(KmsError::Serialization(format!("{name} must be a boolean"))),
        }
    }

    /// An optional base64 blob whose decoded length must be within min..=max.
    pub fn blob(&self, name: &str, min: usize, max: usize) -> Result<Option<Vec<u8>>> {
        let Some(s) = self.str(name)? else {
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
    pub fn req_blob(&self, name: &str, min: usize, max: usize) -> Result<Vec<u8>> {
        self.blob(name, min, max)?.ok_or_else(|| {
            KmsError::validation(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                member(name)
            ))
        })
    }

    /// An encryption context (string to string map), empty when absent.
    pub fn context(&self, name: &str) -> Result<EncryptionContext> {
        match self.get(name) {
            None => Ok(EncryptionContext::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(KmsError::Serialization(format!(
                        "{name} values must be strings"
                    ))),
                })
                .collect(),
            Some(_) => Err(KmsError::Serialization(format!(
                "{name} must be a map of strings"
            ))),
        }
    }

    /// An optional nested object.
    pub fn object(&self, name: &str) -> Result<Option<Input>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Input(m.clone()))),
            Some(_) => Err(KmsError::Serialization(format!(
                "{name} must be a structure"
            ))),
        }
    }

    /// A string that must be one of `allowed`.
    pub fn enum_str(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>> {
        match self.str(name)? {
            Some(v) if !allowed.contains(&v) => Err(KmsError::validation(format!(
                "Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                member(name),
                allowed.join(", ")
            ))),
            other => Ok(other),
        }
    }
}

/// Standard base64, as KMS blobs are sent.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
