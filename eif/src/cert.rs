//! The signing certificate: read from PEM (the first `CERTIFICATE` block, as OpenSSL's
//! `X509::from_pem` in the reference does), kept as DER (what PCR8 hashes), with its subject and
//! its P-384 public key. No chain, validity-period or revocation check: what the certificate is
//! worth is the verifier's policy, expressed through PCR8.

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
        let public_key = cloister_attestation::p384_public_key(&cert)
            .ok_or_else(|| bad("the key is not an EC P-384 key".into()))?
            .to_vec();
        let subject = cert.subject().to_string();
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
