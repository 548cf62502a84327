//! `cloister submit`: send sealed files to the enclave through the proxy and take back what the
//! enclave's policy lets out.
//!
//! - `--op secrets` sends no sealed input: the enclave fetches the secrets its image lists and
//!   prints one report row per secret (never a value); a secret it could not fetch fails the
//!   job with that secret's code, after the whole report.
//! - Results stream as they come: JSON lines on stdout (`stats`, `mask`, `tokenize`), or, with
//!   `--out FILE` (required for `reseal`), a file written only when the enclave says the job is
//!   done, so a job cut short never leaves a partial result that looks whole. A job that fails
//!   after some rows were printed ends with `CLI-INCOMPLETE` and says how many.
//! - Progress (counts only) is a bar on a terminal, JSON lines on stderr otherwise.
//! - Sealed files are read and sent one at a time, so a job larger than memory streams.
//! - Failures keep the enclave's code (`error[ENC-POLICY]`); everything the enclave sends crossed
//!   the untrusted host, so it is cleaned before it is printed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use cloister_common::fs::write_atomically;
use cloister_wire::message::{KmsAccess, Operation, SecretString};
use cloister_wire::{Address, FrameReader, FrameWriter, Message};

use crate::aws_env;

/// The operations a job may ask for (the enclave's policy decides what each may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// Aggregates of groups of at least k records.
    Stats,
    /// Records with masked fields; fields the policy does not name dropped.
    Mask,
    /// Records with fields replaced by deterministic tokens.
    Tokenize,
    /// The records re-encrypted under a new data key of --target-key.
    Reseal,
    /// Fetch the secrets the enclave's image lists into the enclave (no sealed input); prints
    /// one report row per secret (name, ARN, version, outcome), never a value.
    Secrets,
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The proxy's job address.
    #[arg(long)]
    proxy: Address,
    /// The operation.
    #[arg(long, value_enum)]
    op: Op,
    /// stats: group records by this field (the policy must allow it).
    #[arg(long)]
    group_by: Option<String>,
    /// stats: aggregate only these fields (comma-separated; default: all the policy allows).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// tokenize: the wrapped tokenization key (from `cloister token-key`); leave it out when the
    /// image derives its key from a secret (`operations.tokenize.key_secret`).
    #[arg(long)]
    token_key: Option<PathBuf>,
    /// reseal: the KMS key ARN to reseal to (the policy must list it).
    #[arg(long)]
    target_key: Option<String>,
    /// Write results here when the job is done (atomically), instead of to stdout. Required
    /// for reseal (Encryption SDK messages, concatenated).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Sealed files (each one or more Encryption SDK messages); none for `secrets`.
    sealed: Vec<PathBuf>,
}

/// A job that ended before the enclave said it was done: what was already printed is partial.
#[derive(Debug)]
pub(crate) struct Incomplete {
    printed: u64,
    why: String,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the job did not finish ({}); the {} result row(s) already printed are incomplete",
            self.why, self.printed
        )
    }
}

impl std::error::Error for Incomplete {}

/// Checks the flags against the operation and builds the request.
fn operation(args: &SubmitArgs) -> Result<Operation> {
    let stray = |flag: &str, given: bool| {
        if given {
            bail!("{flag} does not apply to --op {:?}", args.op);
        }
        Ok(())
    };
    if args.op != Op::Stats {
        stray("--group-by", args.group_by.is_some())?;
        stray("--fields", !args.fields.is_empty())?;
    }
    if args.op != Op::Tokenize {
        stray("--token-key", args.token_key.is_some())?;
    }
    if args.op != Op::Reseal {
        stray("--target-key", args.target_key.is_some())?;
    }
    if args.op == Op::Secrets {
        stray("--out", args.out.is_some())?;
        if !args.sealed.is_empty() {
            bail!("--op secrets takes no sealed files");
        }
    } else if args.sealed.is_empty() {
        bail!("--op {:?} needs at least one sealed file", args.op);
    }
    Ok(match args.op {
        Op::Stats => Operation::Stats {
            group_by: args.group_by.clone(),
            fields: args.fields.clone(),
        },
        Op::Mask => Operation::Mask,
        Op::Tokenize => {
            // No key: the image must derive its own from a secret (it refuses the job otherwise,
            // saying that it needs --token-key).
            let token_key = match &args.token_key {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => Vec::new(),
            };
            Operation::Tokenize { token_key }
        }
        Op::Reseal => {
            if args.out.is_none() {
                bail!("--op reseal writes Encryption SDK messages: give --out FILE");
            }
            Operation::Reseal {
                target_key: args
                    .target_key
                    .clone()
                    .context("--op reseal needs --target-key ARN")?,
            }
        }
        Op::Secrets => Operation::Secrets,
    })
}

/// Where results go: stdout as they come, or a file at the end.
enum Sink {
    Stdout { printed: u64 },
    File { path: PathBuf, buf: Vec<u8> },
}

impl Sink {
    fn rows(&mut self, rows: Vec<String>) -> Result<()> {
        // Rows crossed the host: each must be one JSON object. A control character can then be
        // only JSON whitespace (inside a string it would not parse), so it is printed as a space:
        // the same JSON, and nothing that reaches the terminal is an escape sequence.
        let rows = rows
            .into_iter()
            .map(|row| {
                match serde_json::from_str::<serde_json::Value>(&row) {
                    Ok(serde_json::Value::Object(_)) => {}
                    _ => bail!("the enclave's answer holds a row that is not a JSON object"),
                }
                Ok(if row.chars().any(char::is_control) {
                    row.chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect()
                } else {
                    row
                })
            })
            .collect::<Result<Vec<String>>>()?;
        match self {
            Self::Stdout { printed } => {
                let mut out = std::io::stdout().lock();
                for row in rows {
                    writeln!(out, "{row}").context("writing to stdout")?;
                    *printed += 1;
                }
                out.flush().context("writing to stdout")
            }
            Self::File { buf, .. } => {
                for row in rows {
                    buf.extend_from_slice(row.as_bytes());
                    buf.push(b'\n');
                }
                Ok(())
            }
        }
    }

    fn sealed(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Self::File { buf, .. } => {
                buf.extend_from_slice(bytes);
                Ok(())
            }
            Self::Stdout { .. } => {
                bail!("the enclave sent sealed messages for a job with no --out")
            }
        }
    }

    fn printed(&self) -> u64 {
        match self {
            Self::Stdout { printed } => *printed,
            Self::File { .. } => 0,
        }
    }

    fn finish(self) -> Result<()> {
        if let Self::File { path, buf } = self {
            write_atomically(&path, &buf, 0o644)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Progress: a bar on a terminal, JSON lines otherwise.
struct Progress {
    tty: bool,
    total: Option<u64>,
}

impl Progress {
    fn show(&self, messages: u64, records: u64) {
        if !self.tty {
            eprintln!(r#"{{"progress":{{"messages":{messages},"records":{records}}}}}"#);
            return;
        }
        let bar = match self.total {
            Some(total) if total > 0 => {
                let done = usize::try_from(messages.min(total) * 30 / total).unwrap_or(30);
                format!(
                    "[{}{}] {messages}/{total} messages",
                    "#".repeat(done),
                    " ".repeat(30 - done)
                )
            }
            _ => format!("{messages} messages"),
        };
        eprint!("\r{bar}, {records} records");
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// A sealed file, split into its Encryption SDK messages (each checked against the frame size).
struct SealedFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Where each message lies in `bytes`.
    ranges: Vec<std::ops::Range<usize>>,
}

impl SealedFile {
    fn read(path: &PathBuf) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let parts = cloister_esdk::split(&bytes).with_context(|| format!("{}", path.display()))?;
        let base = bytes.as_ptr() as usize;
        let ranges: Vec<_> = parts
            .iter()
            .map(|m| {
                let start = m.as_ptr() as usize - base;
                start..start + m.len()
            })
            .collect();
        let file = Self {
            path: path.clone(),
            bytes: Vec::new(),
            ranges,
        };
        for i in 0..file.ranges.len() {
            let len = file.ranges[i].len();
            if len > MAX_MESSAGE {
                bail!(
                    "{} is {len} bytes; the enclave takes messages of at most {MAX_MESSAGE} bytes \
                     (seal with --records-per-message or --max-message-bytes)",
                    file.name(i)
                );
            }
        }
        Ok(Self { bytes, ..file })
    }

    fn name(&self, i: usize) -> String {
        if self.ranges.len() > 1 {
            format!("{}#{}", self.path.display(), i + 1)
        } else {
            self.path.display().to_string()
        }
    }

    /// Message `i` as a frame, copied only now (one message in flight at a time).
    fn message(&self, i: usize) -> Message {
        Message::Sealed {
            name: self.name(i),
            bytes: self
                .bytes
                .get(self.ranges[i].clone())
                .unwrap_or_default()
                .to_vec(),
        }
    }
}

/// Largest sealed message a job frame carries (the frame limit, less room for the envelope).
const MAX_MESSAGE: usize = cloister_wire::frame::MAX_FRAME - 64 * 1024;

pub(crate) async fn run(args: SubmitArgs) -> Result<()> {
    let op = operation(&args)?;
    // A secrets job's rows are its whole report, printed before the enclave says whether every
    // secret was fetched: they are not a partial result when it says some were not.
    let report = args.op == Op::Secrets;
    let aws = aws_env::load()?;
    let kms = KmsAccess {
        region: aws.region,
        access_key_id: aws.creds.access_key_id.clone(),
        secret_access_key: SecretString::new(aws.creds.secret_access_key.to_string()),
        session_token: aws.creds.session_token.clone().map(SecretString::new),
    };
    let tty = std::io::stderr().is_terminal();
    // Counting messages for the bar means reading every file once more: only on a terminal.
    let total = if tty {
        let mut n = 0u64;
        for path in &args.sealed {
            n += SealedFile::read(path)?.ranges.len() as u64;
        }
        Some(n)
    } else {
        for path in &args.sealed {
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        }
        None
    };
    let progress = Progress { tty, total };
    let mut sink = match &args.out {
        Some(path) => Sink::File {
            path: path.clone(),
            buf: Vec::new(),
        },
        None => Sink::Stdout { printed: 0 },
    };
    let stream = args.proxy.connect().await?;
    let (r, w) = tokio::io::split(stream);
    let mut writer = FrameWriter::new(w);
    let files = args.sealed.clone();
    let sender = tokio::spawn(async move {
        let mut id = [0u8; 8];
        let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut id);
        let job = Message::Job {
            id: u64::from_be_bytes(id),
            op,
            kms,
        };
        writer.send(&job).await?;
        drop(job);
        for path in &files {
            let file = SealedFile::read(path)?;
            for i in 0..file.ranges.len() {
                writer.send(&file.message(i)).await?;
            }
        }
        writer.send(&Message::EndOfInput).await?;
        anyhow::Ok(writer)
    });
    let mut reader = FrameReader::new(r, Duration::from_secs(600));
    let mut failed_messages = 0;
    let incomplete = |sink: &Sink, why: String| Incomplete {
        printed: sink.printed(),
        why,
    };
    loop {
        let next = match reader.next().await {
            Ok(m) => m,
            Err(e) => {
                progress.end();
                if sender.is_finished()
                    && let Ok(Err(send)) = sender.await
                {
                    return Err(send.context(incomplete(&sink, e.to_string())));
                }
                return Err(incomplete(&sink, format!("reading from the proxy: {e}")).into());
            }
        };
        match next {
            Some(Message::Progress { messages, records }) => progress.show(messages, records),
            Some(Message::Rows { rows }) => sink.rows(rows)?,
            Some(Message::Resealed { bytes, .. }) => sink.sealed(&bytes)?,
            Some(Message::MessageFailed { name, code, reason }) => {
                failed_messages += 1;
                let f = EnclaveFailure::new(&code, &reason);
                progress.end();
                eprintln!("error[{}]: {}: {}", f.code, printable(&name), f.reason);
            }
            Some(Message::Done { messages, records }) => {
                progress.end();
                eprintln!("done: {messages} messages, {records} records");
                break;
            }
            Some(Message::Failed { code, reason }) => {
                progress.end();
                let f = EnclaveFailure::new(&code, &reason);
                if sink.printed() > 0 && !report {
                    let printed = sink.printed();
                    return Err(anyhow::Error::from(f).context(Incomplete {
                        printed,
                        why: "the enclave failed it".into(),
                    }));
                }
                return Err(f.into());
            }
            Some(other) => bail!("unexpected message from the enclave: {other:?}"),
            None => {
                progress.end();
                return Err(incomplete(
                    &sink,
                    "the connection closed before the enclave said it was done".into(),
                )
                .into());
            }
        }
    }
    match sender.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.context("sending the job")),
        Err(e) => bail!("the sending task failed: {e}"),
    }
    sink.finish()?;
    if failed_messages > 0 {
        bail!(
            "{failed_messages} message(s) failed authentication or parsing; their records are not in the results"
        );
    }
    Ok(())
}
/// A job the enclave reported as failed, keeping the enclave's code so the user sees the code of
/// what failed (`KMS-AccessDeniedException`), not a generic one. The frame crossed the untrusted
/// host, so the code and reason are cleaned of anything but printable text and bounded.
#[derive(Debug)]
pub(crate) struct EnclaveFailure {
    pub(crate) code: String,
    reason: String,
}

/// Longest code or reason shown.
const MAX_SHOWN: usize = 2048;

/// `s` with control characters replaced and cut to [`MAX_SHOWN`] characters.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SHOWN)
        .collect()
}

impl EnclaveFailure {
    fn new(code: &str, reason: &str) -> Self {
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        Self {
            code: if code.is_empty() {
                "ENC-UNKNOWN".into()
            } else {
                code
            },
            reason: printable(reason),
        }
    }
}

impl std::fmt::Display for EnclaveFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the enclave failed the job: {}", self.reason)
    }
}

impl std::error::Error for EnclaveFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enclave_s_code_is_kept_and_its_text_cleaned() {
        let f = EnclaveFailure::new("KMS-AccessDeniedException", "denied");
        assert_eq!(f.code, "KMS-AccessDeniedException");
        assert_eq!(f.to_string(), "the enclave failed the job: denied");
        let hostile = EnclaveFailure::new("X\u{1b}[2J]Y", "a\u{1b}[31mb\nc");
        assert_eq!(hostile.code, "X2JY");
        assert!(!hostile.reason.contains('\u{1b}') && !hostile.reason.contains('\n'));
        assert_eq!(EnclaveFailure::new("", "x").code, "ENC-UNKNOWN");
    }
}
