//! One `cloister proxy` over three enclaves, with the real binaries of the process-mode pipeline
//! ([`cloister_tests::pipeline`]): three enclaves of the same image under `cloister run
//! --process`, each behind a stable address (a symlink to its launcher's socket, as a microVM's
//! vsock CID stays the same across restarts), and `cloister proxy status --json` as the witness.
//!
//! - jobs spread over all three (least outstanding, ties round robin), each with the result a
//!   single enclave gives, and the loads return to 0; a job the enclave answers `Failed` (a
//!   disallowed operation) is not re-run;
//! - an enclave SIGKILLed mid-job: the job is re-run on another enclave and completes once with
//!   the same rows as on a single enclave; jobs submitted meanwhile all complete; `status` shows
//!   the enclave down and the job re-run; restarted on the same address, it comes back up and
//!   takes jobs again.
//!
//! Every wait has a generous deadline and says what did not happen; nothing is timed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cloister_tests::eventually;
use cloister_tests::launcher::{Launched, children, exists};
use cloister_tests::pipeline::{Pipeline, records};
use cloister_tests::proxy_status::{self, each, sum, until_idle};
use cloister_tests::{binary, outcome};
use cloister_wire::message::Operation;
use cloister_wire::{FrameReader, Message};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// The proxy's status socket.
fn status_addr(p: &Pipeline) -> String {
    format!(
        "unix://{}",
        p.dir.path().join("proxy/status.sock").display()
    )
}

/// `cloister proxy status --json`.
fn status(p: &Pipeline) -> Value {
    proxy_status::read(&status_addr(p))
}

/// An enclave's launcher and the stable address the proxy knows it by.
struct Enclave {
    /// Its launcher, unless it is the pipeline's own.
    launched: Option<Launched>,
    launcher_pid: u32,
    link: PathBuf,
    port: String,
}

impl Enclave {
    fn address(&self) -> String {
        format!("unix://{}#{}", self.link.display(), self.port)
    }

    /// Points the stable address at `launched`'s socket (atomically).
    fn point_at(&mut self, launched: Launched) {
        let addr = launched.get("proxy").trim_start_matches("--enclave ");
        let (path, port) = addr
            .strip_prefix("unix://")
            .and_then(|a| a.rsplit_once('#'))
            .unwrap_or_else(|| panic!("unexpected enclave address {addr:?}"));
        self.port = port.to_owned();
        let tmp = self.link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(path, &tmp).unwrap();
        std::fs::rename(&tmp, &self.link).unwrap();
        self.launcher_pid = launched.pid();
        self.launched = Some(launched);
    }

    /// The running enclave process: its launcher's child executing the measured binary.
    fn pid(&self) -> u32 {
        let launcher = self.launcher_pid;
        let all = children(launcher);
        let found: Vec<u32> = all
            .iter()
            .copied()
            .filter(|k| {
                std::fs::read_link(format!("/proc/{k}/exe"))
                    .is_ok_and(|e| e.to_string_lossy().starts_with("/memfd:cloister-enclave"))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "enclave children of {launcher}: {found:?} among {all:?}"
        );
        found[0]
    }
}

/// The pipeline (its own enclave first), two more enclaves of its image, and a proxy over the
/// three in replay mode with a status socket; also the `mask` rows of `sealed` as the
/// pipeline's single enclave gives them (through the pipeline's first proxy, in pipe mode).
fn three_enclaves(sealed_records: usize) -> (Pipeline, Vec<Enclave>, PathBuf, Vec<Value>) {
    let mut p = Pipeline::start(None);
    let sealed = p.seal(&records(sealed_records), "records", 3);
    let (code, out, err) = p.submit(&["mask"], &[&sealed]);
    assert_eq!(code, 0, "the single-enclave reference run: {err}");
    let reference = rows(&out);
    assert_eq!(reference.len(), sealed_records);

    let links = p.dir.path().join("enclaves");
    std::fs::create_dir_all(&links).unwrap();
    let state = p.dir.path().join("more-state");
    let mut enclaves = Vec::new();
    for i in 0..3 {
        let launched = if i == 0 {
            // The pipeline's own enclave, behind a link like the others.
            None
        } else {
            Some(p.launch_enclave(&state))
        };
        let mut e = Enclave {
            launched: None,
            launcher_pid: p.launched.pid(),
            link: links.join(format!("e{i}.sock")),
            port: String::new(),
        };
        match launched {
            Some(l) => e.point_at(l),
            None => {
                let addr = p.enclave_addr.clone();
                let (path, port) = addr
                    .strip_prefix("unix://")
                    .and_then(|a| a.rsplit_once('#'))
                    .unwrap();
                std::os::unix::fs::symlink(path, &e.link).unwrap();
                e.port = port.to_owned();
            }
        }
        enclaves.push(e);
    }
    let addrs: Vec<String> = enclaves.iter().map(Enclave::address).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let status_socket = status_addr(&p);
    p.restart_proxy_over(
        &addrs,
        &[
            "--status-listen",
            &status_socket,
            "--health-interval",
            "0.5",
        ],
    );
    let s = status(&p);
    assert_eq!(s["mode"], "replay", "{s}");
    assert_eq!(each(&s, "state"), ["up", "up", "up"], "{s}");
    (p, enclaves, sealed, reference)
}

/// The JSON rows `submit` printed.
fn rows(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a broken row {l:?}: {e}")))
        .collect()
}

/// `cloister submit --op mask sealed`, started.
fn spawn_mask(p: &Pipeline, sealed: &Path) -> Child {
    Command::new(binary("cloister"))
        .args(["submit", "--proxy", &p.proxy_addr, "--op", "mask"])
        .arg(sealed)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the submits; each must succeed with `reference`'s rows.
fn all_match(jobs: Vec<Child>, reference: &[Value]) {
    for (i, job) in jobs.into_iter().enumerate() {
        let (code, out, err) = outcome(&job.wait_with_output().unwrap());
        assert_eq!(code, 0, "job {i}: {err}");
        assert_eq!(
            rows(&out),
            reference,
            "job {i}'s rows differ from one enclave's"
        );
    }
}

#[test]
fn jobs_spread_over_three_enclaves_and_a_failed_job_is_not_rerun() {
    let (p, _enclaves, sealed, reference) = three_enclaves(30);
    // Two rounds of six at once: at most the three enclaves' six job slots (max_jobs = 2).
    for _ in 0..2 {
        let jobs: Vec<Child> = (0..6).map(|_| spawn_mask(&p, &sealed)).collect();
        all_match(jobs, &reference);
    }
    let (s, idle) = until_idle(Duration::from_secs(30), || status(&p));
    assert!(idle, "loads did not return to 0: {s}");
    assert_eq!(sum(&s, "done"), 12, "{s}");
    for (i, done) in each(&s, "done").iter().enumerate() {
        assert!(done.as_u64().unwrap() >= 1, "enclave {i} got no job: {s}");
    }
    assert_eq!(sum(&s, "failed") + sum(&s, "rerun"), 0, "{s}");

    // A disallowed operation: the enclave answers Failed, which reaches the client as is, and
    // the job is not sent anywhere else.
    let (code, out, err) = p.submit(&["stats", "--group-by", "name"], &[&sealed]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error[ENC-POLICY]"), "{err}");
    assert!(out.is_empty(), "{out}");
    let s = status(&p);
    assert_eq!(sum(&s, "failed"), 1, "{s}");
    assert_eq!(sum(&s, "rerun"), 0, "{s}");
    assert_eq!(sum(&s, "done"), 12, "{s}");
    assert_eq!(each(&s, "state"), ["up", "up", "up"], "{s}");

    // Every enclave's health was checked, and passed.
    assert!(
        eventually(Duration::from_secs(30), || each(
            &status(&p),
            "last_check_ok"
        )
        .iter()
        .all(|v| v == true)),
        "health checks: {}",
        status(&p)
    );
    // The status socket is the proxy's user's only.
    use std::os::unix::fs::PermissionsExt;
    let socket = p.dir.path().join("proxy/status.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", socket.display());

    // The table for people names every enclave.
    let (code, table, err) = outcome(
        &Command::new(binary("cloister"))
            .args(["proxy", "status", "--status-listen", &status_addr(&p)])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    for a in each(&s, "address") {
        assert!(table.contains(a.as_str().unwrap()), "{table}");
    }
}

/// A raw client: a mask job with all of `sealed`'s messages, held before `EndOfInput`.
struct Held {
    reader: FrameReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Held {
    /// Sends the job and its messages, and returns once the enclave reported them processed.
    async fn start(p: &Pipeline, sealed: &Path) -> Self {
        let path = p.proxy_addr.strip_prefix("unix://").unwrap();
        let (r, w) = UnixStream::connect(path).await.unwrap().into_split();
        let mut held = Self {
            reader: FrameReader::new(r, Duration::from_secs(120)),
            writer: w,
        };
        let messages = cloister_esdk::split(&std::fs::read(sealed).unwrap())
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        held.send(&Message::Job {
            id: 1,
            op: Operation::Mask,
            kms: p.access(),
        })
        .await;
        for (i, bytes) in messages.iter().enumerate() {
            held.send(&Message::Sealed {
                name: format!("m{i}"),
                bytes: bytes.clone(),
            })
            .await;
        }
        let want = messages.len() as u64;
        loop {
            match held.reader.next().await.unwrap() {
                Some(Message::Progress { messages, .. }) if messages == want => return held,
                Some(Message::Progress { .. }) => {}
                other => panic!("the held job got {other:?} before its progress"),
            }
        }
    }

    async fn send(&mut self, msg: &Message) {
        let frame = cloister_wire::frame::encode(msg).unwrap();
        self.writer.write_all(&frame).await.unwrap();
    }

    /// Ends the input and reads the answer to its end: the rows, and the last frame.
    async fn finish(mut self) -> (Vec<Value>, Message) {
        self.send(&Message::EndOfInput).await;
        let mut rows = Vec::new();
        loop {
            match self.reader.next().await.unwrap() {
                Some(Message::Rows { rows: r }) => {
                    rows.extend(r.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()));
                }
                Some(Message::Progress { .. }) => {}
                Some(last) => return (rows, last),
                None => panic!("the connection ended without Done or Failed"),
            }
        }
    }
}

#[test]
fn an_enclave_killed_mid_job_loses_no_job_and_comes_back_on_its_address() {
    let (p, mut enclaves, sealed, reference) = three_enclaves(30);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A job that every enclave it runs on has processed but not finished: it holds its slot
    // until the test sends EndOfInput.
    let held = rt.block_on(Held::start(&p, &sealed));
    let s = status(&p);
    let busy: Vec<usize> = each(&s, "outstanding")
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_u64() == Some(1))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(busy.len(), 1, "one enclave runs the held job: {s}");
    let victim = busy[0];

    let pid = enclaves[victim].pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !exists(pid)),
        "the killed enclave {pid} is still there"
    );

    // Jobs submitted now all complete, once each, with one enclave's result (three: with the
    // held job's re-run, the two enclaves left have four job slots).
    let jobs: Vec<Child> = (0..3).map(|_| spawn_mask(&p, &sealed)).collect();
    all_match(jobs, &reference);
    // The held job was re-run elsewhere (its input replayed): it completes once, with the
    // same rows as on a single enclave.
    let (got, last) = rt.block_on(held.finish());
    assert!(
        matches!(last, Message::Done { .. }),
        "the held job ended {last:?}"
    );
    assert_eq!(
        got, reference,
        "the re-run job's rows differ from one enclave's"
    );

    let (s, idle) = until_idle(Duration::from_secs(30), || status(&p));
    assert!(idle, "loads did not return to 0: {s}");
    assert_eq!(s["enclaves"][victim]["state"], "down", "{s}");
    assert_eq!(s["enclaves"][victim]["rerun"], 1, "{s}");
    assert_eq!(sum(&s, "rerun"), 1, "{s}");
    assert_eq!(
        sum(&s, "done"),
        4,
        "the held job and the three others, once each: {s}"
    );
    assert_eq!(sum(&s, "failed"), 0, "{s}");
    assert!(
        p.proxy.lock().unwrap().contains("is down"),
        "the proxy did not log the state change: {}",
        p.proxy.lock().unwrap()
    );

    // Restarted on the same address: it comes back up and takes jobs again.
    let state = p.dir.path().join("more-state");
    let relaunched = p.launch_enclave(&state);
    enclaves[victim].point_at(relaunched);
    assert!(
        eventually(
            Duration::from_secs(60),
            || status(&p)["enclaves"][victim]["state"] == "up"
        ),
        "the restarted enclave did not come back up: {}",
        status(&p)
    );
    let done = |s: &Value| s["enclaves"][victim]["done"].as_u64().unwrap();
    let before = done(&status(&p));
    // Sequential jobs: the loads tie at 0, so they go to the three enclaves in turn.
    let mut s = Value::Null;
    for _ in 0..6 {
        let (code, out, err) = p.submit(&["mask"], &[&sealed]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(rows(&out), reference);
        s = status(&p);
        if done(&s) > before {
            break;
        }
    }
    assert!(done(&s) > before, "the restarted enclave took no job: {s}");
    assert!(
        p.proxy.lock().unwrap().contains("is up"),
        "the proxy did not log the enclave's return: {}",
        p.proxy.lock().unwrap()
    );
}

#[test]
fn a_job_past_the_replay_buffer_is_not_rerun_and_a_bad_client_costs_only_its_job() {
    let mut p = Pipeline::start(None);
    let sealed = p.seal(&records(30), "records", 3);
    let second = p.launch_enclave(&p.dir.path().join("more-state"));
    let first_addr = p.enclave_addr.clone();
    let second_addr = second
        .get("proxy")
        .trim_start_matches("--enclave ")
        .to_owned();
    let status_socket = status_addr(&p);
    // 1 KiB: the job's first sealed message already outgrows it.
    p.restart_proxy_over(
        &[&first_addr, &second_addr],
        &["--status-listen", &status_socket, "--replay-buffer", "1KiB"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // A client that sends garbage gets a clear error for its job; the proxy goes on.
    let path = p.proxy_addr.strip_prefix("unix://").unwrap().to_owned();
    let answer = rt.block_on(async {
        let (r, mut w) = UnixStream::connect(&path).await.unwrap().into_split();
        w.write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        FrameReader::new(r, Duration::from_secs(60)).next().await
    });
    assert!(
        matches!(&answer, Ok(Some(Message::Failed { code, .. })) if code == "PROXY-BAD-INPUT"),
        "{answer:?}"
    );

    // A job committed to its enclave (past the replay buffer): its results stream as they
    // come, and when its enclave dies it fails, clearly, instead of being re-run.
    let (failed, victim) = rt.block_on(async {
        let (r, mut w) = UnixStream::connect(&path).await.unwrap().into_split();
        let mut reader = FrameReader::new(r, Duration::from_secs(120));
        let messages = cloister_esdk::split(&std::fs::read(&sealed).unwrap())
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>();
        let mut frames = vec![Message::Job {
            id: 2,
            op: Operation::Mask,
            kms: p.access(),
        }];
        frames.extend(messages.iter().enumerate().map(|(i, b)| Message::Sealed {
            name: format!("m{i}"),
            bytes: b.clone(),
        }));
        for f in &frames {
            w.write_all(&cloister_wire::frame::encode(f).unwrap())
                .await
                .unwrap();
        }
        let (mut rows, want) = (0, messages.len() as u64);
        loop {
            match reader.next().await.unwrap() {
                Some(Message::Rows { rows: r }) => rows += r.len(),
                Some(Message::Progress { messages, .. }) if messages == want => break,
                Some(Message::Progress { .. }) => {}
                other => panic!("the committed job got {other:?}"),
            }
        }
        assert_eq!(rows, 30, "a committed job's rows stream before Done");
        let s = status(&p);
        let victim = each(&s, "outstanding")
            .iter()
            .position(|v| v.as_u64() == Some(1))
            .unwrap_or_else(|| panic!("no enclave runs the job: {s}"));
        let launcher = if victim == 0 {
            p.launched.pid()
        } else {
            second.pid()
        };
        let pid = *children(launcher)
            .iter()
            .find(|k| {
                std::fs::read_link(format!("/proc/{k}/exe"))
                    .is_ok_and(|e| e.to_string_lossy().starts_with("/memfd:cloister-enclave"))
            })
            .expect("the enclave process");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let last = reader.next().await;
        (last, victim)
    });
    match &failed {
        Ok(Some(Message::Failed { code, reason })) => {
            assert_eq!(code, "PROXY-ENCLAVE-LOST", "{reason}");
            assert!(reason.contains("replay buffer"), "{reason}");
        }
        other => panic!("the committed job ended {other:?}"),
    }
    let s = status(&p);
    assert_eq!(s["enclaves"][victim]["state"], "down", "{s}");
    assert_eq!(sum(&s, "rerun"), 0, "{s}");
    // The other enclave still serves, through the same proxy.
    let (code, out, err) = p.submit(&["mask"], &[&sealed]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&out).len(), 30);
}
