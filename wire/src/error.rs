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
    /// A line handshake (hybrid vsock or the KMS relay) was malformed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The KMS relay refused the destination.
    #[error("the relay refused the connection: {0}")]
    RelayDenied(String),
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

/// Every code [`WireError`] can produce.
pub const CODES: &[&str] = &[
    "WIRE-ADDRESS",
    "WIRE-IO",
    "WIRE-HANDSHAKE",
    "WIRE-RELAY-DENIED",
    "WIRE-TOO-LARGE",
    "WIRE-MALFORMED",
    "WIRE-VERSION",
    "WIRE-TIMEOUT",
    "WIRE-CLOSED",
];

impl cloister_common::ErrorCode for WireError {
    fn code(&self) -> std::borrow::Cow<'static, str> {
        WireError::code(self).into()
    }
}

impl WireError {
    /// Stable short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Address(_) => "WIRE-ADDRESS",
            Self::Io { .. } => "WIRE-IO",
            Self::Handshake(_) => "WIRE-HANDSHAKE",
            Self::RelayDenied(_) => "WIRE-RELAY-DENIED",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_s_code_is_listed() {
        let all = [
            WireError::Address("x".into()),
            WireError::io("x")(std::io::Error::other("y")),
            WireError::Handshake("x".into()),
            WireError::RelayDenied("x".into()),
            WireError::TooLarge { len: 2, max: 1 },
            WireError::Malformed("x".into()),
            WireError::Version(9),
            WireError::Timeout(std::time::Duration::from_secs(1)),
            WireError::Closed,
        ];
        assert_eq!(all.len(), CODES.len());
        for e in all {
            assert!(CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
