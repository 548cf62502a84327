//! cloister-kms: an AWS-KMS-compatible key service that releases keys only to attested enclaves.
//!
//! It speaks the AWS KMS JSON 1.1 protocol with SigV4 authentication, so boto3, aws-cli and the
//! AWS Encryption SDK work against it unchanged; the same listener serves Secrets Manager and
//! Parameter Store (`service`), whose values are encrypted under its keys and may be released
//! only to attested enclaves. Beyond what local KMS emulators do, it enforces
//! key policies (including `kms:RecipientAttestation:*` conditions on verified PCRs), binds
//! encryption context unambiguously, keeps every rotated key version, refuses disabled and
//! pending-deletion keys, audits every request in a Merkle tree with signed tree heads, and
//! persists durably in SQLite.
//!
//! The API is what the `cloister-kms` binary needs: [`Store::init`] opens a data directory (its
//! root key where [`RootKeyFile`] says; [`Store::migrate`] upgrades a store from before row MACs),
//! [`App::new`] builds the service over it, [`router`] serves it (and [`server_config`] its TLS)
//! on the bounded listeners of [`listen`], [`App::housekeeping`] rotates and deletes keys when
//! due. [`blob`] reads a ciphertext blob's header; [`policy`] and [`decode_input`] are public for
//! the fuzz targets, [`audit_proof`] for offline checks of the audit log's proofs (and its fuzz
//! target).

mod app;
mod attested;
mod audit;
pub mod audit_proof;
pub mod blob;
mod error;
mod grants;
mod import_token;
mod input;
mod keymaterial;
mod keyspec;
pub mod listen;
mod merkle;
mod ops;
pub mod policy;
mod ratelimit;
mod rootkey;
mod secrets;
mod server;
mod service;
mod ssm;
mod state;
mod store;
mod tls;
mod tree_head;
mod unknown_keys;

pub use app::{App, Config, DEFAULT_UNAUTHENTICATED_AUDIT_RATE};
pub use error::{KmsError, SecretsError, SetupError, SsmError, StoreError};
pub use merkle::Hash;
pub use rootkey::{RootKey, RootKeyFile};
pub use server::router;
pub use state::Principal;
pub use store::url::{PgTarget, StoreUrl};
pub use store::{AuditCheck, AuditSummary, BrokenAt, Migration, Store, StoredEntry};
pub use tls::{Rotated, rotate as rotate_tls, server_config};
pub use tree_head::{KeyFormatError, SignedTreeHead, TreeKey, TreeSigner};

/// Decodes a request body as operation `op`'s typed input (what the server does before it
/// touches any key); an error is the answer the server would give.
pub fn decode_input(op: &str, body: &[u8]) -> Result<(), KmsError> {
    ops::decode(op, body)
}

/// Decodes a request body as Secrets Manager operation `op`'s typed input; for the fuzz target.
pub fn decode_secrets_input(op: &str, body: &[u8]) -> Result<(), KmsError> {
    secrets::decode(op, body)
}

/// Decodes a request body as Parameter Store operation `op`'s typed input; for the fuzz target.
pub fn decode_ssm_input(op: &str, body: &[u8]) -> Result<(), KmsError> {
    ssm::decode(op, body)
}

/// Parses `data` as an import token (opened, and sealed under a fixed root key), as
/// ImportKeyMaterial would; for the fuzz target.
pub fn decode_import_token(data: &[u8]) -> Result<(), KmsError> {
    import_token::fuzz(data)
}
