//! The NSM API's requests and responses, CBOR-encoded exactly as aws-nitro-enclaves-nsm-api
//! encodes them (serde externally tagged enums): unit variants are bare text strings, struct
//! variants `{"Variant": {field: value, ...}}`, absent options `null`, byte fields `bstr`.
//!
//! The enclave sends these to `/dev/nsm` on Nitro, or over vsock to cloister's emulated NSM; both
//! sides use this one encoding. Decoding takes untrusted bytes: sizes are bounded, unknown
//! variants, missing or extra fields and trailing bytes are refused with `NSM-FORMAT`.

use ciborium::Value;

/// Largest request the NSM accepts (`NSM_REQUEST_MAX_SIZE`).
pub const MAX_REQUEST: usize = 0x1000;
/// Largest response the NSM writes (`NSM_RESPONSE_MAX_SIZE`).
pub const MAX_RESPONSE: usize = 0x3000;

/// A request to the NSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read a PCR.
    DescribePCR {
        /// Index.
        index: u16,
    },
    /// Extend a PCR (16..32).
    ExtendPCR {
        /// Index.
        index: u16,
        /// Data extended into it.
        data: Vec<u8>,
    },
    /// Lock a PCR.
    LockPCR {
        /// Index.
        index: u16,
    },
    /// Lock PCRs `0..range`.
    LockPCRs {
        /// Exclusive upper bound.
        range: u16,
    },
    /// Describe the module.
    DescribeNSM,
    /// Get a signed attestation document.
    Attestation {
        /// Application data.
        user_data: Option<Vec<u8>>,
        /// Challenge.
        nonce: Option<Vec<u8>>,
        /// Public key to bind.
        public_key: Option<Vec<u8>>,
    },
    /// Get random bytes.
    GetRandom,
}

/// The NSM's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No error.
    Success,
    /// A parameter is invalid.
    InvalidArgument,
    /// A PCR index is out of range.
    InvalidIndex,
    /// The response is invalid.
    InvalidResponse,
    /// The PCR is locked.
    ReadOnlyIndex,
    /// Unknown or malformed request.
    InvalidOperation,
    /// The response buffer is too small.
    BufferTooSmall,
    /// The request is too large.
    InputTooLarge,
    /// Something failed inside the NSM.
    InternalError,
}

const ERROR_NAMES: [(ErrorCode, &str); 9] = [
    (ErrorCode::Success, "Success"),
    (ErrorCode::InvalidArgument, "InvalidArgument"),
    (ErrorCode::InvalidIndex, "InvalidIndex"),
    (ErrorCode::InvalidResponse, "InvalidResponse"),
    (ErrorCode::ReadOnlyIndex, "ReadOnlyIndex"),
    (ErrorCode::InvalidOperation, "InvalidOperation"),
    (ErrorCode::BufferTooSmall, "BufferTooSmall"),
    (ErrorCode::InputTooLarge, "InputTooLarge"),
    (ErrorCode::InternalError, "InternalError"),
];

impl ErrorCode {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        ERROR_NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("InternalError", |(_, n)| n)
    }
}

/// A response from the NSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A PCR's value and lock state.
    DescribePCR {
        /// Locked.
        lock: bool,
        /// Value.
        data: Vec<u8>,
    },
    /// The PCR's new value.
    ExtendPCR {
        /// Value.
        data: Vec<u8>,
    },
    /// Locked.
    LockPCR,
    /// Locked.
    LockPCRs,
    /// The module's description.
    DescribeNSM {
        /// Major version.
        version_major: u16,
        /// Minor version.
        version_minor: u16,
        /// Patch version.
        version_patch: u16,
        /// Module id.
        module_id: String,
        /// Number of PCRs.
        max_pcrs: u16,
        /// Locked PCR indexes.
        locked_pcrs: Vec<u16>,
        /// Digest name, "SHA384".
        digest: String,
    },
    /// A signed document (COSE_Sign1).
    Attestation {
        /// The document.
        document: Vec<u8>,
    },
    /// Random bytes.
    GetRandom {
        /// The bytes.
        random: Vec<u8>,
    },
    /// An error.
    Error(ErrorCode),
}

/// Why bytes are not a valid request or response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed NSM message: {0}")]
pub struct NsmApiError(pub String);

impl cloister_common::ErrorCode for NsmApiError {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        "NSM-FORMAT".into()
    }
}

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}
fn opt(v: &Option<Vec<u8>>) -> Value {
    v.clone().map_or(Value::Null, Value::Bytes)
}
fn variant(name: &str, fields: Vec<(&str, Value)>) -> Value {
    Value::Map(vec![(
        t(name),
        Value::Map(fields.into_iter().map(|(k, v)| (t(k), v)).collect()),
    )])
}
fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = ciborium::into_writer(v, &mut out); // writing a Value into a Vec cannot fail
    out
}

fn bad(m: impl Into<String>) -> NsmApiError {
    NsmApiError(m.into())
}

/// A variant's name and, for struct or newtype variants, its fields.
type Variant = (String, Option<Vec<(String, Value)>>);

fn decode(bytes: &[u8], max: usize) -> Result<Variant, NsmApiError> {
    if bytes.len() > max {
        return Err(bad(format!("{} bytes, at most {max}", bytes.len())));
    }
    let mut rest = bytes;
    let v: Value = ciborium::from_reader(&mut rest).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    match v {
        Value::Text(name) => Ok((name, None)),
        Value::Map(mut m) if m.len() == 1 => {
            let (k, inner) = m.remove(0);
            let Value::Text(name) = k else {
                return Err(bad("variant name is not text"));
            };
            let fields = match inner {
                Value::Map(f) => f
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::Text(k) => Ok((k, v)),
                        _ => Err(bad("field name is not text")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                // {"Error": "InvalidIndex"}: a newtype variant.
                other => vec![(String::new(), other)],
            };
            Ok((name, Some(fields)))
        }
        _ => Err(bad("not a variant")),
    }
}

struct Fields(Vec<(String, Value)>);

impl Fields {
    fn take(&mut self, name: &str) -> Result<Value, NsmApiError> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| k == name)
            .ok_or_else(|| bad(format!("missing {name}")))?;
        Ok(self.0.remove(i).1)
    }
    fn u16(&mut self, name: &str) -> Result<u16, NsmApiError> {
        match self.take(name)? {
            Value::Integer(i) => u16::try_from(i).map_err(|_| bad(format!("{name} out of range"))),
            _ => Err(bad(format!("{name} is not an integer"))),
        }
    }
    fn bytes(&mut self, name: &str) -> Result<Vec<u8>, NsmApiError> {
        match self.take(name)? {
            Value::Bytes(b) => Ok(b),
            // QEMU's NSM also accepts text here.
            Value::Text(s) => Ok(s.into_bytes()),
            _ => Err(bad(format!("{name} is not a byte string"))),
        }
    }
    fn opt_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, NsmApiError> {
        match self.0.iter().any(|(k, _)| k == name) {
            false => Ok(None),
            true => match self.take(name)? {
                Value::Null => Ok(None),
                Value::Bytes(b) => Ok(Some(b)),
                Value::Text(s) => Ok(Some(s.into_bytes())),
                _ => Err(bad(format!("{name} is not a byte string"))),
            },
        }
    }
    fn text(&mut self, name: &str) -> Result<String, NsmApiError> {
        match self.take(name)? {
            Value::Text(s) => Ok(s),
            _ => Err(bad(format!("{name} is not text"))),
        }
    }
    fn done(self) -> Result<(), NsmApiError> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(bad(format!("unexpected field {k:?}"))),
        }
    }
}

impl Request {
    /// CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let int = |i: u16| Value::Integer(i.into());
        encode(&match self {
            Self::DescribePCR { index } => variant("DescribePCR", vec![("index", int(*index))]),
            Self::ExtendPCR { index, data } => variant(
                "ExtendPCR",
                vec![("index", int(*index)), ("data", Value::Bytes(data.clone()))],
            ),
            Self::LockPCR { index } => variant("LockPCR", vec![("index", int(*index))]),
            Self::LockPCRs { range } => variant("LockPCRs", vec![("range", int(*range))]),
            Self::DescribeNSM => t("DescribeNSM"),
            Self::Attestation {
                user_data,
                nonce,
                public_key,
            } => variant(
                "Attestation",
                vec![
                    ("user_data", opt(user_data)),
                    ("nonce", opt(nonce)),
                    ("public_key", opt(public_key)),
                ],
            ),
            Self::GetRandom => t("GetRandom"),
        })
    }

    /// Decodes a request (at most [`MAX_REQUEST`] bytes).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, NsmApiError> {
        let (name, fields) = decode(bytes, MAX_REQUEST)?;
        let Some(fields) = fields else {
            return match name.as_str() {
                "DescribeNSM" => Ok(Self::DescribeNSM),
                "GetRandom" => Ok(Self::GetRandom),
                other => Err(bad(format!("unknown request {other:?}"))),
            };
        };
        let mut f = Fields(fields);
        let req = match name.as_str() {
            "DescribePCR" => Self::DescribePCR {
                index: f.u16("index")?,
            },
            "ExtendPCR" => Self::ExtendPCR {
                index: f.u16("index")?,
                data: f.bytes("data")?,
            },
            "LockPCR" => Self::LockPCR {
                index: f.u16("index")?,
            },
            "LockPCRs" => Self::LockPCRs {
                range: f.u16("range")?,
            },
            "Attestation" => Self::Attestation {
                user_data: f.opt_bytes("user_data")?,
                nonce: f.opt_bytes("nonce")?,
                public_key: f.opt_bytes("public_key")?,
            },
            other => return Err(bad(format!("unknown request {other:?}"))),
        };
        f.done()?;
        Ok(req)
    }
}

impl Response {
    /// CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let int = |i: u16| Value::Integer(i.into());
        encode(&match self {
            Self::DescribePCR { lock, data } => variant(
                "DescribePCR",
                vec![
                    ("lock", Value::Bool(*lock)),
                    ("data", Value::Bytes(data.clone())),
                ],
            ),
            Self::ExtendPCR { data } => {
                variant("ExtendPCR", vec![("data", Value::Bytes(data.clone()))])
            }
            Self::LockPCR => t("LockPCR"),
            Self::LockPCRs => t("LockPCRs"),
            Self::DescribeNSM {
                version_major,
                version_minor,
                version_patch,
                module_id,
                max_pcrs,
                locked_pcrs,
                digest,
            } => variant(
                "DescribeNSM",
                vec![
                    ("version_major", int(*version_major)),
                    ("version_minor", int(*version_minor)),
                    ("version_patch", int(*version_patch)),
                    ("module_id", t(module_id)),
                    ("max_pcrs", int(*max_pcrs)),
                    (
                        "locked_pcrs",
                        Value::Array(locked_pcrs.iter().map(|i| int(*i)).collect()),
                    ),
                    ("digest", t(digest)),
                ],
            ),
            Self::Attestation { document } => variant(
                "Attestation",
                vec![("document", Value::Bytes(document.clone()))],
            ),
            Self::GetRandom { random } => {
                variant("GetRandom", vec![("random", Value::Bytes(random.clone()))])
            }
            Self::Error(code) => Value::Map(vec![(t("Error"), t(code.name()))]),
        })
    }

    /// Decodes a response (at most [`MAX_RESPONSE`] bytes).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, NsmApiError> {
        let (name, fields) = decode(bytes, MAX_RESPONSE)?;
        let Some(fields) = fields else {
            return match name.as_str() {
                "LockPCR" => Ok(Self::LockPCR),
                "LockPCRs" => Ok(Self::LockPCRs),
                other => Err(bad(format!("unknown response {other:?}"))),
            };
        };
        let mut f = Fields(fields);
        let resp = match name.as_str() {
            "Error" => {
                let code = f.text("")?;
                let found = ERROR_NAMES
                    .iter()
                    .find(|(_, n)| *n == code)
                    .map(|(c, _)| *c);
                Self::Error(found.ok_or_else(|| bad(format!("unknown error code {code:?}")))?)
            }
            "DescribePCR" => {
                let lock = match f.take("lock")? {
                    Value::Bool(b) => b,
                    _ => return Err(bad("lock is not a boolean")),
                };
                Self::DescribePCR {
                    lock,
                    data: f.bytes("data")?,
                }
            }
            "ExtendPCR" => Self::ExtendPCR {
                data: f.bytes("data")?,
            },
            "Attestation" => Self::Attestation {
                document: f.bytes("document")?,
            },
            "GetRandom" => Self::GetRandom {
                random: f.bytes("random")?,
            },
            "DescribeNSM" => Self::DescribeNSM {
                version_major: f.u16("version_major")?,
                version_minor: f.u16("version_minor")?,
                version_patch: f.u16("version_patch")?,
                module_id: f.text("module_id")?,
                max_pcrs: f.u16("max_pcrs")?,
                locked_pcrs: match f.take("locked_pcrs")? {
                    Value::Array(items) => items
                        .into_iter()
                        .map(|i| match i {
                            Value::Integer(i) => {
                                u16::try_from(i).map_err(|_| bad("locked pcr out of range"))
                            }
                            _ => Err(bad("locked pcr is not an integer")),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(bad("locked_pcrs is not an array")),
                },
                digest: f.text("digest")?,
            },
            other => return Err(bad(format!("unknown response {other:?}"))),
        };
        f.done()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hex from the NSM API's serde_cbor encoding (reference/attestation.md §4.2).
    #[test]
    fn requests_encode_exactly_as_the_nsm_api() {
        let cases = [
            (Request::DescribeNSM, "6b44657363726962654e534d"),
            (Request::GetRandom, "6947657452616e646f6d"),
            (
                Request::DescribePCR { index: 0 },
                "a16b4465736372696265504352a165696e64657800",
            ),
            (
                Request::ExtendPCR {
                    index: 16,
                    data: b"abc".to_vec(),
                },
                "a169457874656e64504352a265696e64657810646461746143616263",
            ),
            (
                Request::LockPCR { index: 16 },
                "a1674c6f636b504352a165696e64657810",
            ),
            (
                Request::LockPCRs { range: 32 },
                "a1684c6f636b50435273a16572616e67651820",
            ),
            (
                Request::Attestation {
                    user_data: None,
                    nonce: None,
                    public_key: None,
                },
                "a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365f66a7075626c69635f6b6579f6",
            ),
        ];
        for (req, hex_expected) in cases {
            assert_eq!(hex::encode(req.to_cbor()), hex_expected, "{req:?}");
            assert_eq!(
                Request::from_cbor(&hex::decode(hex_expected).unwrap()),
                Ok(req)
            );
        }
    }

    #[test]
    fn responses_round_trip_and_errors_match() {
        let err = Response::Error(ErrorCode::InvalidIndex);
        assert_eq!(
            hex::encode(err.to_cbor()),
            "a1654572726f726c496e76616c6964496e646578"
        );
        for r in [
            err,
            Response::LockPCR,
            Response::DescribePCR {
                lock: true,
                data: vec![0; 48],
            },
            Response::Attestation {
                document: vec![0x84],
            },
            Response::DescribeNSM {
                version_major: 1,
                version_minor: 0,
                version_patch: 0,
                module_id: "i-0-enc0".into(),
                max_pcrs: 32,
                locked_pcrs: (0..16).collect(),
                digest: "SHA384".into(),
            },
        ] {
            assert_eq!(Response::from_cbor(&r.to_cbor()), Ok(r));
        }
    }

    #[test]
    fn garbage_is_refused() {
        for b in [
            &b""[..],
            b"\xff",
            b"\x63abc",
            b"\xa1\x63abc\x01",
            &[0u8; MAX_REQUEST + 1],
        ] {
            assert!(Request::from_cbor(b).is_err());
        }
        let extra = "a1674c6f636b504352a265696e64657810617801";
        assert!(Request::from_cbor(&hex::decode(extra).unwrap()).is_err());
    }
}
