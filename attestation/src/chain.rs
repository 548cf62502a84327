//! The certificate chain from a pinned root to the leaf that signs a document.
//!
//! Nitro's chain is `cabundle = [root, regional, zonal, instance]` followed by the leaf
//! `certificate`, every one P-384 with ecdsa-with-SHA384. Each certificate must name its
//! predecessor as issuer, carry a valid signature by its predecessor's key, and be valid at the
//! verification instant; every certificate but the leaf must be a CA allowed to sign
//! certificates, within its path length. Revocation is not checked: AWS publishes no CRLs for
//! this chain ("We do not use CRL").

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384;
use x509_parser::prelude::FromDer;

use crate::ecdsa;
use crate::error::{CertPosition, Error, Result};
use crate::roots::TrustAnchor;
use crate::time::Timestamp;

/// What a verified chain yields: the key that signs documents, and each certificate's validity
/// (unix seconds, inclusive), so a cached chain can be re-checked at another instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedChain {
    pub(crate) leaf_key: Vec<u8>,
    pub(crate) validity: Vec<(CertPosition, i64, i64)>,
}

impl VerifiedChain {
    /// Fails with `ATT-CERT-TIME` unless every certificate is valid at `at`.
    pub(crate) fn check_time(&self, at: Timestamp) -> Result<()> {
        let at = at.as_secs();
        for &(position, not_before, not_after) in &self.validity {
            if at < not_before || at > not_after {
                return Err(Error::CertTime {
                    position,
                    at,
                    not_before,
                    not_after,
                });
            }
        }
        Ok(())
    }
}

/// A certificate parsed and checked to be P-384 / ecdsa-with-SHA384.
#[derive(Debug)]
pub(crate) struct ParsedCert<'a> {
    pub(crate) cert: X509Certificate<'a>,
    pub(crate) position: CertPosition,
}

impl<'a> ParsedCert<'a> {
    pub(crate) fn parse(der: &'a [u8], position: CertPosition) -> Result<Self> {
        let bad = |reason: String| Error::Cert { position, reason };
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| bad(format!("not X.509 DER: {e}")))?;
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes after the certificate", rest.len())));
        }
        if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA384
            || cert.tbs_certificate.signature.algorithm != OID_SIG_ECDSA_WITH_SHA384
        {
            return Err(bad("signature algorithm is not ecdsa-with-SHA384".into()));
        }
        if crate::certinfo::p384_public_key(&cert).is_none() {
            return Err(bad("public key is not EC P-384".into()));
        }
        for ext in cert.extensions() {
            if ext.critical
                && matches!(
                    ext.parsed_extension(),
                    ParsedExtension::UnsupportedExtension { .. }
                )
            {
                return Err(bad(format!("unsupported critical extension {}", ext.oid)));
            }
            if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
                return Err(bad(format!(
                    "extension {} does not parse: {error}",
                    ext.oid
                )));
            }
        }
        Ok(Self { cert, position })
    }

    /// The subject public key: an uncompressed SEC1 point.
    pub(crate) fn key(&self) -> &[u8] {
        &self.cert.public_key().subject_public_key.data
    }

    fn validity(&self) -> (i64, i64) {
        let v = self.cert.validity();
        (v.not_before.timestamp(), v.not_after.timestamp())
    }

    /// Whether `self` is signed by `issuer`: issuer name matches and the signature verifies.
    fn check_issued_by(&self, issuer: &ParsedCert<'_>) -> Result<()> {
        if self.cert.issuer().as_raw() != issuer.cert.subject().as_raw() {
            return Err(Error::Chain {
                position: self.position,
                reason: format!(
                    "issuer {} is not the subject of {} ({})",
                    self.cert.issuer(),
                    issuer.position,
                    issuer.cert.subject()
                ),
            });
        }
        let tbs: &[u8] = self.cert.tbs_certificate.as_ref();
        if !ecdsa::verify_der(issuer.key(), tbs, &self.cert.signature_value.data) {
            return Err(Error::ChainSig(self.position));
        }
        Ok(())
    }

    fn broken(&self, reason: String) -> Error {
        Error::Chain {
            position: self.position,
            reason,
        }
    }

    /// CA constraints for a certificate followed by `below` more CA certificates before the leaf.
    fn check_ca(&self, below: usize) -> Result<()> {
        let broken = |reason: String| self.broken(reason);
        let bc = self
            .cert
            .basic_constraints()
            .map_err(|e| broken(format!("basicConstraints: {e}")))?
            .ok_or_else(|| broken("CA certificate lacks basicConstraints".into()))?;
        if !bc.value.ca {
            return Err(broken("certificate in cabundle is not a CA".into()));
        }
        if let Some(limit) = bc.value.path_len_constraint
            && below > limit as usize
        {
            return Err(broken(format!(
                "path length {below} exceeds the constraint {limit}"
            )));
        }
        let ku = self
            .cert
            .key_usage()
            .map_err(|e| broken(format!("keyUsage: {e}")))?
            .ok_or_else(|| broken("CA certificate lacks keyUsage".into()))?;
        if !ku.value.key_cert_sign() {
            return Err(broken(
                "CA certificate may not sign certificates (keyCertSign)".into(),
            ));
        }
        Ok(())
    }

    fn check_leaf(&self) -> Result<()> {
        let broken = |reason: String| self.broken(reason);
        let bc = self
            .cert
            .basic_constraints()
            .map_err(|e| broken(format!("basicConstraints: {e}")))?;
        if bc.is_some_and(|bc| bc.value.ca) {
            return Err(broken("leaf certificate is a CA".into()));
        }
        let ku = self
            .cert
            .key_usage()
            .map_err(|e| broken(format!("keyUsage: {e}")))?;
        if ku.is_some_and(|ku| !ku.value.digital_signature()) {
            return Err(broken(
                "leaf certificate may not make signatures (digitalSignature)".into(),
            ));
        }
        Ok(())
    }
}

/// Whether a certificate says it is a CA.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Fails with `ATT-ROOT` unless `cabundle[0]` is one of `anchors`, byte for byte.
pub(crate) fn check_root(anchors: &[TrustAnchor], cabundle: &[Vec<u8>]) -> Result<()> {
    let Some(first) = cabundle.first() else {
        return Err(Error::Root("cabundle is empty".into()));
    };
    if anchors.iter().any(|a| a.der() == first.as_slice()) {
        return Ok(());
    }
    let subject = X509Certificate::from_der(first)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "an unparseable certificate".into());
    let pinned: Vec<&str> = anchors.iter().map(TrustAnchor::subject).collect();
    Err(Error::Root(format!(
        "cabundle[0] is {subject}; pinned roots: {pinned:?}"
    )))
}

/// Verifies the whole chain at `at`: root pin, names, CA constraints, signatures, validity.
pub(crate) fn verify(
    anchors: &[TrustAnchor],
    cabundle: &[Vec<u8>],
    leaf: &[u8],
    at: Timestamp,
) -> Result<VerifiedChain> {
    check_root(anchors, cabundle)?;
    let cas = cabundle
        .iter()
        .enumerate()
        .map(|(i, der)| ParsedCert::parse(der, CertPosition::Bundle(i)))
        .collect::<Result<Vec<_>>>()?;
    let leaf = ParsedCert::parse(leaf, CertPosition::Leaf)?;

    let n = cas.len();
    for (i, ca) in cas.iter().enumerate() {
        ca.check_ca(n - 1 - i)?;
    }
    leaf.check_leaf()?;
    for pair in cas.windows(2) {
        if let [issuer, subject] = pair {
            subject.check_issued_by(issuer)?;
        }
    }
    if let Some(last) = cas.last() {
        leaf.check_issued_by(last)?;
    }

    let chain = VerifiedChain {
        leaf_key: leaf.key().to_vec(),
        validity: cas
            .iter()
            .chain(std::iter::once(&leaf))
            .map(|c| {
                let (nb, na) = c.validity();
                (c.position, nb, na)
            })
            .collect(),
    };
    chain.check_time(at)?;
    Ok(chain)
}
