//! What the emulated NSM measures: PCRs computed by the launcher from the image it boots, never
//! taken from the enclave's word. An EIF is measured by `cloister-eif` exactly as Nitro does:
//! PCR0 = image (kernel, cmdline, all ramdisks), PCR1 = kernel + cmdline + first ramdisk, PCR2 =
//! the other ramdisks, PCR8 = the signing certificate of a signed image; PCR3 = parent role ARN
//! and PCR4 = parent instance id when given.

use anyhow::{Context, Result};
use cloister_attestation::{PcrIndex, PcrValue, Pcrs};

fn value(p: &cloister_eif::Pcr) -> Result<PcrValue> {
    PcrValue::from_bytes(p.as_bytes()).context("a PCR is 48 bytes")
}

/// PCR0/1/2/8 of an image, as the emulator holds them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImagePcrs {
    pub(crate) pcr0: PcrValue,
    pub(crate) pcr1: PcrValue,
    pub(crate) pcr2: PcrValue,
    pub(crate) pcr8: PcrValue,
}

impl ImagePcrs {
    /// An EIF's measurement (PCR8 zero when unsigned, as on Nitro).
    pub(crate) fn of_eif(m: &cloister_eif::Pcrs) -> Result<Self> {
        Ok(Self {
            pcr0: value(&m.pcr0)?,
            pcr1: value(&m.pcr1)?,
            pcr2: value(&m.pcr2)?,
            pcr8: match &m.pcr8 {
                Some(p) => value(p)?,
                None => PcrValue::ZERO,
            },
        })
    }

    /// A debug enclave's: all zero, as Nitro reports an enclave started with a debug console.
    pub(crate) fn debug() -> Self {
        Self {
            pcr0: PcrValue::ZERO,
            pcr1: PcrValue::ZERO,
            pcr2: PcrValue::ZERO,
            pcr8: PcrValue::ZERO,
        }
    }
}

/// PCR0-15 at boot: the image's, PCR3 = the parent's role, PCR4 = the parent instance, the
/// others zero.
pub(crate) fn boot_pcrs(
    image: &ImagePcrs,
    role: Option<&str>,
    instance: Option<&str>,
) -> Result<Pcrs> {
    let mut out = Pcrs::new();
    for i in 0..16u64 {
        let value = match i {
            0 => image.pcr0,
            1 => image.pcr1,
            2 => image.pcr2,
            3 => role.map_or(PcrValue::ZERO, |r| PcrValue::measure(r.as_bytes())),
            4 => instance.map_or(PcrValue::ZERO, |id| PcrValue::measure(id.as_bytes())),
            8 => image.pcr8,
            _ => PcrValue::ZERO,
        };
        out.insert(PcrIndex::new(i).context("index")?, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eif_is_measured_as_nitro_does_and_parents_fill_pcr3_and_4() {
        let image = cloister_eif::Image::new(
            b"kernel".to_vec(),
            "console=ttyS0",
            vec![
                cloister_eif::Ramdisk::from_bytes(b"init".to_vec()),
                cloister_eif::Ramdisk::from_bytes(b"rootfs".to_vec()),
            ],
        );
        let (bytes, built) = image.build().unwrap();
        let measured = ImagePcrs::of_eif(&cloister_eif::measure(&bytes).unwrap()).unwrap();
        let got = boot_pcrs(&measured, Some("arn:aws:iam::1:role/r"), Some("i-1")).unwrap();
        let at = |i: u64| *got.get(PcrIndex::new(i).unwrap()).unwrap();
        assert_eq!(at(0), value(&built.pcr0).unwrap());
        assert_eq!(at(2), value(&built.pcr2).unwrap());
        assert_eq!(at(3), PcrValue::measure(b"arn:aws:iam::1:role/r"));
        assert_eq!(at(4), PcrValue::measure(b"i-1"));
        assert_eq!(at(8), PcrValue::ZERO);
        assert_eq!(got.len(), 16);
        assert!(cloister_eif::measure(b"not an eif").is_err());
    }
}
