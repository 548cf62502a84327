//! `mask`: each record with the policy's masked fields masked, its clear fields unchanged, and
//! every field the policy does not name dropped (JSON lines out).
//!
//! A masked value keeps at most its last N characters (N from the policy), and never more than
//! half of them, so a short value is never shown whole; the rest become `*`, one per character
//! (the length is kept, as card-number masks do). Strings and numbers (as written) are masked;
//! null stays null; a boolean, object or array becomes `"****"` whatever it held.

use super::{Member, write_object};
use crate::policy::MaskPolicy;
use crate::record::{Record, Value};

/// What stands for a value that is not text.
const OPAQUE: &str = "****";

/// `text` masked, keeping at most `keep` trailing characters and at most half of them.
pub fn mask_text(text: &str, keep: u32) -> String {
    let len = text.chars().count();
    let shown = (keep as usize).min(len / 2);
    let mut out = String::with_capacity(text.len());
    out.extend(std::iter::repeat_n('*', len - shown));
    out.extend(text.chars().skip(len - shown));
    out
}

/// Appends `record` masked as one JSON line (no newline) to `out`.
pub fn mask(policy: &MaskPolicy, record: &Record, out: &mut Vec<u8>) {
    write_object(record, out, |name, value| {
        let Some(keep) = policy.keep_last.get(name) else {
            return policy
                .clear
                .iter()
                .any(|c| c == name)
                .then_some(Member::Clear(value));
        };
        Some(match value {
            Value::Null => Member::Null,
            Value::String(t) => Member::Text(mask_text(t.as_str(), *keep)),
            Value::Number(n) => Member::Text(mask_text(n.text(), *keep)),
            Value::Bool(_) | Value::Nested(_) => Member::Text(OPAQUE.into()),
        })
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn masks_keep_at_most_the_tail_and_half() {
        assert_eq!(mask_text("4111111111111111", 4), "************1111");
        assert_eq!(mask_text("1234", 4), "**34");
        assert_eq!(mask_text("7", 4), "*");
        assert_eq!(mask_text("", 4), "");
        assert_eq!(mask_text("ÅÄÖÜ", 1), "***Ü");
        assert_eq!(mask_text("secret", 0), "******");
    }

    #[test]
    fn records_keep_only_named_fields() {
        let policy = MaskPolicy {
            keep_last: BTreeMap::from([("card".into(), 4), ("id".into(), 2), ("vip".into(), 1)]),
            clear: vec!["country".into()],
        };
        let r = crate::record::parse(
            br#"{"name":"Ada","card":"4111111111111111","country":"FR","id":12345,"vip":true,"ssn":"078-05-1120","note":null}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        mask(&policy, &r, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"card":"************1111","country":"FR","id":"***45","vip":"****"})
        );
    }
}
