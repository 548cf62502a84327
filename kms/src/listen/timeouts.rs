//! The clocks a connection runs on, so that no client holds one by sending or reading slowly.
//!
//! - [`HeadClock`] is the timer hyper's `header_read_timeout` runs on. hyper starts that clock
//!   as soon as it waits for a request head, so on its own it would also close a connection
//!   idle between requests after the header timeout. This clock counts the header timeout from
//!   the first byte of the head instead, and before that byte allows the idle timeout (as Go's
//!   `ReadHeaderTimeout` and `IdleTimeout` do): a slow-loris head is cut the header timeout
//!   after it starts, an idle connection the idle timeout after its last request.
//! - [`Watched`] is the connection's stream: it tells the head clock when bytes arrive, and fails
//!   a write (the response) that makes no progress for the idle timeout, so a client that stops
//!   reading cannot hold its connection.
//! - [`BodyDeadline`] fails a request body that has not fully arrived within the body timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::rt::{Sleep as HyperSleep, Timer};
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When a connection's current request head started to arrive, shared by its stream (which
/// sees the bytes) and its head clock (which hyper starts when it waits for a head).
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    /// 1 + nanoseconds after `epoch` of the first read that returned bytes since the head
    /// clock was last started; 0: none yet.
    first_read: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            first_read: AtomicU64::new(0),
        })
    }

    /// A head clock starts: forget earlier reads.
    fn arm(&self) {
        self.first_read.store(0, Ordering::Relaxed);
    }

    /// Bytes arrived: the first time since [`Activity::arm`], note when.
    fn record_read(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        let _ =
            self.first_read
                .compare_exchange(0, nanos + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn first_read(&self) -> Option<Instant> {
        match self.first_read.load(Ordering::Relaxed) {
            0 => None,
            n => self.epoch.checked_add(Duration::from_nanos(n - 1)),
        }
    }
}

/// The timer of one connection: see the module header.
#[derive(Debug, Clone)]
pub(super) struct HeadClock {
    activity: Arc<Activity>,
    idle: Duration,
}

impl HeadClock {
    pub(super) fn new(activity: Arc<Activity>, idle: Duration) -> Self {
        Self { activity, idle }
    }
}

impl Timer for HeadClock {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn HyperSleep>> {
        TokioTimer::new().sleep(duration)
    }

    /// hyper asks for `deadline` = now + header timeout when it starts waiting for a head.
    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn HyperSleep>> {
        let header = deadline.saturating_duration_since(std::time::Instant::now());
        Box::pin(HeadSleep::new(self.activity.clone(), self.idle, header))
    }
}

/// Ready the idle timeout after it started if no byte arrived, else the header timeout after
/// the first byte.
#[derive(Debug)]
struct HeadSleep {
    activity: Arc<Activity>,
    header: Duration,
    first_byte: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl HeadSleep {
    /// Started now.
    fn new(activity: Arc<Activity>, idle: Duration, header: Duration) -> Self {
        activity.arm();
        Self {
            activity,
            header,
            first_byte: None,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.first_byte.is_none()
            && let Some(at) = this.activity.first_read()
        {
            this.first_byte = Some(at);
            if let Some(deadline) = at.checked_add(this.header) {
                this.sleep.as_mut().reset(deadline);
            }
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl HyperSleep for HeadSleep {}

/// A connection's stream: records reads for the [`HeadClock`], and fails writes that make no
/// progress for `stall_limit`.
#[derive(Debug)]
pub(super) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    stall_limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>, stall_limit: Duration) -> Self {
        Self {
            inner,
            activity,
            stall_limit,
            stalled: None,
        }
    }
}

impl<S: Unpin> Watched<S> {
    /// Runs a write-side poll; while it stays pending, the stall clock runs.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match f(Pin::new(&mut self.inner), cx) {
            Poll::Pending => {
                let limit = self.stall_limit;
                let stall = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(stall.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )))
            }
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            this.activity.record_read();
        }
        Poll::Ready(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_shutdown(cx))
    }
}

/// A request body that fails once `limit` has passed since the request head arrived.
#[derive(Debug)]
pub(super) struct BodyDeadline<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

impl<B> BodyDeadline<B> {
    pub(super) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for BodyDeadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive within the body timeout",
            )
            .into())));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_byte_the_idle_timeout_applies() {
        let started = Instant::now();
        HeadSleep::new(Activity::new(), secs(30), secs(10)).await;
        assert_eq!(started.elapsed(), secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_first_byte_the_header_timeout_applies() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut stream = Watched::new(server, activity.clone(), secs(30));
        let started = Instant::now();
        let mut head = std::pin::pin!(HeadSleep::new(activity, secs(30), secs(10)));
        tokio::time::sleep(secs(5)).await;
        // One byte a second: only the first one counts.
        let trickle = async {
            let mut byte = [0u8; 1];
            loop {
                client.write_all(b"P").await.unwrap();
                stream.read_exact(&mut byte).await.unwrap();
                tokio::time::sleep(secs(1)).await;
            }
        };
        tokio::select! {
            () = head.as_mut() => {}
            () = trickle => unreachable!(),
        }
        assert_eq!(started.elapsed(), secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_read_fails_after_the_stall_limit() {
        let (_client, server) = tokio::io::duplex(16);
        let mut stream = Watched::new(server, Activity::new(), secs(7));
        let started = Instant::now();
        let err = stream.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), secs(7));
    }

    /// A body that sends one byte a second, forever.
    struct Trickle(Pin<Box<Sleep>>);

    impl Body for Trickle {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            let this = self.get_mut();
            ready!(this.0.as_mut().poll(cx));
            this.0.as_mut().reset(Instant::now() + secs(1));
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_arriving_at_the_deadline_fails() {
        let slow = BodyDeadline::new(Trickle(Box::pin(tokio::time::sleep(secs(1)))), secs(3));
        let started = Instant::now();
        let err = axum::body::to_bytes(axum::body::Body::new(slow), usize::MAX)
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("body timeout"), "{err:?}");
        assert_eq!(started.elapsed(), secs(3));
        let whole = BodyDeadline::new(axum::body::Body::from("ok"), secs(3));
        let got = axum::body::to_bytes(axum::body::Body::new(whole), usize::MAX)
            .await
            .unwrap();
        assert_eq!(got, "ok");
    }
}
