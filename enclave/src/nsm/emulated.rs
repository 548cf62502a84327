//! cloister's emulated NSM, reached over vsock (or a Unix socket in process mode).

use std::time::Duration;

use cloister_attestation::nsm_api::{MAX_RESPONSE, Request, Response};
use cloister_wire::Address;
use cloister_wire::frame::{read_raw, write_raw};

use super::{Nsm, NsmFuture};
use crate::error::EnclaveError;

/// How long the enclave waits for the emulated NSM.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The emulated NSM at an address.
#[derive(Debug, Clone)]
pub struct EmulatedNsm {
    addr: Address,
}

impl EmulatedNsm {
    /// The NSM at `addr`.
    pub fn new(addr: Address) -> Self {
        Self { addr }
    }
}

impl Nsm for EmulatedNsm {
    fn call(&self, request: Request) -> NsmFuture<'_> {
        Box::pin(async move {
            let t = |e: cloister_wire::WireError| EnclaveError::NsmTransport(e.to_string());
            let mut s = self.addr.connect().await.map_err(t)?;
            write_raw(&mut s, &request.to_cbor()).await.map_err(t)?;
            let body = read_raw(&mut s, MAX_RESPONSE, TIMEOUT)
                .await
                .map_err(t)?
                .ok_or_else(|| {
                    EnclaveError::NsmTransport("the NSM closed the connection".into())
                })?;
            Response::from_cbor(&body).map_err(|e| EnclaveError::NsmTransport(e.to_string()))
        })
    }
}
