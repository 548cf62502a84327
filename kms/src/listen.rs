//! The listeners: one accept loop for plain HTTP and for HTTPS, in which every resource a
//! client without credentials can hold is bounded.
//!
//! - Connections: at most [`Limits::max_connections`] at once, over all listeners. A connection
//!   beyond the cap is closed as soon as it is accepted, rather than left waiting: waiting
//!   would still hold its socket and let a flood queue up, while a closed connection tells the
//!   client at once to back off and retry (AWS SDKs retry broken connections).
//! - Time: the TLS handshake, the request head (counted from its first byte; before that, the
//!   idle timeout applies), the request body, and a response the client does not read each
//!   have a timeout (see `timeouts`).
//! - Size: request heads at most [`Limits::max_header_bytes`] (hyper answers 431 beyond), bodies
//!   at most the router's body limit.
//! - Protocol: HTTP/1.1 only, in cleartext and in TLS (ALPN offers `http/1.1` alone). AWS SDKs
//!   talk to KMS over HTTP/1.1, and one protocol means one set of timeouts to get right; HTTP/2
//!   would add its own stream, window and keep-alive limits to bound.
//!
//! Each listener tells the router which [`Transport`] its requests came over, so the router
//! can refuse plaintext answers on cleartext that leaves the machine. On stop, listeners stop
//! accepting and open connections finish their request in flight and close.

mod timeouts;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use self::timeouts::{Activity, BodyDeadline, HeadClock, Watched};

/// How a listener's requests reach the KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS (`--tls-listen`).
    Tls,
    /// Cleartext HTTP on a loopback address: it never leaves the machine.
    LoopbackCleartext,
    /// Cleartext HTTP on an address other machines reach.
    PublicCleartext,
}

impl Transport {
    /// The transport of a cleartext listener bound to `addr`.
    pub fn cleartext(addr: SocketAddr) -> Self {
        if addr.ip().is_loopback() {
            Self::LoopbackCleartext
        } else {
            Self::PublicCleartext
        }
    }

    /// Whether answers carrying plaintext may travel over it.
    pub fn carries_plaintext(self) -> bool {
        !matches!(self, Self::PublicCleartext)
    }
}

/// The bounds on what one client can hold (the `cloister-kms serve` flags).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must be complete this long after its first byte.
    pub header_timeout: Duration,
    /// A connection with no request in progress, or whose client stops reading a response, is
    /// closed after this long.
    pub idle_timeout: Duration,
    /// A TLS handshake must be complete this long after the connection is accepted.
    pub tls_handshake_timeout: Duration,
    /// A request body must have arrived this long after its head.
    pub body_timeout: Duration,
    /// Connections open at once, over all listeners.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
}

/// Smallest head limit hyper accepts (its read buffer's minimum).
pub const MIN_HEADER_BYTES: usize = 8192;

/// Most connections the cap can be set to.
pub const MAX_CONNECTIONS: usize = 1 << 20;

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header timeout {:?}, idle timeout {:?}, TLS handshake timeout {:?}, body timeout {:?}, \
             at most {} connections, request heads at most {} bytes, bodies at most {} bytes",
            self.header_timeout,
            self.idle_timeout,
            self.tls_handshake_timeout,
            self.body_timeout,
            self.max_connections,
            self.max_header_bytes,
            crate::server::MAX_BODY,
        )
    }
}

/// A bound socket, plain or TLS, and the transport it gives its requests.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    transport: Transport,
    addr: SocketAddr,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Connections the kernel completes and queues before the accept loop takes them (the
/// standard library's 128 turns a burst of connections into one-second SYN retransmits).
const BACKLOG: u32 = 1024;

/// A TCP listener on `addr` with a backlog of [`BACKLOG`].
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Listener {
    /// Plain HTTP on `addr`.
    pub fn http(addr: SocketAddr) -> io::Result<Self> {
        let tcp = bind(addr)?;
        let addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            tls: None,
            transport: Transport::cleartext(addr),
            addr,
        })
    }

    /// HTTPS on `addr` with `config` (HTTP/1.1 is the only protocol offered).
    pub fn https(addr: SocketAddr, config: &rustls::ServerConfig) -> io::Result<Self> {
        let mut config = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = bind(addr)?;
        let addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            transport: Transport::Tls,
            addr,
        })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transport its requests come over.
    pub fn transport(&self) -> Transport {
        self.transport
    }
}

/// The connection cap shared by all listeners.
#[derive(Debug, Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: u32,
}

impl Connections {
    /// At most `max` connections at once (clamped to 1..=[`MAX_CONNECTIONS`]).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, MAX_CONNECTIONS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max: u32::try_from(max).unwrap_or(u32::MAX),
        }
    }

    /// Waits until every connection has closed, at most `grace`; how many are still open.
    pub async fn drained(&self, grace: Duration) -> usize {
        let all = tokio::time::timeout(grace, self.permits.acquire_many(self.max)).await;
        if matches!(all, Ok(Ok(_))) {
            return 0;
        }
        usize::try_from(self.max).unwrap_or(usize::MAX) - self.permits.available_permits()
    }
}

/// Resolves when `stop` turns true (never, if its sender is gone without saying so).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Warnings at most every few seconds, with how many were held back.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    held: u64,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(10);

    /// The number of events to report (this one included), if it is time to report.
    fn due(&mut self) -> Option<u64> {
        self.held += 1;
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.held))
    }
}

/// Serves `router` on `listener` until `stop` turns true. Connections run on their own tasks
/// and hold a permit of `connections` until they close; wait for them with
/// [`Connections::drained`].
pub async fn serve(
    listener: Listener,
    router: Router,
    limits: Arc<Limits>,
    connections: Connections,
    mut stop: watch::Receiver<bool>,
) {
    let mut refused = Throttled::default();
    let mut failed = Throttled::default();
    loop {
        let accepted = tokio::select! {
            r = listener.tcp.accept() => r,
            () = stopped(&mut stop) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait
                // a little rather than spin, and go on.
                if let Some(n) = failed.due() {
                    tracing::warn!("accepting on {}: {e} ({n} times)", listener.addr);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.permits.clone().try_acquire_owned() else {
            drop(tcp);
            if let Some(n) = refused.due() {
                tracing::warn!(
                    "{n} connections closed on arrival: {} connections are open (--max-connections)",
                    connections.max
                );
            }
            continue;
        };
        let conn = Connection {
            tls: listener.tls.clone(),
            router: router.clone(),
            limits: limits.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            conn.run(tcp).await;
            drop(permit);
        });
    }
}

/// One accepted connection and what it needs.
struct Connection {
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Arc<Limits>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        match self.tls.take() {
            None => self.http(tcp).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(tcp));
                let stream = tokio::select! {
                    r = handshake => r,
                    () = stopped(&mut self.stop) => return,
                };
                match stream {
                    Ok(Ok(stream)) => self.http(stream).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    /// HTTP/1.1 over `stream` until the client or the server closes it.
    async fn http<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.limits;
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(stream, activity.clone(), limits.idle_timeout));
        let body_timeout = limits.body_timeout;
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let req = req.map(|b| axum::body::Body::new(BodyDeadline::new(b, body_timeout)));
            router.clone().oneshot(req)
        });
        let conn = http1::Builder::new()
            .timer(HeadClock::new(activity, limits.idle_timeout))
            .header_read_timeout(limits.header_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
            .keep_alive(true)
            .serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection: {e}");
                    }
                    return;
                }
                () = stopped(&mut self.stop), if !stopping => {
                    // Finish the request in flight, if any, then close.
                    conn.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

/// Open files beyond the connections: the store, the listeners, the log.
const FD_MARGIN: u64 = 64;

/// Raises the soft limit on open files to the hard limit if it is below `max_connections` plus
/// a margin; returns the soft limit now in force and the number it should be at least.
pub fn raise_open_files(max_connections: usize) -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let want = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_MARGIN);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok((soft, want));
    }
    // Linux refuses an infinite open-file limit: ask for what is needed then.
    let target = if hard == RLIM_INFINITY { want } else { hard };
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    Ok((target, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transport_follows_the_address() {
        let t = |a: &str| Transport::cleartext(a.parse().unwrap());
        assert_eq!(t("127.0.0.1:1"), Transport::LoopbackCleartext);
        assert_eq!(t("[::1]:1"), Transport::LoopbackCleartext);
        assert_eq!(t("0.0.0.0:1"), Transport::PublicCleartext);
        assert_eq!(t("10.1.2.3:1"), Transport::PublicCleartext);
        assert!(!Transport::PublicCleartext.carries_plaintext());
        assert!(
            Transport::LoopbackCleartext.carries_plaintext() && Transport::Tls.carries_plaintext()
        );
    }

    #[test]
    fn the_open_file_limit_makes_room_for_the_connections() {
        let (soft, want) = raise_open_files(100).unwrap();
        assert_eq!(want, 164);
        assert!(
            soft >= want.min(
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .unwrap()
                    .1
            )
        );
    }

    #[tokio::test]
    async fn the_cap_drains_when_connections_close() {
        let c = Connections::new(3);
        let held = c.permits.clone().try_acquire_owned().unwrap();
        assert_eq!(c.drained(Duration::from_millis(10)).await, 1);
        drop(held);
        assert_eq!(c.drained(Duration::from_millis(10)).await, 0);
    }
}
