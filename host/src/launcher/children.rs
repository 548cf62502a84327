//! Children that end with the launcher: every child (vhost-device-vsock, QEMU, the enclave in
//! process mode) is started through `cloister __spawn`, a few lines of this same binary that
//! set `PR_SET_PDEATHSIG` (SIGKILL) on themselves, check the launcher is still their parent, and
//! `execve` the real program. That is how a child gets a parent-death signal without `unsafe`
//! code in the launcher (`Command::pre_exec` is `unsafe`).
//!
//! The shim is the launcher's own image (`/proc/self/exe`, resolved by the kernel, so no path
//! the host can swap), runs on the thread that forked it (the launcher's single runtime thread,
//! which lives as long as the launcher), and keeps only the file descriptors the launcher made
//! inheritable. `--empty-env` execs with an empty environment (the enclave's rule).
//!
//! [`stop`] ends a child: SIGTERM, a grace period, SIGKILL, and always a reap, so no zombie.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

/// `cloister __spawn`: internal, run by the launcher only.
#[derive(Debug, Args)]
pub(crate) struct SpawnArgs {
    /// The launcher's pid: if it is already gone, do not start.
    #[arg(long)]
    parent: u32,
    /// Exec with an empty environment.
    #[arg(long)]
    empty_env: bool,
    /// A descriptor the program inherits (repeatable); every other one above 2 is closed.
    #[arg(long = "keep-fd")]
    keep_fds: Vec<i32>,
    /// The program to exec (absolute; `/proc/<pid>/fd/<n>` for a memfd), then its argv[0..].
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true)]
    argv: Vec<OsString>,
}

fn cstring(s: &OsString) -> Result<CString> {
    CString::new(s.as_bytes()).context("an argument holds a NUL byte")
}

/// The shim's body: never returns on success.
pub(crate) fn spawn_shim(args: SpawnArgs) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    // The launcher may have died between fork and prctl: then nobody would kill us.
    if nix::unistd::getppid().as_raw().unsigned_abs() != args.parent {
        bail!("the launcher is gone");
    }
    let mut argv = args.argv.iter().map(cstring);
    let program = argv.next().context("no program")??;
    let rest: Vec<CString> = argv.collect::<Result<_>>()?;
    let env: Vec<CString> = if args.empty_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).context("an environment variable holds a NUL byte")
            })
            .collect::<Result<_>>()?
    };
    close_other_fds(&args.keep_fds)?;
    let err = nix::unistd::execve(&program, &rest, &env);
    bail!("exec {}: {err:?}", program.to_string_lossy())
}

/// Closes every descriptor above 2 but `keep`: the program gets what the launcher meant it to
/// have, not whatever the launcher's own caller left open.
fn close_other_fds(keep: &[i32]) -> Result<()> {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // The directory's own descriptor is already closed: EBADF is expected for it.
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}

/// Stdout and stderr appended to `log` (created 0600).
fn stdio(log: &Path) -> Result<(Stdio, Stdio)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

/// Starts `program argv[0] args...` through the shim: killed if the launcher dies, killed on
/// drop, stdin closed, stdout and stderr appended to `log`.
pub(crate) fn spawn(
    program: &Path,
    argv0: &str,
    args: &[OsString],
    empty_env: bool,
    keep_fds: &[i32],
    log: &Path,
) -> Result<Child> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("__spawn")
        .arg("--parent")
        .arg(std::process::id().to_string());
    if empty_env {
        cmd.arg("--empty-env");
    }
    for fd in keep_fds {
        cmd.arg("--keep-fd").arg(fd.to_string());
    }
    cmd.arg("--").arg(program).arg(argv0).args(args);
    let (o, e) = stdio(log)?;
    cmd.stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// Ends `child`: SIGTERM, up to `grace` to exit, then SIGKILL; always reaped.
pub(crate) async fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Finds `name` on PATH or in `~/.cargo/bin` (where `cargo install` puts it).
pub(crate) fn find_program(name: &str) -> Result<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(cargo) = std::env::var_os("CARGO_HOME") {
        dirs.push(std::path::PathBuf::from(cargo).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found on PATH or in ~/.cargo/bin: run qemu/setup"))
}
