//! Reading `cloister proxy status --json`: one document with an `enclaves` array, in
//! `--enclave` order.
#![allow(clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{binary, eventually, outcome};

/// `cloister proxy status --json --status-listen <addr>`, which must succeed: the document.
pub fn read(addr: &str) -> Value {
    let (code, out, err) = outcome(
        &Command::new(binary("cloister"))
            .args(["proxy", "status", "--json", "--status-listen", addr])
            .output()
            .expect("cloister proxy status runs"),
    );
    assert_eq!(code, 0, "proxy status: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("proxy status printed {out:?}: {e}"))
}

/// Reads the status (with `read`) until no enclave has an outstanding job or `limit` passes:
/// the last document read, and whether the loads got back to 0.
pub fn until_idle(limit: Duration, mut read: impl FnMut() -> Value) -> (Value, bool) {
    let mut s = Value::Null;
    let idle = eventually(limit, || {
        s = read();
        sum(&s, "outstanding") == 0
    });
    (s, idle)
}

/// Each enclave's `field` in the status, in `--enclave` order.
pub fn each(s: &Value, field: &str) -> Vec<Value> {
    s["enclaves"]
        .as_array()
        .expect("the status has an enclaves array")
        .iter()
        .map(|e| e[field].clone())
        .collect()
}

/// The sum of every enclave's counter `field`.
pub fn sum(s: &Value, field: &str) -> u64 {
    each(s, field)
        .iter()
        .map(|v| v.as_u64().expect("a counter"))
        .sum()
}
