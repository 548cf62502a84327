//! A golden image: the builder's bytes for fixed inputs are pinned in `testdata/eif/minimal.eif`
//! (so any change to the layout, the cpio writer or the CRC shows), and its PCRs are pinned to
//! values computed independently, by hand, with Python's `hashlib` and `zlib` from the file
//! (see the README's "How the measurement was checked").
//!
//! `CLOISTER_BLESS=1 cargo test -p cloister-eif --test golden` rewrites the file.
#![allow(clippy::unwrap_used)]

use cloister_eif::cpio::Entry;
use cloister_eif::{Image, Ramdisk, describe};

const PCR0: &str = "9da08ea0babdf687267283548f285080124260101e28a737747ccfaf1fa7aa4d298f5f1e45d2aa9059a30a0850a5463c";
const PCR1: &str = "8f2d594ee52e62a31245d68933f80c7a22e85a2eb7c31256dd87e680306d1d874f5885c36581378b806feb6d9d641fe7";
const PCR2: &str = "37c9b3e640814f4f425d3ef7e9ef2fc50b4c7c1b978e8c34092a4fc7b68d478fa40076912e9adcd74872a411adeb1464";

fn golden_image() -> Image {
    let init = Ramdisk::from_entries(&[
        Entry::file("init", 0o755, b"#!/bin/init\n".to_vec()),
        Entry::char_device("dev/console", 0o600, 5, 1),
        Entry::file("lib/modules/vsock.ko", 0o644, b"\x7fELF module".to_vec()),
    ])
    .unwrap();
    let app =
        Ramdisk::from_entries(&[Entry::file("app/enclave", 0o755, b"enclave".to_vec())]).unwrap();
    Image::new(
        b"not a real bzImage".to_vec(),
        "console=ttyS0 quiet",
        vec![init, app],
    )
}

#[test]
fn golden_image_bytes_and_pcrs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/eif/minimal.eif");
    let (bytes, pcrs) = golden_image().build().unwrap();
    if std::env::var_os("CLOISTER_BLESS").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).unwrap();
    assert!(bytes == golden, "the builder's output changed");
    assert_eq!(describe(&golden).unwrap().pcrs, pcrs);
    assert_eq!(pcrs.pcr0.to_hex(), PCR0);
    assert_eq!(pcrs.pcr1.to_hex(), PCR1);
    assert_eq!(pcrs.pcr2.to_hex(), PCR2);
    assert_eq!(pcrs.pcr8, None);
}
