//! The layout of a cloister enclave image: which file sits where in which ramdisk. The image
//! builder writes it, the enclave (as PID 1) reads it, and the launcher's process mode takes
//! from it the exact measured bytes it runs ([`image_files`]).
//!
//! - bootstrap ramdisk (the first; PCR1 with the kernel and cmdline): `/init` (the static
//!   `cloister-enclave`, 0755), `/dev/console` (char 5:1, 0600), the directories `/dev`, `/proc`,
//!   `/sys`, `/lib/modules`, `/etc/cloister`, the kernel modules as `/lib/modules/<name>.ko`, and
//!   `/etc/cloister/modules` naming them in load order, one per line;
//! - application ramdisk (the second; PCR2): `/etc/cloister/enclave.toml`, the configuration,
//!   and nothing else but its directories.
//!
//! Paths here are relative, as in the archive; the running enclave sees them under `/`.

use crate::cpio::{self, Entry, EntryKind};
use crate::error::EifError;
use crate::format::SectionType;
use crate::image::Ramdisk;
use crate::parse::parse;

/// The enclave binary, run by the kernel as PID 1.
pub const INIT: &str = "init";
/// The console device node.
pub const CONSOLE: &str = "dev/console";
/// Where the kernel modules are.
pub const MODULES_DIR: &str = "lib/modules";
/// The modules' file names in load order, one per line.
pub const MODULES_LIST: &str = "etc/cloister/modules";
/// The enclave's configuration (application ramdisk).
pub const CONFIG: &str = "etc/cloister/enclave.toml";
/// Directories of the bootstrap ramdisk (mount points and the two above).
pub const DIRECTORIES: &[&str] = &["dev", "proc", "sys", "lib/modules", "etc/cloister"];
/// The default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";
/// The kernel section of an image built for process mode only: not a kernel, so such an image
/// cannot boot (QEMU refuses it), but it is measured like any other.
pub const PROCESS_ONLY_KERNEL: &[u8] = b"cloister: process-only image, no kernel\n";

/// The bootstrap ramdisk: `init` and the kernel modules (file name and bytes, in load order).
pub fn bootstrap_ramdisk(
    init: Vec<u8>,
    modules: &[(String, Vec<u8>)],
) -> Result<Ramdisk, EifError> {
    let mut entries = vec![
        Entry::file(INIT, 0o755, init),
        Entry::char_device(CONSOLE, 0o600, 5, 1),
    ];
    entries.extend(DIRECTORIES.iter().map(|d| Entry::directory(*d, 0o755)));
    let mut list = String::new();
    for (name, bytes) in modules {
        if name.is_empty() || name.contains(['/', '\n', '\0']) || name.starts_with('.') {
            return Err(EifError::Cpio(format!("module file name {name:?}")));
        }
        entries.push(Entry::file(
            format!("{MODULES_DIR}/{name}"),
            0o644,
            bytes.clone(),
        ));
        list.push_str(name);
        list.push('\n');
    }
    entries.push(Entry::file(MODULES_LIST, 0o644, list));
    Ramdisk::from_entries(&entries)
}

/// The application ramdisk: the configuration.
pub fn application_ramdisk(config: Vec<u8>) -> Result<Ramdisk, EifError> {
    Ramdisk::from_entries(&[Entry::file(CONFIG, 0o644, config)])
}

/// What process mode runs from an image: the measured bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// `/init` of the bootstrap ramdisk: the enclave binary.
    pub init: Vec<u8>,
    /// `/etc/cloister/enclave.toml` of the application ramdisk.
    pub config: Vec<u8>,
    /// The kernel modules named by `/etc/cloister/modules`, in load order.
    pub modules: Vec<String>,
    /// Whether the kernel is [`PROCESS_ONLY_KERNEL`].
    pub process_only: bool,
}

fn layout(reason: impl Into<String>) -> EifError {
    EifError::Layout(reason.into())
}

fn file<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.path == path)
}

/// Reads an image (every check of [`parse`], CRC included) and takes out the enclave binary
/// and its configuration. The layout must be exactly cloister's: two ramdisks, `/init` a
/// regular executable file in the first, the configuration a regular file in the second, which
/// holds nothing else but directories; the first must not hold the configuration. So what the
/// kernel would unpack and what process mode runs are the same files.
pub fn image_files(eif: &[u8]) -> Result<ImageFiles, EifError> {
    let eif = parse(eif)?;
    let ramdisks: Vec<&[u8]> = eif
        .sections_of(SectionType::Ramdisk)
        .map(|s| s.data)
        .collect();
    let [boot, app] = ramdisks[..] else {
        return Err(layout(format!(
            "{} ramdisks (a bootstrap and an application ramdisk expected)",
            ramdisks.len()
        )));
    };
    let (boot_bytes, app_bytes) = (boot, app);
    let boot = cpio::read(boot)?;
    let app = cpio::read(app)?;
    let init = match file(&boot, INIT) {
        Some(Entry {
            mode,
            kind: EntryKind::File(bytes),
            ..
        }) if mode & 0o111 != 0 => bytes.clone(),
        Some(_) => return Err(layout("/init is not an executable regular file")),
        None => return Err(layout("no /init in the bootstrap ramdisk")),
    };
    if file(&boot, CONFIG).is_some() {
        return Err(layout("the bootstrap ramdisk holds the configuration"));
    }
    let modules = match file(&boot, MODULES_LIST) {
        Some(Entry {
            kind: EntryKind::File(bytes),
            ..
        }) => std::str::from_utf8(bytes)
            .map_err(|_| layout("the module list is not UTF-8"))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect(),
        Some(_) => return Err(layout("the module list is not a regular file")),
        None => Vec::new(),
    };
    let mut config = None;
    for e in &app {
        match (&e.kind, e.path.as_str()) {
            (EntryKind::File(bytes), CONFIG) => config = Some(bytes.clone()),
            (EntryKind::Directory, _) => {}
            (_, path) => {
                return Err(layout(format!(
                    "the application ramdisk holds {path}, not only the configuration"
                )));
            }
        }
    }
    let config = config.ok_or_else(|| layout("no configuration in the application ramdisk"))?;
    // The ramdisks must be exactly what the builder makes of these files: canonical archives of
    // the layout's file set and nothing else. PCR0 hashes the sections end to end with nothing
    // between them, so bytes an archive could hide (entries the reader skips, files the layout
    // does not name) would let one PCR0 stand for two different splits of the same bytes.
    let mut module_files = Vec::with_capacity(modules.len());
    for name in &modules {
        match file(&boot, &format!("{MODULES_DIR}/{name}")) {
            Some(Entry {
                kind: EntryKind::File(bytes),
                ..
            }) => module_files.push((name.clone(), bytes.clone())),
            _ => return Err(layout(format!("module {name} is listed but not present"))),
        }
    }
    if bootstrap_ramdisk(init.clone(), &module_files)?.as_bytes() != boot_bytes {
        return Err(layout(
            "the bootstrap ramdisk is not exactly /init, /dev/console, the listed modules and \
             the layout's directories, canonically archived",
        ));
    }
    if application_ramdisk(config.clone())?.as_bytes() != app_bytes {
        return Err(layout(
            "the application ramdisk is not exactly the configuration, canonically archived",
        ));
    }
    let cmdline = eif.first(SectionType::Cmdline).unwrap_or_default();
    if cmdline
        .split(|b| b.is_ascii_whitespace())
        .any(|arg| arg.starts_with(b"init=") || arg.starts_with(b"rdinit="))
    {
        return Err(layout("the cmdline names another init (init= or rdinit=)"));
    }
    Ok(ImageFiles {
        init,
        config,
        modules,
        process_only: eif.first(SectionType::Kernel) == Some(PROCESS_ONLY_KERNEL),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    fn image(ramdisks: Vec<Ramdisk>) -> Vec<u8> {
        Image::new(PROCESS_ONLY_KERNEL.to_vec(), DEFAULT_CMDLINE, ramdisks)
            .build()
            .unwrap()
            .0
    }

    #[test]
    fn the_files_come_back_out_of_the_image() {
        let modules = vec![
            ("virtio.ko".to_string(), b"m1".to_vec()),
            ("vsock.ko".to_string(), b"m2".to_vec()),
        ];
        let boot = bootstrap_ramdisk(b"ELF".to_vec(), &modules).unwrap();
        let entries = cpio::read(boot.as_bytes()).unwrap();
        let console = file(&entries, CONSOLE).unwrap();
        assert_eq!(console.kind, EntryKind::CharDevice { major: 5, minor: 1 });
        assert_eq!(console.mode, 0o600);
        for d in DIRECTORIES {
            assert_eq!(file(&entries, d).unwrap().kind, EntryKind::Directory, "{d}");
        }
        assert_eq!(
            file(&entries, "lib/modules/vsock.ko").unwrap().kind,
            EntryKind::File(b"m2".to_vec())
        );
        let app = application_ramdisk(b"nsm = \"vsock\"\n".to_vec()).unwrap();
        let files = image_files(&image(vec![boot, app])).unwrap();
        assert_eq!(files.init, b"ELF");
        assert_eq!(files.config, b"nsm = \"vsock\"\n");
        assert_eq!(files.modules, ["virtio.ko", "vsock.ko"]);
        assert!(files.process_only);
    }

    #[test]
    fn other_layouts_are_refused() {
        let boot = || bootstrap_ramdisk(b"ELF".to_vec(), &[]).unwrap();
        let app = || application_ramdisk(b"x".to_vec()).unwrap();
        let cases = [
            vec![boot()],
            vec![boot(), app(), app()],
            vec![app(), app()],
            vec![
                Ramdisk::from_entries(&[Entry::file(INIT, 0o644, b"x".to_vec())]).unwrap(),
                app(),
            ],
            vec![
                boot(),
                Ramdisk::from_entries(&[
                    Entry::file(CONFIG, 0o644, b"x".to_vec()),
                    Entry::file(INIT, 0o755, b"other".to_vec()),
                ])
                .unwrap(),
            ],
            vec![boot(), Ramdisk::from_bytes(b"not a cpio".to_vec())],
            vec![boot(), boot()],
        ];
        for (i, ramdisks) in cases.into_iter().enumerate() {
            let e = image_files(&image(ramdisks)).unwrap_err();
            assert!(
                matches!(e, EifError::Layout(_) | EifError::Cpio(_)),
                "case {i}: {e:?}"
            );
        }
        assert!(bootstrap_ramdisk(vec![], &[("../x".into(), vec![])]).is_err());
    }

    /// A newc entry named `.` carrying `data`: what a hand-made archive can use to hide bytes.
    fn dot_entry(data: &[u8]) -> Vec<u8> {
        let fields = [1, 0o100_644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, 2, 0];
        let mut out = b"070701".to_vec();
        for f in fields {
            out.extend(format!("{f:08x}").into_bytes());
        }
        out.extend(b".\0");
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    #[test]
    fn ramdisks_that_hide_bytes_or_hold_more_than_the_layout_are_refused() {
        let boot = || bootstrap_ramdisk(b"ELF".to_vec(), &[]).unwrap();
        let app = application_ramdisk(b"nsm = \"vsock\"".to_vec()).unwrap();
        // A `.` entry swallowing bytes, ahead of an otherwise canonical archive.
        let mut hiding = dot_entry(b"bytes another split of the image would use");
        hiding.extend(app.as_bytes());
        assert!(
            cpio::read(&hiding).is_ok(),
            "the reader alone would accept it"
        );
        let e = image_files(&image(vec![boot(), Ramdisk::from_bytes(hiding)])).unwrap_err();
        assert_eq!(cloister_common::ErrorCode::code(&e), "EIF-LAYOUT", "{e}");
        // A file the layout does not name, in the bootstrap ramdisk.
        let extra = Ramdisk::from_entries(&[
            Entry::file(INIT, 0o755, b"ELF".to_vec()),
            Entry::char_device(CONSOLE, 0o600, 5, 1),
            Entry::file("other-init", 0o755, b"#!/bin/sh".to_vec()),
        ])
        .unwrap();
        let e = image_files(&image(vec![extra, app.clone()])).unwrap_err();
        assert_eq!(cloister_common::ErrorCode::code(&e), "EIF-LAYOUT", "{e}");
        // A cmdline that names another init.
        let other_init = Image::new(
            PROCESS_ONLY_KERNEL.to_vec(),
            "console=ttyS0 rdinit=/other-init",
            vec![boot(), app],
        )
        .build()
        .unwrap()
        .0;
        let e = image_files(&other_init).unwrap_err();
        assert!(e.to_string().contains("rdinit"), "{e}");
    }
}
