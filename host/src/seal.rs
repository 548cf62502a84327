//! `cloister seal` and `cloister open`: records sealed as AWS Encryption SDK messages under a KMS
//! key, and opened again by the key's owner (plaintext Decrypt, outside any enclave).
//!
//! `seal` splits a JSON-lines file into messages of `--records-per-message` records. Like the
//! SDK's data key cache, one data key may serve several messages, within a count and an age;
//! each message still gets its own message id and so its own derived key. `open` writes its
//! output only after every message in the input has been authenticated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use cloister_common::fs::write_atomically;
use cloister_esdk::{DataKey, Edk, Encryptor, Suite};
use cloister_kms_client::{Ciphertext, KmsClient};
use zeroize::Zeroizing;

use crate::aws_env;

/// Provider id of KMS-wrapped data keys.
const AWS_KMS: &str = "aws-kms";

/// Where the KMS is and, for https, the CA to trust.
#[derive(Debug, Args)]
pub(crate) struct KmsEndpoint {
    /// KMS endpoint: http://127.0.0.1:4599, or https://localhost:4600 with --kms-ca. The KMS
    /// answers Decrypt and GenerateDataKey over cleartext only on loopback.
    #[arg(long = "kms", value_name = "URL")]
    url: String,
    /// PEM CA certificate(s) to trust for an https:// --kms (cloister-kms's <data-dir>/tls/ca.pem).
    #[arg(long = "kms-ca", value_name = "PEM")]
    ca: Option<PathBuf>,
}

impl KmsEndpoint {
    /// A client for this endpoint with the credentials from the environment.
    pub(crate) fn client(&self) -> Result<KmsClient> {
        let aws = aws_env::load()?;
        let ca = match &self.ca {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        KmsClient::endpoint(&self.url, ca.as_deref(), &aws.region, aws.creds)
            .with_context(|| format!("KMS endpoint {}", self.url))
    }
}

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    #[command(flatten)]
    kms: KmsEndpoint,
    /// KMS key id, ARN or alias.
    #[arg(long)]
    key_id: String,
    /// Encryption context pair k=v. Repeatable.
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Input: one JSON object per line.
    input: PathBuf,
    /// Output file (messages concatenated).
    #[arg(short, long)]
    out: PathBuf,
    /// Records per message (default: as many as fit in --max-message-bytes).
    #[arg(long)]
    records_per_message: Option<usize>,
    /// Most plaintext bytes per message (a record longer than this gets a message of its own);
    /// the enclave takes messages of up to 16 MiB.
    #[arg(long, default_value_t = 1 << 20)]
    max_message_bytes: usize,
    /// Algorithm suite: 0x0578 (signed, default) or 0x0478.
    #[arg(long, default_value = "0x0578", value_parser = parse_suite)]
    suite: Suite,
    /// Frame length in bytes; 0 writes non-framed messages. The default, 64 KiB (the SDKs write
    /// 4096), opens faster: fewer frames per message. The SDKs open either.
    #[arg(long, default_value_t = cloister_esdk::DEFAULT_FRAME_LENGTH)]
    frame_length: u32,
    /// Most messages one data key may seal.
    #[arg(long, default_value_t = 1000)]
    max_messages_per_key: u32,
    /// Longest a data key may be used, seconds.
    #[arg(long, default_value_t = 300)]
    max_key_age: u64,
}

#[derive(Debug, Args)]
pub(crate) struct TokenKeyArgs {
    #[command(flatten)]
    kms: KmsEndpoint,
    /// The KMS key the enclave's policy names for tokenization (`operations.tokenize.key_arn`).
    #[arg(long)]
    key_id: String,
    /// Where to write the wrapped key (binary; not secret: only the attested enclave can unwrap it).
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    #[command(flatten)]
    kms: KmsEndpoint,
    /// Sealed input (one or more messages).
    input: PathBuf,
    /// Output file (plaintext, written only if every message authenticates).
    #[arg(short, long)]
    out: PathBuf,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected K=V".into())
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    let id = u16::from_str_radix(s.trim_start_matches("0x"), 16)
        .map_err(|_| "a hex suite id such as 0x0578")?;
    Suite::from_id(id).map_err(|e| e.to_string())
}

/// Reads a JSON-lines file, checking that every non-empty line is a JSON object.
fn read_records(path: &PathBuf) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => out.push(line.to_owned()),
            _ => bail!("{}:{}: not a JSON object", path.display(), i + 1),
        }
    }
    Ok(out)
}

struct CachedKey {
    encryptor: Encryptor,
    data_key: DataKey,
    edk: Edk,
    uses: u32,
    born: Instant,
}

/// `cloister token-key`: a tokenization key made by `GenerateDataKeyWithoutPlaintext`, so it
/// exists in the clear nowhere but in an enclave the key's policy releases it to.
pub(crate) async fn token_key(args: TokenKeyArgs) -> Result<()> {
    let kms = args.kms.client()?;
    let (k, v) = cloister_enclave::kms::TOKEN_KEY_CONTEXT;
    let context: BTreeMap<String, String> = [(k.to_owned(), v.to_owned())].into();
    let (key_id, blob) = kms
        .generate_data_key_without_plaintext(&args.key_id, &context)
        .await
        .context("KMS GenerateDataKeyWithoutPlaintext")?;
    write_atomically(&args.out, &blob, 0o644)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "tokenization key under {key_id} written to {}",
        args.out.display()
    );
    Ok(())
}

pub(crate) async fn seal(args: SealArgs) -> Result<()> {
    let records = read_records(&args.input)?;
    let kms = args.kms.client()?;
    let per = args
        .records_per_message
        .unwrap_or(records.len().max(1))
        .max(1);
    let context: BTreeMap<String, String> = args.context.into_iter().collect();
    let frame = (args.frame_length > 0).then_some(args.frame_length);
    let mut cache: Option<CachedKey> = None;
    let mut out = Vec::new();
    let chunks = chunks(&records, per, args.max_message_bytes);
    for chunk in chunks {
        let fresh = cache.as_ref().is_some_and(|c| {
            c.uses < args.max_messages_per_key
                && c.born.elapsed() < Duration::from_secs(args.max_key_age)
        });
        if !fresh {
            let encryptor = Encryptor::new(args.suite, context.clone(), frame)?;
            let generated = kms
                .generate_data_key(&args.key_id, encryptor.context())
                .await
                .context("KMS GenerateDataKey")?;
            let edk = Edk {
                provider_id: AWS_KMS.into(),
                provider_info: generated.key_id,
                ciphertext: generated.ciphertext_blob,
            };
            cache = Some(CachedKey {
                encryptor,
                data_key: generated.plaintext,
                edk,
                uses: 0,
                born: Instant::now(),
            });
        }
        let c = cache.as_mut().context("no data key")?;
        let mut plaintext = Zeroizing::new(chunk.join("\n").into_bytes());
        if !chunk.is_empty() {
            plaintext.push(b'\n');
        }
        out.extend(
            c.encryptor
                .seal(&c.data_key, vec![c.edk.clone()], &plaintext)?,
        );
        c.uses += 1;
    }
    write_atomically(&args.out, &out, 0o644)
        .with_context(|| format!("writing {}", args.out.display()))
}

/// Records grouped into messages of at most `per` records and `max_bytes` bytes (one record per
/// message at least); one empty message for no records.
fn chunks(records: &[String], per: usize, max_bytes: usize) -> Vec<&[String]> {
    if records.is_empty() {
        return vec![&[]];
    }
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n >= per || bytes + r.len() + 1 > max_bytes) {
            out.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += r.len() + 1;
    }
    out.push(&records[start..]);
    out
}

/// Asks the KMS for a message's data key (plaintext Decrypt: the owner's path).
async fn data_key(kms: &KmsClient, header: &cloister_esdk::Header) -> Result<DataKey> {
    let mut last_err = None;
    for edk in header.edks.iter().filter(|e| e.provider_id == AWS_KMS) {
        let ct = Ciphertext {
            blob: &edk.ciphertext,
            key_id: Some(&edk.provider_info),
            context: &header.context,
        };
        match kms.decrypt_data_key(ct).await {
            Ok(key) => return Ok(key),
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(e).context("KMS Decrypt of the data key"),
        None => bail!("no aws-kms encrypted data key in the message"),
    }
}

pub(crate) async fn open(args: OpenArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let kms = args.kms.client()?;
    let mut out = Zeroizing::new(Vec::new());
    for (i, message) in cloister_esdk::split(&bytes)
        .with_context(|| format!("{}", args.input.display()))?
        .into_iter()
        .enumerate()
    {
        let (header, _) = cloister_esdk::parse_header(message)?;
        let key = data_key(&kms, &header)
            .await
            .with_context(|| format!("message {}", i + 1))?;
        let plain = cloister_esdk::decrypt(message, &key)
            .with_context(|| format!("{} message {}", args.input.display(), i + 1))?;
        out.extend_from_slice(&plain);
    }
    write_atomically(&args.out, &out, 0o600)
        .with_context(|| format!("writing {}", args.out.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_bounded_by_count_and_bytes() {
        let recs: Vec<String> = ["aaaa", "bb", "cccccccc", "d", "e"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let sizes = |per, max| -> Vec<usize> {
            super::chunks(&recs, per, max)
                .iter()
                .map(|c| c.len())
                .collect()
        };
        assert_eq!(sizes(usize::MAX, usize::MAX), [5]);
        assert_eq!(sizes(2, usize::MAX), [2, 2, 1]);
        assert_eq!(
            sizes(usize::MAX, 8),
            [2, 1, 2],
            "a long record gets its own message"
        );
        assert_eq!(super::chunks(&[], 2, 8).len(), 1);
    }
}
