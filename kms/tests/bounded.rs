//! What a client without credentials can make a running cloister-kms hold, over real sockets:
//! idle and slow connections are closed after their timeouts, connections beyond the cap are
//! closed on arrival, unauthenticated requests leave a bounded trace in the audit log; and the
//! transport rules: no plaintext answers over cleartext HTTP that leaves the machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use cloister_kms_client::{ClientError, KmsClient, Retry, b64, blob};
use cloister_tests::kms::{KmsBinary, KmsServer, rt};
use serde_json::{Value, json};

fn kms_bin() -> KmsBinary {
    KmsBinary::new(env!("CARGO_BIN_EXE_cloister-kms"))
}

/// A client that does not retry, so a refused connection shows.
fn impatient(kms: KmsClient) -> KmsClient {
    kms.with_retry(Retry {
        attempts: 1,
        ..Retry::default()
    })
}

/// Whether the server has closed `s`: waits up to `wait` for EOF or a reset, reading (and
/// dropping) whatever the server sent before closing.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Whether `s` is still open right now (nothing to read, no EOF).
fn open_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let open = matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

async fn random(kms: &KmsClient) -> Result<Value, ClientError> {
    kms.call("GenerateRandom", &json!({"NumberOfBytes": 16}))
        .await
}

#[test]
fn a_thousand_idle_connections_neither_starve_clients_nor_stay_open() {
    // The test holds 1,000 sockets too.
    cloister_kms::listen::raise_open_files(1_100).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(
        dir.path(),
        &[
            "--idle-timeout",
            "5s",
            "--header-timeout",
            "5s",
            "--max-connections",
            "1100",
        ],
    );
    assert!(
        server.log().contains("at most 1100 connections"),
        "{}",
        server.log()
    );
    let mut idle: Vec<TcpStream> = (0..1_000)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // Accepted in order, so the idle ones are held by the server when this is served.
    let kms = impatient(server.client(creds));
    let r = rt().block_on(random(&kms)).unwrap();
    assert_eq!(blob(&r, "Plaintext").unwrap().len(), 16);
    let still_open = idle.iter().filter(|s| open_now(s)).count();
    assert_eq!(
        still_open, 1_000,
        "idle connections were closed before the signed request was served (a machine slower \
         than the 5 s idle timeout?)"
    );
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(30)),
            "idle connection {i} still open 30 s after a 5 s idle timeout"
        );
    }
}

#[test]
fn slow_loris_heads_and_bodies_are_cut_off_after_their_timeouts() {
    let server = kms_bin().start_temp(&[
        "--header-timeout",
        "2s",
        "--idle-timeout",
        "30s",
        "--body-timeout",
        "2s",
    ]);
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Type: \
         application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n",
        server.addr
    );
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let mut sent = 0;
    let mut cut = false;
    for byte in head.bytes() {
        if s.write_all(&[byte]).is_err() {
            cut = true;
            break;
        }
        sent += 1;
        // One byte a second: the wait for the server to close paces the client.
        if closed_within(&mut s, Duration::from_secs(1)) {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "the whole {}-byte head went through one byte a second",
        head.len()
    );
    // The idle timeout (30 s) would have let 30 bytes through; the header timeout lets ~2.
    assert!(sent < 15, "cut off only after {sent} bytes, one a second");

    // A whole head, then a body one byte a second.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(
        head.replace("Content-Length: 2", "Content-Length: 60")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = Vec::new();
    for _ in 0..60 {
        if s.write_all(b" ").is_err() {
            break;
        }
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if !answer.is_empty() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a body sent one byte a second for 60 s: {answer:?}"
    );
    // Others are still served.
    let kms = impatient(server.client(server.admin()));
    rt().block_on(random(&kms)).unwrap();
}

#[test]
fn connections_beyond_the_cap_are_closed_and_service_resumes_when_they_go() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let server = kms_bin().start(
        dir.path(),
        &[
            "--max-connections",
            "4",
            "--idle-timeout",
            "60s",
            "--header-timeout",
            "60s",
        ],
    );
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    let mut extra = TcpStream::connect(&server.addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(10)),
        "a fifth connection over a cap of 4 stayed open"
    );
    let kms = impatient(server.client(creds.clone()));
    let refused = rt().block_on(random(&kms)).unwrap_err();
    assert_eq!(refused.aws_name(), None, "not a service answer: {refused}");
    assert!(
        held.iter().all(open_now),
        "the held connections were closed"
    );
    assert!(
        server.wait_for_log("connections closed on arrival", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    drop(held);
    // The server sees the held connections close and frees their places.
    let kms = impatient(server.client(creds));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rt().block_on(random(&kms)) {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "still refused 20 s after the held connections closed: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An unauthenticated request with `target` as its `X-Amz-Target`; the server's answer.
fn unauthenticated(addr: &str, target: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Amz-Target: {target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Every audit entry (`{"seq", "hash", "entry"}`) of the server's data directory.
fn audit(server: &KmsServer) -> Vec<Value> {
    server.audit_tail(100_000)
}

#[test]
fn unauthenticated_floods_leave_a_bounded_trace_and_a_count() {
    let target = format!("TrentService.{}", "A".repeat(60_000));
    // By default such a head is refused before it reaches the KMS.
    let strict = kms_bin().start_temp(&[]);
    let r = unauthenticated(&strict.addr, &target);
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    assert!(audit(&strict).is_empty());

    let mut server = kms_bin().start_temp(&[
        "--max-header-bytes",
        "131072",
        "--unauthenticated-audit-rate",
        "1",
    ]);
    const SENT: usize = 50;
    for _ in 0..SENT {
        let r = unauthenticated(&server.addr, &target);
        assert!(
            r.contains("MissingAuthenticationTokenException"),
            "{}",
            &r[..r.len().min(300)]
        );
    }
    // Stopping audits the count of those not audited one by one.
    assert!(server.terminate(Duration::from_secs(20)).success());
    let entries = audit(&server);
    let mut individual = 0;
    let mut counted = 0;
    for e in &entries {
        let json = serde_json::to_string(&e["entry"]).unwrap();
        assert!(
            json.len() < 1024,
            "an entry of {} bytes: {json}",
            json.len()
        );
        let entry = &e["entry"];
        assert_eq!(entry["principal"], "anonymous");
        if entry["operation"] == "UnauthenticatedRequests" {
            let reason = entry["reason"].as_str().unwrap();
            assert!(
                reason.contains("unauthenticated requests not individually audited since"),
                "{reason}"
            );
            counted += reason.split(' ').next().unwrap().parse::<usize>().unwrap();
        } else {
            individual += 1;
            let op = entry["operation"].as_str().unwrap();
            assert!(
                op.starts_with("AAAA") && op.ends_with("more bytes]"),
                "{op}"
            );
            assert_eq!(entry["error"], "MissingAuthenticationTokenException");
        }
    }
    assert_eq!(individual + counted, SENT, "{entries:#?}");
    // At one entry a second, most of the flood is only counted.
    assert!(
        counted > 0 && individual < SENT / 2,
        "{individual} audited one by one"
    );
    let (intact, out) = server.audit_verify();
    assert!(intact, "{out}");
}

#[test]
fn encryption_contexts_are_limited_to_8192_characters() {
    let server = kms_bin().start_temp(&[]);
    let kms = server.client(server.admin());
    rt().block_on(async {
        let id = kms.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].clone();
        let at_limit = json!({"k": "v".repeat(8191)});
        let ct = kms
            .call(
                "Encrypt",
                &json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": at_limit}),
            )
            .await
            .unwrap();
        let pt = kms
            .call(
                "Decrypt",
                &json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": at_limit}),
            )
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"x");
        let over = json!({"k": "v".repeat(8192)});
        for (op, input) in [
            ("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x"), "EncryptionContext": over})),
            ("Decrypt", json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": over})),
            ("GenerateDataKey", json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": over})),
        ] {
            let e = kms.call(op, &input).await.unwrap_err();
            assert_eq!(e.aws_name(), Some("ValidationException"), "{op}: {e}");
            assert!(
                e.to_string().contains("Value at 'encryptionContext' failed to satisfy constraint: Member must have length less than or equal to 8192"),
                "{op}: {e}"
            );
        }
    });
}

/// An address of this machine other than loopback; the test fails if there is none.
fn non_loopback_address() -> IpAddr {
    let routed = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = routed {
        return ip;
    }
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or_else(|| {
            panic!(
                "this machine has no non-loopback address (hostname -I: {out:?}): the cleartext \
                 transport rules cannot be tested without one"
            )
        })
}

#[test]
fn plaintext_answers_are_refused_over_cleartext_that_leaves_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let creds = kms_bin().admin(dir.path());
    let ip = non_loopback_address();
    let server = kms_bin().start_on(
        dir.path(),
        &format!("{ip}:0"),
        &["--tls-listen", "127.0.0.1:0"],
    );
    assert!(server.addr.starts_with(&ip.to_string()), "{}", server.addr);
    assert!(
        server.log().contains("is not a loopback address"),
        "{}",
        server.log()
    );
    let http = server.client(creds.clone());
    let tls = server.tls_client(creds);
    rt().block_on(async {
        // What does not answer with plaintext works over cleartext.
        let id = http.call("CreateKey", &json!({})).await.unwrap()["KeyMetadata"]["KeyId"].clone();
        let ct = http
            .call(
                "Encrypt",
                &json!({"KeyId": id, "Plaintext": b64(b"secret")}),
            )
            .await
            .unwrap();
        http.call("DescribeKey", &json!({"KeyId": id}))
            .await
            .unwrap();
        http.call(
            "GenerateDataKeyWithoutPlaintext",
            &json!({"KeyId": id, "KeySpec": "AES_256"}),
        )
        .await
        .unwrap();
        // What does is refused, saying what to do.
        for (op, input) in [
            ("Decrypt", json!({"CiphertextBlob": ct["CiphertextBlob"]})),
            (
                "GenerateDataKey",
                json!({"KeyId": id, "KeySpec": "AES_256"}),
            ),
            ("GenerateRandom", json!({"NumberOfBytes": 16})),
        ] {
            let e = http.call(op, &input).await.unwrap_err();
            assert_eq!(
                e.aws_name(),
                Some("UnsupportedOperationException"),
                "{op}: {e}"
            );
            let message = e.to_string();
            assert!(
                message
                    .contains("use the HTTPS listener (--tls-listen) or bind --listen to loopback"),
                "{op}: {message}"
            );
        }
        // The same Decrypt over TLS answers.
        let pt = tls
            .call("Decrypt", &json!({"CiphertextBlob": ct["CiphertextBlob"]}))
            .await
            .unwrap();
        assert_eq!(blob(&pt, "Plaintext").unwrap(), b"secret");
    });
    // The refusals are audited as the principal's.
    let refused = server
        .audit_tail(20)
        .into_iter()
        .filter(|e| e["entry"]["error"] == "UnsupportedOperationException")
        .count();
    assert_eq!(refused, 3);
}
