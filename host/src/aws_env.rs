//! Credentials and region the way AWS tools find them: environment variables first
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`), then the shared files (`~/.aws/credentials`, `~/.aws/config`, or
//! `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`) for `AWS_PROFILE` (default `default`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cloister_sigv4::Credentials;
use zeroize::Zeroizing;

/// Credentials and region for KMS calls.
pub(crate) struct AwsConfig {
    pub(crate) creds: Credentials,
    pub(crate) region: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home_file(env: &str, rel: &str) -> Option<PathBuf> {
    var(env)
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(rel)))
}

/// Parses an INI file into sections of key/value pairs.
fn ini(path: &PathBuf) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

pub(crate) fn load() -> Result<AwsConfig> {
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let creds = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Credentials {
            access_key_id: id,
            secret_access_key: Zeroizing::new(secret),
            session_token: var("AWS_SESSION_TOKEN"),
        },
        _ => {
            let path = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
                .context("no HOME for ~/.aws/credentials")?;
            let file = ini(&path);
            let sec = file.get(&profile).with_context(|| {
                format!("no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or add [{profile}] to {}", path.display())
            })?;
            let get = |k: &str| {
                sec.get(k)
                    .cloned()
                    .with_context(|| format!("[{profile}] in {} lacks {k}", path.display()))
            };
            Credentials {
                access_key_id: get("aws_access_key_id")?,
                secret_access_key: Zeroizing::new(get("aws_secret_access_key")?),
                session_token: sec.get("aws_session_token").cloned(),
            }
        }
    };
    let region = match var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        Some(r) => r,
        None => {
            let path =
                home_file("AWS_CONFIG_FILE", ".aws/config").context("no HOME for ~/.aws/config")?;
            let file = ini(&path);
            let section = if profile == "default" {
                "default".to_owned()
            } else {
                format!("profile {profile}")
            };
            match file.get(&section).and_then(|s| s.get("region")) {
                Some(r) => r.clone(),
                None => bail!(
                    "no AWS region: set AWS_REGION or region in [{section}] of {}",
                    path.display()
                ),
            }
        }
    };
    Ok(AwsConfig { creds, region })
}
