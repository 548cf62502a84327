//! A hostile host against the operations and their disclosure policy, with the real binaries in
//! process mode ([`cloister_tests::pipeline`]: cloister-kms over TLS, the measured enclave under
//! `cloister run --process`, `cloister proxy`, `cloister submit` or raw connections to the proxy
//! speaking the wire protocol). The host here holds the credentials the jobs carry (the
//! pipeline's host principal, which may use the keys only through the attested image).
//!
//! Each test is one line of attack, and asserts the refusal (its code, no key released, nothing
//! of a record in any output or log). A first review found seven that worked; each doc comment
//! says what leaked and how it was closed: two jobs' complement (secondary suppression), a host
//! that could seal (the key policies: only the owner seals), `max_groups` as an oracle (the job
//! fails at its end), a tokenization key the host could make (only GenerateDataKeyWithoutPlaintext,
//! by the owner), idle connections holding slots (a slot is taken when the Job arrives), and rows
//! printed raw (only JSON objects, control characters as spaces).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloister_tests::pipeline::Pipeline;
use cloister_wire::message::Operation;
use cloister_wire::{FrameReader, Message};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn rows(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// The KMS audit entries of `op`.
fn audited(p: &Pipeline, op: &str) -> usize {
    p.audit().iter().filter(|e| e["operation"] == op).count()
}

/// The KMS audit entries of `op` on the key `arn`.
fn audited_on(p: &Pipeline, op: &str, arn: &str) -> usize {
    p.audit()
        .iter()
        .filter(|e| e["operation"] == op && arn.ends_with(e["key_id"].as_str().unwrap_or("-")))
        .count()
}

/// One Encryption SDK message of `lines` (exactly as given, even what `cloister seal` refuses)
/// under the records' key, sealed with a data key the owner asks the KMS for.
fn seal_raw(p: &Pipeline, lines: &[&str], name: &str) -> PathBuf {
    let context: cloister_esdk::EncryptionContext =
        [("dataset".to_owned(), "test".to_owned())].into();
    let enc = cloister_esdk::Encryptor::new(
        cloister_esdk::Suite::from_id(0x0578).unwrap(),
        context,
        Some(4096),
    )
    .unwrap();
    let gdk = owner_call(
        p,
        "GenerateDataKey",
        &json!({"KeyId": p.key_arn, "KeySpec": "AES_256", "EncryptionContext": enc.context()}),
    )
    .unwrap();
    let plain: [u8; 32] = cloister_kms_client::blob(&gdk, "Plaintext")
        .unwrap()
        .try_into()
        .unwrap();
    let edk = cloister_esdk::Edk {
        provider_id: "aws-kms".into(),
        provider_info: p.key_arn.clone(),
        ciphertext: cloister_kms_client::blob(&gdk, "CiphertextBlob").unwrap(),
    };
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sealed = enc
        .seal(
            &cloister_esdk::DataKey::new(plain),
            vec![edk],
            text.as_bytes(),
        )
        .unwrap();
    write_blob(p, &format!("{name}.sealed"), &sealed)
}

/// The enclave's console (its stderr) and the proxy's log.
fn logs(p: &Pipeline) -> String {
    let console = p.launched.dir().join("private").join("console.log");
    let console =
        std::fs::read_to_string(&console).unwrap_or_else(|e| panic!("{}: {e}", console.display()));
    format!("{console}\n{}", p.proxy.lock().unwrap())
}

/// Nothing of `secrets` in the enclave's console or the proxy's log.
fn logs_clean(p: &Pipeline, secrets: &[&str]) {
    let logs = logs(p);
    for s in secrets {
        assert!(!logs.contains(s), "{s:?} reached a log:\n{logs}");
    }
}

fn job(p: &Pipeline, op: Operation) -> Message {
    Message::Job {
        id: 1,
        op,
        kms: p.access(),
    }
}

/// The Encryption SDK messages of a sealed file.
fn messages_of(sealed: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(sealed).unwrap();
    cloister_esdk::split(&bytes)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// A raw client of the proxy's job socket.
struct Raw {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Raw {
    async fn connect(p: &Pipeline) -> Self {
        let path = p.proxy_addr.strip_prefix("unix://").unwrap();
        let (r, w) = UnixStream::connect(path).await.unwrap().into_split();
        Self {
            reader: FrameReader::new(r, Duration::from_secs(30)),
            writer: w,
        }
    }

    async fn send(&mut self, msg: &Message) {
        self.send_bytes(&cloister_wire::frame::encode(msg).unwrap())
            .await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        // The enclave may already have failed the job and closed: that is an answer too.
        let _ = self.writer.write_all(bytes).await;
    }

    /// Every frame until `Done`, `Failed`, the end of the connection or a read error.
    async fn answers(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = self.reader.next().await {
            let last = matches!(m, Message::Done { .. } | Message::Failed { .. });
            out.push(m);
            if last {
                break;
            }
        }
        out
    }
}

fn failed_code(answers: &[Message]) -> Option<&str> {
    answers.iter().find_map(|m| match m {
        Message::Failed { code, .. } => Some(code.as_str()),
        _ => None,
    })
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `tok_` and the unpadded base64url of the HMAC, as `enclave/src/ops/tokenize.rs` writes tokens.
fn token(key: &[u8], tag: u8, text: &str) -> String {
    let mut msg = vec![tag];
    msg.extend_from_slice(text.as_bytes());
    let b64 = cloister_kms_client::b64(&hmac_sha256(key, &msg))
        .replace('+', "-")
        .replace('/', "_");
    format!("tok_{}", b64.trim_end_matches('='))
}

/// The owner's KMS client (the credentials the host's jobs carry).
fn owner_call(p: &Pipeline, op: &str, body: &Value) -> Result<Value, String> {
    let owner = p.kms.client(p.kms.admin());
    cloister_tests::kms::rt()
        .block_on(owner.call(op, body))
        .map_err(|e| format!("{}: {e}", cloister_common::ErrorCode::code(&e)))
}

fn write_blob(p: &Pipeline, name: &str, blob: &[u8]) -> PathBuf {
    let path = p.dir.path().join(name);
    std::fs::write(&path, blob).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// stats.

/// Group-by names that only look like an allowed one, fields not in `aggregate`, labels from
/// numbers, booleans, very long and escape-laden strings, case and lookalike member names in the
/// records, duplicate members, the k edges (k-1 folded, k shown; a field of k-1 values hidden in
/// a group of k), and the budget: refusals cost nothing, a job the host abandons after its first
/// message costs one, the job past the budget is refused before its key is released.
#[test]
fn stats_labels_field_names_and_k_edges_show_nothing_below_k() {
    let p = Pipeline::start(None);
    let mut lines: Vec<String> = Vec::new();
    let mut rec = |country: Value, amount: Value, id: u32| {
        lines.push(
            json!({"country": country, "amount": amount, "id": id, "name": format!("victim-{id}")})
                .to_string(),
        );
    };
    // NZ: 5 records, but only 4 numeric amounts (one is a string): amount (n = 4 < k) hidden.
    for (id, a) in (100..).zip([json!(1), json!(2), json!(3), json!(4), json!("9999")]) {
        rec(json!("NZ"), a, id);
    }
    // DE: exactly k.
    for i in 0..5 {
        rec(json!("DE"), json!(10 + i), 200 + i);
    }
    // FR: exactly k - 1, folded into other.
    for i in 0..4 {
        rec(json!("FR"), json!(500 + i), 300 + i);
    }
    let long = "L".repeat(5000);
    let escape = "\u{1b}[2J\u{7}\r\u{202e}x";
    for i in 0..5 {
        rec(json!(7), json!(1), 400 + i);
        rec(json!(true), json!(1), 410 + i);
        rec(json!(long.as_str()), json!(1), 420 + i);
        rec(json!(escape), json!(1), 430 + i);
    }
    let mut lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    // No label (missing, another case, a Cyrillic lookalike, null, nested): into other.
    let unlabeled = [
        r#"{"Country":"XX-SECRET","amount":1}"#,
        "{\"c\u{043e}untry\":\"YY-SECRET\",\"amount\":1}",
        r#"{"country":null,"amount":1}"#,
        r#"{"country":{"nested":"ZZ-SECRET"},"amount":1}"#,
    ];
    lines.extend(unlabeled);
    let sealed = p.seal_lines(&lines, "labels", 8);
    // Duplicate members: the message is refused whole, neither value counts.
    let dup = seal_raw(
        &p,
        &[r#"{"country":"NZ","country":"DUP-SECRET","amount":1}"#],
        "dup",
    );

    // Requests outside the policy: ENC-POLICY, no key released, no budget spent.
    for group in [
        "Country",
        "COUNTRY",
        "country ",
        " country",
        "c\u{043e}untry",
        "ｃｏｕｎｔｒｙ",
        "country\u{200b}",
        "__proto__",
        "constructor",
        "",
        "name",
        "amount",
    ] {
        let (code, out, err) = p.submit(&["stats", "--group-by", group], &[&sealed]);
        assert_eq!(code, 1, "{group:?}: {out}");
        assert!(out.is_empty());
        assert!(
            err.contains("error[ENC-POLICY]") && err.contains("may not group by"),
            "{group:?}: {err}"
        );
    }
    for fields in [
        "Amount",
        "amount,amount",
        "amount,name",
        "amount ",
        "country",
    ] {
        let (code, out, err) = p.submit(&["stats", "--fields", fields], &[&sealed]);
        assert_eq!(code, 1, "{fields:?}: {out}");
        assert!(err.contains("error[ENC-POLICY]"), "{fields:?}: {err}");
    }
    assert_eq!(audited(&p, "Decrypt"), 0, "a refused job released a key");

    // Job 1 of the budget's 3.
    let (code, out, err) = p.submit(
        &["stats", "--group-by", "country"],
        &[&sealed, dup.as_path()],
    );
    assert_eq!(code, 1, "the duplicate-member message fails: {err}");
    assert!(
        err.contains("error[ENC-RECORD]") && err.contains("duplicate member name"),
        "{err}"
    );
    let r = rows(&out);
    let label = |row: &Value| row["group"].as_str().map(str::to_owned);
    let mut labels: Vec<Option<String>> = r.iter().map(label).collect();
    labels.sort();
    let mut want = vec![
        None,
        Some("DE".to_owned()),
        Some("NZ".into()),
        Some("7".into()),
        Some("true".into()),
        Some(long.clone()),
        Some(escape.into()),
    ];
    want.sort();
    assert_eq!(labels, want, "{out}");
    let by = |l: &str| r.iter().find(|x| x["group"] == l).unwrap();
    assert_eq!(by("NZ")["count"], 5);
    assert!(
        by("NZ")["fields"].get("amount").is_none(),
        "a field of k-1 values is hidden: {}",
        by("NZ")
    );
    assert_eq!(by("NZ")["fields"]["id"]["count"], 5);
    assert_eq!(by("DE")["fields"]["amount"]["sum"], json!(60.0));
    let other = r.iter().find(|x| x["other"] == true).unwrap();
    assert_eq!(other["count"], 8, "FR (4) and the 4 unlabeled: {other}");
    for row in &r {
        for key in row.as_object().unwrap().keys() {
            assert!(
                ["group_by", "group", "other", "count", "fields"].contains(&key.as_str()),
                "{key} in {row}"
            );
        }
    }
    // The labels went out escaped: no raw control or bidi character reaches the terminal.
    assert!(
        !out.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters on stdout: {out:?}"
    );
    for secret in [
        "\"FR\"",
        "XX-SECRET",
        "YY-SECRET",
        "ZZ-SECRET",
        "DUP-SECRET",
        "victim-",
        "9999",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
        assert!(!err.contains(secret), "{secret} in {err}");
    }
    assert!(
        err.contains("done: 5 messages, 38 records"),
        "counts only: {err}"
    );
    logs_clean(
        &p,
        &[
            "XX-SECRET",
            "YY-SECRET",
            "ZZ-SECRET",
            "DUP-SECRET",
            "victim-",
        ],
    );

    // Job 2: the host sends one message and hangs up before EndOfInput. It gets no row, and it
    // is charged all the same (else a host could probe for free).
    let rt = cloister_tests::kms::rt();
    rt.block_on(async {
        let mut raw = Raw::connect(&p).await;
        raw.send(&job(
            &p,
            Operation::Stats {
                group_by: None,
                fields: vec![],
            },
        ))
        .await;
        raw.send(&Message::Sealed {
            name: "m".into(),
            bytes: messages_of(&sealed)[0].clone(),
        })
        .await;
        match raw.reader.next().await.unwrap() {
            Some(Message::Progress { messages: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    });
    // Job 3 runs; job 4 is refused before its key is released.
    let (code, _, err) = p.submit(&["stats"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    let released = audited(&p, "Decrypt");
    let (code, out, err) = p.submit(&["stats", "--group-by", "address"], &[&sealed]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("error[ENC-BUDGET]"),
        "an abandoned job is charged: {err}"
    );
    assert_eq!(
        audited(&p, "Decrypt"),
        released,
        "no key released past the budget"
    );
}

/// Numbers at the edges: sums that overflow to infinity or cancel to NaN (one message's +inf
/// merged with another's -inf), negative zero, 30-digit integers, and a number past f64 (refused
/// by the parser, so its message is left out, named, with no value in the reason). Rows stay
/// valid JSON (a non-finite aggregate is `null`), every group still needs k.
#[test]
fn stats_over_extreme_numbers_stays_valid_json_and_within_k() {
    let p = Pipeline::start(None);
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.push(r#"{"country":"INF","amount":1e308,"id":-0}"#.to_owned());
        lines.push(
            r#"{"country":"ZERO","amount":-0,"id":123456789012345678901234567890}"#.to_owned(),
        );
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let a = p.seal_lines(&lines, "extreme", 10);
    // NaN: one message sums to +inf, the next to -inf; merged, inf + -inf.
    let pos = p.seal_lines(&[r#"{"country":"NAN","amount":1e308}"#; 3], "pos", 3);
    let neg = p.seal_lines(&[r#"{"country":"NAN","amount":-1e308}"#; 3], "neg", 3);
    let big = seal_raw(
        &p,
        &[r#"{"country":"INF","amount":1e400,"name":"BIG-SECRET"}"#],
        "big",
    );
    let (code, out, err) = p.submit(&["stats", "--group-by", "country"], &[&a, &pos, &neg, &big]);
    assert_eq!(code, 1, "the out-of-range message fails: {err}");
    assert!(
        err.contains("error[ENC-RECORD]") && err.contains("number out of range"),
        "{err}"
    );
    let r = rows(&out);
    let by = |l: &str| {
        r.iter()
            .find(|x| x["group"] == l)
            .unwrap_or_else(|| panic!("{l}: {out}"))
    };
    assert_eq!(by("INF")["count"], 5, "the refused message counts nowhere");
    assert_eq!(by("INF")["fields"]["amount"]["sum"], Value::Null);
    assert_eq!(by("INF")["fields"]["amount"]["max"], json!(1e308));
    assert_eq!(by("NAN")["count"], 6);
    assert_eq!(by("NAN")["fields"]["amount"]["sum"], Value::Null);
    assert_eq!(by("NAN")["fields"]["amount"]["mean"], Value::Null);
    assert_eq!(by("ZERO")["fields"]["amount"]["sum"], json!(-0.0));
    assert_eq!(r.len(), 3, "{out}");
    assert!(!out.contains("BIG-SECRET") && !err.contains("BIG-SECRET") && !err.contains("1e400"));
    logs_clean(&p, &["BIG-SECRET", "1e400"]);
}

/// Attack (closed: the job fails only at its end): k is defeated by the complement of two jobs over the same input, well within the
/// budget (3 jobs): a grouped job shows every group but the small one (folded into an `other`
/// below k, so not shown), an ungrouped job shows the total, and the total minus the shown groups
/// is the small group's aggregate — here one record's exact amount and id. The README presents
/// differencing as two jobs over inputs that differ by a record; this needs no choice of input.
///
/// Fix (enclave/src/ops/stats.rs, `Stats::rows`): complementary suppression. When the
/// suppressed remainder (`other` below k, or everything left out under `suppress`) is non-empty,
/// either fold the smallest shown groups into it until it reaches k (and show or suppress it as
/// a whole), or emit no row at all; and count a job's total (the ungrouped row, and `Done`'s
/// `records`) as one more release of the same records.
#[test]
fn stats_complement_of_a_grouped_and_an_ungrouped_job_reveals_a_group_below_k() {
    let p = Pipeline::start(None);
    let mut recs = Vec::new();
    for (i, c) in ["NZ", "FR"].iter().enumerate() {
        for j in 0..5 {
            recs.push(
                json!({"country": c, "amount": (10 * i + j) as f64 + 0.5, "id": 100 * i + j}),
            );
        }
    }
    // Neither the smallest nor the largest value, so min and max do not show it.
    let (victim_amount, victim_id) = (7.25, 50.0);
    recs.push(json!({"country": "IS", "amount": victim_amount, "id": 50, "name": "the victim"}));
    let sealed = p.seal(&recs, "complement", 4);

    let (code, grouped, err) = p.submit(&["stats", "--group-by", "country"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    let grouped = rows(&grouped);
    assert_eq!(
        grouped.len(),
        2,
        "IS is below k, and so is other: {grouped:?}"
    );
    let (code, total, err) = p.submit(&["stats"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    let total = rows(&total);
    let shown = |f: &str| {
        grouped
            .iter()
            .map(|r| r["fields"][f]["sum"].as_f64().unwrap())
            .sum::<f64>()
    };
    let amount = total[0]["fields"]["amount"]["sum"].as_f64().unwrap() - shown("amount");
    let id = total[0]["fields"]["id"]["sum"].as_f64().unwrap() - shown("id");
    assert!(
        amount != victim_amount && id != victim_id,
        "the one record below k recovered by subtraction in 2 jobs (budget 3): amount {amount}, \
         id {id}; grouped {grouped:?}, total {total:?}"
    );
}

/// A host that could seal under the records' key would pad a victim's group to k with records
/// of its own, or tokenize its guesses beside the real records and compare tokens: k and the
/// tokenization key protect nothing against it. The deployment closes this in the key policies:
/// the principal whose credentials jobs carry (the host's) may use the keys only through the
/// attested image. Here the host tries to seal, to make a data key, to encrypt, and to make or
/// unwrap a tokenization key, and the KMS refuses every one.
#[test]
fn the_host_cannot_seal_records_of_its_own_nor_obtain_a_key() {
    let p = Pipeline::start(None);
    let input = p.dir.path().join("padding.jsonl");
    std::fs::write(&input, "{\"country\":\"JP\",\"amount\":0}\n").unwrap();
    let out = p.dir.path().join("padding.sealed");
    let (code, _, err) = p.host(&[
        "seal",
        "--kms",
        &p.kms.url(),
        "--key-id",
        &p.key_arn,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[KMS-AccessDeniedException]"), "{err}");
    assert!(!out.exists());
    let token = p.dir.path().join("host.key");
    let (code, _, err) = p.host(&[
        "token-key",
        "--kms",
        &p.kms.url(),
        "--key-id",
        &p.token_arn,
        "-o",
        token.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[KMS-AccessDeniedException]"), "{err}");
    let host_creds = cloister_sigv4::Credentials {
        access_key_id: p.access().access_key_id,
        secret_access_key: zeroize::Zeroizing::new(
            p.access().secret_access_key.expose().to_owned(),
        ),
        session_token: None,
    };
    let host = p.kms.client(host_creds);
    let rt = cloister_tests::kms::rt();
    let ctx = json!({"cloister:purpose": "tokenization"});
    for (op, body) in [
        (
            "GenerateDataKey",
            json!({"KeyId": p.key_arn, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": p.token_arn, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": p.target_arn, "KeySpec": "AES_256"}),
        ),
        ("Encrypt", json!({"KeyId": p.key_arn, "Plaintext": "AAAA"})),
    ] {
        let e = rt.block_on(host.call(op, &body)).unwrap_err();
        assert_eq!(
            cloister_common::ErrorCode::code(&e),
            "KMS-AccessDeniedException",
            "{op} {body}: {e}"
        );
    }
    // AWS's standard key-user statement grants kms:ReEncrypt*: with it the host could re-wrap
    // a data key under a key of its choosing, attestation or not. The owner adds it; the
    // policy's explicit Deny for the host without an attestation document still refuses, and
    // `policy check` says the host reaches nothing without attestation.
    let records_policy: Value = serde_json::from_str(
        owner_call(
            &p,
            "GetKeyPolicy",
            &json!({"KeyId": p.key_arn, "PolicyName": "default"}),
        )
        .unwrap()["Policy"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut statements = records_policy["Statement"].as_array().unwrap().clone();
    statements.push(json!({"Sid": "KeyUser", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:role/cloister-host"},
        "Action": ["kms:Encrypt", "kms:ReEncrypt*", "kms:DescribeKey"], "Resource": "*"}));
    owner_call(
        &p,
        "PutKeyPolicy",
        &json!({"KeyId": p.key_arn, "PolicyName": "default",
                "Policy": json!({"Version": "2012-10-17", "Statement": statements}).to_string()}),
    )
    .unwrap();
    let sealed = p.seal(&[json!({"country": "JP"})], "rewrap", 1);
    let blob = messages_of(&sealed)[0].clone();
    let header = cloister_esdk::parse_header(&blob).unwrap().0;
    let wrapped = header
        .edks
        .iter()
        .find(|k| k.provider_id == "aws-kms")
        .unwrap()
        .ciphertext
        .clone();
    let e = rt
        .block_on(host.call(
            "ReEncrypt",
            &json!({"CiphertextBlob": cloister_kms_client::b64(&wrapped),
                    "SourceEncryptionContext": header.context,
                    "DestinationKeyId": p.target_arn}),
        ))
        .unwrap_err();
    assert_eq!(
        cloister_common::ErrorCode::code(&e),
        "KMS-AccessDeniedException",
        "{e}"
    );
    assert!(e.to_string().contains("explicit deny"), "{e}");
    let report: Value = serde_json::from_str(
        &p.kms
            .cli(&["policy", "check", "--key-id", &p.key_arn, "--json"]),
    )
    .unwrap();
    let host_paths = report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["principal"] == "arn:aws:iam::111122223333:role/cloister-host")
        .unwrap()["paths"]
        .clone();
    assert!(
        host_paths
            .as_array()
            .unwrap()
            .iter()
            .all(|path| path["reach"] != "without-attestation"),
        "{host_paths}"
    );

    // The owner's own tokenization key: the host cannot unwrap it without the enclave.
    let (code, _, err) = p.cloister(&[
        "token-key",
        "--kms",
        &p.kms.url(),
        "--key-id",
        &p.token_arn,
        "-o",
        token.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let blob = std::fs::read(&token).unwrap();
    let e = rt
        .block_on(host.call(
            "Decrypt",
            &json!({"CiphertextBlob": cloister_kms_client::b64(&blob), "EncryptionContext": ctx}),
        ))
        .unwrap_err();
    assert_eq!(
        cloister_common::ErrorCode::code(&e),
        "KMS-AccessDeniedException",
        "{e}"
    );
}

/// Attack (closed: the job fails only at its end): `max_groups` is an oracle on labels below k. The job fails (`ENC-LIMIT`) at the first
/// message whose label is the (max_groups + 1)-th distinct one, after `Progress` for every message
/// before it, so a host that feeds single-record messages learns which of them share a label with
/// earlier records, though every group is of size 1 and nothing is ever shown. Here: 100 records
/// of distinct addresses, then V1 (the address of the 8th), V2 (a new one), V3 (that of the
/// 43rd): the job fails right after V1, so the host learns V1's address is among the first 100
/// and V2's is not.
///
/// Fix (enclave/src/ops/stats.rs `Stats::add`/`merge`, enclave/src/job.rs): never fail on a
/// label mid-stream. Past `max_groups`, fold a record with a new label into the unlabeled group
/// (`other`), or note the overflow and fail only at `EndOfInput` (one bit per budgeted job
/// instead of the position of every new label; document it).
#[test]
fn a_job_past_max_groups_fails_without_saying_at_which_message() {
    let p = Pipeline::start(None);
    let mut recs: Vec<Value> = (0..100)
        .map(|i| json!({"address": format!("addr-{i}"), "amount": 1.0}))
        .collect();
    recs.push(json!({"address": "addr-7", "amount": 1.0}));
    recs.push(json!({"address": "addr-new", "amount": 1.0}));
    recs.push(json!({"address": "addr-42", "amount": 1.0}));
    let sealed = p.seal(&recs, "addresses", 1);
    let messages = messages_of(&sealed);
    assert_eq!(messages.len(), 103);
    let rt = cloister_tests::kms::rt();
    let answers = rt.block_on(async {
        let mut raw = Raw::connect(&p).await;
        raw.send(&job(
            &p,
            Operation::Stats {
                group_by: Some("address".into()),
                fields: vec![],
            },
        ))
        .await;
        for (i, m) in messages.iter().enumerate() {
            raw.send(&Message::Sealed {
                name: format!("m{i}"),
                bytes: m.clone(),
            })
            .await;
        }
        raw.send(&Message::EndOfInput).await;
        raw.answers().await
    });
    let last_progress = answers
        .iter()
        .filter_map(|m| match m {
            Message::Progress { messages, .. } => Some(*messages),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let code = failed_code(&answers);
    assert!(
        code.is_none() || last_progress == 103,
        "the job failed {code:?} right after message {last_progress} of 103: the host learns \
         that record 101 shares its address with one of the first 100 and record 102 does not"
    );
}

// ---------------------------------------------------------------------------------------------
// mask.

/// Short values, multi-byte and combining characters, numbers as written (negative zero, an
/// exponent, 30 digits), nested values, booleans, null, escaped member names, case variants of
/// masked names, a control sequence in a masked value, a non-JSON line and duplicate members.
#[test]
fn mask_keeps_at_most_half_of_any_value_and_nothing_of_other_members() {
    let p = Pipeline::start(None);
    let lines = [
        r#"{"card":"7","id":5,"country":"FR","ssn":"078-05-1120"}"#,
        r#"{"card":"12","id":12}"#,
        r#"{"card":"ÅÄÖÜ€€€€","id":-0}"#,
        r#"{"card":{"number":"4111111111111111"},"id":true,"country":{"code":"NZ"}}"#,
        r#"{"card":null,"id":1.5e3}"#,
        r#"{"c\u0061rd":"4111111111111111","countr\u0079":"NZ"}"#,
        r#"{"Card":"5500000000000004","CARD":"5500000000000005","card ":"5500000000000006","ssn":"078-05-1121"}"#,
        r#"{"card":"4111111111111112","id":123456789012345678901234567890}"#,
        r#"{"card":"e\u0301e\u0301"}"#,
        r#"{"card":"\u001b[31m4111"}"#,
    ];
    let good = p.seal_lines(&lines, "mask", 3);
    let bad = seal_raw(&p, &["not json at all SECRET-LINE"], "mask-bad");
    let dup = seal_raw(
        &p,
        &[r#"{"card":"5500000000000007","card":"x"}"#],
        "mask-dup",
    );
    let (code, out, err) = p.submit(&["mask"], &[&good, &bad, &dup]);
    assert_eq!(code, 1, "the bad messages fail: {err}");
    assert_eq!(
        rows(&out),
        [
            json!({"card": "*", "id": "*", "country": "FR"}),
            json!({"card": "*2", "id": "*2"}),
            json!({"card": "****€€€€", "id": "*0"}),
            json!({"card": "****", "id": "****", "country": {"code": "NZ"}}),
            json!({"card": null, "id": "***e3"}),
            json!({"card": "************1111", "country": "NZ"}),
            json!({}),
            json!({"card": "************1112", "id": format!("{}90", "*".repeat(28))}),
            json!({"card": "**e\u{301}"}),
            json!({"card": "*****4111"}),
        ]
    );
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert_eq!(err.matches("error[ENC-RECORD]").count(), 2, "{err}");
    assert!(
        err.contains("not a JSON object") && err.contains("duplicate member name"),
        "{err}"
    );
    for secret in [
        "078-05-",
        "4111111111111111",
        "55000000000000",
        "SECRET-LINE",
        "12345678901234567890",
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
        assert!(!err.contains(secret), "{secret} in {err}");
    }
    logs_clean(
        &p,
        &["078-05-", "41111111", "55000000", "SECRET-LINE", "ÅÄÖÜ"],
    );
}

// ---------------------------------------------------------------------------------------------
// tokenize.

/// The enclave unwraps a tokenization key only under the policy's `key_arn` and the tokenization
/// context: a key wrapped under the records' key, under another context, a record's own data key,
/// an empty or oversized blob are all refused, with no row out.
#[test]
fn tokenize_unwraps_only_under_the_policy_s_key_and_context() {
    let p = Pipeline::start(None);
    let sealed = p.seal(
        &[json!({"name": "Ada Secret", "card": "4111111111111111", "country": "FR"})],
        "people",
        1,
    );
    let ctx = json!({"cloister:purpose": "tokenization"});
    let gdk = |key: &str, ctx: &Value| {
        let v = owner_call(
            &p,
            "GenerateDataKeyWithoutPlaintext",
            &json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        )
        .unwrap();
        cloister_kms_client::blob(&v, "CiphertextBlob").unwrap()
    };
    let records_key = gdk(&p.key_arn, &ctx);
    let other_context = gdk(&p.token_arn, &json!({"cloister:purpose": "Tokenization"}));
    let no_context = gdk(&p.token_arn, &json!({}));
    let (header, _) = cloister_esdk::parse_header(&messages_of(&sealed)[0]).unwrap();
    let record_data_key = header.edks[0].ciphertext.clone();
    for (name, blob, code) in [
        (
            "records-key",
            records_key,
            "error[KMS-IncorrectKeyException]",
        ),
        (
            "other-context",
            other_context,
            "error[KMS-InvalidCiphertextException]",
        ),
        (
            "no-context",
            no_context,
            "error[KMS-InvalidCiphertextException]",
        ),
        (
            "record-data-key",
            record_data_key,
            "error[KMS-IncorrectKeyException]",
        ),
        ("empty", Vec::new(), "error[ENC-POLICY]"),
        ("huge", vec![0xA5; 6145], "error[ENC-POLICY]"),
    ] {
        let key = write_blob(&p, name, &blob);
        let (c, out, err) = p.submit(
            &["tokenize", "--token-key", key.to_str().unwrap()],
            &[&sealed],
        );
        assert_eq!(c, 1, "{name}: {out}");
        assert!(out.is_empty(), "{name}: {out}");
        assert!(err.contains(code), "{name}: {err}");
    }
    logs_clean(&p, &["Ada Secret", "4111111111111111"]);
}

/// Attack (closed by the key policies; it was open while the pipeline let the host make keys): the pipeline's tokenization key policy is the records' one, which lets
/// the host's principal call plain `GenerateDataKey` (and `Encrypt`) under `key_arn` with the
/// tokenization context. The host makes a tokenization key it knows, passes its blob, and then
/// computes tokens for any guess offline: "nobody outside it can compute a token" does not hold.
/// The README warns the key owner; the reference pipeline does what it warns against, and the
/// enclave cannot tell a key the host knows from one nobody knows.
///
/// Fix: pin the tokenization key in the measured policy: `[operations.tokenize] wrapped_key =
/// "<base64 of the blob from cloister token-key>"` (or its SHA-256), checked in
/// `Operations::plan` (enclave/src/policy.rs) so the host cannot substitute a blob; and give the
/// token key in `tests/src/pipeline.rs` a policy without `GenerateDataKey`/`Encrypt`.
#[test]
fn a_host_that_can_generate_the_token_key_computes_tokens_offline() {
    let p = Pipeline::start(None);
    let sealed = p.seal(
        &[json!({"name": "Ada Lovelace", "card": "4111111111111111", "country": "FR"})],
        "people",
        1,
    );
    let generated = owner_call(
        &p,
        "GenerateDataKey",
        &json!({"KeyId": p.token_arn, "KeySpec": "AES_256",
                "EncryptionContext": {"cloister:purpose": "tokenization"}}),
    );
    let Ok(generated) = generated else {
        return; // The key policy refuses: the attack is closed.
    };
    let known = cloister_kms_client::blob(&generated, "Plaintext").unwrap();
    let blob = cloister_kms_client::blob(&generated, "CiphertextBlob").unwrap();
    let key = write_blob(&p, "host-known.key", &blob);
    let (code, out, err) = p.submit(
        &["tokenize", "--token-key", key.to_str().unwrap()],
        &[&sealed],
    );
    if code != 0 {
        assert!(err.contains("error["), "{err}");
        return; // The enclave refuses the key: the attack is closed.
    }
    let row = &rows(&out)[0];
    let guesses = ["Grace Hopper", "Ada Lovelace", "Alan Turing"];
    let hit = guesses
        .iter()
        .find(|g| row["name"] == token(&known, b's', g));
    assert!(
        hit.is_none(),
        "the host computed the token of {hit:?} offline with a tokenization key it generated \
         itself (GenerateDataKey under key_arn) and the enclave accepted: {row}"
    );
}

// ---------------------------------------------------------------------------------------------
// reseal.

/// Only the exact ARN the policy lists: not its key id, an alias, another case, another region or
/// partition, padding or a zero-width space, nor the records' or tokenization key. The output
/// carries the input's context less its `aws-crypto-` keys (a fresh signing key of its own), only
/// the target's EDK, and its data key came from an attested `GenerateDataKey`.
#[test]
fn reseal_targets_only_the_policy_s_exact_arn_and_sets_its_own_reserved_context() {
    let p = Pipeline::start(None);
    let recs = vec![json!({"name": "Ada Secret", "card": "4111111111111111"}); 3];
    let sealed = p.seal(&recs, "reseal-in", 2);
    let key_id = p.target_arn.rsplit('/').next().unwrap().to_owned();
    let variants = [
        key_id.clone(),
        format!("alias/{key_id}"),
        p.target_arn
            .replace(&format!("key/{key_id}"), "alias/target"),
        p.target_arn.to_uppercase(),
        format!("{} ", p.target_arn),
        format!(" {}", p.target_arn),
        format!("{}\u{200b}", p.target_arn),
        p.target_arn.replace("us-east-1", "us-west-2"),
        p.target_arn.replacen("arn:aws:", "arn:aws-cn:", 1),
        p.key_arn.clone(),
        p.token_arn.clone(),
    ];
    for v in &variants {
        assert_ne!(v, &p.target_arn);
        let out = p.dir.path().join("refused.esdk");
        let (code, _, err) = p.submit(
            &["reseal", "--target-key", v, "--out", out.to_str().unwrap()],
            &[&sealed],
        );
        assert_eq!(code, 1, "{v:?}");
        assert!(
            err.contains("error[ENC-POLICY]") && err.contains("may not target"),
            "{v:?}: {err}"
        );
        assert!(!out.exists());
    }
    assert_eq!(audited_on(&p, "GenerateDataKey", &p.target_arn), 0);
    assert_eq!(audited(&p, "Decrypt"), 0);

    let out = p.reseal(&sealed);
    let inputs = messages_of(&sealed);
    let outputs = messages_of(&out);
    assert_eq!(outputs.len(), inputs.len());
    for (i, o) in inputs.iter().zip(&outputs) {
        let (hi, _) = cloister_esdk::parse_header(i).unwrap();
        let (ho, _) = cloister_esdk::parse_header(o).unwrap();
        let plain = |h: &cloister_esdk::Header| {
            h.context
                .iter()
                .filter(|(k, _)| !k.starts_with("aws-crypto-"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(plain(&ho), plain(&hi));
        assert_eq!(plain(&ho), [("dataset".to_owned(), "test".to_owned())]);
        let pk = |h: &cloister_esdk::Header| h.context.get("aws-crypto-public-key").cloned();
        assert!(
            pk(&ho).is_some() && pk(&ho) != pk(&hi),
            "a signing key of its own"
        );
        let edks: Vec<&str> = ho.edks.iter().map(|e| e.provider_info.as_str()).collect();
        assert_eq!(edks, [p.target_arn.as_str()]);
        assert!(!o.windows(10).any(|w| w == b"Ada Secret"));
    }
    for e in p.audit() {
        if e["operation"] == "GenerateDataKey"
            && p.target_arn.ends_with(e["key_id"].as_str().unwrap_or("-"))
        {
            assert_eq!(e["pcr0"], p.pcr0.as_str(), "an attested release only: {e}");
        }
    }
    logs_clean(&p, &["Ada Secret", "4111111111111111"]);
}

// ---------------------------------------------------------------------------------------------
// The protocol.

/// An unknown operation, a stream that does not start with a `Job`, a second `Job` mid-stream,
/// enclave-side messages sent by the host, frames after `EndOfInput`: each ends the job with its
/// code, before any key is released where no job was accepted. A sealed file whose name carries
/// terminal escapes is named cleaned on `cloister submit`'s stderr. Progress carries counts only.
#[test]
fn protocol_abuse_ends_the_job_with_its_code() {
    let p = Pipeline::start(None);
    let sealed = p.seal(
        &[json!({"card": "4111111111111111", "name": "Ada Secret", "country": "FR"})],
        "proto",
        1,
    );
    let message = messages_of(&sealed)[0].clone();
    let sealed_msg = |name: &str| Message::Sealed {
        name: name.into(),
        bytes: message.clone(),
    };
    let rt = cloister_tests::kms::rt();
    rt.block_on(async {
        // An operation the wire does not know: the frame is malformed, nothing is released.
        let mut frame = cloister_wire::frame::encode(&job(&p, Operation::Mask)).unwrap();
        let at = frame.windows(4).position(|w| w == b"Mask").unwrap();
        frame[at..at + 4].copy_from_slice(b"Dump");
        let mut raw = Raw::connect(&p).await;
        raw.send_bytes(&frame).await;
        raw.send(&sealed_msg("m")).await;
        raw.send(&Message::EndOfInput).await;
        let a = raw.answers().await;
        assert_eq!(failed_code(&a), Some("WIRE-MALFORMED"), "{a:?}");

        // Not starting with a Job; enclave-side messages from the host.
        for first in [
            sealed_msg("m"),
            Message::EndOfInput,
            Message::Done {
                messages: 1,
                records: 1,
            },
            Message::Rows {
                rows: vec!["{}".into()],
            },
        ] {
            let mut raw = Raw::connect(&p).await;
            raw.send(&first).await;
            let a = raw.answers().await;
            assert_eq!(failed_code(&a), Some("ENC-PROTOCOL"), "{first:?}: {a:?}");
        }
        assert_eq!(audited(&p, "Decrypt"), 0);

        // A second Job mid-stream (a stats job riding on a mask job's connection).
        let mut raw = Raw::connect(&p).await;
        raw.send(&job(&p, Operation::Mask)).await;
        raw.send(&sealed_msg("m")).await;
        raw.send(&job(
            &p,
            Operation::Stats {
                group_by: Some("country".into()),
                fields: vec![],
            },
        ))
        .await;
        raw.send(&sealed_msg("m")).await;
        raw.send(&Message::EndOfInput).await;
        let a = raw.answers().await;
        assert_eq!(failed_code(&a), Some("ENC-PROTOCOL"), "{a:?}");
        let progress: Vec<(u64, u64)> = a
            .iter()
            .filter_map(|m| match m {
                Message::Progress { messages, records } => Some((*messages, *records)),
                _ => None,
            })
            .collect();
        assert_eq!(
            progress,
            [(1, 1)],
            "only the first message was processed: {a:?}"
        );
        for m in &a {
            assert!(
                matches!(
                    m,
                    Message::Progress { .. } | Message::Rows { .. } | Message::Failed { .. }
                ),
                "{m:?}"
            );
        }

        // After Done the connection is over: a Job sent after EndOfInput gets nothing.
        let mut raw = Raw::connect(&p).await;
        raw.send(&job(&p, Operation::Mask)).await;
        raw.send(&Message::EndOfInput).await;
        let a = raw.answers().await;
        assert!(
            matches!(
                a.last(),
                Some(Message::Done {
                    messages: 0,
                    records: 0
                })
            ),
            "{a:?}"
        );
        raw.send(&job(
            &p,
            Operation::Stats {
                group_by: None,
                fields: vec![],
            },
        ))
        .await;
        raw.send(&sealed_msg("m")).await;
        raw.send(&Message::EndOfInput).await;
        let after = raw.answers().await;
        assert!(
            after.is_empty(),
            "frames after EndOfInput were served: {after:?}"
        );
    });

    // A file name with terminal escapes, for a message that fails: printed cleaned.
    let mut tampered = message.clone();
    let n = tampered.len();
    tampered[n - 120] ^= 1;
    let evil = p
        .dir
        .path()
        .join("evil\u{1b}]0;pwned\u{7}\u{1b}[2J\r.sealed");
    std::fs::write(&evil, &tampered).unwrap();
    let (code, out, err) = p.submit(&["mask"], &[&evil]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("error[ESDK-"), "{err}");
    assert!(
        !err.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters on stderr: {err:?}"
    );
    logs_clean(&p, &["Ada Secret", "4111111111111111"]);
}

/// Attack (closed: a slot is taken when the Job arrives, which must be within 10 s): the enclave takes a job slot when a connection arrives, before its
/// `Job` frame, and waits for that frame up to `IO_TIMEOUT` (300 s). Any local client of the
/// proxy's socket holds every slot (`max_jobs`, 2 here) with as many connections that send
/// nothing, renewing them every five minutes; every real job meanwhile is `ENC-BUSY`. (The host
/// itself can always stop the enclave; this matters where the proxy's socket serves users other
/// than its operator.)
///
/// Fix (enclave/src/job.rs `serve_with`): read the `Job` frame under a short deadline (e.g. 10 s)
/// and take the slot only once it has arrived (bounding pre-`Job` connections separately), and
/// use a between-frames timeout well under 300 s once the job runs.
#[test]
fn idle_connections_do_not_hold_job_slots_for_the_io_timeout() {
    let p = Pipeline::start(None);
    let sealed = p.seal(&[json!({"card": "4111111111111111"})], "idle", 1);
    let rt = cloister_tests::kms::rt();
    let _idle = rt.block_on(async { (Raw::connect(&p).await, Raw::connect(&p).await) });
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last;
    loop {
        let (code, _, err) = p.submit(&["mask"], &[&sealed]);
        last = err;
        if code == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        last.contains("done:"),
        "two connections that never sent a frame still hold both job slots after 15 s: {last}"
    );
}

/// Attack (closed: rows must be JSON objects, control characters printed as spaces): `cloister submit` cleans what crossed the host before printing it (message names,
/// codes, reasons: `printable`), except result rows, which it writes to stdout as they came. A
/// proxy (or anything between the enclave and the client) puts terminal escapes on the user's
/// terminal through a `Rows` frame; the enclave itself can emit a raw CR or tab inside a
/// record's nested value (kept as written). The module doc of host/src/submit.rs says
/// "everything the enclave sends crossed the untrusted host, so it is cleaned before it is
/// printed".
///
/// Fix (host/src/submit.rs `Sink::rows`): parse each row as a JSON object and print it
/// re-serialized (serde_json escapes every control character), failing the job
/// (`CLI-INCOMPLETE`/a protocol error) on a row that is not one; the same before `--out`.
#[test]
fn submit_prints_rows_cleaned_like_everything_else_that_crossed_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake-proxy.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        for m in [
            Message::Rows {
                rows: vec!["{\"card\":\"*\"}\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31m".into()],
            },
            Message::Done {
                messages: 1,
                records: 1,
            },
        ] {
            s.write_all(&cloister_wire::frame::encode(&m).unwrap())
                .unwrap();
        }
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    // One well-formed message (its key is nobody's: the fake proxy never asks).
    let msg = cloister_esdk::Encryptor::new(
        cloister_esdk::Suite::from_id(0x0478).unwrap(),
        Default::default(),
        Some(4096),
    )
    .unwrap()
    .seal(
        &cloister_esdk::DataKey::new([7; 32]),
        vec![cloister_esdk::Edk {
            provider_id: "aws-kms".into(),
            provider_info: "arn:aws:kms:us-east-1:111122223333:key/x".into(),
            ciphertext: vec![1; 32],
        }],
        b"{}\n",
    )
    .unwrap();
    let sealed = dir.path().join("m.sealed");
    std::fs::write(&sealed, msg).unwrap();
    let out = std::process::Command::new(cloister_tests::binary("cloister"))
        .args(["submit", "--proxy", &format!("unix://{}", sock.display())])
        .args(["--op", "mask"])
        .arg(&sealed)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    server.join().unwrap();
    let (code, stdout, stderr) = cloister_tests::outcome(&out);
    assert!(
        !stdout.contains(['\u{1b}', '\u{7}']),
        "a row from the proxy reached the terminal raw: {stdout:?}"
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a JSON object"), "{stderr}");
}
