//! The host<->enclave protocol and the transports that carry it.
//!
//! Everything that crosses the enclave boundary is a [`frame`]: a 4-byte big-endian length, then
//! a CBOR [`message::Envelope`] carrying the protocol version and one typed [`message::Message`].
//! Frames are bounded, reads time out, and malformed or oversized frames end the connection with
//! an error, never a panic. Endpoints are one [`address::Address`] type: AF_VSOCK
//! (`vsock://CID:PORT`) where the kernel has it, or Unix sockets in the hybrid-vsock style of
//! Firecracker and vhost-device-vsock (`unix:///path#PORT`). The enclave reaches the KMS through
//! the host's [`relay`]; both line handshakes (hybrid vsock and relay) share one [`line`] reader.

pub mod address;
pub mod error;
pub mod frame;
pub mod line;
pub mod message;
pub mod relay;

pub use address::{Address, Listener, Stream};
pub use error::{CODES, WireError};
pub use frame::{FrameReader, FrameWriter, MAX_FRAME};
pub use message::{Envelope, Message, PROTOCOL_VERSION, SecretString};
