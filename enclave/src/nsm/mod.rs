//! The Nitro Security Module, behind one trait.
//!
//! - [`device::DeviceNsm`]: `/dev/nsm` on a real Nitro enclave, through the NSM API's raw ioctl.
//! - [`emulated::EmulatedNsm`]: cloister's emulated NSM (`cloister nsm serve`), the same CBOR
//!   requests over vsock (or a Unix socket in process mode), framed with a length prefix.
//!
//! Either way the enclave gets documents that the same verifier checks; only the root differs.

pub mod device;
pub mod emulated;

use std::future::Future;
use std::pin::Pin;

use cloister_attestation::nsm_api::{Request, Response};

use crate::error::EnclaveError;

/// An NSM request in flight.
pub type NsmFuture<'a> = Pin<Box<dyn Future<Output = Result<Response, EnclaveError>> + Send + 'a>>;

/// Something that answers NSM API requests.
pub trait Nsm: Send + Sync {
    /// Sends one request.
    fn call(&self, request: Request) -> NsmFuture<'_>;
}

/// Asks for an attestation document binding `public_key` and `nonce`.
pub async fn attestation(
    nsm: &dyn Nsm,
    public_key: Vec<u8>,
    nonce: Vec<u8>,
) -> Result<Vec<u8>, EnclaveError> {
    match nsm
        .call(Request::Attestation {
            user_data: None,
            nonce: Some(nonce),
            public_key: Some(public_key),
        })
        .await?
    {
        Response::Attestation { document } => Ok(document),
        Response::Error(code) => Err(EnclaveError::Nsm(code.name())),
        other => Err(EnclaveError::NsmTransport(format!(
            "unexpected answer {other:?}"
        ))),
    }
}
