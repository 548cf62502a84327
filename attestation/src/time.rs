//! Instants, in the unit Nitro documents use: milliseconds since the Unix epoch.
//!
//! Verification never reads the clock by itself: the caller says which instant to verify at
//! ([`crate::VerifyAt`]), so a stored document can be checked as of the moment it was made.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// The system clock's current time (0 if the clock is before 1970).
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down), as X.509 validity uses.
    pub fn as_secs(self) -> i64 {
        i64::try_from(self.0 / 1000).unwrap_or(i64::MAX)
    }

    /// The absolute distance between two instants.
    pub fn distance(self, other: Self) -> Duration {
        Duration::from_millis(self.0.abs_diff(other.0))
    }

    /// `self + d`, saturating.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - d`, saturating at the epoch.
    #[must_use]
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Parses unix seconds (`1725719859`, optionally with a fraction) or RFC 3339
    /// (`2024-09-07T14:37:39Z`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((whole, frac)) = s.split_once('.') {
            if whole.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
            {
                let secs: u64 = whole.parse().ok()?;
                let ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
                return secs.checked_mul(1000)?.checked_add(ms).map(Self);
            }
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u64>().ok()?.checked_mul(1000).map(Self);
        }
        let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms).ok().map(Self)
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2024-09-07T14:37:39.545Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|dt| dt.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("{}ms", self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            Timestamp::parse("1725719859"),
            Some(Timestamp::from_millis(1_725_719_859_000))
        );
        assert_eq!(
            Timestamp::parse("1725719859.5"),
            Some(Timestamp::from_millis(1_725_719_859_500))
        );
        assert_eq!(
            Timestamp::parse("2024-09-07T14:37:39.545Z"),
            Some(Timestamp::from_millis(1_725_719_859_545))
        );
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(Timestamp::parse(""), None);
        assert_eq!(Timestamp::parse("99999999999999999999"), None);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(1_725_719_859_545).to_rfc3339(),
            "2024-09-07T14:37:39.545Z"
        );
    }
}
