//! `cloister attest` and `cloister dev-pki` as a user runs them: exit codes, error codes, output.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::Stdio;

use cloister_tests::{binary, cloister, outcome, testdata};
use serde_json::Value;

const VECTORS: [&str; 5] = [
    "nitro_blocky_2024-09-07_prod",
    "nitro_blocky_2024-09-07_debug",
    "nitro_evervault_2023-09-18_debug",
    "nitro_evervault_2022-10-13_prod_pcr8",
    "nitro_evervault_2022-10-12_debug",
];
const PROD: &str = "nitro_blocky_2024-09-07_prod";

fn meta(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(&format!("nitro/{name}.json"))).unwrap())
        .unwrap()
}

fn cbor(name: &str) -> String {
    testdata(&format!("nitro/{name}.cbor"))
        .display()
        .to_string()
}

fn at(name: &str) -> String {
    meta(name)["verify_at_unix_s"].as_u64().unwrap().to_string()
}

#[test]
fn verifies_every_real_vector_and_reports_its_pcrs() {
    for name in VECTORS {
        let m = meta(name);
        let debug = m["debug_mode_zero_pcr012"].as_bool().unwrap();
        let mut args = vec!["attest", "verify", "--json", "--at"];
        let t = at(name);
        let file = cbor(name);
        args.push(&t);
        args.push(&file);
        if debug {
            let (code, _, err) = outcome(&cloister(&args));
            assert_eq!(code, 1, "{name}");
            assert!(err.starts_with("error[ATT-DEBUG]"), "{name}: {err}");
            args.push("--allow-debug");
        }
        let (code, out, err) = outcome(&cloister(&args));
        assert_eq!(code, 0, "{name}: {err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["verified"], true);
        assert_eq!(report["module_id"], m["module_id"]);
        assert_eq!(report["pcrs"], m["pcrs"], "{name}");
        for field in ["public_key", "user_data", "nonce"] {
            let expected = m[field].as_str().map(|h| h.len() / 2);
            assert_eq!(
                report[format!("{field}_len")]
                    .as_u64()
                    .map(|n| usize::try_from(n).unwrap()),
                expected,
                "{name} {field}"
            );
        }
    }
}

#[test]
fn accepts_hex_base64_and_stdin() {
    let raw = std::fs::read(cbor(PROD)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hex_file = dir.path().join("doc.hex");
    std::fs::write(&hex_file, hex::encode(&raw)).unwrap();
    let b64 = dir.path().join("doc.b64");
    let b64_text = std::process::Command::new("base64")
        .arg(cbor(PROD))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&b64, &b64_text).unwrap();
    for file in [&hex_file, &b64] {
        let (code, out, err) = outcome(&cloister(&[
            "attest",
            "verify",
            "--at",
            &at(PROD),
            file.to_str().unwrap(),
        ]));
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("VERIFIED"), "{out}");
    }
    let mut child = std::process::Command::new(binary("cloister"))
        .args(["attest", "verify", "--at", &at(PROD), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&b64_text).unwrap();
    let (code, _, err) = outcome(&child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{err}");
}

#[test]
fn policy_flags_reject_with_their_codes() {
    let m = meta(PROD);
    let pcr0 = m["pcrs"]["0"].as_str().unwrap();
    let nonce = m["nonce"].as_str().unwrap();
    let ts = (m["timestamp_ms"].as_u64().unwrap() / 1000).to_string();
    let later = (m["timestamp_ms"].as_u64().unwrap() / 1000 + 600).to_string();
    let file = cbor(PROD);
    let good_pcr = format!("0={pcr0}");
    let bad_pcr = format!("0={}", "ab".repeat(48));
    let cases: [(Vec<&str>, i32, &str); 6] = [
        (
            vec![
                "--at",
                &ts,
                "--expect-pcr",
                &good_pcr,
                "--nonce",
                nonce,
                "--max-age",
                "60",
            ],
            0,
            "",
        ),
        (
            vec!["--at", &ts, "--expect-pcr", &bad_pcr],
            1,
            "error[ATT-PCR]",
        ),
        (vec!["--at", &ts, "--nonce", "00"], 1, "error[ATT-NONCE]"),
        (
            vec!["--at", &later, "--max-age", "300"],
            1,
            "error[ATT-STALE]",
        ),
        (vec![], 1, "error[ATT-CERT-TIME]"),
        (
            vec!["--at", "2024-09-07T17:37:40Z"],
            1,
            "error[ATT-CERT-TIME]",
        ),
    ];
    for (extra, want_code, want_err) in cases {
        let mut args = vec!["attest", "verify", file.as_str()];
        args.extend(&extra);
        let (code, _, err) = outcome(&cloister(&args));
        assert_eq!(code, want_code, "{extra:?}: {err}");
        assert!(err.starts_with(want_err), "{extra:?}: {err}");
    }
}

#[test]
fn unreadable_input_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.txt");
    std::fs::write(&garbage, "this is not a document!").unwrap();
    for args in [
        vec!["attest", "verify", "/nonexistent/doc"],
        vec!["attest", "verify", garbage.to_str().unwrap()],
        vec!["attest", "verify", "--expect-pcr", "40=00", "x"],
        vec!["attest", "verify", "--at", "yesterday", "x"],
        vec!["attest", "frobnicate"],
        vec![
            "attest",
            "verify",
            "--root",
            "/nonexistent.pem",
            &cbor(PROD),
        ],
    ] {
        let (code, _, err) = outcome(&cloister(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // Decodable base64 that is not a document is a rejection, with its code.
    let b64 = dir.path().join("b64");
    std::fs::write(&b64, "aGVsbG8gd29ybGQ=").unwrap();
    let (code, _, err) = outcome(&cloister(&["attest", "verify", b64.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(err.starts_with("error[ATT-COSE]"), "{err}");
}

#[test]
fn inspect_decodes_without_verifying() {
    let (code, out, err) = outcome(&cloister(&["attest", "inspect", "--json", &cbor(PROD)]));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verified"], false);
    assert_eq!(report["pcrs"], meta(PROD)["pcrs"]);
    assert_eq!(report["cabundle"].as_array().unwrap().len(), 4);
    assert!(
        report["cabundle"][0]["subject"]
            .as_str()
            .unwrap()
            .contains("aws.nitro-enclaves")
    );
    assert_eq!(report["certificate"]["not_after"], "2024-09-07T17:37:39Z");
    // inspect works on an expired document where verify refuses it.
    let (code, out, _) = outcome(&cloister(&["attest", "inspect", &cbor(PROD)]));
    assert_eq!(code, 0);
    assert!(out.starts_with("NOT VERIFIED"));
}

#[test]
fn dev_pki_documents_verify_only_with_the_dev_root() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    let (code, _, err) = outcome(&cloister(&["dev-pki", "init", "--dir", pki_s]));
    assert_eq!(code, 0, "{err}");
    // A second init refuses to overwrite.
    let (code, _, err) = outcome(&cloister(&["dev-pki", "init", "--dir", pki_s]));
    assert_eq!(
        (code, err.starts_with("error[ATT-DEV-PKI]")),
        (1, true),
        "{err}"
    );

    let root = dir.path().join("root.pem");
    let (code, out, _) = outcome(&cloister(&["dev-pki", "root", "--dir", pki_s]));
    assert_eq!(code, 0);
    std::fs::write(&root, out).unwrap();

    let doc = dir.path().join("doc.cbor");
    let pcr0 = "11".repeat(48);
    let (code, _, err) = outcome(&cloister(&[
        "dev-pki",
        "issue",
        "--dir",
        pki_s,
        "--pcr",
        &format!("0={pcr0}"),
        "--nonce",
        "abcd",
        "-o",
        doc.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let doc_s = doc.to_str().unwrap();
    let (code, out, err) = outcome(&cloister(&[
        "attest",
        "verify",
        "--json",
        "--root",
        root.to_str().unwrap(),
        "--expect-pcr",
        &format!("0={pcr0}"),
        "--nonce",
        "abcd",
        "--max-age",
        "120",
        doc_s,
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["pcrs"]["0"],
        pcr0.as_str()
    );
    let (code, _, err) = outcome(&cloister(&["attest", "verify", doc_s]));
    assert_eq!(code, 1);
    assert!(err.starts_with("error[ATT-ROOT]"), "{err}");
    // The dev root does not vouch for real documents either.
    let (code, _, err) = outcome(&cloister(&[
        "attest",
        "verify",
        "--root",
        root.to_str().unwrap(),
        "--at",
        &at(PROD),
        &cbor(PROD),
    ]));
    assert_eq!(code, 1);
    assert!(err.starts_with("error[ATT-ROOT]"), "{err}");
}
