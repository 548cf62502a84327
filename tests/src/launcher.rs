//! `cloister run` in tests: started in the background, its "ready" report read, its children
//! found, and stopped (killed on drop if a test fails first). Panics on a broken environment:
//! it only ever runs inside tests.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `cloister run`.
#[derive(Debug)]
pub struct Launched {
    child: Option<Child>,
    /// What it printed once ready: `key value` lines.
    pub report: HashMap<String, String>,
    /// The state directory.
    pub state_dir: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `cloister run` with `args` (plus `--state-dir state_dir`) and waits up to `timeout`
/// for its ready report; panics with its stderr if it ends first.
pub fn run(cloister: &Path, state_dir: &Path, args: &[&str], timeout: Duration) -> Launched {
    let mut child = Command::new(cloister)
        .arg("run")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cloister run");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut report = HashMap::new();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let (k, v) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                report.insert(k.to_owned(), v.to_owned());
                if k == "relay" {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let err = err_thread.join().unwrap_or_default();
                panic!("cloister run was not ready within {timeout:?} ({status:?}):\n{err}");
            }
        }
    }
    Launched {
        child: Some(child),
        report,
        state_dir: state_dir.to_path_buf(),
        stderr: Some(err_thread),
    }
}

impl Launched {
    /// A value of the ready report.
    pub fn get(&self, key: &str) -> &str {
        self.report
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.report))
    }

    /// The enclave id.
    pub fn id(&self) -> &str {
        self.get("enclave")
    }

    /// The enclave's folder.
    pub fn dir(&self) -> PathBuf {
        self.state_dir.join(self.id())
    }

    /// The launcher's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Waits for the launcher to end; its status and stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting") {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("cloister run did not end within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, err)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The pids of `pid`'s children.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// The command line of `pid` (empty once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether `pid` still exists (a zombie counts: it would be a child left unreaped).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every Unix socket under `dir` (recursively; symlinks not followed).
pub fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_socket() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
