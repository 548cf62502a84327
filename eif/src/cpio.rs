//! A reproducible cpio "newc" (SVR4, magic `070701`) writer for initramfs ramdisks.
//!
//! The same entries give the same bytes, whatever order they are given in: entries are sorted
//! by path (so every directory precedes what it holds), every directory a path implies is
//! written as an entry of its own (mode 0755 unless given), mtime, uid and gid are 0, inodes are
//! numbered 1, 2, ... in that order, and the archive ends with the `TRAILER!!!` entry. Paths
//! are relative (`init`, `dev/console`); a leading `/` is dropped. No compression (the kernel
//! reads an uncompressed cpio as is).
//!
//! [`read`] is the reader of untrusted archives (an EIF's ramdisks): newc only, every header
//! field checked, names and sizes bounded by the input, no panic.

use std::collections::BTreeMap;

use crate::error::EifError;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFLNK: u32 = 0o120_000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with its content.
    File(Vec<u8>),
    /// A directory.
    Directory,
    /// A character device node (`/dev/console` is 5:1).
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A symbolic link to `target`.
    Symlink(String),
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Permission bits (`0o755`); the file type bits come from `kind`.
    pub mode: u32,
    /// What it is.
    pub kind: EntryKind,
}

impl Entry {
    /// A regular file.
    pub fn file(path: impl Into<String>, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        let kind = EntryKind::File(data.into());
        Self {
            path: path.into(),
            mode,
            kind,
        }
    }

    /// A directory.
    pub fn directory(path: impl Into<String>, mode: u32) -> Self {
        let kind = EntryKind::Directory;
        Self {
            path: path.into(),
            mode,
            kind,
        }
    }

    /// A character device node.
    pub fn char_device(path: impl Into<String>, mode: u32, major: u32, minor: u32) -> Self {
        let kind = EntryKind::CharDevice { major, minor };
        Self {
            path: path.into(),
            mode,
            kind,
        }
    }

    /// A symbolic link.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        let kind = EntryKind::Symlink(target.into());
        Self {
            path: path.into(),
            mode: 0o777,
            kind,
        }
    }
}

fn normalize(path: &str) -> Result<String, EifError> {
    let bad = || EifError::Cpio(format!("invalid path {path:?}"));
    let rel = path.strip_prefix('/').unwrap_or(path);
    let ok = !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok { Ok(rel.to_string()) } else { Err(bad()) }
}

/// Writes the archive for these entries.
pub fn archive(entries: &[Entry]) -> Result<Vec<u8>, EifError> {
    let mut tree: BTreeMap<String, (u32, &EntryKind)> = BTreeMap::new();
    for e in entries {
        let path = normalize(&e.path)?;
        if tree
            .insert(path.clone(), (e.mode & 0o7777, &e.kind))
            .is_some()
        {
            return Err(EifError::Cpio(format!("{path} given twice")));
        }
    }
    let paths: Vec<String> = tree.keys().cloned().collect();
    for path in paths {
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match tree.get(parent) {
                Some((_, EntryKind::Directory)) => {}
                Some(_) => return Err(EifError::Cpio(format!("{parent} is not a directory"))),
                None => {
                    tree.insert(parent.to_string(), (0o755, &EntryKind::Directory));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (ino, (path, (mode, kind))) in (1u32..).zip(&tree) {
        let (kind_bits, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match kind {
            EntryKind::File(d) => (S_IFREG, 1, d, (0, 0)),
            EntryKind::Directory => (S_IFDIR, 2, &[], (0, 0)),
            EntryKind::CharDevice { major, minor } => (S_IFCHR, 1, &[], (*major, *minor)),
            EntryKind::Symlink(t) => (S_IFLNK, 1, t.as_bytes(), (0, 0)),
        };
        let fields = Fields {
            ino,
            mode: kind_bits | mode,
            nlink,
            rdev,
        };
        write_entry(&mut out, path, &fields, data)?;
    }
    let trailer = Fields {
        ino: 0,
        mode: 0,
        nlink: 1,
        rdev: (0, 0),
    };
    write_entry(&mut out, TRAILER, &trailer, &[])?;
    Ok(out)
}

struct Fields {
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_entry(out: &mut Vec<u8>, name: &str, f: &Fields, data: &[u8]) -> Result<(), EifError> {
    let too_big = |what: &str| EifError::Cpio(format!("{name}: {what} does not fit in 32 bits"));
    let size = u32::try_from(data.len()).map_err(|_| too_big("size"))?;
    let namesize = u32::try_from(name.len() + 1).map_err(|_| too_big("name"))?;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let header = [
        f.ino, f.mode, 0, 0, f.nlink, 0, size, 0, 0, f.rdev.0, f.rdev.1, namesize, 0,
    ];
    out.extend_from_slice(MAGIC.as_bytes());
    for v in header {
        out.extend_from_slice(format!("{v:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// Longest name [`read`] accepts (Linux's `PATH_MAX`, with its NUL).
pub const MAX_NAME: usize = 4096;
const HEADER_LEN: usize = 110;
const S_IFMT: u32 = 0o170_000;

/// Reads one header field: exactly 8 ASCII hex digits.
fn hex_field(header: &[u8], index: usize) -> Result<u32, EifError> {
    let bad = || EifError::Cpio(format!("header field {index} is not 8 hex digits"));
    let start = 6 + 8 * index;
    let digits = header.get(start..start + 8).ok_or_else(bad)?;
    digits.iter().try_fold(0u32, |acc, &b| {
        let d = char::from(b).to_digit(16).ok_or_else(bad)?;
        Ok((acc << 4) | d)
    })
}

fn to_usize(v: u32) -> Result<usize, EifError> {
    usize::try_from(v).map_err(|_| EifError::Cpio("size does not fit in memory".into()))
}

/// Reads a newc archive (magic `070701`) up to its `TRAILER!!!`, after which only zero padding
/// may follow. Regular files, directories, character devices and symbolic links are returned
/// in archive order, paths normalized as [`archive`] writes them (a `.` entry is skipped and a
/// leading `./` dropped); anything else (another magic, a bad field, a name or size past the
/// end, a block device, FIFO or socket, a repeated path, a missing trailer) is an error.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry>, EifError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut at = 0usize;
    loop {
        let header = bytes
            .get(at..at + HEADER_LEN)
            .ok_or_else(|| EifError::Cpio(format!("truncated header at offset {at}")))?;
        if &header[..6] != MAGIC.as_bytes() {
            return Err(EifError::Cpio(format!(
                "no newc magic 070701 at offset {at}"
            )));
        }
        let mode = hex_field(header, 1)?;
        let size = to_usize(hex_field(header, 6)?)?;
        let rdev = (hex_field(header, 9)?, hex_field(header, 10)?);
        let namesize = to_usize(hex_field(header, 11)?)?;
        if hex_field(header, 12)? != 0 {
            return Err(EifError::Cpio(format!(
                "non-zero check field at offset {at}"
            )));
        }
        for i in [0, 2, 3, 4, 5, 7, 8] {
            hex_field(header, i)?;
        }
        if namesize == 0 || namesize > MAX_NAME {
            return Err(EifError::Cpio(format!(
                "name size {namesize} at offset {at}"
            )));
        }
        let name_start = at + HEADER_LEN;
        let name = bytes
            .get(name_start..name_start + namesize)
            .ok_or_else(|| EifError::Cpio(format!("name past the end at offset {at}")))?;
        let (name, nul) = name.split_at(namesize - 1);
        if nul != [0] || name.contains(&0) {
            return Err(EifError::Cpio(format!(
                "name not NUL-terminated at offset {at}"
            )));
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| EifError::Cpio(format!("name not UTF-8 at offset {at}")))?;
        let data_start = (name_start + namesize).next_multiple_of(4);
        let data_end = data_start
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| EifError::Cpio(format!("{name}: data past the end")))?;
        let data = &bytes[data_start..data_end];
        at = data_end.next_multiple_of(4);
        if name == TRAILER {
            let rest = bytes.get(at..).unwrap_or_default();
            if rest.iter().any(|b| *b != 0) {
                return Err(EifError::Cpio("bytes after the trailer".into()));
            }
            return Ok(entries);
        }
        if name == "." {
            continue;
        }
        let path = normalize(name.strip_prefix("./").unwrap_or(name))?;
        let kind = match mode & S_IFMT {
            S_IFREG => EntryKind::File(data.to_vec()),
            S_IFDIR if data.is_empty() => EntryKind::Directory,
            S_IFCHR if data.is_empty() => EntryKind::CharDevice {
                major: rdev.0,
                minor: rdev.1,
            },
            S_IFLNK => EntryKind::Symlink(
                String::from_utf8(data.to_vec())
                    .map_err(|_| EifError::Cpio(format!("{path}: link target not UTF-8")))?,
            ),
            _ => {
                return Err(EifError::Cpio(format!(
                    "{path}: unsupported entry (mode {mode:o})"
                )));
            }
        };
        if !seen.insert(path.clone()) {
            return Err(EifError::Cpio(format!("{path} appears twice")));
        }
        entries.push(Entry {
            path,
            mode: mode & 0o7777,
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_returns_what_archive_wrote() {
        let entries = [
            Entry::file("init", 0o755, b"binary".to_vec()),
            Entry::char_device("dev/console", 0o600, 5, 1),
            Entry::directory("proc", 0o555),
            Entry::symlink("bin/sh", "/init"),
            Entry::file("etc/cloister/modules", 0o644, b"a.ko\n".to_vec()),
        ];
        let bytes = archive(&entries).unwrap();
        let back = read(&bytes).unwrap();
        let paths: Vec<&str> = back.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["bin", "bin/sh", "dev", "dev/console", "etc", "etc/cloister"]
                .into_iter()
                .chain(["etc/cloister/modules", "init", "proc"])
                .collect::<Vec<_>>()
        );
        for e in &entries {
            assert!(back.contains(e), "{e:?}");
        }
        assert_eq!(archive(&back).unwrap(), bytes);
        // Zero padding after the trailer is accepted (initramfs images are often padded).
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 512]);
        assert_eq!(read(&padded).unwrap(), back);
    }

    #[test]
    fn read_refuses_malformed_archives() {
        let good = archive(&[Entry::file("init", 0o755, b"hi".to_vec())]).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            good[..good.len() - 4].to_vec(),
            good[..100].to_vec(),
            [&good[..], b"x"].concat(),
        ];
        let mut magic = good.clone();
        magic[5] = b'2';
        cases.push(magic);
        let mut sign = good.clone();
        sign[6] = b'+';
        cases.push(sign);
        let mut huge = good.clone();
        huge[6 + 8 * 6..6 + 8 * 7].copy_from_slice(b"FFFFFFFF");
        cases.push(huge);
        let mut name = good.clone();
        name[6 + 8 * 11..6 + 8 * 12].copy_from_slice(b"00100000");
        cases.push(name);
        let mut block = good.clone();
        block[6 + 8..6 + 16].copy_from_slice(b"000061ED");
        cases.push(block);
        let twice = [&good[..good.len() - 124], &good[..]].concat();
        cases.push(twice);
        for (i, c) in cases.iter().enumerate() {
            let e = read(c).unwrap_err();
            assert!(matches!(e, EifError::Cpio(_)), "case {i}: {e:?}");
        }
    }

    #[test]
    fn layout_of_one_file() {
        let a = archive(&[Entry::file("/init", 0o755, b"hi".to_vec())]).unwrap();
        let fields = [
            "00000001", "000081ED", "00000000", "00000000", "00000001", "00000000",
        ];
        let more = [
            "00000002", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000",
        ];
        let expected_header = format!("070701{}{}", fields.concat(), more.concat());
        assert_eq!(&a[..110], expected_header.as_bytes());
        assert_eq!(&a[110..116], b"init\0\0"); // 110 + 5 = 115, padded to 116
        assert_eq!(&a[116..120], b"hi\0\0");
        assert!(a.ends_with(b"TRAILER!!!\0\0\0\0"));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn order_and_implied_directories() {
        let entries = [
            Entry::file("lib/modules/b.ko", 0o644, b"b".to_vec()),
            Entry::char_device("dev/console", 0o600, 5, 1),
            Entry::file("init", 0o755, b"x".to_vec()),
            Entry::file("lib/modules/a.ko", 0o644, b"a".to_vec()),
        ];
        let mut reversed = entries.clone();
        reversed.reverse();
        let a = archive(&entries).unwrap();
        assert_eq!(a, archive(&reversed).unwrap());
        let names = names(&a);
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/a.ko",
                "lib/modules/b.ko",
                TRAILER
            ]
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for p in ["", "/", "a//b", "a/../b", "./a", "a/", "a\0b"] {
            assert!(archive(&[Entry::file(p, 0o644, vec![])]).is_err(), "{p:?}");
        }
        let dup = [
            Entry::file("a", 0o644, vec![]),
            Entry::file("/a", 0o644, vec![]),
        ];
        assert!(archive(&dup).is_err());
        let under_file = [
            Entry::file("a", 0o644, vec![]),
            Entry::file("a/b", 0o644, vec![]),
        ];
        assert!(archive(&under_file).is_err());
    }

    /// The names in an archive, read back by a minimal newc reader.
    fn names(mut a: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap() as usize
            };
            assert_eq!(&a[..6], b"070701");
            let (size, namesize) = (field(6), field(11));
            let name = String::from_utf8(a[110..110 + namesize - 1].to_vec()).unwrap();
            let data_start = (110 + namesize).next_multiple_of(4);
            let next = (data_start + size).next_multiple_of(4);
            out.push(name.clone());
            a = &a[next..];
            if name == TRAILER {
                assert!(a.is_empty());
                return out;
            }
        }
    }
}
