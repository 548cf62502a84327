//! A client for the AWS KMS JSON 1.1 protocol: what cloister's host (seal/open) and enclave
//! (attested Decrypt) use to talk to cloister-kms or real AWS KMS.
//!
//! - [`connector`]: how bytes reach the KMS (TCP; TLS pinned to a CA over any inner connector,
//!   which in the enclave is the host's relay).
//! - [`client`]: SigV4-signed calls (`cloister-sigv4`, the same canonicalisation the server
//!   verifies) over one kept-alive connection, retried with exponential backoff and full jitter
//!   ([`retry`]) on throttling, 5xx answers and broken connections.
//! - [`ops`]: the typed operations (`generate_data_key`, `encrypt`, `decrypt`,
//!   `decrypt_for_recipient`), with keys in zeroizing types; the attested release makes its RSA
//!   key, asks the NSM for a document and opens the CMS envelope here.
//! - [`secrets`]: Secrets Manager and Parameter Store calls ([`Api`] picks the service's target
//!   prefix and signing name), including the attested `GetSecretValue` with a `Recipient`.
//!
//! The crate trusts only the CA certificates it is given for TLS; what a KMS answers is parsed
//! as untrusted input.

pub mod client;
pub mod connector;
pub mod error;
pub mod ops;
pub mod retry;
pub mod secrets;

pub use client::{Api, KmsClient, b64, blob};
pub use connector::{Connecting, Connector, Stream, TcpConnector, TlsConnector};
pub use error::{CODES, ClientError};
pub use ops::{Ciphertext, DataKey, Decrypted, Encrypted, EncryptionContext, GeneratedDataKey};
pub use retry::Retry;
pub use secrets::{Parameter, SecretData, SecretRef, SecretValue};
