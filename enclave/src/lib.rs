//! The enclave side of cloister: serving jobs over vsock, releasing data keys by attestation,
//! and computing results over records that never leave it.
//!
//! - [`config`]: the image's configuration (`/etc/cloister/enclave.toml`), typed and checked;
//! - [`init`]: PID 1 in the microVM (mounts, modules, power-off);
//! - [`process`]: process mode's inherited descriptors and Unix-socket addresses;
//! - [`serve`]: the accept loop;
//! - [`policy`]: the measured disclosure policy, and a job's request checked against it;
//! - [`job`]: one job's protocol (a `Job`, sealed messages, `EndOfInput`; results, progress,
//!   failures, `Done`), each message authenticated whole before it counts;
//! - [`ops`]: the operations (stats, mask, tokenize, reseal);
//! - [`record`]: one decrypted record (a JSON-lines object), parsed strictly into zeroizing
//!   buffers;
//! - [`budget`]: the stats jobs allowed per key and window;
//! - [`kms`]: attested key release through the host's relay, with a bounded key cache;
//! - [`secrets`]: the secrets the configuration lists, fetched by attestation (Secrets Manager
//!   with a `Recipient`, or a KMS ciphertext kept in Secrets Manager or Parameter Store).
//!
//! The NSM it asks for documents is any [`cloister_nsm::Nsm`]: `/dev/nsm` on Nitro, the
//! launcher's emulated NSM elsewhere.

pub mod budget;
pub mod config;
pub mod error;
pub mod init;
pub mod job;
pub mod kms;
pub mod ops;
pub mod policy;
pub mod process;
pub mod record;
pub mod secrets;
pub mod serve;
#[cfg(test)]
mod testing;

pub use error::{CODES, EnclaveError};
