//! The AWS Encryption SDK message format, version 2 (committing suites), for sealed records.
//!
//! Records are sealed as Encryption SDK messages so that the official SDKs and cloister read each
//! other's output. Only the committing suites are supported, as the SDK's default commitment
//! policy requires:
//! - `0x0478` AES-256-GCM, HKDF-SHA512 key derivation and commitment;
//! - `0x0578` the same plus an ECDSA P-384 signature over the whole message (the default).
//!
//! Decryption checks, in order: the message's shape and limits (header, every frame's sequence
//! number, IV and length, footer, no trailing bytes), the key commitment (constant time), the
//! header's authentication tag, every frame's tag, and the footer signature; it returns plaintext
//! only when all of them hold, so nothing from an unauthenticated message is ever used. The
//! plaintext is a [`Plaintext`]: one buffer of exactly its length, never grown, zeroized on drop.
//!
//! AES-GCM, HKDF and ECDSA go through aws-lc-rs, the one crypto provider the project uses (and
//! about 3-4x faster than the `aes-gcm` crate at opening on this CPU, see reference/perf.md); the
//! `p384` crate only decompresses the SDK's compressed public keys.

mod error;
mod format;
mod message;

pub use error::{CODES, EsdkError};
pub use format::{ContentType, Edk, EncryptionContext, Header, Suite, parse_header};
pub use message::{
    DEFAULT_FRAME_LENGTH, DataKey, Encryptor, PUBLIC_KEY_CONTEXT_KEY, Plaintext, decrypt, split,
};
