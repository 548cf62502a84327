//! The builder: kernel, command line and ramdisks (and optionally a signing key and metadata)
//! in; EIF bytes and their PCRs out. Unsigned, the same inputs always give the same bytes.

use crate::cpio::{Entry, archive};
use crate::error::EifError;
use crate::format::SectionType;
use crate::measure::{Measurer, Pcrs};
use crate::sign::SigningKey;
use crate::write::write;

/// One ramdisk (an initramfs, normally an uncompressed newc cpio archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ramdisk(Vec<u8>);

impl Ramdisk {
    /// A ramdisk from ready-made bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A reproducible cpio archive of these entries (see [`crate::cpio`]).
    pub fn from_entries(entries: &[Entry]) -> Result<Self, EifError> {
        archive(entries).map(Self)
    }

    /// The ramdisk's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What an image is made of.
#[derive(Debug)]
pub struct Image {
    /// The kernel (bzImage on x86_64).
    pub kernel: Vec<u8>,
    /// The kernel command line (measured; no NUL byte).
    pub cmdline: String,
    /// The ramdisks, in boot order: the first is measured into PCR1, the others into PCR2.
    pub ramdisks: Vec<Ramdisk>,
    /// A key to sign PCR0 with, which sets PCR8.
    pub signing: Option<SigningKey>,
    /// A metadata section (not measured). nitro-cli's `describe-eif` expects its
    /// `EifIdentityInfo` JSON here; `None` writes no metadata section.
    pub metadata: Option<Vec<u8>>,
}

impl Image {
    /// An unsigned image without metadata.
    pub fn new(kernel: Vec<u8>, cmdline: impl Into<String>, ramdisks: Vec<Ramdisk>) -> Self {
        Self {
            kernel,
            cmdline: cmdline.into(),
            ramdisks,
            signing: None,
            metadata: None,
        }
    }

    /// The EIF bytes and their PCRs. Sections are written in the reference builder's order:
    /// kernel, cmdline, metadata, ramdisks, signature.
    pub fn build(&self) -> Result<(Vec<u8>, Pcrs), EifError> {
        if self.cmdline.contains('\0') {
            return Err(EifError::Cmdline);
        }
        if self.ramdisks.is_empty() {
            return Err(EifError::Order("no ramdisk section"));
        }
        let mut m = Measurer::new();
        m.add(SectionType::Kernel, &self.kernel);
        m.add(SectionType::Cmdline, self.cmdline.as_bytes());
        for r in &self.ramdisks {
            m.add(SectionType::Ramdisk, r.as_bytes());
        }
        let pcrs = m.finish(self.signing.as_ref().map(|k| k.certificate().der()));
        let signature = match &self.signing {
            Some(key) => Some(key.signature_section(&pcrs.pcr0)?),
            None => None,
        };

        let mut sections: Vec<(SectionType, &[u8])> = vec![
            (SectionType::Kernel, &self.kernel),
            (SectionType::Cmdline, self.cmdline.as_bytes()),
        ];
        if let Some(meta) = &self.metadata {
            sections.push((SectionType::Metadata, meta));
        }
        sections.extend(
            self.ramdisks
                .iter()
                .map(|r| (SectionType::Ramdisk, r.as_bytes())),
        );
        if let Some(sig) = &signature {
            sections.push((SectionType::Signature, sig));
        }
        Ok((write(&sections)?, pcrs))
    }
}
