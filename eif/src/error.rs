//! The one error type of this crate, with a stable code for each way an image can be wrong.
//!
//! Parsing checks the structure first (header, section table, section headers, section types and
//! order) and the CRC last, so a corruption is reported by what is structurally wrong with it,
//! and the CRC only catches what is otherwise well formed.

use std::borrow::Cow;

use cloister_common::ErrorCode;

/// Every code an [`EifError`] can carry (the README's table lists the same).
pub const CODES: &[&str] = &[
    "EIF-TRUNCATED",
    "EIF-MAGIC",
    "EIF-VERSION",
    "EIF-FLAGS",
    "EIF-SECTION-COUNT",
    "EIF-SECTION-BOUNDS",
    "EIF-SECTION-OVERLAP",
    "EIF-SECTION",
    "EIF-SECTION-TYPE",
    "EIF-ORDER",
    "EIF-CRC",
    "EIF-SIGNATURE",
    "EIF-SIGNATURE-INVALID",
    "EIF-CERT",
    "EIF-KEY",
    "EIF-CMDLINE",
    "EIF-CPIO",
    "EIF-TOO-LARGE",
    "EIF-LAYOUT",
];

/// What is wrong with an image, a signature, a key or a ramdisk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EifError {
    /// The file ends before its header, or before a section header does.
    #[error("EIF truncated: {0}")]
    Truncated(&'static str),
    /// The file does not start with `.eif`.
    #[error("not an EIF (magic .eif expected)")]
    Magic,
    /// A format version other than 4.
    #[error("EIF version {0} (only version 4 is supported)")]
    Version(u16),
    /// Header flags other than the architecture bit.
    #[error("EIF header flags {0:#06x} (only the aarch64 bit 0x1 is defined)")]
    Flags(u16),
    /// No section, or more than the header's 32 slots.
    #[error("EIF declares {0} sections (1 to 32 allowed)")]
    SectionCount(usize),
    /// A section (its header or its data) runs past the end of the file.
    #[error("EIF section {index} runs past the end of the file")]
    SectionBounds {
        /// The section's index in the header's table.
        index: usize,
    },
    /// A section starts inside the header or inside the section before it.
    #[error("EIF section {index} overlaps the header or the section before it")]
    SectionOverlap {
        /// The section's index in the header's table.
        index: usize,
    },
    /// Any other disagreement in the section layout.
    #[error("EIF section {index}: {reason}")]
    Section {
        /// The section's index in the header's table (the count when about the file's end).
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A section type that is not kernel, cmdline, ramdisk, signature or metadata.
    #[error("EIF section {index} has type {value} (1 to 5 allowed)")]
    SectionType {
        /// The section's index in the header's table.
        index: usize,
        /// The type found.
        value: u16,
    },
    /// Sections in an order the format does not allow, or missing or repeated.
    #[error("EIF section order: {0}")]
    Order(&'static str),
    /// The stored CRC32 is not the CRC32 of the file.
    #[error("EIF CRC32 mismatch: header says {stored:#010x}, file is {computed:#010x}")]
    Crc {
        /// The value in the header.
        stored: u32,
        /// The value computed over the file.
        computed: u32,
    },
    /// The signature section is not the CBOR/COSE structure the format defines.
    #[error("EIF signature section malformed: {0}")]
    Signature(String),
    /// The signature does not verify, or does not sign this image's PCR0.
    #[error("EIF signature invalid: {0}")]
    SignatureInvalid(&'static str),
    /// The signing certificate cannot be read, or its key is not P-384.
    #[error("signing certificate: {0}")]
    Certificate(String),
    /// The signing key cannot be read, is not P-384, or does not match the certificate.
    #[error("signing key: {0}")]
    Key(String),
    /// The kernel command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    Cmdline,
    /// A ramdisk entry is invalid (path, duplicate, parent not a directory, size).
    #[error("cpio: {0}")]
    Cpio(String),
    /// An input too large for the format (a size that does not fit its field).
    #[error("too large for an EIF: {0}")]
    TooLarge(&'static str),
    /// The image is a valid EIF but not laid out as a cloister enclave image.
    #[error("not a cloister enclave image: {0}")]
    Layout(String),
}

impl ErrorCode for EifError {
    fn code(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::Truncated(_) => "EIF-TRUNCATED",
            Self::Magic => "EIF-MAGIC",
            Self::Version(_) => "EIF-VERSION",
            Self::Flags(_) => "EIF-FLAGS",
            Self::SectionCount(_) => "EIF-SECTION-COUNT",
            Self::SectionBounds { .. } => "EIF-SECTION-BOUNDS",
            Self::SectionOverlap { .. } => "EIF-SECTION-OVERLAP",
            Self::Section { .. } => "EIF-SECTION",
            Self::SectionType { .. } => "EIF-SECTION-TYPE",
            Self::Order(_) => "EIF-ORDER",
            Self::Crc { .. } => "EIF-CRC",
            Self::Signature(_) => "EIF-SIGNATURE",
            Self::SignatureInvalid(_) => "EIF-SIGNATURE-INVALID",
            Self::Certificate(_) => "EIF-CERT",
            Self::Key(_) => "EIF-KEY",
            Self::Cmdline => "EIF-CMDLINE",
            Self::Cpio(_) => "EIF-CPIO",
            Self::TooLarge(_) => "EIF-TOO-LARGE",
            Self::Layout(_) => "EIF-LAYOUT",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_and_the_readme_lists_them() {
        let samples = [
            EifError::Truncated("x"),
            EifError::Magic,
            EifError::Version(3),
            EifError::Flags(2),
            EifError::SectionCount(0),
            EifError::SectionBounds { index: 0 },
            EifError::SectionOverlap { index: 0 },
            EifError::Section {
                index: 0,
                reason: "x",
            },
            EifError::SectionType { index: 0, value: 9 },
            EifError::Order("x"),
            EifError::Crc {
                stored: 0,
                computed: 1,
            },
            EifError::Signature("x".into()),
            EifError::SignatureInvalid("x"),
            EifError::Certificate("x".into()),
            EifError::Key("x".into()),
            EifError::Cmdline,
            EifError::Cpio("x".into()),
            EifError::TooLarge("x"),
            EifError::Layout("x".into()),
        ];
        let codes: Vec<_> = samples.iter().map(|e| e.code().into_owned()).collect();
        assert_eq!(codes, CODES);
        let readme = include_str!("../README.md");
        for code in CODES {
            assert!(
                readme.contains(&format!("`{code}`")),
                "{code} not in README"
            );
        }
    }
}
