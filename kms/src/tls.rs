//! TLS for the KMS endpoint: a private CA and a server certificate kept in the data directory.
//!
//! The enclave talks to the KMS through a host relay, inside TLS that the enclave terminates
//! against this CA (baked into its image), so the host relays bytes it can neither read nor
//! forge. `<data-dir>/tls/ca.pem` is what clients pin; the server key is 0600.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA certificate clients pin.
pub const CA_FILE: &str = "tls/ca.pem";
const CERT_FILE: &str = "tls/server.pem";
const KEY_FILE: &str = "tls/server.key";

/// DNS names and addresses the server certificate covers.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "kms.cloister.internal", "127.0.0.1"];

/// Loads the server certificate, creating a CA and certificate on first use.
pub fn server_config(dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_pem, key_pem) = if dir.join(CERT_FILE).exists() {
        (
            std::fs::read_to_string(dir.join(CERT_FILE))?,
            zeroize::Zeroizing::new(std::fs::read_to_string(dir.join(KEY_FILE))?),
        )
    } else {
        create(dir)?
    };
    let cert = pem_blocks(&cert_pem, "CERTIFICATE")?
        .into_iter()
        .map(CertificateDer::from)
        .collect::<Vec<_>>();
    let key_der = pem_blocks(&key_pem, "PRIVATE KEY")?
        .into_iter()
        .next()
        .context("no private key in server.key")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert, key)?;
    Ok(Arc::new(config))
}

fn pem_blocks(text: &str, label: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).context("unterminated PEM block")?;
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(body)?);
        rest = &after[stop + end.len()..];
    }
    Ok(out)
}

fn create(dir: &Path) -> anyhow::Result<(String, zeroize::Zeroizing<String>)> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("tls"))?;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "cloister-kms CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    ca.not_before = not_before;
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "cloister-kms");
    p.subject_alt_names = SERVER_NAMES
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName((*n).try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.not_before = not_before;
    p.not_after = now + time::Duration::days(825);
    let cert = p.signed_by(&key, &issuer)?;
    let cert_pem = cert.pem();
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    write(dir, CA_FILE, ca_cert.pem().as_bytes(), 0o644)?;
    write(dir, KEY_FILE, key_pem.as_bytes(), 0o600)?;
    write(dir, CERT_FILE, cert_pem.as_bytes(), 0o644)?;
    Ok((cert_pem, key_pem))
}

fn write(dir: &Path, rel: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join(rel);
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}
