//! AWS Signature Version 4 (header form), for the KMS JSON protocol.
//!
//! The client signs and the server verifies with the *same* canonicalisation, so the two cannot
//! drift apart; the server must not depend on the client, so this lives in a leaf crate. Only what
//! AWS's JSON protocols use is implemented: the `Authorization` header form with
//! `AWS4-HMAC-SHA256`, not presigned URLs or chunked payloads.
//!
//! This module canonicalises and signs; [`verify()`] (module `verify`) decides what a request must
//! have signed and checks the signature; [`SigningKeyCache`] (module `cache`) lets a server derive
//! each principal's signing key once a day instead of once a request.

use std::fmt::Write as _;

use aws_lc_rs::{digest, hmac};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use zeroize::Zeroizing;

mod cache;
mod verify;

pub use cache::SigningKeyCache;
pub use verify::{must_be_signed, verify, verify_cached};

/// The only algorithm AWS JSON services use.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's date may be from the server's clock.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

const AMZ_DATE: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// Why a signature was refused. Each maps to one AWS error name (see [`SigV4Error::aws_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// The header is not a SigV4 header of the expected form.
    #[error("Authorization header is malformed: {0}")]
    Malformed(String),
    /// The date is missing, malformed, or outside the allowed skew.
    #[error("Signature expired or date invalid: {0}")]
    Date(String),
    /// Scope names another region or service.
    #[error("Credential should be scoped to {0}")]
    Scope(String),
    /// The credential scope's date is not the date of `X-Amz-Date`.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope}' != '{request}', from '{amz_date}'."
    )]
    ScopeDate {
        /// The scope's date as sent.
        scope: String,
        /// `YYYYMMDD` of `X-Amz-Date`.
        request: String,
        /// `X-Amz-Date` as sent.
        amz_date: String,
    },
    /// A header the request carries that must be signed (see [`must_be_signed`]) is not in
    /// `SignedHeaders`, or `host`/`x-amz-date` is not.
    #[error("'{0}' must be a 'SignedHeader' in the AWS Authorization.")]
    Unsigned(String),
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
}

impl SigV4Error {
    /// The AWS error name a server returns for this failure.
    pub fn aws_error(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Malformed(_) | Self::Unsigned(_) => "IncompleteSignatureException",
            Self::Date(_) | Self::Scope(_) | Self::ScopeDate { .. } | Self::Mismatch => {
                "InvalidSignatureException"
            }
        }
    }
}

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// Path, e.g. `/`.
    pub path: &'a str,
    /// Raw query string without `?` (may be empty).
    pub query: &'a str,
    /// All headers as (name, value); names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// `SHA256(data)` in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request over the headers named in `signed_headers` (lower-case, sorted).
pub fn canonical_request(
    parts: &RequestParts<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = parts
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| normalize_value(v))
            .collect();
        let _ = writeln!(canonical_headers, "{name}:{}", values.join(","));
    }
    let path = if parts.path.is_empty() {
        "/"
    } else {
        parts.path
    };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        uri_encode(&percent_decode(path), false),
        canonical_query(parts.query),
        canonical_headers,
        signed_headers.join(";"),
        payload_hash
    )
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The derived signing key: HMAC chain over date, region, service, `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(format!("AWS4{secret}").into_bytes());
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes());
        key = Zeroizing::new(tag.as_ref().to_vec());
    }
    key
}

/// `hex(HMAC(signing_key, string_to_sign))`.
pub fn signature(signing_key: &[u8], string_to_sign: &str) -> String {
    hex::encode(hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, signing_key),
        string_to_sign.as_bytes(),
    ))
}

/// Formats an instant as `X-Amz-Date` (`20150830T123600Z`).
pub fn amz_date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(AMZ_DATE)
        .unwrap_or_default()
}

/// Parses `X-Amz-Date`.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, AMZ_DATE)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Credentials that sign requests.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// Session token, sent as `X-Amz-Security-Token` and signed.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// An AWS JSON 1.1 `POST /` request to sign.
#[derive(Debug, Clone, Copy)]
pub struct JsonRequest<'a> {
    /// The `host` header.
    pub host: &'a str,
    /// The `x-amz-target` header, e.g. `TrentService.Decrypt`.
    pub target: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// The scope's region.
    pub region: &'a str,
    /// The scope's service, e.g. `kms`.
    pub service: &'a str,
}

/// Every header of a signed AWS JSON 1.1 `POST /` request: `host`, `content-type`
/// (`application/x-amz-json-1.1`), `x-amz-target`, and the SigV4 headers [`sign`] adds, the
/// signing key from `keys` when given. What both cloister's KMS client and the KMS's own tests
/// send.
pub fn sign_json_request(
    req: &JsonRequest<'_>,
    creds: &Credentials,
    now: OffsetDateTime,
    keys: Option<&SigningKeyCache>,
) -> Vec<(String, String)> {
    let JsonRequest {
        host,
        target,
        body,
        region,
        service,
    } = *req;
    let base = [
        ("host", host),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &base,
        body,
    };
    let signed = sign_with(&parts, creds, region, service, now, keys);
    base.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain(signed)
        .collect()
}

/// Signs a request: returns the headers to add (`X-Amz-Date`, optional `X-Amz-Security-Token`,
/// `Authorization`). `parts.headers` must already hold `host` and every other header to sign.
pub fn sign(
    parts: &RequestParts<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(String, String)> {
    sign_with(parts, creds, region, service, now, None)
}

/// [`sign`], taking the day's signing key from `keys` (derived once per day and scope) when
/// given: what a client that signs many requests uses.
pub fn sign_with(
    parts: &RequestParts<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    keys: Option<&SigningKeyCache>,
) -> Vec<(String, String)> {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), date_time.clone())];
    if let Some(token) = &creds.session_token {
        added.push(("x-amz-security-token".into(), token.clone()));
    }
    let mut all: Vec<(&str, &str)> = parts.headers.to_vec();
    all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut signed: Vec<String> = all.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let with_all = RequestParts {
        headers: &all,
        ..*parts
    };
    let creq = canonical_request(&with_all, &signed, &sha256_hex(parts.body));
    let scope = scope(date, region, service);
    let sts = string_to_sign(&date_time, &scope, &creq);
    let key = match keys {
        Some(cache) => cache.signing_key(
            &creds.access_key_id,
            &creds.secret_access_key,
            date,
            region,
            service,
        ),
        None => signing_key(&creds.secret_access_key, date, region, service),
    };
    let sig = signature(&key, &sts);
    added.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
            creds.access_key_id,
            signed.join(";")
        ),
    ));
    added
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id.
    pub access_key_id: String,
    /// Scope date, `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service.
    pub service: String,
    /// Signed header names, lower-case, as sent.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigV4Error> {
    let bad = |m: &str| SigV4Error::Malformed(m.into());
    let rest = header
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| bad("algorithm must be AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for field in rest.split(',') {
        let (k, v) = field
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("field without '='"))?;
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return Err(bad("unknown field")),
        };
        if slot.replace(v.trim().to_owned()).is_some() {
            return Err(bad("duplicate field"));
        }
    }
    let credential = credential.ok_or_else(|| bad("missing Credential"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts.as_slice() else {
        return Err(bad(
            "Credential must be AKID/date/region/service/aws4_request",
        ));
    };
    if *terminator != "aws4_request" || akid.is_empty() {
        return Err(bad("Credential must end with aws4_request"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| bad("missing SignedHeaders"))?
        .split(';')
        .map(str::to_owned)
        .collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.chars().any(|c| c.is_ascii_uppercase()))
    {
        return Err(bad("SignedHeaders must be lower-case names"));
    }
    let signature = sig.ok_or_else(|| bad("missing Signature"))?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("Signature must be 64 hex digits"));
    }
    Ok(Authorization {
        access_key_id: (*akid).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's worked example ("Create a signed AWS API request", IAM ListUsers, 2015-08-30).
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn example() -> (Vec<(&'static str, &'static str)>, &'static str) {
        (
            vec![
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("Host", "iam.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            "Action=ListUsers&Version=2010-05-08",
        )
    }

    #[test]
    fn aws_documented_example() {
        let (headers, query) = example();
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query,
            headers: &headers,
            body: b"",
        };
        let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
            .map(String::from)
            .to_vec();
        let creq = canonical_request(&parts, &signed, &sha256_hex(b""));
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(&*key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            &scope("20150830", "us-east-1", "iam"),
            &creq,
        );
        assert_eq!(
            signature(&key, &sts),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let now = OffsetDateTime::now_utc();
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new(SECRET.into()),
            session_token: None,
        };
        let base = [
            ("host", "127.0.0.1:4599"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "TrentService.ListKeys"),
        ];
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &base,
            body: b"{}",
        };
        let added = sign(&parts, &creds, "us-east-1", "kms", now);
        // A cached signing key signs the same, the first time and the next.
        let cache = SigningKeyCache::new(2);
        for _ in 0..2 {
            let cached = sign_with(&parts, &creds, "us-east-1", "kms", now, Some(&cache));
            assert_eq!(cached, added);
        }
        assert_eq!(cache.len(), 1);
        let mut all: Vec<(&str, &str)> = base.to_vec();
        all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let auth_header = added
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone();
        let auth = parse_authorization(&auth_header).unwrap();
        let signed = RequestParts {
            headers: &all,
            ..parts
        };
        verify(&signed, &auth, SECRET, "us-east-1", "kms", now).unwrap();
        assert_eq!(
            verify(
                &RequestParts {
                    body: b"{ }",
                    ..signed
                },
                &auth,
                SECRET,
                "us-east-1",
                "kms",
                now
            ),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            verify(&signed, &auth, "wrong", "us-east-1", "kms", now),
            Err(SigV4Error::Mismatch)
        );
        assert!(matches!(
            verify(&signed, &auth, SECRET, "eu-west-1", "kms", now),
            Err(SigV4Error::Scope(_))
        ));
        let late = now + time::Duration::minutes(16);
        assert!(matches!(
            verify(&signed, &auth, SECRET, "us-east-1", "kms", late),
            Err(SigV4Error::Date(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for h in [
            "",
            "AWS4-HMAC-SHA256",
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
        ] {
            assert!(parse_authorization(h).is_err(), "{h}");
        }
    }
}
