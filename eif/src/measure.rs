//! PCR0/1/2/8 exactly as Nitro (and nitro-cli `describe-eif`, and QEMU's `nitro-enclave`
//! machine) compute them from an image.
//!
//! The reference (`EifReader::from_eif`, `EifBuilder::measure`, `get_pcrs`) uses `EifHasher`
//! *without cache* (block size 0), which is a plain pass-through to SHA-384; so, over section
//! *data* only (never section headers) in file order:
//! - image = SHA-384(kernel ‖ cmdline ‖ ramdisk₁ ‖ … ‖ ramdiskₙ), PCR0 = extend(image);
//! - bootstrap = SHA-384(kernel ‖ cmdline ‖ ramdisk₁), PCR1 = extend(bootstrap);
//! - app = SHA-384(ramdisk₂ ‖ … ‖ ramdiskₙ) (the hash of nothing with one ramdisk),
//!   PCR2 = extend(app);
//! - signed images only: PCR8 = extend(SHA-384(DER of the signing certificate)).
//!
//! where extend(d) = SHA-384(0⁴⁸ ‖ d), the TPM-style extend of a zeroed register
//! (`tpm_extend_finalize_reset`). Signature and metadata sections are not measured.

use std::fmt;

use aws_lc_rs::digest::{Context, SHA384, digest};

use crate::format::SectionType;
use crate::parse::Eif;

/// One SHA-384 PCR value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr(pub [u8; 48]);

impl Pcr {
    /// The register a zeroed PCR holds after one extend with `data`: SHA-384(0⁴⁸ ‖ data).
    pub fn extend_from_zero(data: &[u8]) -> Self {
        let mut ctx = Context::new(&SHA384);
        ctx.update(&[0u8; 48]);
        ctx.update(data);
        Self::from_digest(&ctx.finish())
    }

    fn from_digest(d: &aws_lc_rs::digest::Digest) -> Self {
        let mut out = [0u8; 48];
        if let Some(src) = d.as_ref().get(..48) {
            out.copy_from_slice(src);
        }
        Self(out)
    }

    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.0
    }

    /// Lower-case hex, as nitro-cli prints PCRs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({})", self.to_hex())
    }
}

/// The PCRs an image determines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcrs {
    /// The whole image: kernel, cmdline, all ramdisks.
    pub pcr0: Pcr,
    /// Kernel, cmdline and the first ramdisk.
    pub pcr1: Pcr,
    /// The other ramdisks.
    pub pcr2: Pcr,
    /// The signing certificate, for a signed image (zero on Nitro when unsigned).
    pub pcr8: Option<Pcr>,
}

/// Accumulates the PCR0/1/2 hashes over sections fed in file order.
#[derive(Clone)]
pub(crate) struct Measurer {
    image: Context,
    bootstrap: Context,
    app: Context,
    ramdisks: usize,
}

impl fmt::Debug for Measurer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measurer")
            .field("ramdisks", &self.ramdisks)
            .finish_non_exhaustive()
    }
}

impl Measurer {
    pub(crate) fn new() -> Self {
        Self {
            image: Context::new(&SHA384),
            bootstrap: Context::new(&SHA384),
            app: Context::new(&SHA384),
            ramdisks: 0,
        }
    }

    /// Feeds one section; signature and metadata sections are ignored, as Nitro does.
    pub(crate) fn add(&mut self, kind: SectionType, data: &[u8]) {
        match kind {
            SectionType::Kernel | SectionType::Cmdline => {
                self.image.update(data);
                self.bootstrap.update(data);
            }
            SectionType::Ramdisk => {
                self.image.update(data);
                if self.ramdisks == 0 {
                    self.bootstrap.update(data);
                } else {
                    self.app.update(data);
                }
                self.ramdisks += 1;
            }
            SectionType::Signature | SectionType::Metadata => {}
        }
    }

    /// The PCRs, with PCR8 from the signing certificate's DER when signed.
    pub(crate) fn finish(self, signing_cert_der: Option<&[u8]>) -> Pcrs {
        let extend = |ctx: Context| Pcr::extend_from_zero(ctx.finish().as_ref());
        Pcrs {
            pcr0: extend(self.image),
            pcr1: extend(self.bootstrap),
            pcr2: extend(self.app),
            pcr8: signing_cert_der.map(pcr8),
        }
    }
}

/// PCR8 for a signing certificate (DER): extend(SHA-384(DER)).
pub fn pcr8(cert_der: &[u8]) -> Pcr {
    Pcr::extend_from_zero(digest(&SHA384, cert_der).as_ref())
}

/// PCR0/1/2 of a parsed image (PCR8 is added by [`crate::describe`] and [`crate::measure`],
/// which read the signature section).
pub(crate) fn measure_sections(eif: &Eif<'_>) -> Measurer {
    let mut m = Measurer::new();
    for s in &eif.sections {
        m.add(s.kind, s.data);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed independently with Python's hashlib:
    /// `hashlib.sha384(bytes(48) + hashlib.sha384(b"").digest()).hexdigest()`
    #[test]
    fn extend_matches_hashlib() {
        let empty = digest(&SHA384, b"");
        assert_eq!(
            Pcr::extend_from_zero(empty.as_ref()).to_hex(),
            "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"
        );
    }
}
