//! What the emulated NSM measures: PCRs computed by the launcher from the image it boots, never
//! taken from the enclave's word.
//!
//! - `--eif`: an Enclave Image File, measured by `cloister-eif` exactly as Nitro does: PCR0 =
//!   image (kernel, cmdline, all ramdisks), PCR1 = kernel + cmdline + first ramdisk, PCR2 = the
//!   other ramdisks, PCR8 = the signing certificate of a signed image.
//! - `--measure`: process mode, where the "image" is the enclave binary: PCR0 = PCR2 = the
//!   binary, PCR1 = nothing (no kernel).
//!
//! PCR3 = parent role ARN and PCR4 = parent instance id when given, as on Nitro.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cloister_attestation::{PcrIndex, PcrValue, Pcrs};
use sha2::{Digest, Sha384};

fn measure_all(parts: &[&[u8]]) -> PcrValue {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    PcrValue::measure(&h.finalize())
}

fn value(p: &cloister_eif::Pcr) -> Result<PcrValue> {
    PcrValue::from_bytes(p.as_bytes()).context("a PCR is 48 bytes")
}

/// The boot PCRs 0..16 the emulated NSM reports for an image.
pub(crate) fn pcrs(
    eif: Option<&Path>,
    binary: Option<&Path>,
    role: Option<&str>,
    instance: Option<&str>,
) -> Result<Pcrs> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let [p0, p1, p2, p8] = match (eif, binary) {
        (Some(path), None) => {
            let m = cloister_eif::measure(&read(path)?)
                .with_context(|| format!("measuring {}", path.display()))?;
            let p8 = match &m.pcr8 {
                Some(p) => value(p)?,
                None => PcrValue::ZERO,
            };
            [value(&m.pcr0)?, value(&m.pcr1)?, value(&m.pcr2)?, p8]
        }
        (None, Some(path)) => {
            let m = measure_all(&[&read(path)?]);
            [m, measure_all(&[]), m, PcrValue::ZERO]
        }
        _ => bail!("exactly one of --eif and --measure is required"),
    };
    let mut out = Pcrs::new();
    for i in 0..16u64 {
        let value = match i {
            0 => p0,
            1 => p1,
            2 => p2,
            3 => role.map_or(PcrValue::ZERO, |r| PcrValue::measure(r.as_bytes())),
            4 => instance.map_or(PcrValue::ZERO, |id| PcrValue::measure(id.as_bytes())),
            8 => p8,
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.eif");
        let image = cloister_eif::Image::new(
            b"kernel".to_vec(),
            "console=ttyS0",
            vec![
                cloister_eif::Ramdisk::from_bytes(b"init".to_vec()),
                cloister_eif::Ramdisk::from_bytes(b"rootfs".to_vec()),
            ],
        );
        let (bytes, built) = image.build().unwrap();
        std::fs::write(&path, bytes).unwrap();
        let got = pcrs(
            Some(&path),
            None,
            Some("arn:aws:iam::1:role/r"),
            Some("i-1"),
        )
        .unwrap();
        let at = |i: u64| *got.get(PcrIndex::new(i).unwrap()).unwrap();
        assert_eq!(at(0), value(&built.pcr0).unwrap());
        assert_eq!(at(2), value(&built.pcr2).unwrap());
        assert_eq!(at(3), PcrValue::measure(b"arn:aws:iam::1:role/r"));
        assert_eq!(at(4), PcrValue::measure(b"i-1"));
        assert_eq!(at(8), PcrValue::ZERO);
        std::fs::write(&path, b"not an eif").unwrap();
        assert!(pcrs(Some(&path), None, None, None).is_err());
    }
}
