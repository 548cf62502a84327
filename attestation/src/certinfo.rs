//! A printable summary of a certificate, for tools that display documents, and the one check of
//! a certificate's key type that the chain verifier and the EIF signer share.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Subject, issuer and validity of a DER certificate. Says nothing about its trustworthiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
}

impl CertificateInfo {
    /// Summarises `der`, or `None` if it is not a certificate.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

/// The certificate's public key as an uncompressed SEC1 point, if it is an EC P-384 key.
pub fn p384_public_key<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    (spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && curve == Some(OID_NIST_EC_P384))
        .then_some(&spki.subject_public_key.data[..])
}
