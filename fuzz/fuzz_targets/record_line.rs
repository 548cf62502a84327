//! The record parser against serde_json on arbitrary bytes: `parse` never panics; what it
//! accepts, serde_json accepts as an object with the same members in the same order and equal
//! values; and what serde_json accepts as an object within the parser's limits (unique names,
//! depth at most 64, at most 4096 members; serde_json refuses non-finite numbers itself),
//! `parse` accepts too.
#![no_main]

use std::fmt;

use cloister_enclave::record::{self, MAX_DEPTH, MAX_MEMBERS, Value};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A top-level object as serde_json sees it: members in order, duplicate names kept.
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// The deepest bracket nesting of valid JSON text (a duplicate name serde_json's maps drop
/// still counts, so this reads the text rather than the parsed value).
fn max_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn all_finite(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        serde_json::Value::Array(a) => a.iter().all(all_finite),
        serde_json::Value::Object(o) => o.values().all(all_finite),
        _ => true,
    }
}

fn assert_same(ours: &Value, theirs: &serde_json::Value) {
    match (ours, theirs) {
        (Value::Null, serde_json::Value::Null) => {}
        (Value::Bool(a), serde_json::Value::Bool(b)) => assert_eq!(a, b),
        (Value::Number(n), serde_json::Value::Number(m)) => {
            assert!(n.value().is_finite());
            assert_eq!(Some(n.value()), m.as_f64(), "number {}", n.text());
        }
        (Value::String(s), serde_json::Value::String(t)) => assert_eq!(s.as_str(), t),
        (Value::Nested(raw), v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
            let w: serde_json::Value =
                serde_json::from_str(raw).expect("serde_json refuses a nested value's raw text");
            assert_eq!(&w, v);
        }
        (a, b) => panic!("different kinds: {a:?} and {b}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = record::parse(data);
    let theirs = serde_json::from_slice::<Members>(data);
    match (ours, theirs) {
        (Ok(rec), Ok(Members(members))) => {
            assert_eq!(rec.len(), members.len());
            for (f, (name, v)) in rec.fields().iter().zip(&members) {
                assert_eq!(f.name.as_str(), name);
                assert!(std::ptr::eq(
                    rec.get(name).expect("get finds a member"),
                    &f.value
                ));
                assert_same(&f.value, v);
            }
        }
        (Ok(_), Err(e)) => panic!("parse accepts what serde_json refuses: {e}"),
        (Err(e), Ok(Members(members))) => {
            let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            let unique = names.windows(2).all(|w| w[0] != w[1]);
            let within = unique
                && members.len() <= MAX_MEMBERS
                && max_depth(data) <= MAX_DEPTH
                && members.iter().all(|(_, v)| all_finite(v));
            assert!(!within, "parse refuses ({e}) what serde_json accepts");
        }
        (Err(_), Err(_)) => {}
    }
});
