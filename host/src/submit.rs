//! `cloister submit`: send sealed files to the enclave through the proxy and print the results
//! (JSON lines on stdout; failures as `error[CODE]` on stderr; progress on a terminal).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cloister_wire::message::{KmsAccess, Operation, SecretString};
use cloister_wire::{Address, FrameReader, FrameWriter, Message};

use crate::aws_env;

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The proxy's job address.
    #[arg(long)]
    proxy: Address,
    /// The operation.
    #[arg(long, value_parser = ["stats"])]
    op: String,
    /// stats: group records by this field.
    #[arg(long)]
    group_by: Option<String>,
    /// Sealed files (each one or more Encryption SDK messages).
    #[arg(required = true)]
    sealed: Vec<PathBuf>,
}

pub(crate) async fn run(args: SubmitArgs) -> Result<()> {
    let aws = aws_env::load()?;
    let kms = KmsAccess {
        region: aws.region,
        access_key_id: aws.creds.access_key_id.clone(),
        secret_access_key: SecretString::new(aws.creds.secret_access_key.to_string()),
        session_token: aws.creds.session_token.clone().map(SecretString::new),
    };
    let mut messages = Vec::new();
    for path in &args.sealed {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let parts = cloister_esdk::split(&bytes).with_context(|| format!("{}", path.display()))?;
        let many = parts.len() > 1;
        for (i, m) in parts.into_iter().enumerate() {
            let name = if many {
                format!("{}#{}", path.display(), i + 1)
            } else {
                path.display().to_string()
            };
            messages.push(Message::Sealed {
                name,
                bytes: m.to_vec(),
            });
        }
    }
    let total = messages.len();
    let stream = args.proxy.connect().await?;
    let (r, w) = tokio::io::split(stream);
    let mut writer = FrameWriter::new(w);
    let sender = tokio::spawn(async move {
        let mut id = [0u8; 8];
        let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut id);
        writer
            .send(&Message::Job {
                id: u64::from_be_bytes(id),
                op: Operation::Stats {
                    group_by: args.group_by,
                },
                kms,
            })
            .await?;
        for m in messages {
            writer.send(&m).await?;
        }
        writer.send(&Message::EndOfInput).await?;
        anyhow::Ok(writer)
    });
    let mut reader = FrameReader::new(r, Duration::from_secs(600));
    let tty = std::io::stderr().is_terminal();
    let mut failed_messages = 0;
    loop {
        match reader.next().await? {
            Some(Message::Progress { messages, records }) => {
                if tty {
                    eprint!("\r[{messages}/{total} messages, {records} records]");
                }
            }
            Some(Message::Rows { rows }) => {
                if tty {
                    eprintln!();
                }
                for row in rows {
                    println!("{row}");
                }
            }
            Some(Message::MessageFailed { name, code, reason }) => {
                failed_messages += 1;
                let f = EnclaveFailure::new(&code, &reason);
                eprintln!("error[{}]: {}: {}", f.code, printable(&name), f.reason);
            }
            Some(Message::Done { messages, records }) => {
                eprintln!("done: {messages} messages, {records} records");
                break;
            }
            Some(Message::Failed { code, reason }) => {
                return Err(EnclaveFailure::new(&code, &reason).into());
            }
            Some(other) => bail!("unexpected message from the enclave: {other:?}"),
            None => bail!("the connection closed before the job finished"),
        }
    }
    let _ = sender.await;
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
