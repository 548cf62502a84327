//! The enclave's accept loop: one task per job connection, for as long as the enclave runs.
//! Logs say what happened to a job (its error code and message), never a secret.

use std::sync::Arc;

use cloister_common::ErrorCode;
use cloister_nsm::Nsm;
use cloister_wire::Listener;

use crate::job::{self, KmsConfig, Shared};

/// Serves jobs from `listener` forever; a failed accept is logged and the loop goes on. Jobs
/// past the policy's `max_jobs` are answered `ENC-BUSY` (see [`job`]).
pub async fn serve_forever(
    listener: Listener,
    kms: Arc<KmsConfig>,
    shared: Arc<Shared>,
    nsm: Arc<dyn Nsm>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cloister-enclave: accept: error[{}]: {e}", e.code());
                continue;
            }
        };
        let (kms, shared, nsm) = (kms.clone(), shared.clone(), nsm.clone());
        tokio::spawn(async move {
            match job::serve(&kms, &shared, nsm.as_ref(), stream).await {
                Ok(job::Served::Job) => eprintln!("cloister-enclave: job done"),
                Ok(job::Served::Ping) => {}
                Err(e) => eprintln!(
                    "cloister-enclave: job failed: error[{}]: {}",
                    e.code(),
                    cloister_common::chain(&e)
                ),
            }
        });
    }
}
