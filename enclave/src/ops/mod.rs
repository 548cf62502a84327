//! The operations a job may run, each under the disclosure policy's plan for it:
//! - [`stats`]: aggregates of groups of at least k records;
//! - [`mask`]: records with masked fields, unnamed fields dropped;
//! - [`tokenize`]: records with fields replaced by deterministic HMAC tokens;
//! - [`reseal`]: messages re-encrypted under a new data key of an allowed KMS key.

pub mod mask;
pub mod reseal;
pub mod stats;
pub mod tokenize;

use crate::record::{self, Record, Value};

/// What a record-to-record operation emits for one member.
pub(crate) enum Member<'r> {
    /// The value as it came (a clear field).
    Clear(&'r Value),
    /// A new string (a mask or a token).
    Text(String),
    /// `null`.
    Null,
}

/// Appends the members of `record` that `member` keeps, in the record's order, as one JSON
/// object (no newline) to `out`; `member` returns `None` for a member to drop.
pub(crate) fn write_object<'r>(
    record: &'r Record,
    out: &mut Vec<u8>,
    mut member: impl FnMut(&str, &'r Value) -> Option<Member<'r>>,
) {
    out.push(b'{');
    let mut first = true;
    for f in record.fields() {
        let Some(m) = member(f.name.as_str(), &f.value) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        record::write_string(out, f.name.as_str());
        out.push(b':');
        match m {
            Member::Clear(v) => record::write_value(out, v),
            Member::Text(t) => record::write_string(out, &t),
            Member::Null => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}
