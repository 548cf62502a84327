//! cloister-kms: an AWS-KMS-compatible key service that releases keys only to attested enclaves.
//!
//! It speaks the AWS KMS JSON 1.1 protocol with SigV4 authentication, so boto3, aws-cli and the
//! AWS Encryption SDK work against it unchanged. Beyond what local KMS emulators do, it enforces
//! key policies (including `kms:RecipientAttestation:*` conditions on verified PCRs), binds
//! encryption context unambiguously, keeps every rotated key version, refuses disabled and
//! pending-deletion keys, audits every request in a hash chain, and persists durably in SQLite.

pub mod app;
pub mod attested;
pub mod audit;
pub mod blob;
pub mod error;
pub mod input;
pub mod ops;
pub mod policy;
pub mod ratelimit;
pub mod rootkey;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;

pub use app::{App, Config};
pub use error::KmsError;
