//! `/dev/nsm`: the NSM API's raw ioctl, `_IOWR(0x0A, 0, struct nsm_raw)`.
//!
//! The only `unsafe` code in cloister is the one ioctl call below: the kernel reads the request
//! buffer and writes at most `response.len` bytes into the response buffer, both of which this
//! function owns for the duration of the call. The ioctl blocks (the NSM signs documents), so
//! calls run on tokio's blocking pool, never on the async runtime's worker threads.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::api::{ErrorCode, MAX_REQUEST, MAX_RESPONSE, Request, Response};
use crate::{Nsm, NsmError, NsmFuture};

/// `struct nsm_iovec` from `linux/nsm.h`.
#[repr(C)]
#[derive(Debug)]
struct NsmIovec {
    addr: u64,
    len: u64,
}

/// `struct nsm_raw` from `linux/nsm.h`.
#[repr(C)]
#[derive(Debug)]
struct NsmRaw {
    request: NsmIovec,
    response: NsmIovec,
}

nix::ioctl_readwrite!(nsm_ioctl_raw, 0x0A, 0, NsmRaw);

/// The NSM device of a Nitro enclave.
#[derive(Debug)]
pub struct DeviceNsm {
    file: Arc<File>,
}

impl DeviceNsm {
    /// The device's path.
    pub const PATH: &'static str = "/dev/nsm";

    /// Opens `/dev/nsm`.
    pub fn open() -> Result<Self, NsmError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(Self::PATH)
            .map_err(|e| NsmError::transport(format!("opening {}", Self::PATH))(Box::new(e)))?;
        Ok(Self {
            file: Arc::new(file),
        })
    }

    fn call_sync(file: &File, request: &Request) -> Result<Response, NsmError> {
        let req = request.to_cbor();
        if req.len() > MAX_REQUEST {
            return Ok(Response::Error(ErrorCode::InputTooLarge));
        }
        let mut resp = vec![0u8; MAX_RESPONSE];
        let mut raw = NsmRaw {
            request: NsmIovec {
                addr: req.as_ptr() as u64,
                len: req.len() as u64,
            },
            response: NsmIovec {
                addr: resp.as_mut_ptr() as u64,
                len: resp.len() as u64,
            },
        };
        // SAFETY: `raw` points at `req` (readable, `req.len()` bytes) and `resp` (writable,
        // `resp.len()` bytes); both outlive the call, and the driver writes at most
        // `response.len` bytes and then updates `response.len` to the length it wrote.
        unsafe { nsm_ioctl_raw(file.as_raw_fd(), &mut raw) }
            .map_err(|e| NsmError::transport("NSM ioctl")(Box::new(e)))?;
        let n = usize::try_from(raw.response.len)
            .unwrap_or(usize::MAX)
            .min(resp.len());
        Ok(Response::from_cbor(&resp[..n])?)
    }
}

impl Nsm for DeviceNsm {
    fn call(&self, request: Request) -> NsmFuture<'_> {
        let file = self.file.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::call_sync(&file, &request))
                .await
                .map_err(|e| NsmError::transport("NSM ioctl thread")(Box::new(e)))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_layout_matches_the_kernel_uapi() {
        assert_eq!(std::mem::size_of::<NsmRaw>(), 32);
        // NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw) = 0xC0200A00 on x86_64 and arm64.
        assert_eq!(
            nix::request_code_readwrite!(0x0A, 0, std::mem::size_of::<NsmRaw>()) as u64,
            0xC020_0A00
        );
    }

    #[test]
    fn opening_matches_the_device_s_presence() {
        match std::path::Path::new(DeviceNsm::PATH).exists() {
            // Inside a Nitro enclave.
            true => assert!(DeviceNsm::open().is_ok()),
            // Anywhere else: a clear error, not a panic.
            false => assert_eq!(
                cloister_common::ErrorCode::code(&DeviceNsm::open().unwrap_err()),
                "NSM-TRANSPORT"
            ),
        }
    }
}
