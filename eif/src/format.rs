//! The EIF version 4 layout: the 548-byte header, the 12-byte section header and the section
//! types, encoded and decoded as fixed big-endian records (as aws-nitro-enclaves-image-format's
//! `src/defs/mod.rs` defines them). No validation here beyond the record sizes; `parse` decides
//! what is acceptable.

use std::fmt;

/// The first four bytes of every EIF.
pub const MAGIC: [u8; 4] = *b".eif";
/// The only format version this crate reads and writes.
pub const VERSION: u16 = 4;
/// The header flag for an aarch64 image (cleared for x86_64).
pub const FLAG_AARCH64: u16 = 0x1;
/// Slots in the header's section tables.
pub const MAX_SECTIONS: usize = 32;
/// Size of the file header.
pub const HEADER_LEN: usize = 548;
/// Size of each section's header.
pub const SECTION_HEADER_LEN: usize = 12;
/// Where the CRC sits in the header (its last four bytes).
pub(crate) const CRC_OFFSET: usize = HEADER_LEN - 4;

/// What a section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionType {
    /// The kernel image (bzImage on x86_64).
    Kernel,
    /// The kernel command line (no NUL terminator).
    Cmdline,
    /// An initramfs (cpio) loaded after the kernel; the first one is PCR1's, the others PCR2's.
    Ramdisk,
    /// CBOR list of signed PCRs with the signing certificate.
    Signature,
    /// JSON build information, not measured.
    Metadata,
}

impl SectionType {
    /// The wire value, or `None` for 0 (invalid) and unknown values.
    pub fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Self::Kernel),
            2 => Some(Self::Cmdline),
            3 => Some(Self::Ramdisk),
            4 => Some(Self::Signature),
            5 => Some(Self::Metadata),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::Kernel => 1,
            Self::Cmdline => 2,
            Self::Ramdisk => 3,
            Self::Signature => 4,
            Self::Metadata => 5,
        }
    }
}

impl fmt::Display for SectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Cmdline => "cmdline",
            Self::Ramdisk => "ramdisk",
            Self::Signature => "signature",
            Self::Metadata => "metadata",
        })
    }
}

/// The file header, field for field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `.eif`.
    pub magic: [u8; 4],
    /// Format version.
    pub version: u16,
    /// Bit 0x1: aarch64.
    pub flags: u16,
    /// Default enclave memory in bytes.
    pub default_mem: u64,
    /// Default enclave vCPU count.
    pub default_cpus: u64,
    /// Reserved, written as 0.
    pub reserved: u16,
    /// Number of sections in use in the tables below.
    pub num_sections: u16,
    /// File offset of each section's header.
    pub section_offsets: [u64; MAX_SECTIONS],
    /// Size of each section's data (without its header).
    pub section_sizes: [u64; MAX_SECTIONS],
    /// Unused, written as 0.
    pub unused: u32,
    /// CRC-32 of the file without these four bytes.
    pub crc32: u32,
}

/// Reads fixed-size big-endian fields from a slice, front to back.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((head, rest)) = self.0.split_at_checked(N) {
            out.copy_from_slice(head);
            self.0 = rest;
        }
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
}

impl Header {
    /// Decodes a header record.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut f = Fields(bytes);
        let magic = f.take();
        let version = f.u16();
        let flags = f.u16();
        let default_mem = f.u64();
        let default_cpus = f.u64();
        let reserved = f.u16();
        let num_sections = f.u16();
        let section_offsets = std::array::from_fn(|_| f.u64());
        let section_sizes = std::array::from_fn(|_| f.u64());
        let unused = f.u32();
        let crc32 = f.u32();
        Self {
            magic,
            version,
            flags,
            default_mem,
            default_cpus,
            reserved,
            num_sections,
            section_offsets,
            section_sizes,
            unused,
            crc32,
        }
    }

    /// Encodes the header record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.default_mem.to_be_bytes());
        out.extend_from_slice(&self.default_cpus.to_be_bytes());
        out.extend_from_slice(&self.reserved.to_be_bytes());
        out.extend_from_slice(&self.num_sections.to_be_bytes());
        for o in &self.section_offsets {
            out.extend_from_slice(&o.to_be_bytes());
        }
        for s in &self.section_sizes {
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.unused.to_be_bytes());
        out.extend_from_slice(&self.crc32.to_be_bytes());
        out
    }
}

/// A section's own header: raw type, flags and data size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionHeader {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) size: u64,
}

impl SectionHeader {
    pub(crate) fn decode(bytes: &[u8; SECTION_HEADER_LEN]) -> Self {
        let mut f = Fields(bytes);
        Self {
            kind: f.u16(),
            flags: f.u16(),
            size: f.u64(),
        }
    }

    pub(crate) fn encode(&self) -> [u8; SECTION_HEADER_LEN] {
        let mut out = [0u8; SECTION_HEADER_LEN];
        let (kind, rest) = out.split_at_mut(2);
        kind.copy_from_slice(&self.kind.to_be_bytes());
        let (flags, size) = rest.split_at_mut(2);
        flags.copy_from_slice(&self.flags.to_be_bytes());
        size.copy_from_slice(&self.size.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_at_548_bytes() {
        let h = Header {
            magic: MAGIC,
            version: 4,
            flags: 1,
            default_mem: 5,
            default_cpus: 6,
            reserved: 7,
            num_sections: 2,
            section_offsets: std::array::from_fn(|i| i as u64 * 3),
            section_sizes: std::array::from_fn(|i| i as u64 * 5),
            unused: 9,
            crc32: 0xdead_beef,
        };
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(&bytes[CRC_OFFSET..], &0xdead_beef_u32.to_be_bytes());
        let arr: [u8; HEADER_LEN] = bytes.try_into().unwrap();
        assert_eq!(Header::decode(&arr), h);
    }

    #[test]
    fn section_header_round_trips() {
        let s = SectionHeader {
            kind: 4,
            flags: 3,
            size: 123,
        };
        let bytes = s.encode();
        assert_eq!(bytes, [0, 4, 0, 3, 0, 0, 0, 0, 0, 0, 0, 123]);
        assert_eq!(SectionHeader::decode(&bytes), s);
        for v in 0..8 {
            assert_eq!(
                SectionType::from_u16(v).map(SectionType::as_u16),
                (1..=5).contains(&v).then_some(v)
            );
        }
    }
}
