//! The line handshakes on arbitrary bytes: the relay's side reading an enclave's `CONNECT`,
//! the enclave's side reading a relay's answer, and a hybrid-vsock line: errors, never panics.
#![no_main]

use std::time::Duration;

use cloister_wire::line::read_line;
use cloister_wire::relay::{self, Connect};
use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let _ = relay::accept(tokio::io::join(data, tokio::io::sink())).await;
        if let Ok(req) = Connect::new("kms.example:443") {
            let _ = relay::connect(tokio::io::join(data, tokio::io::sink()), &req).await;
        }
        let _ = read_line(&mut BufReader::new(data), 64, Duration::from_millis(10)).await;
    });
});
