//! How bytes reach the KMS: a [`Connector`] opens a fresh byte stream on demand.
//!
//! Plain TCP for the host's tools; TLS pinned to a given CA over any inner connector for the
//! enclave, whose inner connector is the host's relay (so the host carries TLS bytes it can
//! neither read nor forge).

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::ClientError;

/// A byte stream to the KMS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A connection being opened.
pub type Connecting<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Stream>>> + Send + 'a>>;

/// Opens connections to the KMS.
pub trait Connector: Send + Sync + 'static {
    /// A new connection.
    fn connect(&self) -> Connecting<'_>;
}

/// Plain TCP to `addr` (`host:port`).
#[derive(Debug, Clone)]
pub struct TcpConnector(pub String);

impl Connector for TcpConnector {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(&self.0).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as Box<dyn Stream>)
        })
    }
}

/// TLS to the KMS over any inner connector, trusting only the given CA certificates (the
/// enclave's image carries the KMS CA; the host relays bytes it can neither read nor forge).
pub struct TlsConnector<C> {
    inner: C,
    server_name: rustls::pki_types::ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
}

impl<C> std::fmt::Debug for TlsConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsConnector({:?})", self.server_name)
    }
}

impl<C: Connector> TlsConnector<C> {
    /// TLS to `server_name` through `inner`, trusting only the CA certificates in `ca_pem`.
    pub fn new(inner: C, server_name: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let bad = |m: String| ClientError::Config(m);
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
            let cert = cert.map_err(|e| bad(format!("CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no CA certificate in the given PEM".into()));
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| bad(format!("server name: {e}")))?;
        Ok(Self {
            inner,
            server_name,
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        })
    }
}

impl<C: Connector> Connector for TlsConnector<C> {
    fn connect(&self) -> Connecting<'_> {
        Box::pin(async move {
            let inner = self.inner.connect().await?;
            let stream = self.tls.connect(self.server_name.clone(), inner).await?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}
