//! The operations a job may run, each under the disclosure policy's plan for it:
//! - [`stats`]: aggregates of groups of at least k records;
//! - [`mask`]: records with masked fields, unnamed fields dropped;
//! - [`tokenize`]: records with fields replaced by deterministic HMAC tokens;
//! - [`reseal`]: messages re-encrypted under a new data key of an allowed KMS key.

pub mod mask;
pub mod reseal;
pub mod stats;
pub mod tokenize;
