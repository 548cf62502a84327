//! An NSM reached over a byte stream: how an enclave in a microVM (vsock) or in process mode (a
//! socket pair the launcher hands it, or a Unix socket) talks to cloister's emulated NSM.
//!
//! Each request is one length-prefixed frame holding the NSM API's CBOR, answered by one frame;
//! answers are bounded by the NSM's own response limit and a timeout.

use std::time::Duration;

use cloister_wire::Address;
use cloister_wire::frame::{read_raw, write_raw};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use crate::api::{MAX_RESPONSE, Request, Response};
use crate::{Nsm, NsmError, NsmFuture};

/// How long a client waits for an answer (the NSM signs documents; this is generous).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A byte stream to an NSM.
pub trait NsmStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> NsmStream for T {}

enum Target {
    /// Connect for each request.
    Dial(Address),
    /// One connection, held for the client's life; requests take turns on it.
    Held(Mutex<Box<dyn NsmStream>>),
}

/// A client of an NSM at the other end of a stream.
pub struct NsmClient {
    target: Target,
}

impl std::fmt::Debug for NsmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Dial(a) => write!(f, "NsmClient({a})"),
            Target::Held(_) => f.write_str("NsmClient(held stream)"),
        }
    }
}

impl NsmClient {
    /// An NSM at `addr`, connected anew for each request.
    pub fn dial(addr: Address) -> Self {
        Self {
            target: Target::Dial(addr),
        }
    }

    /// An NSM at the other end of `stream` (e.g. a socket pair inherited from the launcher).
    pub fn over(stream: impl NsmStream + 'static) -> Self {
        Self {
            target: Target::Held(Mutex::new(Box::new(stream))),
        }
    }

    async fn exchange<S: NsmStream>(s: &mut S, request: &Request) -> Result<Response, NsmError> {
        write_raw(s, &request.to_cbor()).await?;
        let body = read_raw(s, MAX_RESPONSE, TIMEOUT).await?.ok_or_else(|| {
            NsmError::transport("reading the NSM's answer")(Box::new(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the NSM closed the connection",
            )))
        })?;
        Ok(Response::from_cbor(&body)?)
    }
}

impl Nsm for NsmClient {
    fn call(&self, request: Request) -> NsmFuture<'_> {
        Box::pin(async move {
            match &self.target {
                Target::Dial(addr) => {
                    let mut s = addr.connect().await?;
                    Self::exchange(&mut s, &request).await
                }
                Target::Held(s) => Self::exchange(&mut *s.lock().await, &request).await,
            }
        })
    }
}
