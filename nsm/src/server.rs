//! Any [`Nsm`] served on a stream: the launcher side of [`crate::client::NsmClient`].
//!
//! The peer is the enclave, which is not trusted to be well-formed: requests are bounded by the
//! NSM's request limit, a request that is too large is answered `InputTooLarge` and the
//! connection closed, and one that does not decode is answered `InvalidOperation`, as `/dev/nsm`
//! answers them.

use std::time::Duration;

use cloister_wire::WireError;
use cloister_wire::frame::{read_raw, write_raw};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::{ErrorCode, MAX_REQUEST, Request, Response};
use crate::{Nsm, NsmError};

/// Answers requests on `stream` until the peer closes it, breaks the framing, or stays silent
/// longer than `idle`.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    nsm: &dyn Nsm,
    idle: Duration,
) -> Result<(), NsmError> {
    loop {
        let body = match read_raw(&mut stream, MAX_REQUEST, idle).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(()),
            Err(WireError::TooLarge { .. }) => {
                let refusal = Response::Error(ErrorCode::InputTooLarge).to_cbor();
                write_raw(&mut stream, &refusal).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let response = match Request::from_cbor(&body) {
            Ok(request) => nsm.call(request).await?,
            Err(_) => Response::Error(ErrorCode::InvalidOperation),
        };
        write_raw(&mut stream, &response.to_cbor()).await?;
    }
}
