//! What an image is, from its bytes: sections, sizes, PCRs and signer, after every check
//! (structure, CRC, and the signature against PCR0 when signed).

use crate::error::EifError;
use crate::format::SectionType;
use crate::measure::{Pcrs, measure_sections};
use crate::parse::parse;
use crate::sign::Signature;

/// One section as `describe` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// What it holds.
    pub kind: SectionType,
    /// File offset of its section header.
    pub offset: u64,
    /// Size of its data.
    pub size: u64,
}

/// A checked image's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Whether the header marks it aarch64 (else x86_64).
    pub aarch64: bool,
    /// The header's default memory (bytes).
    pub default_mem: u64,
    /// The header's default vCPU count.
    pub default_cpus: u64,
    /// The sections, in file order.
    pub sections: Vec<SectionInfo>,
    /// The PCRs Nitro will measure.
    pub pcrs: Pcrs,
    /// The signing certificate's subject, for a signed image (whose signature verified).
    pub signer: Option<String>,
}

/// Checks an image and measures it: PCR0/1/2, and PCR8 when signed (after verifying the
/// signature over PCR0; a bad signature is an error, not an unsigned image).
pub fn measure(bytes: &[u8]) -> Result<Pcrs, EifError> {
    describe(bytes).map(|d| d.pcrs)
}

/// Checks an image and describes it (see [`measure`]).
pub fn describe(bytes: &[u8]) -> Result<Description, EifError> {
    let eif = parse(bytes)?;
    let signature = eif
        .first(SectionType::Signature)
        .map(Signature::parse)
        .transpose()?;
    let measurer = measure_sections(&eif);
    let pcrs = measurer.finish(signature.as_ref().map(|s| s.certificate().der()));
    if let Some(sig) = &signature {
        sig.verify(&pcrs.pcr0)?;
    }
    let size = |data: &[u8]| u64::try_from(data.len()).unwrap_or(u64::MAX);
    Ok(Description {
        aarch64: eif.is_aarch64(),
        default_mem: eif.header.default_mem,
        default_cpus: eif.header.default_cpus,
        sections: eif
            .sections
            .iter()
            .map(|s| SectionInfo {
                kind: s.kind,
                offset: s.offset,
                size: size(s.data),
            })
            .collect(),
        pcrs,
        signer: signature.map(|s| s.certificate().subject().to_string()),
    })
}
