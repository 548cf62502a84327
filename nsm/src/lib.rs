//! The Nitro Security Module (NSM), in one place: what the enclave asks it and how.
//!
//! An enclave proves what it runs by asking its NSM for a signed attestation document. On Nitro
//! the NSM is `/dev/nsm`; in cloister's microVM and process modes it is an emulator run by the
//! launcher (the "hypervisor" side). Both speak the same [`api`] (the NSM API's CBOR requests and
//! responses) and sit behind one trait, [`Nsm`]:
//!
//! - [`device::DeviceNsm`]: `/dev/nsm` through the NSM API's raw ioctl, the only `unsafe` code in
//!   cloister, run on a blocking thread so it never stalls the async runtime;
//! - [`client::NsmClient`]: an NSM reached over a stream (vsock, a Unix socket, or a socket pair
//!   the launcher hands over), one length-prefixed frame per request and per response;
//! - [`emulator::Emulator`] (feature `emulator`): an in-process NSM that holds PCRs and signs
//!   with the dev PKI, with Nitro's PCR rules; [`server::serve_connection`] puts any `Nsm` on a
//!   stream for a client.
//!
//! The convenience calls on `dyn Nsm` ([`attestation`](trait.Nsm.html#method.attestation) and
//! friends) turn the NSM's error answers into [`NsmError`]s with stable codes.

pub mod api;
pub mod client;
pub mod device;
#[cfg(feature = "emulator")]
pub mod emulator;
mod error;
pub mod server;

use std::future::Future;
use std::pin::Pin;

pub use api::{Request, Response};
pub use error::{CODES, NsmError};

/// An NSM request in flight.
pub type NsmFuture<'a> = Pin<Box<dyn Future<Output = Result<Response, NsmError>> + Send + 'a>>;

/// Something that answers NSM API requests: `/dev/nsm`, a client of a remote NSM, or the emulator.
pub trait Nsm: Send + Sync {
    /// Sends one request. An NSM error answer is `Ok(Response::Error(_))`; the typed helpers on
    /// `dyn Nsm` turn it into [`NsmError::Refused`].
    fn call(&self, request: Request) -> NsmFuture<'_>;
}

impl dyn Nsm + '_ {
    /// A signed attestation document binding `public_key`, `nonce` and `user_data`.
    pub async fn attestation(
        &self,
        public_key: Option<Vec<u8>>,
        nonce: Option<Vec<u8>>,
        user_data: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, NsmError> {
        match self
            .call(Request::Attestation {
                user_data,
                nonce,
                public_key,
            })
            .await?
        {
            Response::Attestation { document } => Ok(document),
            other => Err(unexpected("Attestation", other)),
        }
    }

    /// A PCR's value and whether it is locked.
    pub async fn describe_pcr(&self, index: u16) -> Result<(Vec<u8>, bool), NsmError> {
        match self.call(Request::DescribePCR { index }).await? {
            Response::DescribePCR { lock, data } => Ok((data, lock)),
            other => Err(unexpected("DescribePCR", other)),
        }
    }

    /// Extends PCR `index` with `data`; returns its new value.
    pub async fn extend_pcr(&self, index: u16, data: Vec<u8>) -> Result<Vec<u8>, NsmError> {
        match self.call(Request::ExtendPCR { index, data }).await? {
            Response::ExtendPCR { data } => Ok(data),
            other => Err(unexpected("ExtendPCR", other)),
        }
    }

    /// Locks PCR `index` until the enclave ends.
    pub async fn lock_pcr(&self, index: u16) -> Result<(), NsmError> {
        match self.call(Request::LockPCR { index }).await? {
            Response::LockPCR => Ok(()),
            other => Err(unexpected("LockPCR", other)),
        }
    }

    /// The module's id and the indexes of its locked PCRs.
    pub async fn describe(&self) -> Result<(String, Vec<u16>), NsmError> {
        match self.call(Request::DescribeNSM).await? {
            Response::DescribeNSM {
                module_id,
                locked_pcrs,
                ..
            } => Ok((module_id, locked_pcrs)),
            other => Err(unexpected("DescribeNSM", other)),
        }
    }

    /// Random bytes from the NSM's generator.
    pub async fn random(&self) -> Result<Vec<u8>, NsmError> {
        match self.call(Request::GetRandom).await? {
            Response::GetRandom { random } => Ok(random),
            other => Err(unexpected("GetRandom", other)),
        }
    }
}

/// An answer of the wrong kind: the NSM's own error code, or a protocol violation.
fn unexpected(asked: &'static str, answer: Response) -> NsmError {
    match answer {
        Response::Error(code) => NsmError::Refused(code),
        other => NsmError::Unexpected {
            asked,
            answer: format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;

    /// A fake NSM that answers every request with the same response: only to test the helpers.
    struct Fixed(Response);
    impl Nsm for Fixed {
        fn call(&self, _: Request) -> NsmFuture<'_> {
            let r = self.0.clone();
            Box::pin(async move { Ok(r) })
        }
    }

    #[tokio::test]
    async fn helpers_turn_error_answers_into_coded_errors() {
        use cloister_common::ErrorCode as _;
        let refusing: &dyn Nsm = &Fixed(Response::Error(ErrorCode::InvalidArgument));
        let e = refusing.attestation(None, None, None).await.unwrap_err();
        assert_eq!(e.code(), "NSM-REFUSED");
        assert!(e.to_string().contains("InvalidArgument"), "{e}");
        let confused: &dyn Nsm = &Fixed(Response::LockPCR);
        let e = confused.random().await.unwrap_err();
        assert_eq!(e.code(), "NSM-UNEXPECTED");
        let fine: &dyn Nsm = &Fixed(Response::GetRandom { random: vec![7; 4] });
        assert_eq!(fine.random().await.unwrap(), vec![7; 4]);
    }
}
