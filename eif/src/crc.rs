//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, the zlib `crc32`), the checksum the EIF
//! header carries. aws-nitro-enclaves-image-format uses the `crc` crate's `CRC_32_ISO_HDLC`,
//! which is this same function.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut c = i;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i as usize] = c;
        i += 1;
    }
    t
}

const TABLE: [u32; 256] = table();

/// A running CRC-32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    pub(crate) fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for b in data {
            let i = ((c ^ u32::from(*b)) & 0xFF) as usize;
            c = TABLE.get(i).copied().unwrap_or(0) ^ (c >> 8);
        }
        self.0 = c;
    }

    pub(crate) fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let crc = |parts: &[&[u8]]| {
            let mut c = Crc32::new();
            for p in parts {
                c.update(p);
            }
            c.finish()
        };
        // The CRC catalogue's check value for CRC-32/ISO-HDLC.
        assert_eq!(crc(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc(&[]), 0);
        // python3 -c 'import zlib; print(hex(zlib.crc32(b"The quick brown fox jumps over the lazy dog")))'
        assert_eq!(
            crc(&[b"The quick brown fox jumps over the lazy dog"]),
            0x414F_A339
        );
    }
}
