//! TLS for the KMS endpoint: a private CA and a server certificate kept in the data directory.
//!
//! The enclave talks to the KMS through a host relay, inside TLS that the enclave terminates
//! against this CA (baked into its image), so the host relays bytes it can neither read nor
//! forge. `<data-dir>/tls/ca.pem` is what clients pin; the server key is 0600.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::error::SetupError;

/// The CA certificate clients pin, relative to the data directory.
pub(crate) const CA_FILE: &str = "tls/ca.pem";
const CERT_FILE: &str = "tls/server.pem";
const KEY_FILE: &str = "tls/server.key";

/// DNS names and addresses the server certificate covers.
pub(crate) const SERVER_NAMES: [&str; 3] = ["localhost", "kms.cloister.internal", "127.0.0.1"];

/// Loads the server certificate from `<dir>/tls`, creating a CA and certificate on first use.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, SetupError> {
    let (cert_pem, key_pem) = if dir.join(CERT_FILE).exists() {
        (read(dir, CERT_FILE)?, read(dir, KEY_FILE)?)
    } else {
        create(dir)?
    };
    let pem_err = |rel: &str| {
        let path = dir.join(rel);
        move |source| SetupError::Pem { path, source }
    };
    let cert = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(CERT_FILE))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem_err(KEY_FILE))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert, key)?;
    Ok(Arc::new(config))
}

/// PEM text; the server key's is secret.
type Pem = Zeroizing<Vec<u8>>;

fn read(dir: &Path, rel: &str) -> Result<Pem, SetupError> {
    let path = dir.join(rel);
    std::fs::read(&path)
        .map(Zeroizing::new)
        .map_err(SetupError::io(path))
}

/// Makes the CA and the server certificate; returns the certificate's and the key's PEM.
fn create(dir: &Path) -> Result<(Pem, Pem), SetupError> {
    let tls_dir = dir.join("tls");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tls_dir)
        .map_err(SetupError::io(&tls_dir))?;
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
    let cert_pem = Zeroizing::new(cert.pem().into_bytes());
    let key_pem = Zeroizing::new(key.serialize_pem().into_bytes());
    write(dir, CA_FILE, ca_cert.pem().as_bytes(), 0o644)?;
    write(dir, KEY_FILE, &key_pem, 0o600)?;
    write(dir, CERT_FILE, &cert_pem, 0o644)?;
    Ok((cert_pem, key_pem))
}

fn write(dir: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), SetupError> {
    let path = dir.join(rel);
    cloister_common::fs::write_atomically(&path, bytes, mode).map_err(SetupError::io(path))
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
