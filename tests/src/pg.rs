//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, a server on
//! 127.0.0.1 and a free port (its unix socket inside the directory), stopped, killed and
//! restarted at will, removed on drop. Never a system service.
//!
//! Debian's server binaries are found in `/usr/lib/postgresql/<N>/bin` (or `$CLOISTER_PG_BIN`;
//! `scripts/lib.sh ensure_postgres` installs them). The server refuses to run as root, so when
//! the tests run as root the directory is given to the `postgres` user and every server command
//! runs as that user (`runuser`); otherwise they run as the current user. Authentication is
//! `trust` (the cluster listens on loopback only and lives as long as the test). `fsync` stays
//! on: tests kill the server and expect committed rows back.
//!
//! Anything missing or failing panics with the command's output: a test never skips silently.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};

/// The superuser the cluster is made with.
pub const SUPERUSER: &str = "postgres";

/// A running (or stopped) throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The OS user the server runs as, when it is not the current one (running as root).
    run_as: Option<User>,
    ca: Option<PathBuf>,
    running: bool,
}

/// The directory of PostgreSQL's server binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/<N>/bin/initdb): \
             run `source scripts/lib.sh && ensure_postgres`, or set CLOISTER_PG_BIN"
        ),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl PgCluster {
    /// A new cluster, started.
    pub fn start() -> Self {
        let mut c = Self::init();
        c.start_server();
        c
    }

    /// A new cluster with TLS on (a fresh CA, see [`PgCluster::ca_path`]; the server's
    /// certificate names `localhost` only), started.
    pub fn start_tls() -> Self {
        let mut c = Self::init();
        c.enable_tls();
        c.start_server();
        c
    }

    fn init() -> Self {
        let bin = bin_dir();
        let run_as = if Uid::effective().is_root() {
            match User::from_name(SUPERUSER) {
                Ok(Some(u)) => Some(u),
                other => panic!(
                    "running as root, and PostgreSQL refuses to: the `{SUPERUSER}` user (made by Debian's postgresql package) is needed to run the test cluster, found {other:?}"
                ),
            }
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("cloister-pg-")
            .tempdir()
            .expect("temporary directory");
        let c = Self {
            dir,
            bin,
            port: free_port(),
            run_as,
            ca: None,
            running: false,
        };
        c.give(c.dir.path());
        std::fs::create_dir(c.socket_dir()).expect("socket directory");
        c.give(&c.socket_dir());
        let data = c.data_dir();
        c.server_cmd(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                // initdb's own files need no fsync (a crash during setup fails the test anyway);
                // the server's fsync stays on.
                "--no-sync".as_ref(),
            ],
        );
        let conf = format!(
            "\n# cloister test cluster\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 200\nshared_buffers = 32MB\nfsync = on\nsynchronous_commit = on\nlog_min_messages = warning\n",
            c.port,
            c.socket_dir().display()
        );
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&path, text).expect("write postgresql.conf");
        c.watchdog();
        c
    }

    /// A detached shell that stops the server and removes the directory once this process is
    /// gone, for clusters that are never dropped (statics, a test process killed).
    fn watchdog(&self) {
        let as_user = match &self.run_as {
            Some(u) => format!("runuser -u {} -- ", u.name),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {as_user}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            dir = self.dir.path().display(),
        );
        use std::os::unix::process::CommandExt;
        // The outer shell only starts the watchdog in the background and exits.
        let status = Command::new("sh")
            .args(["-c", &format!("( {script} ) &")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .status()
            .expect("start the test cluster's watchdog");
        assert!(status.success(), "the test cluster's watchdog: {status}");
    }

    /// The cluster's directory (data, socket, log, TLS material).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) of a [`PgCluster::start_tls`] cluster.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// Hands `path` to the server's user (when running as root).
    fn give(&self, path: &Path) {
        if let Some(u) = &self.run_as {
            chown(path, Some(u.uid), Some(u.gid))
                .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), u.name));
        }
    }

    /// Runs server binary `name` as the server's user; panics with its output if it fails.
    fn server_cmd(&self, name: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(&u.name).arg("--").arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args).current_dir(self.dir.path());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        if !out.status.success() {
            panic!(
                "{} {:?} failed: {}\nserver log:\n{}",
                program.display(),
                args,
                show(&out),
                std::fs::read_to_string(self.log_file()).unwrap_or_default()
            );
        }
        out
    }

    fn start_server(&mut self) {
        let data = self.data_dir();
        let log = self.log_file();
        self.server_cmd(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
                "start".as_ref(),
            ],
        );
        self.running = true;
    }

    /// Starts the server again (same directory and port) after [`PgCluster::stop`] or
    /// [`PgCluster::kill`] (then with crash recovery). Returns once it accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "the test cluster is already running");
        self.start_server();
    }

    /// Stops the server (fast shutdown: sessions are ended, committed work is kept).
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
        self.running = false;
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data_dir();
        self.server_cmd(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// The postmaster's process id.
    pub fn postmaster_pid(&self) -> i32 {
        let pidfile = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} holds no pid: {text:?}", pidfile.display()))
    }

    /// SIGKILLs the postmaster and every backend (as a machine losing power would end them);
    /// [`PgCluster::start_again`] then runs crash recovery.
    pub fn kill(&mut self) {
        let pid = self.postmaster_pid();
        let mut victims = vec![pid];
        victims.extend(children(pid));
        for v in &victims {
            let _ = kill(Pid::from_raw(*v), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while victims
            .iter()
            .any(|v| Path::new(&format!("/proc/{v}")).exists() && !is_zombie(*v))
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL processes {victims:?} outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Give init a moment to reap them: the server takes a zombie for a running postmaster.
        let reaped = Instant::now() + Duration::from_secs(5);
        while Instant::now() < reaped
            && victims
                .iter()
                .any(|v| Path::new(&format!("/proc/{v}")).exists())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every process is dead: the lock files are stale, as after a power loss.
        let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
        let socket = self.socket_dir().join(format!(".s.PGSQL.{}", self.port));
        let _ = std::fs::remove_file(socket.with_extension(format!("{}.lock", self.port)));
        let _ = std::fs::remove_file(&socket);
        self.running = false;
    }

    /// The URL of database `db` (trust authentication over 127.0.0.1, no TLS).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database names here are [a-z0-9_]+: {name:?}"
        );
        let psql = self.bin.join("psql");
        let out = Command::new(&psql)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", psql.display()));
        assert!(
            out.status.success(),
            "CREATE DATABASE {name} failed: {}",
            show(&out)
        );
        self.url(name)
    }

    /// Makes a CA in `dir` (created) and returns its certificate's path (PEM).
    pub fn make_ca(dir: &Path) -> PathBuf {
        make_ca(dir).0
    }

    fn enable_tls(&mut self) {
        let tls = self.dir.path().join("tls");
        let (ca_path, issuer) = make_ca(&tls);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "cloister test PostgreSQL");
        let cert = p.signed_by(&key, &issuer).expect("server certificate");
        let data = self.data_dir();
        let cert_path = data.join("server.crt");
        let key_path = data.join("server.key");
        std::fs::write(&cert_path, cert.pem()).expect("write server.crt");
        std::fs::write(&key_path, key.serialize_pem()).expect("write server.key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        self.give(&cert_path);
        self.give(&key_path);
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
        text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&path, text).expect("write postgresql.conf");
        self.ca = Some(ca_path);
    }
}

/// A fresh CA in `dir`: its certificate's path and its issuer.
fn make_ca(dir: &Path) -> (PathBuf, rcgen::Issuer<'static, rcgen::KeyPair>) {
    std::fs::create_dir_all(dir).expect("CA directory");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "cloister test CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).expect("CA certificate");
    let path = dir.join("ca.pem");
    std::fs::write(&path, cert.pem()).expect("write ca.pem");
    (path, rcgen::Issuer::new(p, key))
}

/// The direct children of process `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| parent(*p) == Some(pid))
        .collect()
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z" || s == "X"))
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let mut cmd = match &self.run_as {
                Some(u) => {
                    let mut c = Command::new("runuser");
                    c.arg("-u")
                        .arg(&u.name)
                        .arg("--")
                        .arg(self.bin.join("pg_ctl"));
                    c
                }
                None => Command::new(self.bin.join("pg_ctl")),
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
