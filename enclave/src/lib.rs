//! The enclave side of cloister. So far: how the enclave reaches its Nitro Security Module,
//! through one trait with two implementations (the real `/dev/nsm`, and cloister's emulated NSM
//! over vsock). Attested key release and record processing join it next.

pub mod error;
pub mod job;
pub mod kms;
pub mod nsm;
pub mod stats;

pub use error::EnclaveError;
