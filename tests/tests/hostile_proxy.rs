//! Hostile review of `cloister proxy` over several enclaves (replay mode), with the real
//! `cloister proxy` binary between raw sockets the test controls: clients that misbehave, and
//! "enclaves" that are Unix listeners answering what the test scripts (a `Ping` is answered
//! `Pong` and closed, as the real enclave does). `cloister proxy status --json` is the witness.
//!
//! What must hold (README, "One proxy over several enclaves"): no job lost or counted twice
//! (results only from the attempt that answered), `Failed` never re-run, a bad client or enclave
//! costs only its own job, the status socket is the proxy's user's only and reads nothing.
//!
//! Every wait has a generous deadline and says what did not happen; nothing is timed. The
//! hidden `--io-timeout` shortens the protocol's 300 s where a test needs a stall to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_tests::eventually;
use cloister_tests::pipeline::{Proc, spawn_command};
use cloister_tests::proxy_status::{self, each, sum, until_idle};
use cloister_tests::{binary, outcome};
use cloister_wire::frame::encode;
use cloister_wire::message::{KmsAccess, Operation, SecretString};
use cloister_wire::{FrameReader, Message};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// What a fake enclave does on a job connection, in order.
#[derive(Debug, Clone)]
enum Act {
    /// Reads the host's frames up to `EndOfInput` (or the end of its input).
    ReadAll,
    /// Sends a frame.
    Send(Message),
    /// Sends raw bytes.
    Raw(Vec<u8>),
    /// Holds the connection open, reading nothing more, forever.
    Hang,
}

/// A fake enclave: its socket, and what it saw.
struct Fake {
    path: PathBuf,
    /// Job connections (any whose first frame is not `Ping`).
    jobs: Arc<AtomicUsize>,
    /// `Ping`s answered.
    pings: Arc<AtomicUsize>,
    /// The input frames each job connection got (up to `EndOfInput`).
    inputs: Arc<Mutex<Vec<Vec<Message>>>>,
}

impl Fake {
    fn address(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

fn fake(rt: &tokio::runtime::Runtime, path: PathBuf, script: Vec<Act>) -> Fake {
    let _in = rt.enter();
    let listener = UnixListener::bind(&path).unwrap();
    let f = Fake {
        path,
        jobs: Arc::default(),
        pings: Arc::default(),
        inputs: Arc::default(),
    };
    let (jobs, pings, inputs) = (f.jobs.clone(), f.pings.clone(), f.inputs.clone());
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (script, jobs, pings, inputs) =
                (script.clone(), jobs.clone(), pings.clone(), inputs.clone());
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut reader = FrameReader::new(r, Duration::from_secs(600));
                let first = reader.next().await;
                if matches!(first, Ok(Some(Message::Ping))) {
                    pings.fetch_add(1, Ordering::SeqCst);
                    let _ = w.write_all(&encode(&Message::Pong).unwrap()).await;
                    return;
                }
                jobs.fetch_add(1, Ordering::SeqCst);
                let mut got: Vec<Message> = Vec::new();
                let mut ended = !matches!(&first, Ok(Some(_)));
                if let Ok(Some(m)) = first {
                    ended |= m == Message::EndOfInput;
                    got.push(m);
                }
                for act in script {
                    match act {
                        Act::ReadAll => {
                            while !ended {
                                match reader.next().await {
                                    Ok(Some(m)) => {
                                        ended = m == Message::EndOfInput;
                                        got.push(m);
                                    }
                                    _ => ended = true,
                                }
                            }
                            inputs.lock().unwrap().push(got.clone());
                        }
                        Act::Send(m) => {
                            if w.write_all(&encode(&m).unwrap()).await.is_err() {
                                return;
                            }
                        }
                        Act::Raw(b) => {
                            if w.write_all(&b).await.is_err() {
                                return;
                            }
                        }
                        Act::Hang => std::future::pending::<()>().await,
                    }
                }
                // End of script: the connection closes.
            });
        }
    });
    f
}

/// A running proxy and its sockets.
struct Proxy {
    proc: Proc,
    jobs: PathBuf,
    status: PathBuf,
}

impl Proxy {
    fn log(&self) -> String {
        self.proc.1.lock().unwrap().clone()
    }

    fn status(&self) -> Value {
        proxy_status::read(&format!("unix://{}", self.status.display()))
    }
}

/// Starts `cloister proxy` in replay mode over `enclaves`, with its sockets in `dir`, no health
/// checks unless `extra` asks, and `extra` arguments.
fn proxy(dir: &Path, enclaves: &[String], extra: &[&str]) -> Proxy {
    let jobs = dir.join("jobs.sock");
    let status = dir.join("status.sock");
    let mut cmd = Command::new(binary("cloister"));
    cmd.args(["proxy", "--mode", "replay", "--listen"])
        .arg(format!("unix://{}", jobs.display()))
        .arg("--relay-listen")
        .arg(format!("unix://{}", dir.join("relay.sock").display()))
        .args(["--kms-endpoint", "127.0.0.1:9", "--status-listen"])
        .arg(format!("unix://{}", status.display()));
    for e in enclaves {
        cmd.args(["--enclave", e]);
    }
    if !extra.contains(&"--health-interval") {
        cmd.args(["--health-interval", "0"]);
    }
    cmd.args(extra);
    Proxy {
        proc: spawn_command(&mut cmd, "jobs on"),
        jobs,
        status,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn job() -> Message {
    Message::Job {
        id: 7,
        op: Operation::Mask,
        kms: KmsAccess {
            region: "us-east-1".into(),
            access_key_id: "AKIDTEST".into(),
            secret_access_key: SecretString::new("not-a-secret".into()),
            session_token: None,
        },
    }
}

fn sealed(name: &str) -> Message {
    Message::Sealed {
        name: name.into(),
        bytes: vec![1, 2, 3],
    }
}

fn rows(r: &[&str]) -> Message {
    Message::Rows {
        rows: r.iter().map(|s| (*s).to_owned()).collect(),
    }
}

const DONE: Message = Message::Done {
    messages: 1,
    records: 1,
};

/// Connects to the proxy, sends `frames`, and reads every answer until the proxy closes.
async fn exchange(jobs: &Path, frames: &[Message]) -> Vec<Message> {
    let (r, mut w) = UnixStream::connect(jobs).await.unwrap().into_split();
    for f in frames {
        // The proxy may already have answered (say, PROXY-NO-ENCLAVE) and closed.
        if w.write_all(&encode(f).unwrap()).await.is_err() {
            break;
        }
    }
    let mut reader = FrameReader::new(r, Duration::from_secs(120));
    let mut out = Vec::new();
    loop {
        match reader.next().await {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return out,
            // The proxy closed with some of this client's input unread (after its final
            // answer): a Unix socket reports that as a reset once the answer is read.
            Err(_)
                if matches!(
                    out.last(),
                    Some(Message::Failed { .. } | Message::Done { .. } | Message::Pong)
                ) =>
            {
                return out;
            }
            Err(e) => panic!("reading the proxy's answers after {out:?}: {e}"),
        }
    }
}

/// The job's failure code, if its last answer is `Failed`.
fn failed_code(answers: &[Message]) -> Option<&str> {
    match answers.last() {
        Some(Message::Failed { code, .. }) => Some(code),
        _ => None,
    }
}

/// A normal enclave's script: reads the job, answers `rows` and `Done`.
fn answers(r: &[&str]) -> Vec<Act> {
    vec![Act::ReadAll, Act::Send(rows(r)), Act::Send(DONE)]
}

#[test]
fn a_client_ping_through_the_proxy_takes_no_enclave_down_and_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let fakes: Vec<Fake> = (0..3)
        .map(|i| fake(&rt, dir.path().join(format!("e{i}.sock")), answers(&["ok"])))
        .collect();
    let addrs: Vec<String> = fakes.iter().map(Fake::address).collect();
    let p = proxy(dir.path(), &addrs, &[]);
    // A client sends the health probe's frame itself, as it may to any enclave.
    let got = rt.block_on(exchange(&p.jobs, &[Message::Ping]));
    let s = p.status();
    assert_eq!(
        each(&s, "state"),
        ["up", "up", "up"],
        "a client's Ping took enclaves down (answers {got:?}): {s}\n{}",
        p.log()
    );
    assert_eq!(sum(&s, "rerun") + sum(&s, "failed"), 0, "{s}");
    assert_eq!(got, [Message::Pong], "the client's Ping: {}", p.log());
    let pings: usize = fakes.iter().map(|f| f.pings.load(Ordering::SeqCst)).sum();
    assert_eq!(pings, 1, "the Ping went to one enclave, once");
    // And jobs run as before.
    let got = rt.block_on(exchange(&p.jobs, &[job(), Message::EndOfInput]));
    assert_eq!(got, [rows(&["ok"]), DONE]);
}

#[test]
fn a_client_that_never_reads_its_results_does_not_pin_the_job_forever() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // 8 MiB of results: far more than the socket buffers hold.
    let big: Vec<String> = (0..8).map(|_| "x".repeat(1 << 20)).collect();
    let script = vec![
        Act::ReadAll,
        Act::Send(Message::Rows { rows: big }),
        Act::Send(DONE),
    ];
    let fakes: Vec<Fake> = (0..2)
        .map(|i| fake(&rt, dir.path().join(format!("e{i}.sock")), script.clone()))
        .collect();
    let addrs: Vec<String> = fakes.iter().map(Fake::address).collect();
    let p = proxy(dir.path(), &addrs, &["--io-timeout", "2"]);
    // The client sends its job and then never reads, keeping its connection open.
    let stuck = rt.block_on(async {
        let mut s = UnixStream::connect(&p.jobs).await.unwrap();
        for f in [job(), Message::EndOfInput] {
            s.write_all(&encode(&f).unwrap()).await.unwrap();
        }
        s
    });
    assert!(
        eventually(Duration::from_secs(30), || fakes.iter().any(|f| !f
            .inputs
            .lock()
            .unwrap()
            .is_empty())),
        "no enclave got the job"
    );
    let (s, idle) = until_idle(Duration::from_secs(60), || p.status());
    assert!(
        idle,
        "a client that does not read holds its job (and its held results) in the proxy: {s}"
    );
    // (The lease is released before the job's log line is written.)
    assert!(
        eventually(Duration::from_secs(30), || p
            .log()
            .contains("the client went away")),
        "the proxy did not say why it dropped the job: {}",
        p.log()
    );
    drop(stuck);
}

#[test]
fn a_flood_of_connections_past_the_proxys_file_limit_does_not_spin_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // Enclaves that take jobs and never answer: each job holds two of the proxy's descriptors
    // (its client's and its enclave's).
    let fakes: Vec<Fake> = (0..2)
        .map(|i| fake(&rt, dir.path().join(format!("e{i}.sock")), vec![Act::Hang]))
        .collect();
    let addrs: Vec<String> = fakes.iter().map(Fake::address).collect();
    let p = proxy(dir.path(), &addrs, &[]);
    let pid = p.proc.0.id();
    // The proxy's descriptors numbered below `below` (the limit caps numbers, not counts: a
    // descriptor it inherited with a high number, such as cargo's jobserver pipe, takes no slot).
    let open_below = |below: usize| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&fd| fd < below)
            .count()
    };
    // The proxy's limit: what it holds now and exactly ten jobs more.
    let limit = open_below(128) + 20;
    assert_eq!(
        open_below(limit),
        open_below(128),
        "the proxy's descriptors are not packed"
    );
    let fds = || open_below(limit);
    let (code, _, err) = outcome(
        &Command::new("prlimit")
            .args([
                "--pid",
                &pid.to_string(),
                &format!("--nofile={limit}:{limit}"),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "prlimit: {err}");
    let send_job = || async {
        let mut s = UnixStream::connect(&p.jobs).await.unwrap();
        // (A client the proxy could not serve may find it closed.)
        let _ = s.write_all(&encode(&job()).unwrap()).await;
        s
    };
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(rt.block_on(send_job()));
    }
    assert!(
        eventually(Duration::from_secs(30), || fds() == limit),
        "the proxy holds {} descriptors, not its limit {limit}: {}",
        fds(),
        p.log()
    );
    // More clients wait in the backlog while the proxy has no descriptor left: it must wait
    // for one, not retry accept() in a tight loop (a core at 100% and a log line per retry).
    for _ in 0..5 {
        clients.push(rt.block_on(send_job()));
    }
    let accept_errors = |p: &Proxy| p.log().matches("job accept:").count();
    assert!(
        eventually(Duration::from_secs(30), || accept_errors(&p) > 0),
        "the proxy never ran out of descriptors: {}",
        p.log()
    );
    let start = Instant::now();
    let before = accept_errors(&p);
    std::thread::sleep(Duration::from_secs(3));
    let during = accept_errors(&p) - before;
    let elapsed = start.elapsed();
    let secs = elapsed.as_secs_f64();
    // One retry per 100 ms is 10 a second; allowed: 20 a second (and 20); a spin is thousands.
    let most = usize::try_from(elapsed.as_millis() / 50).unwrap() + 20;
    assert!(
        during <= most,
        "{during} accept errors logged in {secs:.1} s (at most {most} expected): the accept loop spins"
    );
    // Still out of descriptors, the proxy answers its status socket (from the descriptor it
    // keeps in reserve for it), twice: the reserve is taken back after each answer.
    assert!(
        eventually(Duration::from_secs(30), || fds() == limit),
        "the proxy holds {} descriptors, not its limit {limit}: {}",
        fds(),
        p.log()
    );
    p.status();
    // The proxy's own shortage is not its enclaves' fault: none is taken out for it.
    let s = p.status();
    assert_eq!(
        each(&s, "state"),
        ["up", "up"],
        "the proxy blamed its enclaves for its own lack of descriptors: {s}"
    );
    assert!(!p.log().contains("is down"), "{}", p.log());
    drop(clients);
}

#[test]
fn results_of_an_attempt_that_died_never_reach_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // The first enclave chosen (index 0: ties go round robin from the first) answers results
    // and progress, then dies before Done; the second answers properly.
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![
            Act::ReadAll,
            Act::Send(rows(&["from-a"])),
            Act::Send(Message::Progress {
                messages: 1,
                records: 1,
            }),
            Act::Send(Message::Resealed {
                name: "m0".into(),
                bytes: vec![9],
            }),
        ],
    );
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["from-b"]));
    let p = proxy(dir.path(), &[a.address(), b.address()], &[]);
    let input = [job(), sealed("m0"), sealed("m1"), Message::EndOfInput];
    let got = rt.block_on(exchange(&p.jobs, &input));
    let results: Vec<&Message> = got
        .iter()
        .filter(|m| !matches!(m, Message::Progress { .. }))
        .collect();
    assert_eq!(results, [&rows(&["from-b"]), &DONE], "{got:?}");
    // The re-run got the whole input again, in order.
    assert_eq!(b.inputs.lock().unwrap().as_slice(), [input.to_vec()]);
    let s = p.status();
    assert_eq!(each(&s, "rerun"), [1, 0], "{s}");
    assert_eq!(each(&s, "done"), [0, 1], "{s}");
    assert_eq!(each(&s, "state"), ["down", "up"], "{s}");
}

#[test]
fn done_twice_and_frames_after_done_are_not_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![
            Act::ReadAll,
            Act::Send(rows(&["r1"])),
            Act::Send(DONE),
            Act::Send(DONE),
            Act::Send(rows(&["late"])),
            Act::Send(Message::Failed {
                code: "X".into(),
                reason: "late".into(),
            }),
            Act::Hang,
        ],
    );
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["from-b"]));
    let p = proxy(dir.path(), &[a.address(), b.address()], &[]);
    let got = rt.block_on(exchange(&p.jobs, &[job(), Message::EndOfInput]));
    assert_eq!(got, [rows(&["r1"]), DONE]);
    let s = p.status();
    assert_eq!(each(&s, "done"), [1, 0], "{s}");
    assert_eq!(sum(&s, "rerun") + sum(&s, "failed"), 0, "{s}");
    assert_eq!(b.jobs.load(Ordering::SeqCst), 0);
}

#[test]
fn garbage_or_a_pong_from_an_enclave_mid_job_is_its_death_and_the_job_runs_once_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![
            Act::ReadAll,
            Act::Send(rows(&["from-a"])),
            // A frame announcing 4 GiB, then garbage.
            Act::Raw(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Act::Hang,
        ],
    );
    let b = fake(
        &rt,
        dir.path().join("b.sock"),
        vec![
            Act::ReadAll,
            Act::Send(rows(&["from-b"])),
            Act::Send(Message::Pong),
            Act::Hang,
        ],
    );
    let c = fake(&rt, dir.path().join("c.sock"), answers(&["from-c"]));
    let p = proxy(dir.path(), &[a.address(), b.address(), c.address()], &[]);
    let got = rt.block_on(exchange(
        &p.jobs,
        &[job(), sealed("m0"), Message::EndOfInput],
    ));
    assert_eq!(got, [rows(&["from-c"]), DONE]);
    let s = p.status();
    assert_eq!(each(&s, "rerun"), [1, 1, 0], "{s}");
    assert_eq!(each(&s, "done"), [0, 0, 1], "{s}");
    // A huge announced length from an enclave is refused, not allocated; a Pong mid-job is
    // out of place.
    assert!(
        eventually(Duration::from_secs(30), || {
            let l = p.log();
            l.contains("exceeds the limit") && l.contains("a host's message during a job")
        }),
        "{}",
        p.log()
    );
}

#[test]
fn max_attempts_one_never_reruns_and_failed_is_never_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![Act::ReadAll, Act::Send(rows(&["from-a"]))],
    );
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["from-b"]));
    let p = proxy(
        dir.path(),
        &[a.address(), b.address()],
        &["--max-attempts", "1"],
    );
    let got = rt.block_on(exchange(&p.jobs, &[job(), Message::EndOfInput]));
    assert_eq!(failed_code(&got), Some("PROXY-ENCLAVE-LOST"), "{got:?}");
    assert_eq!(got.len(), 1, "no result of the lost attempt: {got:?}");
    assert_eq!(
        b.jobs.load(Ordering::SeqCst),
        0,
        "re-run despite --max-attempts 1"
    );
    drop(p);

    // An enclave that answers Failed (as ENC-BUSY does): the job is not sent elsewhere.
    let dir = tempfile::tempdir().unwrap();
    let busy = Message::Failed {
        code: "ENC-BUSY".into(),
        reason: "full".into(),
    };
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![
            Act::ReadAll,
            Act::Send(rows(&["partial"])),
            Act::Send(busy.clone()),
        ],
    );
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["from-b"]));
    let p = proxy(dir.path(), &[a.address(), b.address()], &[]);
    let got = rt.block_on(exchange(&p.jobs, &[job(), Message::EndOfInput]));
    assert_eq!(got.last(), Some(&busy), "{got:?}");
    assert_eq!(b.jobs.load(Ordering::SeqCst), 0, "a Failed job was re-run");
    let s = p.status();
    assert_eq!(each(&s, "failed"), [1, 0], "{s}");
}

#[test]
fn every_enclave_down_is_one_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let gone: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "unix://{}",
                dir.path().join(format!("gone{i}.sock")).display()
            )
        })
        .collect();
    let p = proxy(dir.path(), &gone, &[]);
    let got = rt.block_on(exchange(&p.jobs, &[job(), Message::EndOfInput]));
    assert_eq!(failed_code(&got), Some("PROXY-NO-ENCLAVE"), "{got:?}");
    let s = p.status();
    assert_eq!(each(&s, "state"), ["down", "down", "down"], "{s}");
    assert_eq!(sum(&s, "outstanding"), 0, "{s}");
}

#[test]
fn hostile_clients_cost_only_their_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let fakes: Vec<Fake> = (0..2)
        .map(|i| fake(&rt, dir.path().join(format!("e{i}.sock")), answers(&["ok"])))
        .collect();
    let addrs: Vec<String> = fakes.iter().map(Fake::address).collect();
    let p = proxy(dir.path(), &addrs, &["--io-timeout", "2"]);
    rt.block_on(async {
        // A huge announced length: refused at once, nothing allocated.
        let mut s = UnixStream::connect(&p.jobs).await.unwrap();
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 0]).await.unwrap();
        let got = FrameReader::new(s, Duration::from_secs(60)).next().await;
        assert!(
            matches!(&got, Ok(Some(Message::Failed { code, .. })) if code == "PROXY-BAD-INPUT"),
            "{got:?}"
        );
        // Half a frame, then silence: the stall fails the job (after the I/O timeout).
        let mut s = UnixStream::connect(&p.jobs).await.unwrap();
        let frame = encode(&job()).unwrap();
        s.write_all(&frame[..frame.len() / 2]).await.unwrap();
        let got = FrameReader::new(&mut s, Duration::from_secs(60))
            .next()
            .await;
        assert!(
            matches!(&got, Ok(Some(Message::Failed { code, .. })) if code == "PROXY-BAD-INPUT"),
            "{got:?}"
        );
        // A never-ending job (input that never ends, but keeps coming): it runs as long as
        // the client sends, on one enclave slot; the others serve meanwhile.
        let mut endless = UnixStream::connect(&p.jobs).await.unwrap();
        endless.write_all(&encode(&job()).unwrap()).await.unwrap();
        for i in 0..5 {
            endless
                .write_all(&encode(&sealed(&format!("m{i}"))).unwrap())
                .await
                .unwrap();
        }
        // A thousand connections at once that send nothing and leave.
        let mut idle = Vec::new();
        for _ in 0..1000 {
            idle.push(UnixStream::connect(&p.jobs).await.unwrap());
        }
        drop(idle);
        // Frames that are not a job's, and a job sent after EndOfInput's answer was due.
        let got = exchange(&p.jobs, &[Message::EndOfInput]).await;
        assert_eq!(
            got,
            [rows(&["ok"]), DONE],
            "the fake enclave answers anything"
        );
        // A normal job still gets its one answer.
        let got = exchange(&p.jobs, &[job(), sealed("m"), Message::EndOfInput]).await;
        assert_eq!(got, [rows(&["ok"]), DONE]);
        drop(endless);
    });
    let (s, idle) = until_idle(Duration::from_secs(60), || p.status());
    assert!(idle, "loads did not return to 0: {s}");
    assert_eq!(each(&s, "state"), ["up", "up"], "{s}\n{}", p.log());
    assert_eq!(sum(&s, "rerun"), 0, "{s}");
}

#[test]
fn the_status_socket_is_the_proxys_users_reads_nothing_and_slow_readers_block_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Let any user reach the socket's directory: only the socket's own mode keeps them out.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rt = rt();
    let a = fake(&rt, dir.path().join("a.sock"), answers(&["ok"]));
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["ok"]));
    let p = proxy(dir.path(), &[a.address(), b.address()], &[]);
    let mode = std::fs::metadata(&p.status).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Another local user cannot connect.
    let (code, _, err) = outcome(
        &Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(binary("cloister"))
            .args(["proxy", "status", "--json", "--status-listen"])
            .arg(format!("unix://{}", p.status.display()))
            .output()
            .unwrap(),
    );
    assert_ne!(code, 0, "another user read the status");
    assert!(err.contains("ermission denied"), "{err}");
    rt.block_on(async {
        // Input is not read (nothing parses it): a megabyte written changes nothing, and the
        // next reader gets the document.
        let mut s = UnixStream::connect(&p.status).await.unwrap();
        let _ = s.write_all(&vec![b'{'; 1 << 20]).await;
        let mut ignored = Vec::new();
        let _ = s.read_to_end(&mut ignored).await;
        let mut s = UnixStream::connect(&p.status).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["enclaves"].as_array().unwrap().len(), 2);
        // Five hundred readers that never read: status and jobs are still served.
        let mut slow = Vec::new();
        for _ in 0..500 {
            slow.push(UnixStream::connect(&p.status).await.unwrap());
        }
        let got = exchange(&p.jobs, &[job(), Message::EndOfInput]).await;
        assert_eq!(got, [rows(&["ok"]), DONE]);
        drop(slow);
    });
    assert_eq!(sum(&p.status(), "done"), 1);
}

#[test]
fn a_client_ping_through_the_proxy_reaches_a_real_enclave_and_costs_nothing() {
    use cloister_tests::pipeline::{Pipeline, records};
    let mut p = Pipeline::start(None);
    let sealed = p.seal(&records(6), "records", 3);
    let second = p.launch_enclave(&p.dir.path().join("more-state"));
    let first = p.enclave_addr.clone();
    let second_addr = second
        .get("proxy")
        .trim_start_matches("--enclave ")
        .to_owned();
    let status = format!(
        "unix://{}",
        p.dir.path().join("proxy/status.sock").display()
    );
    p.restart_proxy_over(
        &[&first, &second_addr],
        &["--status-listen", &status, "--health-interval", "0"],
    );
    let jobs = PathBuf::from(p.proxy_addr.strip_prefix("unix://").unwrap());
    let rt = rt();
    for _ in 0..3 {
        let got = rt.block_on(exchange(&jobs, &[Message::Ping]));
        assert_eq!(got, [Message::Pong], "{}", p.proxy.lock().unwrap());
    }
    let s = {
        let (code, out, err) = outcome(
            &Command::new(binary("cloister"))
                .args(["proxy", "status", "--json", "--status-listen", &status])
                .output()
                .unwrap(),
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    assert_eq!(each(&s, "state"), ["up", "up"], "{s}");
    assert_eq!(
        sum(&s, "done") + sum(&s, "failed") + sum(&s, "rerun") + sum(&s, "outstanding"),
        0,
        "{s}"
    );
    // Jobs run as before.
    let (code, out, err) = p.submit(&["mask"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn concurrent_jobs_over_a_dying_enclave_get_one_answer_each_and_the_buffer_bounds_each() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // A answers results and dies before Done, every time; B answers properly. Health checks
    // put A back in between, so it keeps getting jobs.
    let a = fake(
        &rt,
        dir.path().join("a.sock"),
        vec![Act::ReadAll, Act::Send(rows(&["from-a"]))],
    );
    let b = fake(&rt, dir.path().join("b.sock"), answers(&["from-b"]));
    let p = proxy(
        dir.path(),
        &[a.address(), b.address()],
        &["--replay-buffer", "16KiB", "--health-interval", "0.05"],
    );
    let input = |size: usize| {
        let mut frames = vec![job()];
        frames.extend((0..4).map(|i| Message::Sealed {
            name: format!("m{i}"),
            bytes: vec![7; size],
        }));
        frames.push(Message::EndOfInput);
        frames
    };
    // Within the buffer (4 x 1 KiB): every job completes once, with B's rows only.
    let small = input(1 << 10);
    let got = rt.block_on(async {
        let jobs: Vec<_> = (0..40)
            .map(|_| {
                let (path, frames) = (p.jobs.clone(), small.clone());
                tokio::spawn(async move { exchange(&path, &frames).await })
            })
            .collect();
        let mut all = Vec::new();
        for j in jobs {
            all.push(j.await.unwrap());
        }
        all
    });
    for g in &got {
        assert_eq!(g, &[rows(&["from-b"]), DONE], "{g:?}");
    }
    // Past the buffer (4 x 8 KiB): a job lost on A fails clearly and is not re-run (its results
    // streamed, as the README says of a committed job); none gets two answers or B's rows
    // after A's.
    let big = input(8 << 10);
    let got = rt.block_on(async {
        let jobs: Vec<_> = (0..40)
            .map(|_| {
                let (path, frames) = (p.jobs.clone(), big.clone());
                tokio::spawn(async move { exchange(&path, &frames).await })
            })
            .collect();
        let mut all = Vec::new();
        for j in jobs {
            all.push(j.await.unwrap());
        }
        all
    });
    let mut lost = 0;
    for g in &got {
        match g.as_slice() {
            [r, d] if *r == rows(&["from-b"]) && *d == DONE => {}
            [m @ Message::Failed { code, reason }]
            | [Message::Rows { .. }, m @ Message::Failed { code, reason }] => {
                assert_eq!(code, "PROXY-ENCLAVE-LOST", "{m:?}");
                assert!(reason.contains("replay buffer"), "{reason}");
                lost += 1;
            }
            other => panic!("a job past the buffer ended {other:?}"),
        }
    }
    let s = p.status();
    let a_jobs = a.jobs.load(Ordering::SeqCst);
    assert!(a_jobs > 0, "A got no job: {s}");
    let (last, idle) = until_idle(Duration::from_secs(30), || p.status());
    assert!(idle, "{last}");
    let s = p.status();
    // Every job: done once on B, or lost (re-run, or failed past the buffer) on A.
    assert_eq!(each(&s, "done")[1], 80 - lost, "{s}");
    assert_eq!(each(&s, "done")[0], 0, "{s}");
    assert_eq!(
        sum(&s, "rerun") + each(&s, "failed")[0].as_u64().unwrap(),
        u64::try_from(a_jobs).unwrap(),
        "{s}"
    );
}
