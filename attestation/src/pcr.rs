//! Platform configuration registers: the measurements a Nitro document carries.
//!
//! A PCR is a SHA-384 value that starts as 48 zero bytes and only changes by *extension*:
//! `PCR ← SHA384(PCR ‖ data)`. Nitro locks PCR0–15 at boot (0: whole image, 1: kernel + bootstrap,
//! 2: application, 3: parent role, 4: parent instance, 8: signing certificate); enclaves may extend
//! and lock 16–31. The types here make an out-of-range index or a wrong-length value impossible.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha384};

/// Length of a PCR value: SHA-384.
pub const PCR_LEN: usize = 48;
/// Number of PCRs an NSM has.
pub const PCR_COUNT: u8 = 32;

/// A PCR index, 0..=31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PcrIndex(u8);

impl PcrIndex {
    /// The index, if it is below [`PCR_COUNT`].
    pub fn new(index: u64) -> Option<Self> {
        u8::try_from(index)
            .ok()
            .filter(|i| *i < PCR_COUNT)
            .map(Self)
    }

    /// PCR0: the whole enclave image.
    pub const IMAGE: Self = Self(0);

    /// The numeric index.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for PcrIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 48-byte PCR value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PcrValue([u8; PCR_LEN]);

impl PcrValue {
    /// The reset value: 48 zero bytes.
    pub const ZERO: Self = Self([0; PCR_LEN]);

    /// Wraps exactly 48 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; PCR_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// `SHA384(self ‖ data)`.
    #[must_use]
    pub fn extend(&self, data: &[u8]) -> Self {
        let mut h = Sha384::new();
        h.update(self.0);
        h.update(data);
        Self(h.finalize().into())
    }

    /// The value of a register reset to zero and extended once with `data`.
    pub fn measure(data: &[u8]) -> Self {
        Self::ZERO.extend(data)
    }

    /// Whether every byte is zero (as PCR0–2 are in a debug-mode enclave).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; PCR_LEN] {
        &self.0
    }

    /// Lower-case hex, 96 characters (the form key policies use).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PcrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PcrValue({})", self.to_hex())
    }
}

impl fmt::Display for PcrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a PCR value could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a PCR value is 96 hex digits (48 bytes)")]
pub struct ParsePcrError;

impl FromStr for PcrValue {
    type Err = ParsePcrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| ParsePcrError)?;
        Self::from_bytes(&bytes).ok_or(ParsePcrError)
    }
}

/// A set of PCRs by index, as a document carries them (only locked PCRs are present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pcrs(BTreeMap<PcrIndex, PcrValue>);

impl Pcrs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `index`, if present.
    pub fn get(&self, index: PcrIndex) -> Option<&PcrValue> {
        self.0.get(&index)
    }

    /// Sets `index` to `value`, returning the previous value.
    pub fn insert(&mut self, index: PcrIndex, value: PcrValue) -> Option<PcrValue> {
        self.0.insert(index, value)
    }

    /// Entries in index order.
    pub fn iter(&self) -> impl Iterator<Item = (PcrIndex, &PcrValue)> {
        self.0.iter().map(|(i, v)| (*i, v))
    }

    /// Number of PCRs present.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no PCR is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this is a debug-mode measurement: PCR0 present and all zero.
    pub fn is_debug(&self) -> bool {
        self.get(PcrIndex::IMAGE).is_some_and(PcrValue::is_zero)
    }
}

impl FromIterator<(PcrIndex, PcrValue)> for Pcrs {
    fn from_iter<T: IntoIterator<Item = (PcrIndex, PcrValue)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_range() {
        assert_eq!(PcrIndex::new(0).map(PcrIndex::get), Some(0));
        assert_eq!(PcrIndex::new(31).map(PcrIndex::get), Some(31));
        assert_eq!(PcrIndex::new(32), None);
        assert_eq!(PcrIndex::new(u64::MAX), None);
    }

    #[test]
    fn extend_matches_real_pcr4() {
        // PCR4 of the real blocky documents is SHA384(0^48 || parent instance id).
        let v = PcrValue::measure(b"i-0a22e5c5f24d22174");
        assert_eq!(
            v.to_hex(),
            "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df\
             6a4a786ad1c10102b955799a9dc96b44"
        );
    }

    #[test]
    fn extend_chains() {
        let a = PcrValue::ZERO.extend(b"a").extend(b"b");
        let mut h = Sha384::new();
        h.update(PcrValue::ZERO.extend(b"a").as_bytes());
        h.update(b"b");
        assert_eq!(a.as_bytes()[..], h.finalize()[..]);
        assert_ne!(a, PcrValue::ZERO.extend(b"ab"));
    }

    #[test]
    fn parse_hex() {
        assert!("00".parse::<PcrValue>().is_err());
        assert!("zz".repeat(48).parse::<PcrValue>().is_err());
        assert_eq!("00".repeat(48).parse::<PcrValue>(), Ok(PcrValue::ZERO));
    }
}
