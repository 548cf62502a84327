//! A client for the AWS KMS JSON 1.1 protocol: what cloister's host (seal/open) and enclave
//! (attested Decrypt) use to talk to cloister-kms or real AWS KMS.
//!
//! Requests are SigV4-signed with the same canonicalisation the server verifies
//! (`cloister-sigv4`). One connection is kept alive and reused. Throttling, 5xx answers and broken
//! connections are retried with exponential backoff and full jitter. How bytes reach the KMS is a
//! [`Connector`]: plain TCP here; the enclave supplies TLS over vsock through the host's relay.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_sigv4::{Credentials, RequestParts};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

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
        let bad = |m: String| ClientError::Transport(m);
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

/// Why a call failed. `code()` is the AWS error name for service errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The KMS answered with an error.
    #[error("{name}: {message}")]
    Service {
        /// AWS error name, e.g. `AccessDeniedException`.
        name: String,
        /// Message.
        message: String,
        /// HTTP status.
        status: u16,
    },
    /// The connection failed or broke.
    #[error("KMS transport: {0}")]
    Transport(String),
    /// The answer was not the JSON expected.
    #[error("KMS protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The AWS error name, or `KMS-TRANSPORT` / `KMS-PROTOCOL`.
    pub fn code(&self) -> &str {
        match self {
            Self::Service { name, .. } => name,
            Self::Transport(_) => "KMS-TRANSPORT",
            Self::Protocol(_) => "KMS-PROTOCOL",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Service { name, status, .. } => *status >= 500 || name == "ThrottlingException",
            Self::Transport(_) => true,
            Self::Protocol(_) => false,
        }
    }
}

/// Retry settings: attempts and the backoff base and cap.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Full jitter: a random delay in `[0, min(cap, base * 2^attempt))`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let mut r = [0u8; 8];
        let _ = SystemRandom::new().fill(&mut r);
        let fraction = (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction)
    }
}

/// A KMS client.
pub struct KmsClient {
    connector: Box<dyn Connector>,
    host: String,
    region: String,
    creds: Credentials,
    retry: Retry,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClient")
            .field("host", &self.host)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Standard base64 of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a base64 blob field of an answer.
pub fn blob(v: &Value, field: &str) -> Result<Vec<u8>, ClientError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Protocol(format!("answer lacks {field}")))?;
    STANDARD
        .decode(s)
        .map_err(|_| ClientError::Protocol(format!("{field} is not base64")))
}

impl KmsClient {
    /// A client that reaches `host` (the Host header, e.g. `127.0.0.1:4599`) through `connector`.
    pub fn new(
        connector: impl Connector,
        host: impl Into<String>,
        region: impl Into<String>,
        creds: Credentials,
    ) -> Self {
        Self {
            connector: Box::new(connector),
            host: host.into(),
            region: region.into(),
            creds,
            retry: Retry::default(),
            conn: Mutex::new(None),
        }
    }

    /// Plain HTTP to `http://host:port`.
    pub fn http(endpoint: &str, region: &str, creds: Credentials) -> Result<Self, ClientError> {
        let host = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| {
                ClientError::Transport(format!(
                    "{endpoint}: only http:// endpoints are reached over plain TCP"
                ))
            })?
            .trim_end_matches('/');
        Ok(Self::new(
            TcpConnector(host.to_owned()),
            host,
            region,
            creds,
        ))
    }

    /// Changes the retry settings.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Calls `TrentService.<op>` with `input`, retrying what is retryable.
    pub async fn call(&self, op: &str, input: &Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(input).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut attempt = 0;
        loop {
            match self.once(op, &body).await {
                Err(e) if e.retryable() && attempt + 1 < self.retry.attempts.max(1) => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = self
            .connector
            .connect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn once(&self, op: &str, body: &[u8]) -> Result<Value, ClientError> {
        let target = format!("TrentService.{op}");
        let base = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &base,
            body,
        };
        let signed = cloister_sigv4::sign(
            &parts,
            &self.creds,
            &self.region,
            "kms",
            time::OffsetDateTime::now_utc(),
        );
        let mut req = hyper::Request::post("/");
        for (n, v) in base
            .iter()
            .map(|(n, v)| (*n, *v))
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            req = req.header(n, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        // One HTTP/1 connection carries one request at a time: hold it for this exchange.
        let mut slot = self.conn.lock().await;
        let mut sender = match slot.take().filter(|s| !s.is_closed()) {
            Some(s) => s,
            None => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        *slot = Some(sender);
        drop(slot);
        let value: Value = if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("answer is not JSON: {e}")))?
        };
        if status == 200 {
            return Ok(value);
        }
        let name = value
            .get("__type")
            .and_then(Value::as_str)
            .unwrap_or("UnknownError");
        let name = name
            .rsplit('#')
            .next()
            .unwrap_or(name)
            .split(':')
            .next()
            .unwrap_or(name)
            .to_owned();
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Err(ClientError::Service {
            name,
            message,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        };
        for attempt in 0..20 {
            assert!(r.delay(attempt) <= Duration::from_millis(100));
        }
        let delays: Vec<Duration> = (0..20).map(|_| r.delay(3)).collect();
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter varies");
    }

    #[test]
    fn retryable_errors() {
        let svc = |name: &str, status| ClientError::Service {
            name: name.into(),
            message: String::new(),
            status,
        };
        assert!(svc("ThrottlingException", 400).retryable());
        assert!(svc("KMSInternalException", 500).retryable());
        assert!(!svc("AccessDeniedException", 400).retryable());
        assert!(ClientError::Transport("x".into()).retryable());
    }
}
