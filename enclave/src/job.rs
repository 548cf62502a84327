//! Serving one job: the host sends a `Job`, sealed messages and `EndOfInput`; the enclave answers
//! with progress, per-message failures, result rows and `Done` (or `Failed`).
//!
//! A message contributes to the results only after it has been fully authenticated (header,
//! every frame, signature) and every record in it parsed; otherwise the enclave reports
//! `MessageFailed` naming it and nothing from it is used. A failure to obtain a data key (for
//! example the key policy refusing this enclave's measurements) fails the whole job.

use std::time::Duration;

use cloister_common::ErrorCode;
use cloister_kms_client::{Connector, KmsClient, TlsConnector};
use cloister_nsm::Nsm;
use cloister_sigv4::Credentials;
use cloister_wire::message::{KmsAccess, Operation};
use cloister_wire::{Address, FrameReader, FrameWriter, Message, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use crate::error::EnclaveError;
use crate::kms::{CacheLimits, KeyRelease, RelayConnector};
use crate::stats::Stats;

/// How the enclave reaches the KMS and which keys it uses.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// The host relay's address (vsock port on the parent).
    pub relay: Address,
    /// The KMS endpoint (host:port) the relay is asked for.
    pub endpoint: String,
    /// The TLS server name of the KMS.
    pub server_name: String,
    /// The KMS CA, baked into the enclave image.
    pub ca_pem: Vec<u8>,
    /// Key ARNs this enclave accepts.
    pub accepted_keys: Vec<String>,
    /// Data key cache limits.
    pub cache: CacheLimits,
}

/// How long the enclave waits for the host between frames.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The job's KMS client: TLS pinned to the configured CA, over the host's relay.
fn kms_client(cfg: &KmsConfig, access: &KmsAccess) -> Result<KmsClient, EnclaveError> {
    let relay = RelayConnector::new(cfg.relay.clone(), &cfg.endpoint)?;
    let tls = TlsConnector::new(relay, &cfg.server_name, &cfg.ca_pem)?;
    Ok(client_over(tls, &cfg.server_name, access))
}

/// A KMS client with the job's credentials over `connector`.
fn client_over(connector: impl Connector, host: &str, access: &KmsAccess) -> KmsClient {
    let creds = Credentials {
        access_key_id: access.access_key_id.clone(),
        secret_access_key: Zeroizing::new(access.secret_access_key.expose().to_owned()),
        session_token: access.session_token.as_ref().map(|t| t.expose().to_owned()),
    };
    KmsClient::new(connector, host, access.region.clone(), creds)
}

async fn open_message(
    release: &KeyRelease,
    nsm: &dyn Nsm,
    bytes: &[u8],
    group_by: &Option<String>,
) -> Result<(Stats, u64), EnclaveError> {
    let (header, _) = cloister_esdk::parse_header(bytes)?;
    let key = release.data_key(nsm, &header).await?;
    let plain = cloister_esdk::decrypt(bytes, &key)?;
    let mut stats = Stats::new(group_by.clone());
    let mut records = 0;
    for (i, line) in plain.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(m)) => stats.add(&m),
            _ => return Err(EnclaveError::Record { line: i + 1 }),
        }
        records += 1;
    }
    Ok((stats, records))
}

/// Serves one job on `stream`, reaching the KMS as `cfg` says.
pub async fn serve(cfg: &KmsConfig, nsm: &dyn Nsm, stream: Stream) -> Result<(), EnclaveError> {
    serve_with(stream, nsm, |access| {
        Ok(KeyRelease::new(
            kms_client(cfg, access)?,
            cfg.accepted_keys.clone(),
            cfg.cache,
        ))
    })
    .await
}

/// Serves one job on `stream`; `release` makes the job's key release from its credentials.
async fn serve_with<S: AsyncRead + AsyncWrite>(
    stream: S,
    nsm: &dyn Nsm,
    release: impl FnOnce(&KmsAccess) -> Result<KeyRelease, EnclaveError>,
) -> Result<(), EnclaveError> {
    let (r, w) = tokio::io::split(stream);
    let mut reader = FrameReader::new(r, READ_TIMEOUT);
    let mut writer = FrameWriter::new(w);
    let result = async {
        let (group_by, access) = match reader.next().await? {
            Some(Message::Job {
                op: Operation::Stats { group_by },
                kms,
                ..
            }) => (group_by, kms),
            Some(_) => return Err(EnclaveError::Protocol("the first message must be a Job")),
            None => return Err(EnclaveError::Protocol("connection closed before a Job")),
        };
        let release = release(&access)?;
        drop(access);
        let mut total = Stats::new(group_by.clone());
        let (mut messages, mut records) = (0u64, 0u64);
        loop {
            match reader.next().await? {
                Some(Message::Sealed { name, bytes }) => {
                    match open_message(&release, nsm, &bytes, &group_by).await {
                        Ok((stats, n)) => {
                            total.merge(stats);
                            messages += 1;
                            records += n;
                            writer
                                .send(&Message::Progress { messages, records })
                                .await?;
                        }
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            writer
                                .send(&Message::MessageFailed {
                                    name,
                                    code: e.code().into_owned(),
                                    reason: cloister_common::error::chain(&e),
                                })
                                .await?;
                        }
                    }
                }
                Some(Message::EndOfInput) => {
                    writer.send(&Message::Rows { rows: total.rows() }).await?;
                    writer.send(&Message::Done { messages, records }).await?;
                    return Ok(());
                }
                Some(_) => return Err(EnclaveError::Protocol("unexpected message during a job")),
                None => {
                    return Err(EnclaveError::Protocol(
                        "connection closed before EndOfInput",
                    ));
                }
            }
        }
    }
    .await;
    if let Err(e) = &result {
        let _ = writer
            .send(&Message::Failed {
                code: e.code().into_owned(),
                reason: cloister_common::error::chain(e),
            })
            .await;
    }
    result
}
