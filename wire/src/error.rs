//! The wire crate's one error type, with stable codes.

/// A transport or framing failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The address text is not `vsock://CID:PORT` or `unix:///path[#PORT]`.
    #[error("bad address {0:?}: expected vsock://CID:PORT or unix:///path[#PORT]")]
    Address(String),
    /// Connecting, accepting or I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The hybrid-vsock handshake was refused or malformed.
    #[error("hybrid vsock handshake failed: {0}")]
    Handshake(String),
    /// A frame is larger than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A frame is not a valid envelope.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL})")]
    Version(u16),
    /// No data within the read timeout.
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(std::time::Duration),
    /// The peer closed the connection.
    #[error("connection closed by the peer")]
    Closed,
}

const PROTOCOL: u16 = crate::message::PROTOCOL_VERSION;

impl WireError {
    /// Stable short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Address(_) => "WIRE-ADDRESS",
            Self::Io { .. } => "WIRE-IO",
            Self::Handshake(_) => "WIRE-HANDSHAKE",
            Self::TooLarge { .. } => "WIRE-TOO-LARGE",
            Self::Malformed(_) => "WIRE-MALFORMED",
            Self::Version(_) => "WIRE-VERSION",
            Self::Timeout(_) => "WIRE-TIMEOUT",
            Self::Closed => "WIRE-CLOSED",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
