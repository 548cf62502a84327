//! AWS Nitro Enclave Image Files (EIF, format version 4), as cloister builds and checks its
//! enclave images. A library with no knowledge of the enclave it packages.
//!
//! - [`Image::build`]: kernel, cmdline and ramdisks (optionally a P-384 signing key) to EIF
//!   bytes and their [`Pcrs`]; reproducible (unsigned, byte for byte; signed, the PCRs).
//! - [`cpio::archive`] / [`Ramdisk::from_entries`]: reproducible newc ramdisks; [`cpio::read`]
//!   reads one back, strictly.
//! - [`layout`] / [`image_files`]: where cloister's enclave image keeps its binary, modules and
//!   configuration, and the measured binary and configuration taken back out of an image.
//! - [`parse`]: the strict reader of untrusted bytes; [`describe`] / [`measure`]: parse, check
//!   the signature if any, and compute PCR0/1/2/8 exactly as Nitro does.
//! - [`EifError`]: one error type with stable codes ([`CODES`]).
//!
//! What it trusts: nothing in the bytes it reads. What it does not decide: whether a signing
//! certificate is trustworthy (that is a policy on PCR8) or current (no clock is consulted).

mod cert;
pub mod cpio;
mod crc;
mod describe;
mod error;
pub mod format;
mod image;
pub mod layout;
mod measure;
mod parse;
mod sign;
mod write;

pub use cert::Certificate;
pub use describe::{Description, SectionInfo, describe, measure};
pub use error::{CODES, EifError};
pub use format::SectionType;
pub use image::{Image, Ramdisk};
pub use layout::{ImageFiles, image_files};
pub use measure::{Pcr, Pcrs, pcr8};
pub use parse::{Eif, Section, parse};
pub use sign::{MAX_SIGNATURE_SECTION, Signature, SigningKey};
pub use write::{DEFAULT_CPUS, DEFAULT_MEM};
