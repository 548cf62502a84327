//! The README's error-code table against the codes the code can produce: none missing, none
//! stale. Each library lists its codes beside its error type (`CODES`), with a unit test there
//! that every variant's code is in its list; this test closes the loop with the documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

/// The CLI's own codes (the `cloister` binary: `Failure::Input`, the fallback of `code_of`, and
/// `submit`'s stand-in for an enclave failure without a readable code).
const CLI_CODES: &[&str] = &[
    "CLI-INPUT",
    "CLI-FAILED",
    "ENC-UNKNOWN",
    "CLI-INCOMPLETE",
    "PROXY-NO-ENCLAVE",
    "PROXY-ENCLAVE-LOST",
    "PROXY-BAD-INPUT",
];

fn produced() -> BTreeSet<String> {
    [
        cloister_attestation::CODES,
        cloister_attestation::recipient::CMS_CODES,
        cloister_esdk::CODES,
        cloister_wire::CODES,
        cloister_nsm::CODES,
        cloister_kms_client::CODES,
        cloister_enclave::CODES,
        cloister_eif::CODES,
        CLI_CODES,
    ]
    .iter()
    .flat_map(|codes| codes.iter().map(|c| (*c).to_owned()))
    .collect()
}

/// The codes in the first column of the README's "Error codes" table.
fn documented() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(cloister_tests::workspace().join("README.md")).unwrap();
    let table = readme
        .split("### Error codes")
        .nth(1)
        .expect("README has an Error codes section");
    let table = table.split("\n## ").next().unwrap_or(table);
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(code, _)| code.to_owned()))
        .collect()
}

#[test]
fn the_readme_lists_exactly_the_codes_the_code_produces() {
    let produced = produced();
    let documented = documented();
    let missing: Vec<_> = produced.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&produced).collect();
    assert!(
        missing.is_empty(),
        "codes missing from the README: {missing:?}"
    );
    assert!(stale.is_empty(), "README codes nothing produces: {stale:?}");
    assert!(
        produced.len() > 50,
        "the lists are real: {}",
        produced.len()
    );
}
