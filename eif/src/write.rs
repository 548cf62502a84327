//! The writer: sections in, EIF bytes out, laid out as the reference builder lays them out
//! (header, then each section header and data back to back) with the CRC-32 filled in.

use crate::crc::Crc32;
use crate::error::EifError;
use crate::format::{
    CRC_OFFSET, HEADER_LEN, Header, MAGIC, MAX_SECTIONS, SECTION_HEADER_LEN, SectionHeader,
    SectionType, VERSION,
};

/// Default enclave memory the reference builder writes (1 GiB).
pub const DEFAULT_MEM: u64 = 1024 * 1024 * 1024;
/// Default vCPU count the reference builder writes.
pub const DEFAULT_CPUS: u64 = 2;

/// Writes an x86_64 EIF with the given sections, in the given order. Does not check the order
/// rules (the caller decides); does check the count and that sizes fit.
pub(crate) fn write(sections: &[(SectionType, &[u8])]) -> Result<Vec<u8>, EifError> {
    if sections.is_empty() || sections.len() > MAX_SECTIONS {
        return Err(EifError::SectionCount(sections.len()));
    }
    let too_large = || EifError::TooLarge("image size overflows 64 bits");
    let mut header = Header {
        magic: MAGIC,
        version: VERSION,
        flags: 0,
        default_mem: DEFAULT_MEM,
        default_cpus: DEFAULT_CPUS,
        reserved: 0,
        num_sections: u16::try_from(sections.len()).map_err(|_| too_large())?,
        section_offsets: [0; MAX_SECTIONS],
        section_sizes: [0; MAX_SECTIONS],
        unused: 0,
        crc32: 0,
    };
    let mut total = HEADER_LEN;
    for (i, (_, data)) in sections.iter().enumerate() {
        let (Some(offset), Some(size)) = (
            header.section_offsets.get_mut(i),
            header.section_sizes.get_mut(i),
        ) else {
            return Err(EifError::SectionCount(sections.len()));
        };
        *offset = u64::try_from(total).map_err(|_| too_large())?;
        *size = u64::try_from(data.len()).map_err(|_| too_large())?;
        total = total
            .checked_add(SECTION_HEADER_LEN)
            .and_then(|t| t.checked_add(data.len()))
            .ok_or_else(too_large)?;
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&header.encode());
    for (kind, data) in sections {
        let sh = SectionHeader {
            kind: kind.as_u16(),
            flags: 0,
            size: u64::try_from(data.len()).map_err(|_| too_large())?,
        };
        out.extend_from_slice(&sh.encode());
        out.extend_from_slice(data);
    }
    let mut crc = Crc32::new();
    crc.update(out.get(..CRC_OFFSET).unwrap_or_default());
    crc.update(out.get(HEADER_LEN..).unwrap_or_default());
    header.crc32 = crc.finish();
    if let Some(field) = out.get_mut(CRC_OFFSET..HEADER_LEN) {
        field.copy_from_slice(&header.crc32.to_be_bytes());
    }
    Ok(out)
}
