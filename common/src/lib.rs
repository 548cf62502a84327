//! The few pieces that every cloister crate needs and none of them owns.
//!
//! - [`ErrorCode`]: how any cloister error tells its stable code (`ATT-ROOT`, `WIRE-TIMEOUT`,
//!   `KMS-AccessDeniedException`, ...) and whether a job can go on after it. Every library
//!   crate's error enum implements it and lists the codes it can produce in `CODES`, which a test
//!   compares with the README's table.
//! - [`fs::write_atomically`]: a file appears whole under its final name or not at all, and stays
//!   there after a crash (temporary file, fsync, rename, directory fsync).
//!
//! This crate is a leaf: it depends on nothing, so the attestation, wire, KMS and host crates can
//! all use it without depending on each other.

pub mod error;
pub mod fs;

pub use error::{ErrorCode, chain, code_of};
