//! Trust anchors: the certificates a `cabundle` must start with.
//!
//! The AWS Nitro Enclaves Root G1 is built in. Other roots (the emulated NSM's dev root) are
//! trusted only when a caller passes them explicitly; nothing is trusted for being self-signed.

use sha2::{Digest, Sha256};

use crate::chain::{self, ParsedCert};
use crate::error::{CertPosition, Error, Result};

/// The AWS Nitro Enclaves Root G1 certificate, as AWS publishes it
/// (AWS_NitroEnclaves_Root-G1.zip, zip SHA-256 `8cf60e2b…aff7c`).
pub const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("../roots/aws_nitro_enclaves_root_g1.pem");

/// SHA-256 of the DER of the AWS Nitro Enclaves Root G1.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// A pinned root certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustAnchor {
    der: Vec<u8>,
    sha256: [u8; 32],
    subject: String,
}

impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TrustAnchor({}, sha256 {})",
            self.subject,
            hex::encode(self.sha256)
        )
    }
}

impl TrustAnchor {
    /// The AWS Nitro Enclaves Root G1.
    pub fn aws_nitro_root_g1() -> Self {
        // The embedded PEM is a constant checked by this crate's tests.
        Self::from_pem(AWS_NITRO_ROOT_G1_PEM).unwrap_or_else(|_| Self {
            der: Vec::new(),
            sha256: [0; 32],
            subject: "unparseable built-in root".into(),
        })
    }

    /// A root from DER. It must be a P-384 CA certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let parsed = ParsedCert::parse(der, CertPosition::Anchor)
            .map_err(|e| Error::Anchor(e.to_string()))?;
        if !chain::is_ca(&parsed.cert) {
            return Err(Error::Anchor("certificate is not a CA".into()));
        }
        Ok(Self {
            der: der.to_vec(),
            sha256: Sha256::digest(der).into(),
            subject: parsed.cert.subject().to_string(),
        })
    }

    /// Every root in a PEM text (one or more `CERTIFICATE` blocks).
    pub fn all_from_pem(pem: &str) -> Result<Vec<Self>> {
        let mut anchors = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| Error::Anchor(format!("bad PEM: {e}")))?;
            if block.label != "CERTIFICATE" {
                return Err(Error::Anchor(format!(
                    "PEM block {:?} is not a CERTIFICATE",
                    block.label
                )));
            }
            anchors.push(Self::from_der(&block.contents)?);
        }
        if anchors.is_empty() {
            return Err(Error::Anchor("no CERTIFICATE block in PEM".into()));
        }
        Ok(anchors)
    }

    /// The single root in a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let mut all = Self::all_from_pem(pem)?;
        match (all.pop(), all.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(Error::Anchor("expected exactly one certificate".into())),
        }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The subject name, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_root_is_the_published_one() {
        let root = TrustAnchor::aws_nitro_root_g1();
        assert_eq!(hex::encode(root.sha256()), AWS_NITRO_ROOT_G1_SHA256);
        assert_eq!(root.der().len(), 533);
        assert!(root.subject().contains("aws.nitro-enclaves"));
    }

    #[test]
    fn rejects_garbage_pem() {
        assert_eq!(
            TrustAnchor::from_pem("hello").unwrap_err().code(),
            "ATT-ANCHOR"
        );
        let two = format!("{AWS_NITRO_ROOT_G1_PEM}\n{AWS_NITRO_ROOT_G1_PEM}");
        assert_eq!(TrustAnchor::all_from_pem(&two).unwrap().len(), 2);
        assert!(TrustAnchor::from_pem(&two).is_err());
    }
}
