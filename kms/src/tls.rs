//! TLS for the KMS endpoint: a private CA and a server certificate kept in the data directory.
//!
//! The enclave talks to the KMS through a host relay, inside TLS that the enclave terminates
//! against this CA (baked into its image), so the host relays bytes it can neither read nor
//! forge. `<data-dir>/tls/ca.pem` is what clients pin; the CA's key and the server key are 0600.
//! `cloister-kms tls rotate` issues a new server key and certificate under the same CA, so
//! pinned clients (and measured images) keep working; a running server picks the new
//! certificate up at its next handshake, without a restart and without touching any KMS key.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::error::SetupError;

/// The CA certificate clients pin, relative to the data directory.
pub(crate) const CA_FILE: &str = "tls/ca.pem";
/// The CA's private key (kept so the server certificate can be reissued under the same CA).
const CA_KEY_FILE: &str = "tls/ca.key";
const CERT_FILE: &str = "tls/server.pem";
const KEY_FILE: &str = "tls/server.key";

/// DNS names and addresses the server certificate covers.
pub(crate) const SERVER_NAMES: [&str; 3] = ["localhost", "kms.cloister.internal", "127.0.0.1"];

/// Days a server certificate is valid (the CA: ten years).
const SERVER_DAYS: i64 = 825;

/// PEM text; private keys' is secret.
type Pem = Zeroizing<Vec<u8>>;

/// Loads the server certificate from `<dir>/tls`, creating a CA and certificate on first use.
/// The configuration re-reads the certificate when `tls rotate` replaces it.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, SetupError> {
    if !dir.join(CERT_FILE).exists() {
        create(dir, None)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = Reloading::new(dir, provider.clone())?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

/// What `tls rotate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotated {
    /// A new server key and certificate under the existing CA: clients need no change.
    SameCa,
    /// A new CA too (asked for, or the CA's key was never kept): clients, and enclave images
    /// that embed `ca.pem`, must take the new CA.
    NewCa,
}

/// Issues a new server key and certificate; a new CA as well if `new_ca` or if the data
/// directory has no CA key (made before `tls rotate` existed). KMS keys are not touched.
pub fn rotate(dir: &Path, new_ca: bool) -> Result<Rotated, SetupError> {
    let ca_key = dir.join(CA_KEY_FILE);
    if new_ca || !ca_key.exists() || !dir.join(CA_FILE).exists() {
        create(dir, None)?;
        return Ok(Rotated::NewCa);
    }
    let key_pem = read(dir, CA_KEY_FILE)?;
    let key_text = std::str::from_utf8(&key_pem).map_err(|_| SetupError::Io {
        path: ca_key.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not PEM text"),
    })?;
    let key = KeyPair::from_pem(key_text)?;
    let ca_pem =
        std::fs::read_to_string(dir.join(CA_FILE)).map_err(SetupError::io(dir.join(CA_FILE)))?;
    create(dir, Some((ca_pem, key)))?;
    Ok(Rotated::SameCa)
}

fn read(dir: &Path, rel: &str) -> Result<Pem, SetupError> {
    let path = dir.join(rel);
    std::fs::read(&path)
        .map(Zeroizing::new)
        .map_err(SetupError::io(path))
}

/// Writes a server key and certificate signed by `ca` (its PEM and key), or by a new CA.
fn create(dir: &Path, ca: Option<(String, KeyPair)>) -> Result<(), SetupError> {
    let tls_dir = dir.join("tls");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tls_dir)
        .map_err(SetupError::io(&tls_dir))?;
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let (issuer, new_ca) = match ca {
        Some((pem, key)) => (Issuer::from_ca_cert_pem(&pem, key)?, None),
        None => {
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
            ca.not_before = not_before;
            ca.not_after = now + time::Duration::days(3650);
            let ca_cert = ca.self_signed(&ca_key)?;
            let new = (
                ca_cert.pem(),
                Zeroizing::new(ca_key.serialize_pem().into_bytes()),
            );
            (Issuer::new(ca, ca_key), Some(new))
        }
    };

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
    p.not_after = now + time::Duration::days(SERVER_DAYS);
    let cert = p.signed_by(&key, &issuer)?;
    let key_pem = Zeroizing::new(key.serialize_pem().into_bytes());
    if let Some((ca_pem, ca_key_pem)) = new_ca {
        write(dir, CA_KEY_FILE, &ca_key_pem, 0o600)?;
        write(dir, CA_FILE, ca_pem.as_bytes(), 0o644)?;
    }
    // The key first: a reader that sees the new certificate finds its key (see `Reloading`).
    write(dir, KEY_FILE, &key_pem, 0o600)?;
    write(dir, CERT_FILE, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write(dir: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), SetupError> {
    let path = dir.join(rel);
    cloister_common::fs::write_atomically(&path, bytes, mode).map_err(SetupError::io(path))
}

/// The server certificate, re-read when the certificate file's modification time changes.
#[derive(Debug)]
struct Reloading {
    dir: std::path::PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(dir: &Path, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Self, SetupError> {
        let stamp = modified(dir);
        let key = load(dir, &provider)?;
        Ok(Self {
            dir: dir.to_owned(),
            provider,
            current: RwLock::new((stamp, key)),
        })
    }
}

fn modified(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join(CERT_FILE))
        .and_then(|m| m.modified())
        .ok()
}

/// The certificate chain and key in `<dir>/tls`.
fn load(
    dir: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, SetupError> {
    let pem_err = |rel: &str| {
        let path = dir.join(rel);
        move |source| SetupError::Pem { path, source }
    };
    let cert_pem = read(dir, CERT_FILE)?;
    let key_pem = read(dir, KEY_FILE)?;
    let cert = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(CERT_FILE))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem_err(KEY_FILE))?;
    Ok(Arc::new(CertifiedKey::from_der(cert, key, provider)?))
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamp = modified(&self.dir);
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.0 == stamp {
                return Some(current.1.clone());
            }
        }
        // Changed: load the new pair; if it does not load (mid-rotation, or broken), keep
        // serving the one that worked and try again at the next handshake.
        match load(&self.dir, &self.provider) {
            Ok(key) => {
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                *current = (stamp, key.clone());
                tracing::info!("TLS certificate reloaded");
                Some(key)
            }
            Err(e) => {
                tracing::warn!("TLS certificate changed but does not load yet: {e}");
                Some(
                    self.current
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .1
                        .clone(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn material_is_made_once_with_a_private_key_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        server_config(dir.path()).unwrap();
        let ca = std::fs::read(dir.path().join(CA_FILE)).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        server_config(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(CA_FILE)).unwrap(), ca);
        std::fs::write(dir.path().join(KEY_FILE), b"not pem").unwrap();
        let err = server_config(dir.path()).unwrap_err();
        assert!(matches!(err, SetupError::Pem { .. }), "{err}");
    }
}
