//! The attestation document payload: a CBOR map with nine well-known keys.
//!
//! Parsing is by key, never by position, and applies the syntactic checks of AWS's procedure
//! (nsm-api `attestation_process.md` §3.2.2) with the tolerances real hardware needs: optional
//! fields arrive as CBOR `null` (real documents always carry the key), and `user_data`/`nonce` may
//! be up to 1024 bytes (hardware accepts 1024 although the prose says 512). Duplicate keys,
//! trailing bytes and wrong types are refused.

use ciborium::Value;

use crate::error::{Error, Result};
use crate::pcr::{PCR_COUNT, PcrIndex, PcrValue, Pcrs};
use crate::time::Timestamp;

/// Largest certificate, public key, user data or nonce a document may carry.
pub const MAX_FIELD_LEN: usize = 1024;
/// Largest payload accepted (the NSM's response buffer is 0x3000 bytes).
pub(crate) const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// Largest number of certificates in `cabundle`.
pub(crate) const MAX_CABUNDLE: usize = 16;

/// A decoded attestation document. Holding one says nothing about its authenticity: only a
/// [`crate::VerifiedDocument`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// The issuing NSM's module id, e.g. `i-0123…-enc0123…`.
    pub module_id: String,
    /// When the document was made, in milliseconds since the Unix epoch.
    pub timestamp: Timestamp,
    /// The locked PCRs at that time.
    pub pcrs: Pcrs,
    /// DER of the leaf certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER certificates, root first.
    pub cabundle: Vec<Vec<u8>>,
    /// A key the enclave asked to have bound (the KMS encrypts to it).
    pub public_key: Option<Vec<u8>>,
    /// Application data the enclave asked to have bound.
    pub user_data: Option<Vec<u8>>,
    /// The challenge the enclave was given.
    pub nonce: Option<Vec<u8>>,
}

/// The only digest Nitro uses.
const DIGEST_SHA384: &str = "SHA384";

impl AttestationDocument {
    /// Parses and syntactically checks a payload.
    pub fn from_payload(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_PAYLOAD_LEN {
            return Err(syntax(format!(
                "payload is {} bytes, at most {MAX_PAYLOAD_LEN}",
                bytes.len()
            )));
        }
        let mut rest = bytes;
        let value: Value = ciborium::from_reader(&mut rest)
            .map_err(|e| syntax(format!("payload is not CBOR: {e}")))?;
        if !rest.is_empty() {
            return Err(syntax(format!(
                "{} bytes after the payload map",
                rest.len()
            )));
        }
        let Value::Map(entries) = value else {
            return Err(syntax("payload is not a CBOR map".into()));
        };

        let mut fields = Fields::default();
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(syntax("payload map has a non-text key".into()));
            };
            let slot = match key.as_str() {
                "module_id" => &mut fields.module_id,
                "digest" => &mut fields.digest,
                "timestamp" => &mut fields.timestamp,
                "pcrs" => &mut fields.pcrs,
                "certificate" => &mut fields.certificate,
                "cabundle" => &mut fields.cabundle,
                "public_key" => &mut fields.public_key,
                "user_data" => &mut fields.user_data,
                "nonce" => &mut fields.nonce,
                // Unknown keys are covered by the signature; a future NSM may add some.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(syntax(format!("duplicate key {key:?}")));
            }
        }
        fields.check()
    }

    /// Encodes the payload as the NSM does: a definite map, keys in hardware order, `null` for
    /// absent optional fields.
    pub fn to_payload(&self) -> Vec<u8> {
        let opt = |v: &Option<Vec<u8>>| v.clone().map_or(Value::Null, Value::Bytes);
        let text = |s: &str| Value::Text(s.to_owned());
        let map = Value::Map(vec![
            (text("module_id"), text(&self.module_id)),
            (text("digest"), text(DIGEST_SHA384)),
            (
                text("timestamp"),
                Value::Integer(self.timestamp.as_millis().into()),
            ),
            (
                text("pcrs"),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(i, v)| {
                            (
                                Value::Integer(i.get().into()),
                                Value::Bytes(v.as_bytes().to_vec()),
                            )
                        })
                        .collect(),
                ),
            ),
            (text("certificate"), Value::Bytes(self.certificate.clone())),
            (
                text("cabundle"),
                Value::Array(self.cabundle.iter().cloned().map(Value::Bytes).collect()),
            ),
            (text("public_key"), opt(&self.public_key)),
            (text("user_data"), opt(&self.user_data)),
            (text("nonce"), opt(&self.nonce)),
        ]);
        let mut out = Vec::new();
        // Writing a Value into a Vec cannot fail.
        let _ = ciborium::into_writer(&map, &mut out);
        out
    }
}

fn syntax(reason: String) -> Error {
    Error::Syntax(reason)
}

#[derive(Default)]
struct Fields {
    module_id: Option<Value>,
    digest: Option<Value>,
    timestamp: Option<Value>,
    pcrs: Option<Value>,
    certificate: Option<Value>,
    cabundle: Option<Value>,
    public_key: Option<Value>,
    user_data: Option<Value>,
    nonce: Option<Value>,
}

impl Fields {
    fn check(self) -> Result<AttestationDocument> {
        let module_id = match required(self.module_id, "module_id")? {
            Value::Text(s) if !s.is_empty() => s,
            _ => return Err(syntax("module_id must be a non-empty text string".into())),
        };
        match required(self.digest, "digest")? {
            Value::Text(s) if s == DIGEST_SHA384 => {}
            other => {
                return Err(syntax(format!(
                    "digest must be \"SHA384\", found {other:?}"
                )));
            }
        }
        let timestamp = match required(self.timestamp, "timestamp")? {
            Value::Integer(i) => u64::try_from(i)
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| syntax("timestamp must be a positive integer".into()))?,
            _ => return Err(syntax("timestamp must be an integer".into())),
        };
        let pcrs = parse_pcrs(required(self.pcrs, "pcrs")?)?;
        let certificate = bytes_in(required(self.certificate, "certificate")?, "certificate", 1)?;
        let cabundle = match required(self.cabundle, "cabundle")? {
            Value::Array(items) if !items.is_empty() && items.len() <= MAX_CABUNDLE => items
                .into_iter()
                .map(|c| bytes_in(c, "cabundle entry", 1))
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(syntax(format!(
                    "cabundle must be an array of 1..={MAX_CABUNDLE} certificates"
                )));
            }
        };
        Ok(AttestationDocument {
            module_id,
            timestamp: Timestamp::from_millis(timestamp),
            pcrs,
            certificate,
            cabundle,
            public_key: optional(self.public_key, "public_key", 1)?,
            user_data: optional(self.user_data, "user_data", 0)?,
            nonce: optional(self.nonce, "nonce", 0)?,
        })
    }
}

fn required(value: Option<Value>, name: &str) -> Result<Value> {
    value.ok_or_else(|| syntax(format!("missing {name}")))
}

fn bytes_in(value: Value, name: &str, min: usize) -> Result<Vec<u8>> {
    match value {
        Value::Bytes(b) if (min..=MAX_FIELD_LEN).contains(&b.len()) => Ok(b),
        Value::Bytes(b) => Err(syntax(format!(
            "{name} is {} bytes, must be {min}..={MAX_FIELD_LEN}",
            b.len()
        ))),
        _ => Err(syntax(format!("{name} must be a byte string"))),
    }
}

fn optional(value: Option<Value>, name: &str, min: usize) -> Result<Option<Vec<u8>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bytes_in(v, name, min).map(Some),
    }
}

fn parse_pcrs(value: Value) -> Result<Pcrs> {
    let Value::Map(entries) = value else {
        return Err(syntax("pcrs must be a map".into()));
    };
    if entries.is_empty() || entries.len() > usize::from(PCR_COUNT) {
        return Err(syntax(format!(
            "pcrs has {} entries, must be 1..={PCR_COUNT}",
            entries.len()
        )));
    }
    let mut pcrs = Pcrs::new();
    for (k, v) in entries {
        let index = match k {
            Value::Integer(i) => u64::try_from(i).ok().and_then(PcrIndex::new),
            _ => None,
        }
        .ok_or_else(|| syntax("PCR index must be an integer in 0..32".into()))?;
        let value = match v {
            Value::Bytes(b) => PcrValue::from_bytes(&b),
            _ => None,
        }
        .ok_or_else(|| syntax(format!("PCR{index} must be a 48-byte string")))?;
        if pcrs.insert(index, value).is_some() {
            return Err(syntax(format!("PCR{index} appears twice")));
        }
    }
    Ok(pcrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AttestationDocument {
        let mut pcrs = Pcrs::new();
        pcrs.insert(PcrIndex::IMAGE, PcrValue::measure(b"image"));
        AttestationDocument {
            module_id: "i-0-enc0".into(),
            timestamp: Timestamp::from_millis(1),
            pcrs,
            certificate: vec![1],
            cabundle: vec![vec![2]],
            public_key: None,
            user_data: Some(vec![]),
            nonce: Some(vec![9; 1024]),
        }
    }

    #[test]
    fn round_trip() {
        let doc = sample();
        assert_eq!(
            AttestationDocument::from_payload(&doc.to_payload()),
            Ok(doc)
        );
    }

    #[test]
    fn refuses_oversized_fields_and_trailing_bytes() {
        let mut doc = sample();
        doc.nonce = Some(vec![0; 1025]);
        let err = AttestationDocument::from_payload(&doc.to_payload()).unwrap_err();
        assert_eq!(err.code(), "ATT-SYNTAX");
        let mut bytes = sample().to_payload();
        bytes.push(0);
        assert_eq!(
            AttestationDocument::from_payload(&bytes)
                .unwrap_err()
                .code(),
            "ATT-SYNTAX"
        );
    }

    #[test]
    fn refuses_duplicate_keys() {
        let t = |s: &str| Value::Text(s.into());
        let map = Value::Map(vec![(t("module_id"), t("a")), (t("module_id"), t("b"))]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&map, &mut bytes).unwrap();
        let err = AttestationDocument::from_payload(&bytes).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }
}
