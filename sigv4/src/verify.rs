//! The server side of SigV4: what a request must have signed, and the signature check.
//!
//! A correct signature over too little is a replayable one: a captured request whose
//! `X-Amz-Target` was not signed replays as any other operation taking the same body
//! (`DescribeKey` becomes `ScheduleKeyDeletion`). So beyond the signature itself the verifier
//! demands that
//! - `host`, `x-amz-date`, and every header [`must_be_signed`] names that the request carries
//!   (every `x-amz-*` header: `x-amz-target`, `x-amz-security-token`, `x-amz-content-sha256`, ...,
//!   and `content-type`) be in `SignedHeaders` ([`SigV4Error::Unsigned`]);
//! - the credential scope's date be exactly `X-Amz-Date`'s `YYYYMMDD`
//!   ([`SigV4Error::ScopeDate`]), since a derived signing key is meant to be good for that day
//!   only, and the scope's region and service be the server's ([`SigV4Error::Scope`]); the
//!   terminator `aws4_request` is checked when the header is parsed.
//!
//! `content-type` is required although AWS only recommends signing it: it names the protocol
//! (`application/x-amz-json-1.1`), so it must not be swappable under a signature, and every
//! signer this KMS serves signs it: botocore (boto3, aws-cli, the AWS Encryption SDK for Python)
//! signs every header but a short blocklist (`user-agent`, `expect`, `x-amzn-trace-id`,
//! `transfer-encoding`), as do the other AWS SDKs, and so does this crate's [`crate::sign`].

use crate::{
    Authorization, MAX_SKEW, RequestParts, SigV4Error, SigningKeyCache, amz_date,
    canonical_request, parse_amz_date, scope, sha256_hex, signature, signing_key, string_to_sign,
};
use time::OffsetDateTime;

/// Whether a header the request carries must be in `SignedHeaders`: `host`, `content-type` and
/// every `x-amz-*` header (names in any case).
pub fn must_be_signed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "host" || name == "content-type" || name.starts_with("x-amz-")
}

/// Checks a request's signature made with `secret`, at server time `now`, for `region`/`service`,
/// deriving the signing key afresh.
pub fn verify(
    parts: &RequestParts<'_>,
    auth: &Authorization,
    secret: &str,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Result<(), SigV4Error> {
    let checked = check(parts, auth, region, service, now)?;
    let key = signing_key(secret, &auth.date, region, service);
    compare(parts, auth, &checked, region, service, &key)
}

/// [`verify()`], taking the signing key from `cache` (derived there at most once per access key,
/// secret, date, region and service).
pub fn verify_cached(
    parts: &RequestParts<'_>,
    auth: &Authorization,
    secret: &str,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    cache: &SigningKeyCache,
) -> Result<(), SigV4Error> {
    let checked = check(parts, auth, region, service, now)?;
    let key = cache.signing_key(&auth.access_key_id, secret, &auth.date, region, service);
    compare(parts, auth, &checked, region, service, key.as_ref())
}

/// What the checks before the signature found.
struct Checked<'a> {
    /// `X-Amz-Date` as sent.
    amz_date: &'a str,
    /// SHA-256 of the body, hex.
    payload_hash: String,
}

/// Everything but the signature: scope, date, skew, what is signed, the payload hash header.
fn check<'a>(
    parts: &RequestParts<'a>,
    auth: &Authorization,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Result<Checked<'a>, SigV4Error> {
    if auth.region != region || auth.service != service {
        return Err(SigV4Error::Scope(format!(
            "a valid region ({region}) and service ({service})"
        )));
    }
    let header = |name: &str| {
        parts
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let amz = header("x-amz-date").ok_or_else(|| SigV4Error::Date("missing X-Amz-Date".into()))?;
    let when =
        parse_amz_date(amz).ok_or_else(|| SigV4Error::Date(format!("bad X-Amz-Date {amz:?}")))?;
    // A parsed X-Amz-Date is ASCII and starts with its YYYYMMDD.
    let day = amz.get(..8).unwrap_or(amz);
    if auth.date != day {
        return Err(SigV4Error::ScopeDate {
            scope: auth.date.clone(),
            request: day.to_owned(),
            amz_date: amz.to_owned(),
        });
    }
    if (now - when).abs() > MAX_SKEW {
        return Err(SigV4Error::Date(format!(
            "{amz} is more than 15 minutes from the server time {}",
            amz_date(now)
        )));
    }
    let signed = |name: &str| auth.signed_headers.iter().any(|h| h == name);
    for required in ["host", "x-amz-date"] {
        if !signed(required) {
            return Err(SigV4Error::Unsigned(required.into()));
        }
    }
    for (name, _) in parts.headers {
        let lower = name.to_ascii_lowercase();
        if must_be_signed(&lower) && !signed(&lower) {
            return Err(SigV4Error::Unsigned(lower));
        }
    }
    let payload_hash = sha256_hex(parts.body);
    if let Some(claimed) = header("x-amz-content-sha256")
        && claimed != payload_hash
    {
        return Err(SigV4Error::Mismatch);
    }
    Ok(Checked {
        amz_date: amz,
        payload_hash,
    })
}

/// Recomputes the signature with `key` and compares it in constant time.
fn compare(
    parts: &RequestParts<'_>,
    auth: &Authorization,
    checked: &Checked<'_>,
    region: &str,
    service: &str,
    key: &[u8],
) -> Result<(), SigV4Error> {
    let creq = canonical_request(parts, &auth.signed_headers, &checked.payload_hash);
    let sts = string_to_sign(checked.amz_date, &scope(&auth.date, region, service), &creq);
    let expected = signature(key, &sts);
    aws_lc_rs::constant_time::verify_slices_are_equal(
        expected.as_bytes(),
        auth.signature.as_bytes(),
    )
    .map_err(|_| SigV4Error::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ALGORITHM, Credentials, parse_authorization, sign};
    use zeroize::Zeroizing;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const REGION: &str = "us-east-1";

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new(SECRET.into()),
            session_token: token.map(str::to_owned),
        }
    }

    /// A request as it arrives: `signed_base` went through [`sign`], `unsigned` were added after.
    struct Request {
        headers: Vec<(String, String)>,
        auth: Authorization,
    }

    impl Request {
        fn new(
            signed_base: &[(&str, &str)],
            unsigned: &[(&str, &str)],
            token: Option<&str>,
            now: OffsetDateTime,
        ) -> Self {
            let parts = RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: signed_base,
                body: b"{\"KeyId\":\"k\"}",
            };
            let added = sign(&parts, &creds(token), REGION, "kms", now);
            let auth = added
                .iter()
                .find(|(n, _)| n == "authorization")
                .map(|(_, v)| parse_authorization(v).unwrap())
                .unwrap();
            let headers = signed_base
                .iter()
                .chain(unsigned)
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .chain(added.into_iter().filter(|(n, _)| n != "authorization"))
                .collect();
            Self { headers, auth }
        }

        fn verify(&self, now: OffsetDateTime) -> Result<(), SigV4Error> {
            let pairs: Vec<(&str, &str)> = self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let parts = RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: &pairs,
                body: b"{\"KeyId\":\"k\"}",
            };
            verify(&parts, &self.auth, SECRET, REGION, "kms", now)
        }
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:4599");
    const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.1");
    const DESCRIBE: (&str, &str) = ("x-amz-target", "TrentService.DescribeKey");

    #[test]
    fn what_sign_signs_verifies_with_and_without_a_session_token() {
        let now = OffsetDateTime::now_utc();
        Request::new(&[HOST, JSON, DESCRIBE], &[], None, now)
            .verify(now)
            .unwrap();
        Request::new(&[HOST, JSON, DESCRIBE], &[], Some("token"), now)
            .verify(now)
            .unwrap();
        // Header names in any case, as HTTP allows.
        Request::new(
            &[
                ("Host", HOST.1),
                ("Content-Type", JSON.1),
                ("X-Amz-Target", DESCRIBE.1),
            ],
            &[],
            None,
            now,
        )
        .verify(now)
        .unwrap();
    }

    #[test]
    fn an_unsigned_target_cannot_be_replayed_as_another_operation() {
        let now = OffsetDateTime::now_utc();
        for target in [
            "TrentService.DescribeKey",
            "TrentService.ScheduleKeyDeletion",
        ] {
            let r = Request::new(&[HOST, JSON], &[("X-Amz-Target", target)], None, now);
            assert_eq!(
                r.verify(now),
                Err(SigV4Error::Unsigned("x-amz-target".into()))
            );
            assert_eq!(
                r.verify(now).unwrap_err().aws_error(),
                "IncompleteSignatureException"
            );
        }
    }

    #[test]
    fn every_x_amz_header_and_content_type_must_be_signed() {
        let now = OffsetDateTime::now_utc();
        for (extra, name) in [
            (("x-amz-security-token", "t"), "x-amz-security-token"),
            (
                (
                    "X-Amz-Content-Sha256",
                    "ee57ddf2ad1cde9b8b7c2e6eb6b6b1cfc43c2a5ed0e73c56e23bc2c2e3e1da1e",
                ),
                "x-amz-content-sha256",
            ),
            (("x-amz-anything", "1"), "x-amz-anything"),
            (JSON, "content-type"),
        ] {
            let base: Vec<(&str, &str)> = [HOST, JSON, DESCRIBE]
                .into_iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case(extra.0))
                .collect();
            let r = Request::new(&base, &[extra], None, now);
            assert_eq!(
                r.verify(now),
                Err(SigV4Error::Unsigned(name.into())),
                "{name}"
            );
        }
        // Headers outside the rule may stay unsigned (botocore leaves these out).
        Request::new(
            &[HOST, JSON, DESCRIBE],
            &[("User-Agent", "Boto3/1.0"), ("X-Amzn-Trace-Id", "Root=1")],
            None,
            now,
        )
        .verify(now)
        .unwrap();
    }

    #[test]
    fn host_and_date_must_be_signed_even_when_listed_oddly() {
        let now = OffsetDateTime::now_utc();
        let mut r = Request::new(&[HOST, JSON, DESCRIBE], &[], None, now);
        r.auth.signed_headers.retain(|h| h != "host");
        assert_eq!(r.verify(now), Err(SigV4Error::Unsigned("host".into())));
        let mut r = Request::new(&[HOST, JSON, DESCRIBE], &[], None, now);
        r.auth.signed_headers.retain(|h| h != "x-amz-date");
        assert_eq!(
            r.verify(now),
            Err(SigV4Error::Unsigned("x-amz-date".into()))
        );
    }

    /// A request signed by hand with a scope date of our choosing (a correct signature for it).
    fn signed_with_scope_date(scope_date: &str, now: OffsetDateTime) -> Request {
        let date_time = amz_date(now);
        let headers: Vec<(String, String)> = [HOST, JSON, DESCRIBE, ("x-amz-date", &date_time)]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &pairs,
            body: b"{\"KeyId\":\"k\"}",
        };
        let signed: Vec<String> = ["content-type", "host", "x-amz-date", "x-amz-target"]
            .map(String::from)
            .to_vec();
        let creq = canonical_request(&parts, &signed, &sha256_hex(parts.body));
        let scope = scope(scope_date, REGION, "kms");
        let sts = string_to_sign(&date_time, &scope, &creq);
        let sig = signature(&signing_key(SECRET, scope_date, REGION, "kms"), &sts);
        let auth = parse_authorization(&format!(
            "{ALGORITHM} Credential=AKIDEXAMPLE/{scope}, SignedHeaders={}, Signature={sig}",
            signed.join(";")
        ))
        .unwrap();
        Request { headers, auth }
    }

    #[test]
    fn the_scope_date_must_be_the_request_date() {
        let now = OffsetDateTime::now_utc();
        let today = amz_date(now)[..8].to_owned();
        signed_with_scope_date(&today, now).verify(now).unwrap();
        let yesterday = amz_date(now - time::Duration::days(1))[..8].to_owned();
        for wrong in [yesterday.as_str(), "", &today[..4], "2015083"] {
            let err = signed_with_scope_date(wrong, now).verify(now).unwrap_err();
            assert!(
                matches!(&err, SigV4Error::ScopeDate { scope, .. } if scope == wrong),
                "{wrong:?}: {err:?}"
            );
            assert_eq!(err.aws_error(), "InvalidSignatureException");
        }
    }

    #[test]
    fn the_cache_gives_the_same_answers() {
        let now = OffsetDateTime::now_utc();
        let cache = SigningKeyCache::new(4);
        let r = Request::new(&[HOST, JSON, DESCRIBE], &[], None, now);
        let pairs: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &pairs,
            body: b"{\"KeyId\":\"k\"}",
        };
        for _ in 0..2 {
            verify_cached(&parts, &r.auth, SECRET, REGION, "kms", now, &cache).unwrap();
        }
        assert_eq!(cache.len(), 1);
        // A cached key for the right secret does not make a wrong secret verify.
        assert_eq!(
            verify_cached(&parts, &r.auth, "rotated", REGION, "kms", now, &cache),
            Err(SigV4Error::Mismatch)
        );
        let unsigned = Request::new(&[HOST, JSON], &[DESCRIBE], None, now);
        let pairs: Vec<(&str, &str)> = unsigned
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            verify_cached(
                &RequestParts {
                    headers: &pairs,
                    ..parts
                },
                &unsigned.auth,
                SECRET,
                REGION,
                "kms",
                now,
                &cache
            ),
            Err(SigV4Error::Unsigned("x-amz-target".into()))
        );
    }
}
