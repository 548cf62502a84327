//! The strict parser: untrusted bytes in, borrowed sections out, or the first thing wrong.
//!
//! Accepted is exactly what the format's writer produces: version 4, the header's section table
//! listing sections that follow the header back to back to the end of the file (no gap, no
//! overlap, no trailing bytes, unused slots zero), each section header agreeing with the table,
//! kernel first, cmdline second, at least one ramdisk, at most one signature and one metadata
//! section, and the CRC-32 right. It never allocates more than one small entry per section (at
//! most 32) and never panics.

use crate::crc::Crc32;
use crate::error::EifError;
use crate::format::{
    CRC_OFFSET, FLAG_AARCH64, HEADER_LEN, Header, MAGIC, MAX_SECTIONS, SECTION_HEADER_LEN,
    SectionHeader, SectionType, VERSION,
};

/// A parsed image, borrowing the file's bytes.
#[derive(Debug, Clone)]
pub struct Eif<'a> {
    /// The header as read.
    pub header: Header,
    /// The sections in file order.
    pub sections: Vec<Section<'a>>,
}

/// One section of a parsed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// What it holds.
    pub kind: SectionType,
    /// The section header's flags (0 as written by every known tool).
    pub flags: u16,
    /// File offset of the section header.
    pub offset: u64,
    /// The section's data.
    pub data: &'a [u8],
}

impl<'a> Eif<'a> {
    /// The sections of one type, in file order.
    pub fn sections_of(&self, kind: SectionType) -> impl Iterator<Item = &Section<'a>> {
        self.sections.iter().filter(move |s| s.kind == kind)
    }

    /// The data of the first section of one type.
    pub fn first(&self, kind: SectionType) -> Option<&'a [u8]> {
        self.sections_of(kind).next().map(|s| s.data)
    }

    /// Whether the header marks the image as aarch64.
    pub fn is_aarch64(&self) -> bool {
        self.header.flags & FLAG_AARCH64 != 0
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Parses and checks an EIF.
pub fn parse(bytes: &[u8]) -> Result<Eif<'_>, EifError> {
    let header_bytes: &[u8; HEADER_LEN] =
        bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(EifError::Truncated("shorter than the 548-byte header"))?;
    let header = Header::decode(header_bytes);
    if header.magic != MAGIC {
        return Err(EifError::Magic);
    }
    if header.version != VERSION {
        return Err(EifError::Version(header.version));
    }
    if header.flags & !FLAG_AARCH64 != 0 {
        return Err(EifError::Flags(header.flags));
    }
    let count = usize::from(header.num_sections);
    if count == 0 || count > MAX_SECTIONS {
        return Err(EifError::SectionCount(count));
    }
    let table = header.section_offsets.iter().zip(&header.section_sizes);
    if table.clone().skip(count).any(|(o, s)| *o != 0 || *s != 0) {
        return Err(EifError::Section {
            index: count,
            reason: "unused slots of the section table are not zero",
        });
    }

    // The table alone: every section inside the file, in order, back to back.
    let file_len = to_u64(bytes.len());
    let mut next = to_u64(HEADER_LEN);
    let mut spans = Vec::with_capacity(count);
    for (index, (&offset, &size)) in table.take(count).enumerate() {
        let end = offset
            .checked_add(to_u64(SECTION_HEADER_LEN))
            .and_then(|e| e.checked_add(size))
            .filter(|e| *e <= file_len)
            .ok_or(EifError::SectionBounds { index })?;
        if offset < next {
            return Err(EifError::SectionOverlap { index });
        }
        if offset > next {
            return Err(EifError::Section {
                index,
                reason: "unaccounted bytes before this section",
            });
        }
        spans.push((offset, size));
        next = end;
    }
    if next != file_len {
        return Err(EifError::Section {
            index: count,
            reason: "bytes after the last section",
        });
    }

    // Each section's own header against the table.
    let mut sections = Vec::with_capacity(count);
    for (index, (offset, size)) in spans.into_iter().enumerate() {
        let start = usize::try_from(offset).map_err(|_| EifError::SectionBounds { index })?;
        let len = usize::try_from(size).map_err(|_| EifError::SectionBounds { index })?;
        let data_start = start.saturating_add(SECTION_HEADER_LEN);
        let raw: &[u8; SECTION_HEADER_LEN] = bytes
            .get(start..data_start)
            .and_then(|h| h.try_into().ok())
            .ok_or(EifError::Truncated("section header past the end"))?;
        let sh = SectionHeader::decode(raw);
        if sh.size != size {
            return Err(EifError::Section {
                index,
                reason: "size in the section header disagrees with the header's table",
            });
        }
        let kind = SectionType::from_u16(sh.kind).ok_or(EifError::SectionType {
            index,
            value: sh.kind,
        })?;
        let data = bytes
            .get(data_start..data_start.saturating_add(len))
            .ok_or(EifError::SectionBounds { index })?;
        sections.push(Section {
            kind,
            flags: sh.flags,
            offset,
            data,
        });
    }
    check_order(&sections)?;

    let mut crc = Crc32::new();
    crc.update(bytes.get(..CRC_OFFSET).unwrap_or_default());
    crc.update(bytes.get(HEADER_LEN..).unwrap_or_default());
    let computed = crc.finish();
    if computed != header.crc32 {
        return Err(EifError::Crc {
            stored: header.crc32,
            computed,
        });
    }
    Ok(Eif { header, sections })
}

/// Kernel, cmdline, then ramdisks (at least one), a signature and a metadata section (at most
/// one each) in any order after those two. (The reference builder writes kernel, cmdline,
/// metadata, ramdisks, signature; the measurement does not depend on where metadata and
/// signature sit.)
fn check_order(sections: &[Section<'_>]) -> Result<(), EifError> {
    let kinds: Vec<SectionType> = sections.iter().map(|s| s.kind).collect();
    let count = |k: SectionType| kinds.iter().filter(|x| **x == k).count();
    if kinds.first() != Some(&SectionType::Kernel) {
        return Err(EifError::Order("the first section must be the kernel"));
    }
    if kinds.get(1) != Some(&SectionType::Cmdline) {
        return Err(EifError::Order("the second section must be the cmdline"));
    }
    if count(SectionType::Kernel) != 1 || count(SectionType::Cmdline) != 1 {
        return Err(EifError::Order("more than one kernel or cmdline section"));
    }
    if count(SectionType::Ramdisk) == 0 {
        return Err(EifError::Order("no ramdisk section"));
    }
    if count(SectionType::Signature) > 1 || count(SectionType::Metadata) > 1 {
        return Err(EifError::Order(
            "more than one signature or metadata section",
        ));
    }
    Ok(())
}
