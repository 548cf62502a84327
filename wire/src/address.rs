//! One address type for every endpoint, and the two transports behind it.
//!
//! - `vsock://CID:PORT`: AF_VSOCK (tokio-vsock), as inside a microVM or a Nitro enclave. `CID` may
//!   be `any` when listening.
//! - `unix:///path`: a plain Unix socket (process mode).
//! - `unix:///path#PORT`: hybrid vsock, as Firecracker and vhost-device-vsock expose a guest's
//!   vsock on the host: connect to `path`, send `CONNECT PORT\n`, read `OK <n>\n`, then the stream
//!   is the guest's port. Listening on it accepts the same handshake, so process mode runs the
//!   same code path as a microVM.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream};

use crate::error::WireError;
use crate::line::{read_line, write_line};

/// `VMADDR_CID_ANY`.
const CID_ANY: u32 = u32::MAX;
/// Longest handshake line accepted.
const MAX_HANDSHAKE: usize = 64;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to connect or listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// AF_VSOCK.
    Vsock {
        /// Context id (`u32::MAX` = any).
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A Unix socket, with a hybrid-vsock port or plain.
    Unix {
        /// Socket path.
        path: PathBuf,
        /// Hybrid-vsock port, if any.
        port: Option<u32>,
    },
}

impl std::str::FromStr for Address {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        let bad = || WireError::Address(s.to_owned());
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            let cid = if cid == "any" {
                CID_ANY
            } else {
                cid.parse().map_err(|_| bad())?
            };
            return Ok(Self::Vsock {
                cid,
                port: port.parse().map_err(|_| bad())?,
            });
        }
        if let Some(rest) = s.strip_prefix("unix://") {
            let (path, port) = match rest.rsplit_once('#') {
                Some((p, port)) => (p, Some(port.parse().map_err(|_| bad())?)),
                None => (rest, None),
            };
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad());
            }
            return Ok(Self::Unix {
                path: PathBuf::from(path),
                port,
            });
        }
        Err(bad())
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vsock { cid: CID_ANY, port } => write!(f, "vsock://any:{port}"),
            Self::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Self::Unix { path, port: None } => write!(f, "unix://{}", path.display()),
            Self::Unix {
                path,
                port: Some(p),
            } => write!(f, "unix://{}#{p}", path.display()),
        }
    }
}

/// A connected byte stream, whatever the transport.
#[derive(Debug)]
pub enum Stream {
    /// AF_VSOCK.
    Vsock(VsockStream),
    /// Unix socket (plain or after a hybrid handshake; buffered bytes of the handshake are kept).
    Unix(BufReader<UnixStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Vsock(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Vsock(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s.get_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Vsock(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s.get_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Vsock(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s.get_mut()).poll_shutdown(cx),
        }
    }
}

impl Address {
    /// Connects.
    pub async fn connect(&self) -> Result<Stream, WireError> {
        match self {
            Self::Vsock { cid, port } => VsockStream::connect(VsockAddr::new(*cid, *port))
                .await
                .map(Stream::Vsock)
                .map_err(WireError::io(format!("connecting to {self}"))),
            Self::Unix { path, port } => {
                let s = UnixStream::connect(path)
                    .await
                    .map_err(WireError::io(format!("connecting to {self}")))?;
                let mut s = BufReader::new(s);
                if let Some(port) = port {
                    write_line(s.get_mut(), &format!("CONNECT {port}")).await?;
                    let line = read_line(&mut s, MAX_HANDSHAKE, HANDSHAKE_TIMEOUT).await?;
                    let ok = line.strip_prefix("OK ").and_then(|r| r.parse::<u32>().ok());
                    if ok.is_none() {
                        return Err(WireError::Handshake(format!(
                            "expected \"OK <port>\", got {line:?}"
                        )));
                    }
                }
                Ok(Stream::Unix(s))
            }
        }
    }

    /// Listens. For a Unix path, a stale socket file is replaced; the socket gets `mode`.
    pub async fn listen(&self, mode: u32) -> Result<Listener, WireError> {
        match self {
            Self::Vsock { cid, port } => VsockListener::bind(VsockAddr::new(*cid, *port))
                .map(Listener::Vsock)
                .map_err(WireError::io(format!("listening on {self}"))),
            Self::Unix { path, port } => {
                if path.exists() {
                    let _ = std::fs::remove_file(path);
                }
                let l = UnixListener::bind(path)
                    .map_err(WireError::io(format!("listening on {self}")))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                    WireError::io(format!("setting the mode of {}", path.display())),
                )?;
                Ok(Listener::Unix {
                    inner: l,
                    port: *port,
                })
            }
        }
    }
}

/// A listening endpoint.
#[derive(Debug)]
pub enum Listener {
    /// AF_VSOCK.
    Vsock(VsockListener),
    /// Unix socket; with a port, each connection must first complete the hybrid handshake.
    Unix {
        /// The socket.
        inner: UnixListener,
        /// Hybrid-vsock port.
        port: Option<u32>,
    },
}

impl Listener {
    /// Accepts one connection (completing the hybrid handshake if this is a hybrid address).
    pub async fn accept(&self) -> Result<Stream, WireError> {
        match self {
            Self::Vsock(l) => l
                .accept()
                .await
                .map(|(s, _)| Stream::Vsock(s))
                .map_err(WireError::io("accepting")),
            Self::Unix { inner, port } => {
                let (s, _) = inner.accept().await.map_err(WireError::io("accepting"))?;
                let mut s = BufReader::new(s);
                if let Some(port) = port {
                    let line = read_line(&mut s, MAX_HANDSHAKE, HANDSHAKE_TIMEOUT).await?;
                    let asked = line
                        .strip_prefix("CONNECT ")
                        .and_then(|r| r.parse::<u32>().ok());
                    if asked != Some(*port) {
                        return Err(WireError::Handshake(format!(
                            "expected \"CONNECT {port}\", got {line:?}"
                        )));
                    }
                    write_line(s.get_mut(), &format!("OK {port}")).await?;
                }
                Ok(Stream::Unix(s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_and_prints() {
        for s in [
            "vsock://3:5000",
            "vsock://any:9000",
            "unix:///tmp/x.sock",
            "unix:///tmp/v.sock#5000",
        ] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
        for bad in [
            "",
            "tcp://1:2",
            "vsock://3",
            "vsock://x:1",
            "unix://relative",
            "unix:///a#notaport",
            "unix://",
        ] {
            assert_eq!(
                bad.parse::<Address>().unwrap_err().code(),
                "WIRE-ADDRESS",
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn hybrid_handshake_then_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let addr: Address = format!("unix://{}/v.sock#5000", dir.path().display())
            .parse()
            .unwrap();
        let listener = addr.listen(0o600).await.unwrap();
        let server = tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut c = addr.connect().await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn wrong_port_and_garbage_handshakes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let addr: Address = format!("unix://{}#5000", path.display()).parse().unwrap();
        let listener = addr.listen(0o600).await.unwrap();
        let wrong: Address = format!("unix://{}#6000", path.display()).parse().unwrap();
        let client = tokio::spawn(async move { wrong.connect().await.map(|_| ()) });
        assert_eq!(
            listener.accept().await.unwrap_err().code(),
            "WIRE-HANDSHAKE"
        );
        assert!(client.await.unwrap().is_err());
        let raw = tokio::spawn({
            let path = path.clone();
            async move {
                let mut s = UnixStream::connect(path).await.unwrap();
                s.write_all(&[b'x'; 200]).await.unwrap();
            }
        });
        assert_eq!(
            listener.accept().await.unwrap_err().code(),
            "WIRE-HANDSHAKE"
        );
        raw.await.unwrap();
    }
}
