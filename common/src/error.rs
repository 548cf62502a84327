//! Stable error codes, one trait for all of cloister's error types.
//!
//! A code is what a user searches for and what scripts match on, so it never changes once
//! published. Codes are `AREA-WHAT` (`ESDK-AUTH`); a few carry a name from elsewhere in their
//! tail (`KMS-AccessDeniedException` keeps the KMS's own error name).

use std::borrow::Cow;
use std::error::Error;

/// An error with a stable, searchable code.
pub trait ErrorCode: Error {
    /// The stable code, e.g. `WIRE-TIMEOUT`.
    fn code(&self) -> Cow<'static, str>;

    /// Whether the work this error interrupted must stop. A job over many sealed messages goes
    /// on after a non-fatal error (one message failed to authenticate) and stops after a fatal
    /// one (the key could not be released, the host broke the protocol). Fatal unless said
    /// otherwise.
    fn is_fatal(&self) -> bool {
        true
    }
}

/// The code of the first error in `err`'s source chain for which `coded` finds one.
///
/// `coded` knows the concrete error types of the caller's world (it downcasts); this walks the
/// chain so that the innermost context a user sees does not hide the code of its cause.
pub fn code_of<'a>(
    err: &'a (dyn Error + 'static),
    coded: impl Fn(&'a (dyn Error + 'static)) -> Option<Cow<'static, str>>,
) -> Option<Cow<'static, str>> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(code) = coded(e) {
            return Some(code);
        }
        next = e.source();
    }
    None
}

/// `err` and its sources joined by `": "`, as `anyhow` prints `{:#}`: for messages that cross a
/// boundary as text (the enclave's `Failed` frame), so the cause is not lost.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner")
        }
    }
    impl Error for Inner {}
    impl ErrorCode for Inner {
        fn code(&self) -> Cow<'static, str> {
            "TEST-INNER".into()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_code_is_found_through_the_source_chain() {
        let e = Outer(Inner);
        let found = code_of(&e, |e| e.downcast_ref::<Inner>().map(ErrorCode::code));
        assert_eq!(found.as_deref(), Some("TEST-INNER"));
        assert!(Inner.is_fatal());
        let none = code_of(&e, |_| None);
        assert_eq!(none, None);
        assert_eq!(chain(&e), "outer: inner");
    }
}
