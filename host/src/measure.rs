//! What the emulated NSM measures: PCRs computed by the launcher from the image it boots, never
//! taken from the enclave's word.
//!
//! - `--eif`: an Enclave Image File, measured as Nitro does: PCR0 = image (kernel, cmdline, all
//!   ramdisks), PCR1 = kernel + cmdline + first ramdisk, PCR2 = the other ramdisks. (PCR8, the
//!   EIF signing certificate, is not computed yet and stays zero.)
//! - `--measure`: process mode, where the "image" is the enclave binary: PCR0 = PCR2 = the
//!   binary, PCR1 = nothing (no kernel).
//!
//! PCR3 = parent role ARN and PCR4 = parent instance id when given, as on Nitro.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use cloister_attestation::{PcrIndex, PcrValue, Pcrs};
use sha2::{Digest, Sha384};

const EIF_HEADER_LEN: usize = 548;
const MAX_SECTIONS: usize = 32;

/// The sections of an EIF that are measured, in file order: (type, data).
fn eif_sections(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>> {
    ensure!(
        bytes.len() >= EIF_HEADER_LEN && &bytes[..4] == b".eif",
        "not an EIF (magic .eif)"
    );
    let be16 = |o: usize| u16::from_be_bytes([bytes[o], bytes[o + 1]]);
    let be64 = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[o..o + 8]);
        u64::from_be_bytes(a)
    };
    let version = be16(4);
    ensure!(version >= 4, "EIF version {version} (4 or newer expected)");
    ensure!(be16(6) == 0, "EIF flags must be 0 (x86_64)");
    let count = usize::from(be16(26));
    ensure!(count <= MAX_SECTIONS, "{count} sections");
    let mut out = Vec::new();
    for i in 0..count {
        let offset = usize::try_from(be64(28 + 8 * i)).context("section offset")?;
        let size = usize::try_from(be64(28 + 8 * MAX_SECTIONS + 8 * i)).context("section size")?;
        let end = offset
            .checked_add(12)
            .and_then(|h| h.checked_add(size))
            .filter(|e| *e <= bytes.len());
        let Some(end) = end else {
            bail!("section {i} runs past the end of the file")
        };
        let kind = be16(offset);
        let declared = be64(offset + 4);
        ensure!(
            u64::try_from(size).is_ok_and(|s| s == declared),
            "section {i} size disagrees with the header"
        );
        out.push((kind, &bytes[offset + 12..end]));
    }
    Ok(out)
}

fn measure_all(parts: &[&[u8]]) -> PcrValue {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    PcrValue::measure(&h.finalize())
}

/// PCR0/1/2 of an EIF.
pub(crate) fn eif_pcrs(bytes: &[u8]) -> Result<[PcrValue; 3]> {
    let sections = eif_sections(bytes)?;
    let of = |t: u16| {
        sections
            .iter()
            .filter(|(k, _)| *k == t)
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
    };
    let (kernel, cmdline, ramdisks) = (of(1), of(2), of(3));
    ensure!(
        kernel.len() == 1 && cmdline.len() == 1 && !ramdisks.is_empty(),
        "EIF needs one kernel, one cmdline and ramdisks"
    );
    let mut image: Vec<&[u8]> = vec![kernel[0], cmdline[0]];
    image.extend(&ramdisks);
    let boot = [kernel[0], cmdline[0], ramdisks[0]];
    Ok([
        measure_all(&image),
        measure_all(&boot),
        measure_all(&ramdisks[1..]),
    ])
}

/// The locked PCRs 0..16 the emulated NSM reports for an image.
pub(crate) fn pcrs(
    eif: Option<&Path>,
    binary: Option<&Path>,
    role: Option<&str>,
    instance: Option<&str>,
) -> Result<Pcrs> {
    let [p0, p1, p2] = match (eif, binary) {
        (Some(path), None) => {
            eif_pcrs(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?
        }
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let m = measure_all(&[&bytes]);
            [m, measure_all(&[]), m]
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
            _ => PcrValue::ZERO,
        };
        out.insert(PcrIndex::new(i).context("index")?, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an EIF with the given (type, data) sections.
    #[allow(clippy::cast_possible_truncation)] // test inputs are tiny
    fn eif(sections: &[(u16, &[u8])]) -> Vec<u8> {
        let mut header = vec![0u8; EIF_HEADER_LEN];
        header[..4].copy_from_slice(b".eif");
        header[4..6].copy_from_slice(&4u16.to_be_bytes());
        header[26..28].copy_from_slice(&(sections.len() as u16).to_be_bytes());
        let mut body = Vec::new();
        for (i, (kind, data)) in sections.iter().enumerate() {
            let offset = (EIF_HEADER_LEN + body.len()) as u64;
            header[28 + 8 * i..36 + 8 * i].copy_from_slice(&offset.to_be_bytes());
            let s = 28 + 8 * MAX_SECTIONS + 8 * i;
            header[s..s + 8].copy_from_slice(&(data.len() as u64).to_be_bytes());
            body.extend(kind.to_be_bytes());
            body.extend(0u16.to_be_bytes());
            body.extend((data.len() as u64).to_be_bytes());
            body.extend(*data);
        }
        [header, body].concat()
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn eif_pcrs_follow_nitro_s_definition() {
        let file = eif(&[
            (1, b"kernel"),
            (2, b"console=ttyS0"),
            (3, b"init"),
            (3, b"rootfs"),
            (5, b"{}"),
        ]);
        let [p0, p1, p2] = eif_pcrs(&file).unwrap();
        let h = |parts: &[&[u8]]| PcrValue::measure(&Sha384::digest(parts.concat()));
        assert_eq!(p0, h(&[b"kernel", b"console=ttyS0", b"init", b"rootfs"]));
        assert_eq!(p1, h(&[b"kernel", b"console=ttyS0", b"init"]));
        assert_eq!(p2, h(&[b"rootfs"]));
        // Metadata is not measured.
        let other_meta = eif(&[
            (1, b"kernel"),
            (2, b"console=ttyS0"),
            (3, b"init"),
            (3, b"rootfs"),
            (5, b"{\"x\":1}"),
        ]);
        assert_eq!(eif_pcrs(&other_meta).unwrap(), [p0, p1, p2]);
    }

    #[test]
    fn malformed_eifs_are_refused() {
        assert!(eif_pcrs(b"hello").is_err());
        let mut f = eif(&[(1, b"kernel"), (2, b"c"), (3, b"r")]);
        f.truncate(f.len() - 1);
        assert!(eif_pcrs(&f).is_err());
        assert!(eif_pcrs(&eif(&[(1, b"kernel"), (3, b"r")])).is_err());
    }
}
