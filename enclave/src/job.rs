//! Serving one job: the host sends a `Job`, sealed messages and `EndOfInput`; the enclave answers
//! with results as they are ready (`Rows`, `Resealed`), progress (counts only), per-message
//! failures, and `Done` (or `Failed`).
//!
//! - The job's request is checked against the disclosure policy first ([`Operations::plan`]):
//!   a job asking for more than the policy allows is refused before any key is released.
//! - A message contributes only after it has been fully authenticated (header, every frame,
//!   signature) and every record in it parsed; otherwise the enclave reports `MessageFailed`
//!   naming it and nothing from it is used. A failure to obtain a data key (for example the key
//!   policy refusing this enclave's measurements) fails the whole job.
//! - Messages are processed one at a time, so a job larger than the enclave's memory streams
//!   through it. The enclave serves at most `operations.max_jobs` jobs at once (`ENC-BUSY`); a
//!   connection has 10 s to send its `Job`, and a host that stops reading or writing is waited
//!   for at most [`IO_TIMEOUT`].
//! - A connection that starts with `Ping` (the proxy's health probe) is answered `Pong` and
//!   closed: no slot, no job, nothing logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_common::ErrorCode;
use cloister_kms_client::{Connector, KmsClient, TlsConnector};
use cloister_nsm::Nsm;
use cloister_sigv4::Credentials;
use cloister_wire::message::{KmsAccess, Operation};
use cloister_wire::{Address, FrameReader, FrameWriter, Message, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use crate::budget::Ledger;
use crate::error::EnclaveError;
use crate::kms::{CacheLimits, KeyRelease, RelayConnector};
use crate::ops::mask::mask;
use crate::ops::reseal::Resealer;
use crate::ops::stats::Stats;
use crate::ops::tokenize::{TokenKey, tokenize};
use crate::policy::{Budget, MaskPolicy, Operations, Plan, TokenKeySource, TokenizePolicy};
use crate::record;
use crate::secrets::SecretSpec;

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

/// How long the enclave waits for the host to send the next frame or take the last one.
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a new connection may take to send its `Job`.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a failed job keeps reading what the host still sends, so `Failed` reaches it.
const LINGER: Duration = Duration::from_secs(2);

/// Most result bytes in one `Rows` frame (well under the frame limit).
const ROWS_PER_FRAME: usize = 1 << 20;

/// What every job shares: the disclosure policy, the stats ledger, the job slots, the secrets
/// the configuration lists and those fetched.
#[derive(Debug)]
pub struct Shared {
    ops: Operations,
    ledger: Ledger,
    slots: Arc<tokio::sync::Semaphore>,
    secrets: Vec<SecretSpec>,
}

impl Shared {
    /// Shared state for jobs under `ops`, with no secrets.
    pub fn new(ops: Operations) -> Self {
        Self::with_secrets(ops, Vec::new())
    }

    /// Shared state for jobs under `ops`, which may fetch `secrets` (the configuration's).
    pub fn with_secrets(ops: Operations, secrets: Vec<SecretSpec>) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(ops.max_jobs as usize));
        Self {
            ops,
            ledger: Ledger::new(),
            slots,
            secrets,
        }
    }
}

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

/// A running operation's state.
enum Running {
    Stats {
        total: Stats,
        budget: Budget,
        charged: Vec<String>,
    },
    Mask(MaskPolicy),
    Tokenize(TokenizePolicy, Box<TokenKey>),
    Reseal(Resealer),
    /// The secrets' report rows, and the first fetch that failed.
    Secrets(Vec<String>, Option<EnclaveError>),
}

/// What one message produced.
enum Output {
    /// Counted into the job's aggregate.
    Counted,
    /// Result rows to send.
    Rows(Vec<String>),
    /// The message resealed.
    Resealed(Vec<u8>),
}

/// The job's tools: its key release, the NSM, the shared state (ledger, secrets).
struct Tools<'a> {
    release: &'a KeyRelease,
    nsm: &'a dyn Nsm,
    ledger: &'a Ledger,
    shared: &'a Shared,
}

fn record_error(line: usize) -> impl Fn(record::RecordError) -> EnclaveError {
    move |e| EnclaveError::Record { line, reason: e.0 }
}

/// Each record of `plain` written by `write`, as result rows.
fn rows_of(
    plain: &[u8],
    mut write: impl FnMut(&record::Record, &mut Vec<u8>),
) -> Result<(Vec<String>, u64), EnclaveError> {
    let mut rows = Vec::new();
    let mut line = Vec::new();
    for (n, text) in record::lines(plain) {
        let r = record::parse(text).map_err(record_error(n))?;
        line.clear();
        write(&r, &mut line);
        rows.push(
            String::from_utf8(std::mem::take(&mut line))
                .map_err(|_| EnclaveError::Protocol("a result row is not UTF-8"))?,
        );
    }
    let n = rows.len() as u64;
    Ok((rows, n))
}

impl Running {
    /// Starts the plan: releases what the operation needs before any record is read.
    async fn start(plan: Plan, token_key: &[u8], tools: &Tools<'_>) -> Result<Self, EnclaveError> {
        Ok(match plan {
            Plan::Stats(p) => Self::Stats {
                budget: p.budget,
                total: Stats::new(p),
                charged: Vec::new(),
            },
            Plan::Mask(p) => Self::Mask(p),
            Plan::Tokenize(p) => {
                let key = match p.key_source()? {
                    // The plan checked that the job passed a key, or none for a secret.
                    TokenKeySource::Wrapped(arn) => {
                        let key = tools.release.token_key(tools.nsm, arn, token_key).await?;
                        TokenKey::new(&key)
                    }
                    TokenKeySource::Secret(name) => {
                        let spec = tools
                            .shared
                            .secrets
                            .iter()
                            .find(|s| s.name == name)
                            .ok_or_else(|| {
                                EnclaveError::Config(format!("no [[secrets]] entry {name:?}"))
                            })?;
                        let fetched =
                            crate::secrets::fetch(tools.release.client(), tools.nsm, spec).await?;
                        TokenKey::from_secret(fetched.value.bytes())?
                    }
                };
                Self::Tokenize(p, Box::new(key))
            }
            Plan::Reseal { target_key } => Self::Reseal(Resealer::new(target_key)),
            Plan::Secrets(p) => {
                let (rows, failure) = crate::secrets::fetch_all(
                    tools.release.client(),
                    tools.nsm,
                    &tools.shared.secrets,
                    p.report_length,
                )
                .await;
                Self::Secrets(rows, failure)
            }
        })
    }

    /// One sealed message: authenticated whole, then the operation over its records. Returns
    /// what to send and how many records it held.
    async fn message(
        &mut self,
        bytes: &[u8],
        tools: &Tools<'_>,
    ) -> Result<(Output, u64), EnclaveError> {
        if let Self::Secrets(..) = self {
            return Err(EnclaveError::Protocol(
                "the secrets operation takes no sealed input",
            ));
        }
        let (header, _) = cloister_esdk::parse_header(bytes)?;
        if let Self::Stats {
            budget, charged, ..
        } = self
        {
            let arn = tools.release.accepted_key(&header)?;
            if !charged.iter().any(|c| c == arn) {
                tools.ledger.charge("stats", arn, *budget, Instant::now())?;
                charged.push(arn.to_owned());
            }
        }
        let key = tools.release.data_key(tools.nsm, &header).await?;
        let plain = cloister_esdk::decrypt(bytes, &key)?;
        drop(key);
        match self {
            Self::Stats { total, .. } => {
                let mut one = total.empty_like();
                let mut n = 0;
                for (line, text) in record::lines(&plain) {
                    one.add(&record::parse(text).map_err(record_error(line))?)?;
                    n += 1;
                }
                total.merge(one)?;
                Ok((Output::Counted, n))
            }
            Self::Mask(p) => {
                let (rows, n) = rows_of(&plain, |r, out| mask(p, r, out))?;
                Ok((Output::Rows(rows), n))
            }
            Self::Tokenize(p, key) => {
                let (rows, n) = rows_of(&plain, |r, out| tokenize(p, key, r, out))?;
                Ok((Output::Rows(rows), n))
            }
            Self::Reseal(r) => {
                let n = record::lines(&plain).count() as u64;
                let sealed = r.reseal(tools.release, tools.nsm, &header, &plain).await?;
                Ok((Output::Resealed(sealed), n))
            }
            Self::Secrets(..) => Err(EnclaveError::Protocol(
                "the secrets operation takes no sealed input",
            )),
        }
    }

    /// What is left to send at the end (the aggregate rows, the secrets' report), and a failure
    /// to report after them (a secret that could not be fetched).
    fn finish(self) -> Result<(Vec<String>, Option<EnclaveError>), EnclaveError> {
        match self {
            Self::Stats { total, .. } => Ok((total.rows()?, None)),
            Self::Secrets(rows, failure) => Ok((rows, failure)),
            _ => Ok((Vec::new(), None)),
        }
    }
}

/// Sends `msg`, waiting at most [`IO_TIMEOUT`] for the host to take it.
async fn send<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    msg: &Message,
) -> Result<(), EnclaveError> {
    match tokio::time::timeout(IO_TIMEOUT, writer.send(msg)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(cloister_wire::WireError::Timeout(IO_TIMEOUT).into()),
    }
}

/// Sends rows in frames of at most [`ROWS_PER_FRAME`] bytes.
async fn send_rows<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    rows: Vec<String>,
) -> Result<(), EnclaveError> {
    let mut batch = Vec::new();
    let mut size = 0;
    for row in rows {
        if size + row.len() > ROWS_PER_FRAME && !batch.is_empty() {
            send(
                writer,
                &Message::Rows {
                    rows: std::mem::take(&mut batch),
                },
            )
            .await?;
            size = 0;
        }
        size += row.len();
        batch.push(row);
    }
    if !batch.is_empty() {
        send(writer, &Message::Rows { rows: batch }).await?;
    }
    Ok(())
}

/// What a connection was, once served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A job, which ended `Done`.
    Job,
    /// A health probe, answered `Pong`.
    Ping,
}

/// Serves one job (or health probe) on `stream`, reaching the KMS as `cfg` says.
pub async fn serve(
    cfg: &KmsConfig,
    shared: &Shared,
    nsm: &dyn Nsm,
    stream: Stream,
) -> Result<Served, EnclaveError> {
    serve_with(stream, shared, nsm, |access| {
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
    shared: &Shared,
    nsm: &dyn Nsm,
    release: impl FnOnce(&KmsAccess) -> Result<KeyRelease, EnclaveError>,
) -> Result<Served, EnclaveError> {
    let (r, w) = tokio::io::split(stream);
    let mut reader = FrameReader::new(r, IO_TIMEOUT);
    let mut writer = FrameWriter::new(w);
    let result = async {
        let first = tokio::time::timeout(JOB_TIMEOUT, reader.next())
            .await
            .map_err(|_| cloister_wire::WireError::Timeout(JOB_TIMEOUT))??;
        if first == Some(Message::Ping) {
            send(&mut writer, &Message::Pong).await?;
            let _ = writer.shutdown().await;
            return Ok(Served::Ping);
        }
        // A slot is taken once a Job arrives: idle connections hold none.
        let _slot = shared
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| EnclaveError::Busy(shared.ops.max_jobs))?;
        let (op, access) = match first {
            Some(Message::Job { op, kms, .. }) => (op, kms),
            Some(_) => return Err(EnclaveError::Protocol("the first message must be a Job")),
            None => return Err(EnclaveError::Protocol("connection closed before a Job")),
        };
        let plan = shared.ops.plan(&op)?;
        let token_key = match op {
            Operation::Tokenize { token_key } => token_key,
            _ => Vec::new(),
        };
        let release = release(&access)?;
        drop(access);
        let tools = Tools {
            release: &release,
            nsm,
            ledger: &shared.ledger,
            shared,
        };
        let mut running = Running::start(plan, &token_key, &tools).await?;
        let (mut messages, mut records) = (0u64, 0u64);
        loop {
            match reader.next().await? {
                Some(Message::Sealed { name, bytes }) => {
                    match running.message(&bytes, &tools).await {
                        Ok((output, n)) => {
                            match output {
                                Output::Counted => {}
                                Output::Rows(rows) => send_rows(&mut writer, rows).await?,
                                Output::Resealed(bytes) => {
                                    send(&mut writer, &Message::Resealed { name, bytes }).await?
                                }
                            }
                            messages += 1;
                            records += n;
                            send(&mut writer, &Message::Progress { messages, records }).await?;
                        }
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            let failed = Message::MessageFailed {
                                name,
                                code: e.code().into_owned(),
                                reason: cloister_common::error::chain(&e),
                            };
                            send(&mut writer, &failed).await?;
                        }
                    }
                }
                Some(Message::EndOfInput) => {
                    let (rows, failure) = running.finish()?;
                    send_rows(&mut writer, rows).await?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    send(&mut writer, &Message::Done { messages, records }).await?;
                    return Ok(Served::Job);
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
        let failed = Message::Failed {
            code: e.code().into_owned(),
            reason: cloister_common::error::chain(e),
        };
        if send(&mut writer, &failed).await.is_ok() {
            // A lingering close: the host may still be sending input. Closing with its bytes
            // unread would reset the connection, and the proxy could drop `Failed` before the
            // client reads it; so end our side and read (and drop) what comes, briefly.
            let _ = writer.shutdown().await;
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(Some(_)) = reader.next().await {}
            })
            .await;
        }
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

    const POLICY: &str = r#"
max_jobs = 1
[stats]
group_by = ["country"]
aggregate = ["age"]
emit = ["count", "sum"]
min_group_size = 2
small_groups = "other"
max_groups = 10
budget = { jobs = 2, window_secs = 3600 }
[mask]
keep_last = { card = 4 }
clear = ["country"]
"#;

    fn shared() -> Arc<Shared> {
        let ops: Operations = toml::from_str(POLICY).unwrap();
        ops.validate().unwrap();
        Arc::new(Shared::new(ops))
    }

    fn job(group_by: Option<&str>) -> Message {
        job_of(Operation::Stats {
            group_by: group_by.map(Into::into),
            fields: vec![],
        })
    }

    fn job_of(op: Operation) -> Message {
        Message::Job {
            id: 1,
            op,
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
    ) -> (Result<Served, EnclaveError>, Vec<Message>) {
        let (result, out, _) = run_on(&shared(), behaviour, input).await;
        (result, out)
    }

    /// As [`run`], with `shared` state, also counting the KMS's Decrypt calls.
    async fn run_on(
        shared: &Shared,
        behaviour: Behaviour,
        input: Vec<Message>,
    ) -> (Result<Served, EnclaveError>, Vec<Message>, usize) {
        let pcr0 = PcrValue::measure(b"this image");
        let (nsm, root) = testing::nsm(pcr0);
        let kms = FakeKms::new(root, pcr0, behaviour);
        let (host, enclave) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(host);
        let host_side = async move {
            let mut writer = FrameWriter::new(w);
            for m in &input {
                if writer.send(m).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
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
        let enclave_side = serve_with(enclave, shared, &nsm, |_| {
            Ok(KeyRelease::new(
                testing::client(&kms),
                vec![KEY_ARN.into()],
                CacheLimits::default(),
            ))
        });
        let (result, out) = tokio::join!(enclave_side, host_side);
        (
            result,
            out,
            kms.decrypts.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    fn sealed_msg(name: &str, records: &[&str]) -> Message {
        Message::Sealed {
            name: name.into(),
            bytes: sealed(records),
        }
    }

    fn failed_code(out: &[Message]) -> Option<&str> {
        match out.last() {
            Some(Message::Failed { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[tokio::test]
    async fn jobs_outside_the_policy_are_refused_before_any_key_is_released() {
        for op in [
            Operation::Stats {
                group_by: Some("ssn".into()),
                fields: vec![],
            },
            Operation::Stats {
                group_by: None,
                fields: vec!["charge".into()],
            },
            Operation::Tokenize {
                token_key: b"wrapped".to_vec(),
            },
            Operation::Reseal {
                target_key: KEY_ARN.into(),
            },
            Operation::Secrets,
        ] {
            let (result, out, decrypts) = run_on(
                &shared(),
                Behaviour::Release,
                vec![
                    job_of(op.clone()),
                    sealed_msg("m", &[r#"{"country":"FR","age":1}"#]),
                    Message::EndOfInput,
                ],
            )
            .await;
            assert_eq!(result.unwrap_err().code(), "ENC-POLICY", "{op:?}");
            assert_eq!(failed_code(&out), Some("ENC-POLICY"));
            assert_eq!(decrypts, 0, "{op:?}: no key released");
            assert!(!out.iter().any(|m| matches!(m, Message::Rows { .. })));
        }
    }

    #[tokio::test]
    async fn a_secrets_job_takes_no_sealed_input() {
        let mut ops: Operations = toml::from_str(POLICY).unwrap();
        ops.secrets = Some(crate::policy::SecretsPolicy {
            report_length: false,
        });
        let shared = Shared::with_secrets(ops, Vec::new());
        let (result, out, decrypts) = run_on(
            &shared,
            Behaviour::Release,
            vec![
                job_of(Operation::Secrets),
                sealed_msg("m", &[r#"{"age":1}"#]),
                Message::EndOfInput,
            ],
        )
        .await;
        assert_eq!(result.unwrap_err().code(), "ENC-PROTOCOL");
        assert_eq!(failed_code(&out), Some("ENC-PROTOCOL"));
        assert_eq!(decrypts, 0, "the message was not opened");
        // With nothing configured and no input, the job is done with an empty report.
        let (result, out, _) = run_on(
            &shared,
            Behaviour::Release,
            vec![job_of(Operation::Secrets), Message::EndOfInput],
        )
        .await;
        result.unwrap();
        assert!(
            matches!(out.last(), Some(Message::Done { messages: 0, .. })),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn the_stats_budget_refuses_a_job_past_it_before_its_key_is_released() {
        let shared = shared();
        let input = || {
            vec![
                job(Some("country")),
                sealed_msg(
                    "m",
                    &[r#"{"country":"FR","age":1}"#, r#"{"country":"FR","age":2}"#],
                ),
                Message::EndOfInput,
            ]
        };
        for _ in 0..2 {
            let (result, _, _) = run_on(&shared, Behaviour::Release, input()).await;
            result.unwrap();
        }
        let (result, out, decrypts) = run_on(&shared, Behaviour::Release, input()).await;
        assert_eq!(result.unwrap_err().code(), "ENC-BUDGET");
        assert_eq!(failed_code(&out), Some("ENC-BUDGET"));
        assert_eq!(decrypts, 0);
    }

    #[tokio::test]
    async fn a_second_job_past_max_jobs_is_busy_and_the_slot_frees_when_a_job_ends() {
        let shared = shared();
        let slot = shared.slots.clone().try_acquire_owned().unwrap();
        let (result, out, _) = run_on(&shared, Behaviour::Release, vec![job(None)]).await;
        assert_eq!(result.unwrap_err().code(), "ENC-BUSY");
        assert_eq!(failed_code(&out), Some("ENC-BUSY"));
        drop(slot);
        // A host that disconnects mid-job: the job ends and frees its slot.
        let (result, _, _) = run_on(
            &shared,
            Behaviour::Release,
            vec![job(None), sealed_msg("m", &[r#"{"age":1}"#])],
        )
        .await;
        assert_eq!(result.unwrap_err().code(), "ENC-PROTOCOL");
        assert_eq!(shared.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn mask_streams_each_message_s_rows_and_drops_unnamed_fields() {
        let (result, out, _) = run_on(
            &shared(),
            Behaviour::Release,
            vec![
                job_of(Operation::Mask),
                sealed_msg(
                    "m1",
                    &[r#"{"card":"4111111111111111","country":"FR","ssn":"078-05-1120"}"#],
                ),
                sealed_msg("bad", &[r#"{"card":"5500000000000004"}"#, "not json"]),
                sealed_msg("m2", &[r#"{"card":"340000000000009","name":"Ada"}"#]),
                Message::EndOfInput,
            ],
        )
        .await;
        result.unwrap();
        let rows: Vec<serde_json::Value> = out
            .iter()
            .filter_map(|m| match m {
                Message::Rows { rows } => Some(rows.clone()),
                _ => None,
            })
            .flatten()
            .map(|r| serde_json::from_str(&r).unwrap())
            .collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"card": "************1111", "country": "FR"}),
                serde_json::json!({"card": "***********0009"}),
            ]
        );
        let text = format!("{out:?}");
        for secret in ["078-05-1120", "5500000000000004", "Ada", "not json"] {
            assert!(!text.contains(secret), "{secret} left the enclave: {text}");
        }
        assert!(out.iter().any(|m| matches!(
            m,
            Message::MessageFailed { name, code, .. } if name == "bad" && code == "ENC-RECORD"
        )));
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

    #[tokio::test]
    async fn a_ping_is_answered_pong_without_a_slot() {
        // Both slots taken: a job would be ENC-BUSY, a probe is still answered.
        let shared = shared();
        let _held = shared
            .slots
            .clone()
            .try_acquire_many_owned(shared.ops.max_jobs)
            .unwrap();
        let (result, out, decrypts) =
            run_on(&shared, Behaviour::Release, vec![Message::Ping]).await;
        assert_eq!(result.unwrap(), Served::Ping);
        assert_eq!(out, vec![Message::Pong]);
        assert_eq!(decrypts, 0);
    }
}
