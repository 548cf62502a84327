//! The signature section: writing it with a P-384 key, reading it back from untrusted bytes, and
//! verifying it against an image's PCR0.
//!
//! As the reference writes it (serde_cbor of `Vec<PcrSignature>`), the section is a CBOR array
//! with one map `{"signing_certificate": <PEM bytes>, "signature": <COSE_Sign1 bytes>}`, both
//! byte strings serialized as CBOR *arrays of uint8* (plain `Vec<u8>` through serde). The
//! COSE_Sign1 is untagged, protected header `{1: -35}` (ES384), empty unprotected header, and
//! its payload is the CBOR map `{"register_index": 0, "register_value": <PCR0 as an array of
//! uint8>}` (`PcrInfo`). The reader accepts byte strings as well as uint8 arrays for the byte
//! fields, and a tagged (18) COSE_Sign1.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use ciborium::Value;
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable, iana,
};
use x509_parser::pem::Pem;

use crate::cert::Certificate;
use crate::error::EifError;
use crate::measure::{Pcr, pcr8};

/// Largest signature section read (a certificate as uint8 array is about 2 bytes per byte).
pub const MAX_SIGNATURE_SECTION: usize = 64 * 1024;

const CERT_KEY: &str = "signing_certificate";
const SIG_KEY: &str = "signature";
const INDEX_KEY: &str = "register_index";
const VALUE_KEY: &str = "register_value";

/// A P-384 private key with its certificate, to sign images.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    cert_pem: Vec<u8>,
    cert: Certificate,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("certificate", &self.cert.subject())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key (PEM: PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) and the certificate for it
    /// (PEM, stored in the image as given).
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Self, EifError> {
        let cert = Certificate::from_pem(cert_pem)?;
        let bad = |what: String| EifError::Key(what);
        let block = Pem::iter_from_buffer(key_pem)
            .next()
            .ok_or_else(|| bad("no PEM block".into()))?
            .map_err(|e| bad(format!("PEM: {e}")))?;
        if block.label != "PRIVATE KEY" && block.label != "EC PRIVATE KEY" {
            return Err(bad(format!(
                "PEM label {} (a private key expected)",
                block.label
            )));
        }
        let pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, &block.contents)
                .map_err(|e| bad(format!("not a P-384 private key: {e}")))?;
        if pair.public_key().as_ref() != cert.public_key() {
            return Err(bad("the key does not match the certificate".into()));
        }
        Ok(Self {
            pair,
            cert_pem: cert_pem.to_vec(),
            cert,
        })
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// PCR8 of images signed with this key.
    pub fn pcr8(&self) -> Pcr {
        pcr8(self.cert.der())
    }

    /// The signature section for an image with this PCR0. ECDSA signatures are randomized, so
    /// two calls give different bytes (and the same PCRs).
    pub(crate) fn signature_section(&self, pcr0: &Pcr) -> Result<Vec<u8>, EifError> {
        let failed = |what: &str| EifError::Key(format!("signing failed: {what}"));
        let payload = encode(&pcr_info(pcr0))?;
        let rng = SystemRandom::new();
        let cose = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload)
            .try_create_signature(b"", |tbs| {
                self.pair
                    .sign(&rng, tbs)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| failed("ECDSA"))
            })?
            .build()
            .to_vec()
            .map_err(|e| failed(&e.to_string()))?;
        encode(&Value::Array(vec![Value::Map(vec![
            (Value::Text(CERT_KEY.into()), uint8_array(&self.cert_pem)),
            (Value::Text(SIG_KEY.into()), uint8_array(&cose)),
        ])]))
    }
}

/// A signature section, read but not yet verified.
#[derive(Debug, Clone)]
pub struct Signature {
    cert: Certificate,
    cose: CoseSign1,
}

impl Signature {
    /// Reads a signature section (untrusted bytes).
    pub fn parse(section: &[u8]) -> Result<Self, EifError> {
        let bad = |what: &str| EifError::Signature(what.into());
        if section.len() > MAX_SIGNATURE_SECTION {
            return Err(bad("larger than 64 KiB"));
        }
        let value: Value = ciborium::from_reader(section).map_err(|_| bad("not CBOR"))?;
        let Value::Array(entries) = value else {
            return Err(bad("not a CBOR array"));
        };
        let [Value::Map(fields)] = entries.as_slice() else {
            return Err(bad("not exactly one PCR signature"));
        };
        let cert_pem = field(fields, CERT_KEY)?;
        let cose_bytes = field(fields, SIG_KEY)?;
        if fields.len() != 2 {
            return Err(bad("unexpected fields in the PCR signature"));
        }
        let cose = CoseSign1::from_slice(&cose_bytes)
            .or_else(|_| CoseSign1::from_tagged_slice(&cose_bytes))
            .map_err(|_| bad("signature is not a COSE_Sign1"))?;
        let cert = Certificate::from_pem(&cert_pem)?;
        Ok(Self { cert, cose })
    }

    /// The signing certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// PCR8: the measurement of the signing certificate.
    pub fn pcr8(&self) -> Pcr {
        pcr8(self.cert.der())
    }

    /// Checks that the COSE_Sign1 is an ES384 signature by the certificate's key over
    /// `{register_index: 0, register_value: pcr0}`.
    pub fn verify(&self, pcr0: &Pcr) -> Result<(), EifError> {
        let invalid = EifError::SignatureInvalid;
        let alg = self.cose.protected.header.alg.as_ref();
        if alg != Some(&coset::Algorithm::Assigned(iana::Algorithm::ES384)) {
            return Err(invalid("the COSE algorithm is not ES384"));
        }
        let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, self.cert.public_key());
        self.cose
            .verify_signature(b"", |sig, tbs| key.verify(tbs, sig))
            .map_err(|_| invalid("the ECDSA signature does not verify"))?;
        let payload = self.cose.payload.as_deref().ok_or(invalid("no payload"))?;
        let value: Value =
            ciborium::from_reader(payload).map_err(|_| invalid("the payload is not CBOR"))?;
        let Value::Map(fields) = value else {
            return Err(invalid("the payload is not a map"));
        };
        let index = fields
            .iter()
            .find(|(k, _)| k.as_text() == Some(INDEX_KEY))
            .and_then(|(_, v)| v.as_integer())
            .ok_or(invalid("the payload has no register_index"))?;
        let value = field(&fields, VALUE_KEY).map_err(|_| invalid("no register_value"))?;
        if fields.len() != 2 || index != 0.into() {
            return Err(invalid("the payload does not sign PCR0"));
        }
        if value.as_slice() != pcr0.as_bytes() {
            return Err(invalid("the signed PCR0 is not this image's PCR0"));
        }
        Ok(())
    }
}

/// `PcrInfo { register_index: 0, register_value }` as serde_cbor writes it.
fn pcr_info(pcr0: &Pcr) -> Value {
    Value::Map(vec![
        (Value::Text(INDEX_KEY.into()), Value::Integer(0.into())),
        (Value::Text(VALUE_KEY.into()), uint8_array(pcr0.as_bytes())),
    ])
}

/// Bytes as serde serializes a plain `Vec<u8>`: an array of small unsigned integers.
fn uint8_array(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|b| Value::Integer((*b).into())).collect())
}

/// The one field called `key`, as bytes (uint8 array or byte string).
fn field(fields: &[(Value, Value)], key: &str) -> Result<Vec<u8>, EifError> {
    let bad = |what: String| EifError::Signature(what);
    let mut found = fields.iter().filter(|(k, _)| k.as_text() == Some(key));
    let (_, value) = found.next().ok_or_else(|| bad(format!("no {key}")))?;
    if found.next().is_some() {
        return Err(bad(format!("{key} twice")));
    }
    match value {
        Value::Bytes(b) => Ok(b.clone()),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_integer()
                    .and_then(|i| u8::try_from(i).ok())
                    .ok_or_else(|| bad(format!("{key} holds a value that is not a byte")))
            })
            .collect(),
        _ => Err(bad(format!("{key} is not bytes"))),
    }
}

fn encode(value: &Value) -> Result<Vec<u8>, EifError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| EifError::Signature(e.to_string()))?;
    Ok(out)
}
