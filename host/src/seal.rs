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

#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    /// KMS endpoint, e.g. http://127.0.0.1:4599.
    #[arg(long)]
    kms: String,
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
    /// Records per message (default: all in one message).
    #[arg(long)]
    records_per_message: Option<usize>,
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
pub(crate) struct OpenArgs {
    /// KMS endpoint, e.g. http://127.0.0.1:4599.
    #[arg(long)]
    kms: String,
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

fn client(endpoint: &str) -> Result<KmsClient> {
    let aws = aws_env::load()?;
    Ok(KmsClient::http(endpoint, &aws.region, aws.creds)?)
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

pub(crate) async fn seal(args: SealArgs) -> Result<()> {
    let records = read_records(&args.input)?;
    let kms = client(&args.kms)?;
    let per = args
        .records_per_message
        .unwrap_or(records.len().max(1))
        .max(1);
    let context: BTreeMap<String, String> = args.context.into_iter().collect();
    let frame = (args.frame_length > 0).then_some(args.frame_length);
    let mut cache: Option<CachedKey> = None;
    let mut out = Vec::new();
    let chunks: Vec<&[String]> = if records.is_empty() {
        vec![&[]]
    } else {
        records.chunks(per).collect()
    };
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
    let kms = client(&args.kms)?;
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
