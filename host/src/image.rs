//! `cloister build-image` and `cloister describe-image`: the enclave image (an EIF) and what it
//! measures.
//!
//! The image holds the kernel, the command line, a bootstrap ramdisk (the static
//! `cloister-enclave` as `/init`, `/dev/console`, the kernel modules and their load order) and an
//! application ramdisk (the configuration, in its canonical form with the KMS CA inline), laid
//! out as `cloister_eif::layout` says. The same inputs give the same bytes and PCRs (unsigned;
//! signed, the same PCRs). `--process-only` images carry a fixed placeholder instead of a kernel:
//! they run only in process mode, which still measures the whole image.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use cloister_eif::{Image, Pcrs, SigningKey, layout};
use cloister_enclave::config::Config;
use serde_json::{Value, json};

use crate::Failure;

/// The modules vsock needs in a microVM with Debian's cloud kernel, in load order (what
/// `qemu/fetch-kernel` keeps).
pub(crate) const STANDARD_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
];

/// Where `scripts/build-enclave` puts the static enclave binary.
const DEFAULT_ENCLAVE_BINARY: &str = "target/x86_64-unknown-linux-gnu/release/cloister-enclave";

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The enclave's configuration (TOML; `kms.ca_file` is read and inlined).
    #[arg(long, value_name = "TOML")]
    config: PathBuf,
    /// The kernel (bzImage), e.g. the `vmlinuz` printed by qemu/fetch-kernel.
    #[arg(long, value_name = "VMLINUZ", required_unless_present = "process_only")]
    kernel: Option<PathBuf>,
    /// Build an image for process mode only: a fixed placeholder instead of a kernel.
    #[arg(long, conflicts_with = "kernel")]
    process_only: bool,
    /// Directory of the kernel modules (`<name>.ko`); default: `modules/` beside the kernel.
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// A module to load, in order (repeatable); default: the standard vsock list.
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// The static enclave binary (see scripts/build-enclave).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ENCLAVE_BINARY)]
    enclave_binary: PathBuf,
    /// The kernel command line (measured).
    #[arg(long, default_value = layout::DEFAULT_CMDLINE)]
    cmdline: String,
    /// Sign the image (sets PCR8): P-384 private key (PEM).
    #[arg(long, value_name = "KEY.pem", requires = "signing_certificate")]
    signing_key: Option<PathBuf>,
    /// The signing key's certificate (PEM).
    #[arg(long, value_name = "CERT.pem", requires = "signing_key")]
    signing_certificate: Option<PathBuf>,
    /// Where to write the image.
    #[arg(long, value_name = "EIF")]
    out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The image.
    #[arg(value_name = "EIF")]
    eif: PathBuf,
    /// Print the description as JSON.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::Input)
}

/// Whether an ELF executable asks for a program interpreter (a dynamic loader): `Some(true)`
/// dynamic, `Some(false)` static (or static-pie), `None` not a 64-bit little-endian ELF.
fn dynamically_linked(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        interp |= u32_at(at)? == PT_INTERP;
    }
    Some(interp)
}

fn rejected(e: impl cloister_common::ErrorCode + std::fmt::Display, context: &str) -> Failure {
    Failure::Rejected {
        code: e.code().into_owned().into(),
        message: format!("{context}: {e}"),
    }
}

/// The configuration in its canonical form.
fn config(path: &Path) -> Result<(Config, String), Failure> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| Failure::Input(anyhow::anyhow!("{} is not UTF-8", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = Config::from_source(&text, base)
        .map_err(|e| rejected(e, &format!("{}", path.display())))?;
    let canonical = config
        .to_toml()
        .map_err(|e| rejected(e, "writing the configuration"))?;
    Ok((config, canonical))
}

/// The modules' file names and bytes, in load order.
fn modules(args: &BuildArgs) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let dir = match (&args.modules_dir, &args.kernel) {
        (Some(dir), _) => dir.clone(),
        (None, Some(kernel)) => kernel.parent().unwrap_or(Path::new(".")).join("modules"),
        (None, None) if args.modules.is_empty() => return Ok(Vec::new()),
        (None, None) => {
            return Err(Failure::Input(anyhow::anyhow!(
                "--module needs --modules-dir (or --kernel with modules/ beside it)"
            )));
        }
    };
    let names: Vec<String> = if args.modules.is_empty() {
        STANDARD_MODULES.iter().map(|m| (*m).to_owned()).collect()
    } else {
        args.modules.clone()
    };
    names
        .iter()
        .map(|name| {
            let file = format!("{name}.ko");
            Ok((file.clone(), read(&dir.join(&file))?))
        })
        .collect()
}

fn pcrs_json(pcrs: &Pcrs) -> Value {
    let mut m = json!({
        "HashAlgorithm": "Sha384 { ... }",
        "PCR0": pcrs.pcr0.to_hex(),
        "PCR1": pcrs.pcr1.to_hex(),
        "PCR2": pcrs.pcr2.to_hex(),
    });
    if let (Some(p8), Some(obj)) = (&pcrs.pcr8, m.as_object_mut()) {
        obj.insert("PCR8".into(), Value::String(p8.to_hex()));
    }
    m
}

fn pcrs_text(pcrs: &Pcrs) -> String {
    let mut s = format!(
        "PCR0 {}\nPCR1 {}\nPCR2 {}\n",
        pcrs.pcr0, pcrs.pcr1, pcrs.pcr2
    );
    if let Some(p8) = &pcrs.pcr8 {
        s.push_str(&format!("PCR8 {p8}\n"));
    }
    s
}

/// `cloister build-image`.
pub(crate) fn build(args: BuildArgs) -> Result<(), Failure> {
    let (_, canonical) = config(&args.config)?;
    let kernel = match &args.kernel {
        Some(path) => read(path)?,
        None => layout::PROCESS_ONLY_KERNEL.to_vec(),
    };
    let init = read(&args.enclave_binary)?;
    match (dynamically_linked(&init), args.kernel.is_some()) {
        (Some(false), _) => {}
        (_, true) => {
            return Err(rejected(
                cloister_eif::EifError::Layout(format!(
                    "{} is not a statically linked ELF executable: a microVM's initramfs has no \
                     loader or libc for it (build it with scripts/build-enclave)",
                    args.enclave_binary.display()
                )),
                "the enclave binary",
            ));
        }
        (_, false) => eprintln!(
            "warning: {} is not a statically linked ELF executable: in process mode the host's \
             loader and libraries would run with it, unmeasured; use scripts/build-enclave for \
             anything but tests",
            args.enclave_binary.display()
        ),
    }
    let modules = modules(&args)?;
    let boot =
        layout::bootstrap_ramdisk(init, &modules).map_err(|e| rejected(e, "bootstrap ramdisk"))?;
    let app = layout::application_ramdisk(canonical.into_bytes())
        .map_err(|e| rejected(e, "application ramdisk"))?;
    let mut image = Image::new(kernel, args.cmdline.clone(), vec![boot, app]);
    if let (Some(key), Some(cert)) = (&args.signing_key, &args.signing_certificate) {
        let key = SigningKey::from_pem(&read(key)?, &read(cert)?)
            .map_err(|e| rejected(e, "signing key"))?;
        image.signing = Some(key);
    }
    let (bytes, pcrs) = image
        .build()
        .map_err(|e| rejected(e, "building the image"))?;
    write_atomically(&args.out, &bytes).map_err(Failure::Input)?;
    let module_names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    if args.json {
        let out = json!({
            "eif": args.out.display().to_string(),
            "size": bytes.len(),
            "process_only": args.kernel.is_none(),
            "modules": module_names,
            "Measurements": pcrs_json(&pcrs),
        });
        println!("{out:#}");
    } else {
        println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
        if args.kernel.is_none() {
            println!(
                "process-only image: the kernel section is a placeholder, it cannot boot in a microVM"
            );
        }
        println!("modules: {}", module_names.join(" "));
        print!("{}", pcrs_text(&pcrs));
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// `cloister describe-image`.
pub(crate) fn describe(args: DescribeArgs) -> Result<(), Failure> {
    let bytes = read(&args.eif)?;
    let d = cloister_eif::describe(&bytes).map_err(|e| rejected(e, "reading the image"))?;
    let files = cloister_eif::image_files(&bytes);
    // What a reviewer compares with what they expect: each section's SHA-384 (the kernel's
    // against the kernel they trust), the cmdline, and /init's.
    let sha384 = |b: &[u8]| hex::encode(<sha2::Sha384 as sha2::Digest>::digest(b));
    let parsed = cloister_eif::parse(&bytes).map_err(|e| rejected(e, "reading the image"))?;
    let section_hashes: Vec<String> = parsed.sections.iter().map(|s| sha384(s.data)).collect();
    let cmdline = parsed
        .first(cloister_eif::SectionType::Cmdline)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    let sections: Vec<Value> = d
        .sections
        .iter()
        .zip(&section_hashes)
        .map(|(s, h)| json!({"type": s.kind.to_string(), "offset": s.offset, "size": s.size, "sha384": h}))
        .collect();
    let init_sha384 = files.as_ref().ok().map(|f| sha384(&f.init));
    let (config_text, config_check, init_size, modules, process_only) = match &files {
        Ok(f) => {
            let text = String::from_utf8_lossy(&f.config).into_owned();
            let check = match Config::from_bytes(&f.config) {
                Ok(_) => "valid".to_owned(),
                Err(e) => format!("invalid: {e}"),
            };
            (
                Some(text),
                check,
                Some(f.init.len()),
                f.modules.clone(),
                f.process_only,
            )
        }
        Err(e) => (
            None,
            format!("not a cloister image: {e}"),
            None,
            vec![],
            false,
        ),
    };
    if args.json {
        let out = json!({
            "eif": args.eif.display().to_string(),
            "size": bytes.len(),
            "sections": sections,
            "signer": d.signer,
            "Measurements": pcrs_json(&d.pcrs),
            "process_only": process_only,
            "init_size": init_size,
            "init_sha384": init_sha384,
            "cmdline": cmdline,
            "modules": modules,
            "config": config_text,
            "config_check": config_check,
        });
        println!("{out:#}");
        return Ok(());
    }
    println!("{} ({} bytes)", args.eif.display(), bytes.len());
    for (s, h) in d.sections.iter().zip(&section_hashes) {
        println!(
            "section {:<9} offset {:>10} size {:>10} sha384 {h}",
            s.kind, s.offset, s.size
        );
    }
    println!("cmdline {cmdline:?}");
    if let Some(signer) = &d.signer {
        println!("signed by {signer}");
    }
    print!("{}", pcrs_text(&d.pcrs));
    if process_only {
        println!("process-only image: the kernel section is a placeholder");
    }
    if let (Some(size), Some(h)) = (init_size, &init_sha384) {
        println!("init: {size} bytes, sha384 {h}");
    }
    println!("modules: {}", modules.join(" "));
    println!("configuration ({config_check}):");
    if let Some(text) = config_text {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        // This test binary is dynamically linked; the static enclave (scripts/build-enclave) is not.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(dynamically_linked(&me), Some(true));
        let mut no_interp = me.clone();
        // Rewrite every PT_INTERP program header into PT_NULL: now it asks for no loader.
        let phoff =
            usize::try_from(u64::from_le_bytes(me[0x20..0x28].try_into().unwrap())).unwrap();
        let (size, num) = (
            usize::from(u16::from_le_bytes(me[0x36..0x38].try_into().unwrap())),
            usize::from(u16::from_le_bytes(me[0x38..0x3a].try_into().unwrap())),
        );
        for i in 0..num {
            let at = phoff + i * size;
            if no_interp[at..at + 4] == 3u32.to_le_bytes() {
                no_interp[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        assert_eq!(dynamically_linked(&no_interp), Some(false));
        assert_eq!(dynamically_linked(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(dynamically_linked(&me[..0x30]), None, "truncated: no panic");
    }

    #[test]
    fn the_standard_modules_are_what_fetch_kernel_keeps() {
        let script = include_str!("../../qemu/fetch-kernel");
        let line = script.lines().find(|l| l.starts_with("MODULES=(")).unwrap();
        let listed: Vec<&str> = line
            .trim_start_matches("MODULES=(")
            .trim_end_matches(')')
            .split_whitespace()
            .collect();
        assert_eq!(listed, STANDARD_MODULES);
    }
}
