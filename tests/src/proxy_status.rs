//! Reading `cloister proxy status --json`: one document with an `enclaves` array, in
//! `--enclave` order.
#![allow(clippy::expect_used)]

use serde_json::Value;

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
