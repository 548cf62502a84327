//! A secret value sealed as Secrets Manager does: a fresh 256-bit data key from the secret's
//! KMS key (`GenerateDataKey` for the caller through Secrets Manager, encryption context
//! `{"SecretARN": arn, "SecretVersionId": version_id}`), the value encrypted outside the KMS
//! with AES-256-GCM under it, the plaintext data key dropped (zeroized), its KMS ciphertext kept
//! beside the value. Reading opens the data key with KMS `Decrypt` for the caller, so the key
//! policy (and a recipient's attestation conditions) decides every read.
//!
//! The AES-GCM associated data binds the ARN, the version id and the kind (string or binary),
//! so a sealed value moved to another secret, version or kind does not open.
//!
//! A sealed value also carries a keyed fingerprint of the value (HMAC-SHA256 under a key
//! derived from the store's row key, never stored; over ARN, version id, kind and value), so
//! `ClientRequestToken` idempotency (same token and same value: nothing to do; another value:
//! ResourceExistsException) is decided without decrypting: a writer whose key policy allows
//! `kms:GenerateDataKey` but not `kms:Decrypt` still gets AWS's answer, and no value is opened
//! for a write. Without the root key the fingerprint tells nothing about the value. The service
//! consults it only for a caller the key policy lets write under the version's key, or it would
//! confirm guesses at a value to anyone naming the version (see `values::retry_holds`).
//!
//! Layout: `1 | kind | fingerprint (32) | u32 BE length of the KMS blob | KMS blob | nonce (12)
//! | ciphertext and tag`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use crate::app::App;
use crate::attested::Recipient;
use crate::blob::EncryptionContext;
use crate::error::{KmsError, Result, SecretsError};
use crate::ops::via::{ViaCall, kms_refusal};

const FORMAT: u8 = 1;
const FINGERPRINT_LEN: usize = 32;
const PREFIX_LEN: usize = 2 + FINGERPRINT_LEN + 4;
const TAG_LEN: usize = 16;
/// The HMAC label deriving the fingerprint key from the row key.
const FINGERPRINT_LABEL: &[u8] = b"cloister-kms secret-value-fingerprint v1";
/// The associated data's label.
const AAD_LABEL: &[u8] = b"cloister-kms secretsmanager value v1";

/// Whether a value was given as `SecretString` or `SecretBinary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `SecretString` (UTF-8 text).
    String,
    /// `SecretBinary`.
    Binary,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::String => 0,
            Self::Binary => 1,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::String),
            1 => Some(Self::Binary),
            _ => None,
        }
    }

    /// The name cloister's `SecretKind` answer member gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Binary => "Binary",
        }
    }
}

/// A secret's value in the clear (zeroized when dropped).
pub(crate) struct SecretValue {
    /// String or binary.
    pub(crate) kind: Kind,
    /// The bytes (UTF-8 for a string).
    pub(crate) bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The encryption context of a version's data key, as AWS builds it.
pub(crate) fn context(arn: &str, version_id: &str) -> EncryptionContext {
    [
        ("SecretARN".to_owned(), arn.to_owned()),
        ("SecretVersionId".to_owned(), version_id.to_owned()),
    ]
    .into_iter()
    .collect()
}

/// Length-prefixed fields: no two field lists give the same bytes.
fn fields(label: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(label.to_vec());
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn aad(arn: &str, version_id: &str, kind: Kind) -> Zeroizing<Vec<u8>> {
    fields(
        AAD_LABEL,
        &[
            arn.as_bytes(),
            version_id.as_bytes(),
            kind.name().as_bytes(),
        ],
    )
}

fn fingerprint_key(app: &App) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &app.root.rows().sign(FINGERPRINT_LABEL))
}

fn fingerprint_message(arn: &str, version_id: &str, v: &SecretValue) -> Zeroizing<Vec<u8>> {
    fields(
        b"",
        &[
            arn.as_bytes(),
            version_id.as_bytes(),
            &[v.kind.byte()],
            &v.bytes,
        ],
    )
}

/// The parts of a sealed value (ciphertexts only).
#[derive(Debug)]
struct Parts<'a> {
    kind: Kind,
    fingerprint: &'a [u8],
    blob: &'a [u8],
    nonce: &'a [u8],
    body: &'a [u8],
}

fn corrupt() -> KmsError {
    SecretsError::DecryptionFailure("The stored secret value is not one this service sealed".into())
        .into()
}

fn parts(sealed: &[u8]) -> Result<Parts<'_>> {
    if sealed.len() < PREFIX_LEN || sealed[0] != FORMAT {
        return Err(corrupt());
    }
    let kind = Kind::from_byte(sealed[1]).ok_or_else(corrupt)?;
    let fingerprint = &sealed[2..2 + FINGERPRINT_LEN];
    let mut len = [0u8; 4];
    len.copy_from_slice(&sealed[2 + FINGERPRINT_LEN..PREFIX_LEN]);
    let blob_len = u32::from_be_bytes(len) as usize;
    let rest = &sealed[PREFIX_LEN..];
    if rest.len() < blob_len + NONCE_LEN + TAG_LEN {
        return Err(corrupt());
    }
    let (blob, rest) = rest.split_at(blob_len);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok(Parts {
        kind,
        fingerprint,
        blob,
        nonce,
        body,
    })
}

/// The KMS ciphertext of a sealed value's data key.
pub(crate) fn data_key_blob(sealed: &[u8]) -> Result<&[u8]> {
    Ok(parts(sealed)?.blob)
}

/// Whether `sealed` (version `version_id` of `arn`) holds `value` (constant time).
pub(crate) fn holds(
    app: &App,
    arn: &str,
    version_id: &str,
    sealed: &[u8],
    value: &SecretValue,
) -> bool {
    let Ok(p) = parts(sealed) else {
        return false;
    };
    hmac::verify(
        &fingerprint_key(app),
        &fingerprint_message(arn, version_id, value),
        p.fingerprint,
    )
    .is_ok()
}

fn aes(key: &[u8]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| KmsError::Internal("a data key is not an AES-256 key".into()))
}

/// Seals `value` as version `version_id` of `arn` under a fresh data key of `key_ref` (asked
/// for the caller through Secrets Manager). Returns the KMS key's ARN and the sealed bytes.
pub(crate) fn seal(
    call: &mut ViaCall<'_>,
    key_ref: &str,
    arn: &str,
    version_id: &str,
    value: &SecretValue,
) -> Result<(String, Vec<u8>)> {
    let ec = context(arn, version_id);
    let dk = call
        .generate_data_key(key_ref, &ec)
        .map_err(|e| kms_refusal(e, |m| SecretsError::EncryptionFailure(m).into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KmsError::no_randomness())?;
    let mut body = Zeroizing::new(value.bytes.to_vec());
    aes(&dk.plaintext)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(arn, version_id, value.kind).as_slice()),
            &mut *body,
        )
        .map_err(|_| KmsError::Internal("sealing a secret value failed".into()))?;
    let tag = hmac::sign(
        &fingerprint_key(call.app),
        &fingerprint_message(arn, version_id, value),
    );
    let blob_len = u32::try_from(dk.blob.len())
        .map_err(|_| KmsError::Internal("a data key blob is too long".into()))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + dk.blob.len() + NONCE_LEN + body.len());
    out.push(FORMAT);
    out.push(value.kind.byte());
    out.extend_from_slice(tag.as_ref());
    out.extend_from_slice(&blob_len.to_be_bytes());
    out.extend_from_slice(&dk.blob);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok((dk.key_arn, out))
}

/// Opens version `version_id` of `arn`: its data key with KMS `Decrypt` for the caller through
/// Secrets Manager (with the recipient's attestation condition keys when there is one), then
/// the value. The caller must answer only sealed to the recipient when there is one. Returns the
/// ARN of the KMS key that opened the data key, and the value.
pub(crate) fn open(
    call: &mut ViaCall<'_>,
    arn: &str,
    version_id: &str,
    sealed: &[u8],
    recipient: Option<&Recipient>,
) -> Result<(String, SecretValue)> {
    let p = parts(sealed)?;
    let ec = context(arn, version_id);
    let (key_arn, data_key) = call
        .decrypt(p.blob, &ec, recipient)
        .map_err(|e| kms_refusal(e, |m| SecretsError::DecryptionFailure(m).into()))?;
    let nonce = Nonce::try_assume_unique_for_key(p.nonce).map_err(|_| corrupt())?;
    let mut body = Zeroizing::new(p.body.to_vec());
    let n = aes(&data_key)?
        .open_in_place(
            nonce,
            Aad::from(aad(arn, version_id, p.kind).as_slice()),
            &mut body,
        )
        .map_err(|_| corrupt())?
        .len();
    body.truncate(n);
    Ok((
        key_arn,
        SecretValue {
            kind: p.kind,
            bytes: body,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(blob: &[u8], body_len: usize) -> Vec<u8> {
        let mut s = vec![FORMAT, 1];
        s.extend([7u8; FINGERPRINT_LEN]);
        s.extend(u32::try_from(blob.len()).unwrap().to_be_bytes());
        s.extend(blob);
        s.extend([0u8; NONCE_LEN]);
        s.extend(vec![0u8; body_len]);
        s
    }

    #[test]
    fn sealed_values_are_parsed_strictly() {
        let s = sealed(b"kms-blob", TAG_LEN + 3);
        let p = parts(&s).unwrap();
        assert_eq!(p.kind, Kind::Binary);
        assert_eq!(p.blob, b"kms-blob");
        assert_eq!(p.body.len(), TAG_LEN + 3);
        assert_eq!(data_key_blob(&s).unwrap(), b"kms-blob");
        // Truncated, wrong format, wrong kind, a blob length past the end.
        assert!(parts(&s[..PREFIX_LEN - 1]).is_err());
        assert!(parts(&sealed(b"kms-blob", TAG_LEN - 1)).is_err());
        let mut bad = s.clone();
        bad[0] = 2;
        assert!(parts(&bad).is_err());
        let mut bad = s.clone();
        bad[1] = 9;
        assert!(parts(&bad).is_err());
        let mut bad = s;
        bad[2 + FINGERPRINT_LEN..PREFIX_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parts(&bad).unwrap_err().aws_name(), "DecryptionFailure");
    }

    #[test]
    fn associated_data_binds_arn_version_and_kind() {
        let a = aad("arn:a", "v1", Kind::String);
        assert_ne!(a, aad("arn:a", "v1", Kind::Binary));
        assert_ne!(a, aad("arn:a", "v2", Kind::String));
        assert_ne!(a, aad("arn:b", "v1", Kind::String));
        // Length prefixes: moving bytes between fields changes the data.
        assert_ne!(
            aad("arn:av", "1", Kind::String),
            aad("arn:a", "v1", Kind::String)
        );
    }

    #[test]
    fn the_context_is_awss() {
        let ec = context("arn:x", "v");
        assert_eq!(ec.len(), 2);
        assert_eq!(ec["SecretARN"], "arn:x");
        assert_eq!(ec["SecretVersionId"], "v");
    }

    #[test]
    fn values_round_trip_under_a_data_key() {
        let key = [5u8; 32];
        let mut body = b"hunter2".to_vec();
        let nonce = [1u8; NONCE_LEN];
        aes(&key)
            .unwrap()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad("arn", "v", Kind::String).as_slice()),
                &mut body,
            )
            .unwrap();
        let mut wrong = body.clone();
        assert!(
            aes(&key)
                .unwrap()
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad("arn", "v", Kind::Binary).as_slice()),
                    &mut wrong
                )
                .is_err()
        );
        let out = aes(&key)
            .unwrap()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad("arn", "v", Kind::String).as_slice()),
                &mut body,
            )
            .unwrap();
        assert_eq!(out, b"hunter2");
    }

    #[tokio::test]
    async fn values_seal_and_open_through_the_kms_bound_to_their_secret_and_version() {
        use crate::audit::AuditEntry;
        use crate::input::Body;
        use crate::ops::testkit::{ADMIN, Kms};
        use crate::service::Service;

        let kms = Kms::new();
        let key = kms.new_key().await;
        let principal = kms
            .app
            .state()
            .principals
            .values()
            .find(|p| p.arn == ADMIN)
            .cloned()
            .unwrap();
        let mut audit = AuditEntry::default();
        let mut call = ViaCall {
            app: &kms.app,
            principal: &principal,
            region: "us-east-1",
            service: Service::SecretsManager,
            body: Body::default(),
            audit: &mut audit,
        };
        let value = SecretValue {
            kind: Kind::String,
            bytes: Zeroizing::new(b"hunter2".to_vec()),
        };
        let (key_arn, sealed) = seal(&mut call, &key, "arn:a", "v1", &value).unwrap();
        assert_eq!(key_arn, kms.key_arn(&key));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let (opened_by, opened) = open(&mut call, "arn:a", "v1", &sealed, None).unwrap();
        assert_eq!(opened_by, kms.key_arn(&key));
        assert_eq!(
            (opened.kind, opened.bytes.as_slice()),
            (Kind::String, &b"hunter2"[..])
        );
        assert_eq!(
            call.audit.encryption_context.as_ref().unwrap()["SecretARN"],
            "arn:a"
        );
        // Another secret's or version's context does not open it, nor does an altered value.
        for (arn, v) in [("arn:b", "v1"), ("arn:a", "v2")] {
            let e = open(&mut call, arn, v, &sealed, None).unwrap_err();
            assert_eq!(e.aws_name(), "DecryptionFailure", "{arn} {v}");
        }
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            open(&mut call, "arn:a", "v1", &altered, None)
                .unwrap_err()
                .aws_name(),
            "DecryptionFailure"
        );
        // The kind is bound too: a string sealed value claiming to be binary does not open.
        let mut kind_swapped = sealed.clone();
        kind_swapped[1] = Kind::Binary.byte();
        assert!(open(&mut call, "arn:a", "v1", &kind_swapped, None).is_err());
        // The fingerprint tells the same value from another without opening anything.
        assert!(holds(&kms.app, "arn:a", "v1", &sealed, &value));
        let other = SecretValue {
            kind: Kind::String,
            bytes: Zeroizing::new(b"hunter3".to_vec()),
        };
        assert!(!holds(&kms.app, "arn:a", "v1", &sealed, &other));
        let binary = SecretValue {
            kind: Kind::Binary,
            bytes: Zeroizing::new(b"hunter2".to_vec()),
        };
        assert!(!holds(&kms.app, "arn:a", "v1", &sealed, &binary));
        assert!(!holds(&kms.app, "arn:a", "v2", &sealed, &value));
        // A disabled key: EncryptionFailure for writes, DecryptionFailure for reads.
        kms.ok("DisableKey", serde_json::json!({"KeyId": key}))
            .await;
        assert_eq!(
            seal(&mut call, &key, "arn:a", "v3", &value)
                .unwrap_err()
                .aws_name(),
            "EncryptionFailure"
        );
        assert_eq!(
            open(&mut call, "arn:a", "v1", &sealed, None)
                .unwrap_err()
                .aws_name(),
            "DecryptionFailure"
        );
    }
}
