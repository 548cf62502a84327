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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cloister_attestation::PcrValue;
    use cloister_esdk::{DataKey, Edk, Encryptor, Suite};
    use cloister_wire::SecretString;

    use super::*;
    use crate::kms::AWS_KMS;
    use crate::testing::{self, Behaviour, DATA_KEY, FakeKms, KEY_ARN, WRAPPED};

    fn sealed(records: &[&str]) -> Vec<u8> {
        let mut plain = records.join("\n").into_bytes();
        plain.push(b'\n');
        Encryptor::new(Suite::from_id(0x0578).unwrap(), BTreeMap::new(), Some(64))
            .unwrap()
            .seal(
                &DataKey::new(DATA_KEY),
                vec![Edk {
                    provider_id: AWS_KMS.into(),
                    provider_info: KEY_ARN.into(),
                    ciphertext: WRAPPED.to_vec(),
                }],
                &plain,
            )
            .unwrap()
    }

    fn job(group_by: Option<&str>) -> Message {
        Message::Job {
            id: 1,
            op: Operation::Stats {
                group_by: group_by.map(Into::into),
            },
            kms: KmsAccess {
                region: "us-east-1".into(),
                access_key_id: "AKIDTEST".into(),
                secret_access_key: SecretString::new("secret".into()),
                session_token: None,
            },
        }
    }

    /// Runs one job in process: the host's frames in, every answer out.
    async fn run(
        behaviour: Behaviour,
        input: Vec<Message>,
    ) -> (Result<(), EnclaveError>, Vec<Message>) {
        let pcr0 = PcrValue::measure(b"this image");
        let (nsm, root) = testing::nsm(pcr0);
        let kms = FakeKms::new(root, pcr0, behaviour);
        let (host, enclave) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(host);
        let host_side = async move {
            let mut writer = FrameWriter::new(w);
            for m in &input {
                writer.send(m).await.unwrap();
            }
            writer.shutdown().await.unwrap();
            let mut reader = FrameReader::new(r, Duration::from_secs(10));
            let mut out = Vec::new();
            while let Ok(Some(m)) = reader.next().await {
                let last = matches!(m, Message::Done { .. } | Message::Failed { .. });
                out.push(m);
                if last {
                    break;
                }
            }
            out
        };
        let enclave_side = serve_with(enclave, &nsm, |_| {
            Ok(KeyRelease::new(
                testing::client(&kms),
                vec![KEY_ARN.into()],
                CacheLimits::default(),
            ))
        });
        tokio::join!(enclave_side, host_side)
    }

    #[tokio::test]
    async fn a_job_counts_only_authenticated_messages_and_reports_the_others() {
        let good = sealed(&[
            r#"{"country":"FR","age":30}"#,
            r#"{"country":"FR","age":50}"#,
        ]);
        let mut tampered = sealed(&[r#"{"country":"DE","age":99}"#]);
        let n = tampered.len();
        tampered[n - 120] ^= 1;
        let not_records = sealed(&["[1,2,3]"]);
        let (result, out) = run(
            Behaviour::Release,
            vec![
                job(Some("country")),
                Message::Sealed {
                    name: "good".into(),
                    bytes: good,
                },
                Message::Sealed {
                    name: "tampered".into(),
                    bytes: tampered,
                },
                Message::Sealed {
                    name: "array".into(),
                    bytes: not_records,
                },
                Message::EndOfInput,
            ],
        )
        .await;
        result.unwrap();
        let failed: Vec<(&str, &str)> = out
            .iter()
            .filter_map(|m| match m {
                Message::MessageFailed { name, code, .. } => Some((name.as_str(), code.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 2, "{out:?}");
        assert_eq!(failed[0].0, "tampered");
        assert!(failed[0].1.starts_with("ESDK-"), "{failed:?}");
        assert_eq!(failed[1], ("array", "ENC-RECORD"));
        let Some(Message::Rows { rows }) = out.iter().find(|m| matches!(m, Message::Rows { .. }))
        else {
            panic!("no rows: {out:?}")
        };
        assert_eq!(
            rows.len(),
            1,
            "only FR: the DE record was in the tampered message"
        );
        let row: serde_json::Value = serde_json::from_str(&rows[0]).unwrap();
        assert_eq!(row["count"], 2);
        assert!(
            matches!(
                out.last(),
                Some(Message::Done {
                    messages: 1,
                    records: 2
                })
            ),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_release_fails_the_whole_job_with_the_kms_code() {
        let (result, out) = run(
            Behaviour::Deny,
            vec![
                job(None),
                Message::Sealed {
                    name: "m".into(),
                    bytes: sealed(&[r#"{"a":1}"#]),
                },
                Message::EndOfInput,
            ],
        )
        .await;
        assert_eq!(result.unwrap_err().code(), "KMS-AccessDeniedException");
        assert!(
            matches!(out.last(), Some(Message::Failed { code, .. }) if code == "KMS-AccessDeniedException"),
            "{out:?}"
        );
        assert!(!out.iter().any(|m| matches!(m, Message::Rows { .. })));
    }

    #[tokio::test]
    async fn the_host_must_start_with_a_job_and_end_its_input() {
        let (result, out) = run(Behaviour::Release, vec![Message::EndOfInput]).await;
        assert_eq!(result.unwrap_err().code(), "ENC-PROTOCOL");
        assert!(matches!(out.last(), Some(Message::Failed { code, .. }) if code == "ENC-PROTOCOL"));
        // A job whose connection closes before EndOfInput produces no rows.
        let (result, out) = run(Behaviour::Release, vec![job(None)]).await;
        assert!(result.is_err());
        assert!(!out.iter().any(|m| matches!(m, Message::Rows { .. })));
    }
}
