//! The signing certificate: read from PEM (the first `CERTIFICATE` block, as OpenSSL's
//! `X509::from_pem` in the reference does), kept as DER (what PCR8 hashes), with its subject and
//! its P-384 public key. No chain, validity-period or revocation check: what the certificate is
//! worth is the verifier's policy, expressed through PCR8.

use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::pem::Pem;

use crate::error::EifError;

/// A parsed signing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    subject: String,
    public_key: Vec<u8>,
}

impl Certificate {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, EifError> {
        let bad = |what: String| EifError::Certificate(what);
        for block in Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| bad(format!("PEM: {e}")))?;
            if block.label == "CERTIFICATE" {
                return Self::from_der(block.contents);
            }
        }
        Err(bad("no CERTIFICATE block in the PEM".into()))
    }

    /// Reads a DER certificate (which must be exactly one certificate).
    pub fn from_der(der: Vec<u8>) -> Result<Self, EifError> {
        let bad = |what: String| EifError::Certificate(what);
        let (rest, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(format!("X.509: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("bytes after the certificate".into()));
        }
        let spki = cert.public_key();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
            || curve.as_ref() != Some(&OID_NIST_EC_P384)
        {
            return Err(bad("the key is not an EC P-384 key".into()));
        }
        let subject = cert.subject().to_string();
        let public_key = spki.subject_public_key.data.to_vec();
        Ok(Self {
            der,
            subject,
            public_key,
        })
    }

    /// The DER encoding (what PCR8 measures).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject, RFC 4514 style (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The public key as an uncompressed SEC1 point.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}
