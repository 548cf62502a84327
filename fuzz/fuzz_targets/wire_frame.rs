//! The host<->enclave frame decoder on arbitrary bytes (both the body decoder and the streaming
//! reader with a small size limit): errors, never panics.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_wire::frame::decode(data);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let mut r = cloister_wire::FrameReader::new(data, Duration::from_millis(10)).with_max(4096);
        for _ in 0..16 {
            match r.next().await {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    });
});
