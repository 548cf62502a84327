//! `cloister-vinit`: the smallest useful PID 1 for a cloister microVM, for the boot benchmark
//! (`scripts/bench-boot`) and the launcher's tests. It is not the enclave: no NSM client, no
//! jobs, no configuration beyond the module list.
//!
//! As PID 1 it mounts devtmpfs, proc and sysfs, loads the kernel modules listed in
//! `/etc/cloister/modules` (cloister's image layout: one file name of `/lib/modules` a line, in
//! load order; blank lines skipped, already-loaded modules ignored), then serves vsock port 5000: each connection
//! is echoed back, except one whose first line is `HOST <port>`, which is spliced to the host
//! (CID 2) on that port, so a test can check the guest's way to the launcher's sockets. PID 1
//! never returns. Static build: `scripts/bench-boot` shows how.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use vsock::{VMADDR_CID_ANY, VMADDR_CID_HOST, VsockListener, VsockStream};

/// The jobs port of cloister's images.
const PORT: u32 = 5000;
/// Where an image lists its modules, in load order.
const MODULES: &str = "/etc/cloister/modules";

fn log(msg: &str) {
    eprintln!("vinit: {msg}");
}

fn mount_all() {
    use nix::mount::{MsFlags, mount};
    for (src, target, fs) in [
        ("devtmpfs", "/dev", "devtmpfs"),
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(Some(src), target, Some(fs), MsFlags::empty(), None::<&str>) {
            log(&format!("mount {target}: {e}"));
        }
    }
}

fn load_modules() {
    let Ok(list) = std::fs::read_to_string(MODULES) else {
        log(&format!("no {MODULES}"));
        return;
    };
    let empty = CString::default();
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("/lib/modules/{name}");
        let loaded = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nix::kmod::finit_module(&f, &empty, nix::kmod::ModuleInitFlags::empty())
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(()) => {}
            Err(e) if e.contains("EEXIST") => {}
            Err(e) => log(&format!("loading {path}: {e}")),
        }
    }
}

/// Splices two streams until either side closes.
fn splice(a: VsockStream, b: VsockStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

fn serve(stream: VsockStream) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut out = write_half;
    if let Some(port) = first.trim().strip_prefix("HOST ") {
        let Ok(port) = port.parse::<u32>() else {
            let _ = out.write_all(b"ERR bad port\n");
            return;
        };
        match VsockStream::connect_with_cid_port(VMADDR_CID_HOST, port) {
            Ok(host) => {
                let _ = out.write_all(b"OK\n");
                if let Ok(inner) = out.try_clone() {
                    splice(inner, host);
                }
            }
            Err(e) => {
                let _ = out.write_all(format!("ERR {e}\n").as_bytes());
            }
        }
        return;
    }
    if out.write_all(first.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    if std::process::id() == 1 {
        mount_all();
        load_modules();
    }
    loop {
        match VsockListener::bind_with_cid_port(VMADDR_CID_ANY, PORT) {
            Ok(listener) => {
                log(&format!("listening on vsock port {PORT}"));
                for stream in listener.incoming().flatten() {
                    std::thread::spawn(move || serve(stream));
                }
            }
            Err(e) => log(&format!("vsock port {PORT}: {e}")),
        }
        // PID 1 must never exit.
        std::thread::sleep(Duration::from_millis(500));
    }
}
