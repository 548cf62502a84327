//! The image the launcher starts, read once into memory: what it measures is what it boots.
//!
//! [`Image::load`] reads the EIF, parses and measures it (`cloister_eif`: PCR0/1/2/8 as Nitro
//! computes them, a signature checked if present) and keeps the bytes; the kernel, cmdline and
//! ramdisks handed to QEMU, and the binary and configuration run in process mode, are taken from
//! those same bytes, never read again from the path.

use std::path::Path;

use anyhow::{Context, Result};
use cloister_eif::SectionType;

use crate::measure::ImagePcrs;

/// The vsock ports of an image (its configuration's `[vsock]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    /// Where the enclave listens for jobs.
    pub(crate) jobs: u32,
    /// Host port of the KMS relay.
    pub(crate) relay: u32,
    /// Host port of the emulated NSM.
    pub(crate) nsm: u32,
}

/// An image in memory, with its measurement.
#[derive(Debug)]
pub(crate) struct Image {
    bytes: Vec<u8>,
    /// PCR0/1/2/8 of the bytes.
    pub(crate) pcrs: ImagePcrs,
}

/// What QEMU boots.
#[derive(Debug)]
pub(crate) struct BootParts {
    /// The kernel section.
    pub(crate) kernel: Vec<u8>,
    /// The cmdline section.
    pub(crate) cmdline: String,
    /// The ramdisks, concatenated in order (the kernel unpacks concatenated newc archives).
    pub(crate) initrd: Vec<u8>,
}

impl Image {
    /// Reads and measures `path`.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let m = cloister_eif::measure(&bytes)
            .with_context(|| format!("measuring {}", path.display()))?;
        Ok(Self {
            pcrs: ImagePcrs::of_eif(&m)?,
            bytes,
        })
    }

    /// Kernel, cmdline and the concatenated ramdisks.
    pub(crate) fn boot_parts(&self) -> Result<BootParts> {
        let eif = cloister_eif::parse(&self.bytes)?;
        let kernel = eif
            .first(SectionType::Kernel)
            .context("the image has no kernel")?
            .to_vec();
        let cmdline = String::from_utf8(
            eif.first(SectionType::Cmdline)
                .context("the image has no cmdline")?
                .to_vec(),
        )
        .context("the image's cmdline is not UTF-8")?;
        let mut initrd = Vec::new();
        for r in eif.sections_of(SectionType::Ramdisk) {
            initrd.extend_from_slice(r.data);
            // newc archives are 4-byte aligned; the kernel skips zero padding between them.
            while initrd.len() % 4 != 0 {
                initrd.push(0);
            }
        }
        Ok(BootParts {
            kernel,
            cmdline,
            initrd,
        })
    }
}

/// The enclave binary, its configuration, and the ports that configuration gives.
#[derive(Debug)]
pub(crate) struct EnclaveFiles {
    /// `/init`.
    pub(crate) init: Vec<u8>,
    /// `/etc/cloister/enclave.toml`, as the image holds it.
    pub(crate) config: Vec<u8>,
    /// Its `[vsock]` ports.
    pub(crate) ports: Ports,
    /// Whether the image is for process mode only (its kernel is not a kernel).
    pub(crate) process_only: bool,
}

impl Image {
    /// `/init` and the configuration, from the measured bytes, in cloister's image layout (the
    /// configuration checked as the enclave checks it). `cloister run` calls this before starting
    /// anything, in either mode: only images laid out exactly as the builder lays them out start.
    pub(crate) fn enclave_files(&self) -> Result<EnclaveFiles> {
        let files = cloister_eif::image_files(&self.bytes)
            .context("the image is not in cloister's layout")?;
        let config = cloister_enclave::config::Config::from_bytes(&files.config)
            .context("the image's configuration")?;
        Ok(EnclaveFiles {
            ports: Ports {
                jobs: config.vsock.jobs_port,
                relay: config.vsock.relay_port,
                nsm: config.vsock.nsm_port,
            },
            init: files.init,
            config: files.config,
            process_only: files.process_only,
        })
    }
}
