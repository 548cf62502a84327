//! `cloister secrets put`: writes a secret's value for an attested enclave the portable way
//! (path P, which works against AWS Secrets Manager too): the value is encrypted with KMS
//! `Encrypt` under the enclave-only key, bound to `{"SecretARN": <ARN>, "SecretVersionId":
//! <version id>}`, and stored with `PutSecretValue` as the version's `SecretBinary`. Any reader
//! of the secret gets only that ciphertext; the enclave, whose measured configuration names the
//! secret's ARN, reads it over its own TLS and opens it with `Decrypt` + `Recipient` under the
//! context it builds from its configuration and the version id the service answers.
//!
//! The secret is created empty (under an ordinary or AWS managed key) if it does not exist yet,
//! to learn its ARN. The version id is a fresh UUID, passed as the `ClientRequestToken`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cloister_kms_client::{EncryptionContext, SecretData};
use zeroize::Zeroizing;

use crate::seal::KmsEndpoint;

/// Largest value KMS `Encrypt` takes.
const MAX_VALUE: usize = 4096;

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Write a value for an attested enclave: encrypted under --key, bound to the secret's ARN
    /// and the new version id, stored as the new version's SecretBinary (AWSCURRENT).
    Put(PutArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The endpoint (cloister-kms serves KMS and Secrets Manager on one listener).
    #[command(flatten)]
    kms: KmsEndpoint,
    /// The secret's name or full ARN (a name that does not exist yet is created).
    #[arg(long)]
    secret_id: String,
    /// The enclave-only KMS key that encrypts the value (the key the enclave's configuration
    /// names for the secret).
    #[arg(long)]
    key: String,
    /// The KMS key of a secret created here (default: the AWS managed aws/secretsmanager). It
    /// protects only the stored ciphertext, which is already encrypted under --key.
    #[arg(long)]
    create_kms_key_id: Option<String>,
    /// Read the value from this file (default: stdin).
    #[arg(long)]
    value_file: Option<PathBuf>,
}

pub(crate) async fn run(cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::Put(args) => put(args).await,
    }
}

/// A version id: a random (version 4) UUID, as botocore makes a `ClientRequestToken`.
fn version_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn read_value(file: Option<&PathBuf>) -> Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::new());
    match file {
        Some(path) => {
            let f =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            f.take(MAX_VALUE as u64 + 1)
                .read_to_end(&mut value)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .lock()
                .take(MAX_VALUE as u64 + 1)
                .read_to_end(&mut value)
                .context("reading the value from stdin")?;
        }
    }
    if value.is_empty() {
        bail!("the value is empty");
    }
    if value.len() > MAX_VALUE {
        bail!(
            "the value is more than {MAX_VALUE} bytes, the most KMS Encrypt takes; keep a larger \
             value elsewhere under a key sealed this way"
        );
    }
    Ok(value)
}

async fn put(args: PutArgs) -> Result<()> {
    let value = read_value(args.value_file.as_ref())?;
    let client = args.kms.client()?;
    let arn = match client.describe_secret(&args.secret_id).await {
        Ok(d) => d.arn,
        Err(e)
            if e.aws_name() == Some("ResourceNotFoundException")
                && !args.secret_id.starts_with("arn:") =>
        {
            client
                .create_secret(
                    &args.secret_id,
                    args.create_kms_key_id.as_deref(),
                    Some("A KMS ciphertext for an attested enclave (cloister secrets put)"),
                    None,
                )
                .await
                .with_context(|| format!("creating the secret {}", args.secret_id))?
                .arn
        }
        Err(e) => return Err(e).with_context(|| format!("describing {}", args.secret_id)),
    };
    let version = version_id();
    let context: EncryptionContext = [
        ("SecretARN".to_owned(), arn.clone()),
        ("SecretVersionId".to_owned(), version.clone()),
    ]
    .into();
    let sealed = client
        .encrypt(&args.key, &value, &context)
        .await
        .with_context(|| format!("encrypting the value under {}", args.key))?;
    drop(value);
    let put = client
        .put_secret_value(
            &arn,
            &version,
            &SecretData::Binary(Zeroizing::new(sealed.ciphertext_blob)),
            None,
        )
        .await
        .with_context(|| format!("storing the new version of {arn}"))?;
    if put.version_id != version {
        bail!(
            "the service stored version {:?}, not {version:?}: the ciphertext is bound to the latter",
            put.version_id
        );
    }
    println!(
        "{}",
        serde_json::json!({"ARN": put.arn, "VersionId": put.version_id, "KeyId": sealed.key_id})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_v4_uuids() {
        let a = version_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]));
        assert_ne!(a, version_id());
    }

    #[test]
    fn values_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v");
        std::fs::write(&f, vec![b'x'; MAX_VALUE]).unwrap();
        assert_eq!(read_value(Some(&f)).unwrap().len(), MAX_VALUE);
        std::fs::write(&f, vec![b'x'; MAX_VALUE + 1]).unwrap();
        assert!(
            read_value(Some(&f))
                .unwrap_err()
                .to_string()
                .contains("4096")
        );
        std::fs::write(&f, b"").unwrap();
        assert!(
            read_value(Some(&f))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
