//! `tokenize`: each record with the policy's fields replaced by deterministic tokens, its clear
//! fields unchanged, every other field dropped (JSON lines out).
//!
//! A token is `tok_` and the unpadded base64url of HMAC-SHA256 under the tokenization key, over
//! a type tag and the value (a string's text, a number as written, `true`/`false`, an object or
//! array as its JSON text). Equal values give equal tokens in every job and every enclave that
//! holds the same tokenization key; the key is a KMS data key released only to this attested
//! image (or derived from a secret only this image may fetch), so nobody outside it can compute
//! a token or test a guess. Null stays null.

use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Member, write_object};
use crate::error::EnclaveError;
use crate::policy::TokenizePolicy;

/// Fewest bytes a secret must hold to be a tokenization key.
pub const MIN_SECRET_KEY: usize = 32;

/// The HKDF salt of a tokenization key derived from a secret.
const TOKEN_KEY_SALT: &[u8] = b"cloister tokenization key from a secret v1";
use crate::record::{Record, Value};

/// The tokenization key (aws-lc-rs cleanses its key schedule when dropped).
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// The key from its 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The key derived from a secret's value (`operations.tokenize.key_secret`): HKDF-SHA256
    /// with a salt of its own, so the tokens are not MACs any other use of the same secret
    /// makes. A value shorter than 32 bytes is refused: the tokens of a guessable key would let
    /// whoever sees them test guesses of the values.
    pub fn from_secret(value: &[u8]) -> Result<Self, EnclaveError> {
        if value.len() < MIN_SECRET_KEY {
            return Err(EnclaveError::Policy(format!(
                "the tokenization secret holds {} bytes; at least {MIN_SECRET_KEY} (a random \
                 key, not a password) are needed",
                value.len()
            )));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, TOKEN_KEY_SALT).extract(value);
        let okm = prk
            .expand(&[], hmac::HMAC_SHA256)
            .map_err(|_| EnclaveError::Policy("cannot derive the tokenization key".into()))?;
        Ok(Self(hmac::Key::from(okm)))
    }

    /// The token of `value`, or None for null.
    pub fn token(&self, value: &Value) -> Option<String> {
        let (tag, text): (u8, &str) = match value {
            Value::Null => return None,
            Value::String(t) => (b's', t.as_str()),
            Value::Number(n) => (b'n', n.text()),
            Value::Bool(true) => (b'b', "true"),
            Value::Bool(false) => (b'b', "false"),
            Value::Nested(t) => (b'j', t.as_str()),
        };
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(&[tag]);
        ctx.update(text.as_bytes());
        let tag = ctx.sign();
        let mut out = String::with_capacity(4 + 43);
        out.push_str("tok_");
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        Some(out)
    }
}

/// Appends `record` tokenized as one JSON line (no newline) to `out`.
pub fn tokenize(policy: &TokenizePolicy, key: &TokenKey, record: &Record, out: &mut Vec<u8>) {
    write_object(record, out, |name, value| {
        if policy.fields.iter().any(|x| x == name) {
            Some(key.token(value).map_or(Member::Null, Member::Text))
        } else {
            policy
                .clear
                .iter()
                .any(|c| c == name)
                .then_some(Member::Clear(value))
        }
    });
}

#[cfg(test)]
mod tests {
    use cloister_common::ErrorCode;

    use super::*;

    fn line(key: &TokenKey, text: &str) -> serde_json::Value {
        let policy = TokenizePolicy {
            fields: vec!["email".into(), "n".into()],
            clear: vec!["country".into()],
            key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/tok".into()),
            key_secret: None,
        };
        let mut out = Vec::new();
        tokenize(
            &policy,
            key,
            &crate::record::parse(text.as_bytes()).unwrap(),
            &mut out,
        );
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_key_from_a_secret_is_derived_and_refused_when_short() {
        let secret = [7u8; 32];
        let k = TokenKey::from_secret(&secret).unwrap();
        let a = line(&k, r#"{"email":"ada@example.com"}"#);
        let b = line(
            &TokenKey::from_secret(&secret).unwrap(),
            r#"{"email":"ada@example.com"}"#,
        );
        assert_eq!(a, b);
        // Derived, not the secret used as it is.
        let raw = line(&TokenKey::new(&secret), r#"{"email":"ada@example.com"}"#);
        assert_ne!(a, raw);
        let other = line(
            &TokenKey::from_secret(&[8u8; 40]).unwrap(),
            r#"{"email":"ada@example.com"}"#,
        );
        assert_ne!(a, other);
        let short = TokenKey::from_secret(b"hunter2").unwrap_err();
        assert_eq!(short.code(), "ENC-POLICY");
        assert!(short.to_string().contains("at least 32"), "{short}");
    }

    #[test]
    fn tokens_are_deterministic_per_key_and_typed() {
        let k1 = TokenKey::new(&[1; 32]);
        let k2 = TokenKey::new(&[2; 32]);
        let a = line(
            &k1,
            r#"{"email":"ada@example.com","country":"FR","ssn":"1","n":7}"#,
        );
        let b = line(&k1, r#"{"n":7,"email":"ada@example.com"}"#);
        let c = line(&k2, r#"{"email":"ada@example.com"}"#);
        assert_eq!(a["email"], b["email"]);
        assert_eq!(a["n"], b["n"]);
        assert_ne!(a["email"], c["email"], "another key, another token");
        assert_eq!(a["country"], "FR");
        assert!(a.get("ssn").is_none());
        let t = a["email"].as_str().unwrap();
        assert!(t.starts_with("tok_") && t.len() == 47, "{t}");
        // The number 7 and the string "7" are different values.
        let s = line(&k1, r#"{"n":"7"}"#);
        assert_ne!(s["n"], a["n"]);
        assert_eq!(
            line(&k1, r#"{"email":null}"#)["email"],
            serde_json::Value::Null
        );
    }
}
