//! The enclave crate's one error type, with stable codes.

/// A failure inside the enclave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// The NSM answered with an error code.
    #[error("the NSM refused the request: {0}")]
    Nsm(&'static str),
    /// The NSM could not be reached, or answered something unexpected.
    #[error("NSM transport: {0}")]
    NsmTransport(String),
}

impl EnclaveError {
    /// Stable short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Nsm(_) => "ENC-NSM",
            Self::NsmTransport(_) => "ENC-NSM-TRANSPORT",
        }
    }
}
