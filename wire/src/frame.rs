//! Length-prefixed CBOR frames with a size limit and read timeouts.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::WireError;
use crate::message::{Envelope, Message, PROTOCOL_VERSION};

/// Largest frame by default: 16 MiB (a batch of sealed records).
pub const MAX_FRAME: usize = 16 << 20;

/// Decodes one frame body (without its length prefix).
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    let mut rest = body;
    let env: Envelope =
        ciborium::from_reader(&mut rest).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} bytes after the envelope",
            rest.len()
        )));
    }
    if env.v != PROTOCOL_VERSION {
        return Err(WireError::Version(env.v));
    }
    Ok(env.msg)
}

/// Encodes a message as one frame, length prefix included.
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    ciborium::into_writer(
        &Envelope {
            v: PROTOCOL_VERSION,
            msg: msg.clone(),
        },
        &mut out,
    )
    .map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = u32::try_from(out.len() - 4).map_err(|_| WireError::TooLarge {
        len: out.len(),
        max: MAX_FRAME,
    })?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Reads frames with a size limit and a timeout per read.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    timeout: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with the default limit and the given timeout.
    pub fn new(inner: R, timeout: Duration) -> Self {
        Self {
            inner,
            max: MAX_FRAME,
            timeout,
        }
    }

    /// Changes the frame size limit.
    #[must_use]
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The next message; `Ok(None)` on a clean end of stream between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, WireError> {
        match read_raw(&mut self.inner, self.max, self.timeout).await? {
            Some(body) => decode(&body).map(Some),
            None => Ok(None),
        }
    }
}

/// A frame body's first allocation: a body buffer starts at most this large and then at most
/// doubles, so it holds at most twice the bytes received (plus this), never the declared length
/// up front: a peer that announces [`MAX_FRAME`] and sends little costs little.
const FIRST_CHUNK: usize = 64 << 10;

/// The capacity a body buffer holding `have` bytes of a `declared`-byte frame grows to when it is
/// full: double what has arrived (at least [`FIRST_CHUNK`]), never more than the frame.
fn next_capacity(have: usize, declared: usize) -> usize {
    have.saturating_mul(2).max(FIRST_CHUNK).min(declared)
}

/// Reads one length-prefixed frame body of at most `max` bytes; `Ok(None)` on a clean end of
/// stream before the frame. Each read (the first byte, the rest of the length, the body) waits at
/// most `timeout`. The body buffer grows with the bytes that arrive, not with the length the peer
/// announced.
pub async fn read_raw<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut len = [0u8; 4];
    let first = tokio::time::timeout(timeout, r.read(&mut len[..1]))
        .await
        .map_err(|_| WireError::Timeout(timeout))?
        .map_err(WireError::io("reading a frame"))?;
    if first == 0 {
        return Ok(None);
    }
    read_exact(r, &mut len[1..], timeout).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(WireError::TooLarge { len: n, max });
    }
    let mut body = Vec::new();
    read_body(r, n, &mut body, timeout).await?;
    Ok(Some(body))
}

/// Reads a body of `n` bytes into `body` (empty on entry) within `timeout`; on an error `body`
/// keeps what had arrived.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    body: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), WireError> {
    match tokio::time::timeout(timeout, fill(r, n, body)).await {
        Err(_) => Err(WireError::Timeout(timeout)),
        Ok(result) => result,
    }
}

/// Appends to `body` until it holds `n` bytes, growing it by [`next_capacity`] only when it is
/// full, and never reading past the frame.
async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    body: &mut Vec<u8>,
) -> Result<(), WireError> {
    while body.len() < n {
        if body.len() == body.capacity() {
            body.reserve_exact(next_capacity(body.len(), n) - body.len());
        }
        let rest = (n - body.len()) as u64;
        match (&mut *r).take(rest).read_buf(body).await {
            Ok(0) => return Err(WireError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(WireError::Closed);
            }
            Err(e) => return Err(WireError::io("reading a frame")(e)),
        }
    }
    Ok(())
}

async fn read_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<(), WireError> {
    match tokio::time::timeout(timeout, r.read_exact(buf)).await {
        Err(_) => Err(WireError::Timeout(timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Closed),
        Ok(Err(e)) => Err(WireError::io("reading a frame")(e)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Writes one length-prefixed frame.
pub async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), WireError> {
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    w.write_all(&len.to_be_bytes())
        .await
        .map_err(WireError::io("writing a frame"))?;
    w.write_all(body)
        .await
        .map_err(WireError::io("writing a frame"))?;
    w.flush().await.map_err(WireError::io("writing a frame"))
}

/// Writes frames.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer.
    pub fn new(inner: W) -> Self {
        Self { inner }
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &Message) -> Result<(), WireError> {
        let frame = encode(msg)?;
        self.inner
            .write_all(&frame)
            .await
            .map_err(WireError::io("writing a frame"))?;
        self.inner
            .flush()
            .await
            .map_err(WireError::io("writing a frame"))
    }

    /// Ends the writing direction (the peer reads end of stream).
    pub async fn shutdown(&mut self) -> Result<(), WireError> {
        self.inner
            .shutdown()
            .await
            .map_err(WireError::io("closing the stream"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{KmsAccess, Operation, SecretString};

    fn job() -> Message {
        Message::Job {
            id: 7,
            op: Operation::Stats {
                group_by: Some("country".into()),
                fields: vec!["age".into()],
            },
            kms: KmsAccess {
                region: "us-east-1".into(),
                access_key_id: "AKIA".into(),
                secret_access_key: SecretString::new("s".into()),
                session_token: None,
            },
        }
    }

    #[tokio::test]
    async fn round_trip_over_a_pipe() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b, Duration::from_secs(1));
        let msgs = [
            job(),
            Message::Sealed {
                name: "m1".into(),
                bytes: vec![1, 2, 3],
            },
            Message::EndOfInput,
        ];
        for m in &msgs {
            w.send(m).await.unwrap();
        }
        drop(w);
        for m in &msgs {
            assert_eq!(r.next().await.unwrap().as_ref(), Some(m));
        }
        assert!(r.next().await.unwrap().is_none());
    }

    #[test]
    fn large_sealed_messages_round_trip() {
        // Larger than ciborium's 4 KiB scratch buffer (a regression found by scripts/run).
        let big = Message::Sealed {
            name: "big".into(),
            bytes: (0..100_000u32).map(|i| (i % 251) as u8).collect(),
        };
        let frame = encode(&big).unwrap();
        assert_eq!(decode(&frame[4..]).unwrap(), big);
    }

    #[test]
    fn sealed_bytes_are_a_cbor_byte_string() {
        let f = encode(&Message::Sealed {
            name: "x".into(),
            bytes: vec![0xAA; 3],
        })
        .unwrap();
        assert!(f.windows(4).any(|w| w == [0x43, 0xAA, 0xAA, 0xAA]));
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbage_frames_fail_cleanly() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, Duration::from_secs(1)).with_max(100);
        a.write_all(&1000u32.to_be_bytes()).await.unwrap();
        assert_eq!(r.next().await.unwrap_err().code(), "WIRE-TOO-LARGE");

        let (mut a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, Duration::from_secs(1));
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(a);
        assert_eq!(r.next().await.unwrap_err().code(), "WIRE-CLOSED");

        assert_eq!(decode(&[0xff, 0x00]).unwrap_err().code(), "WIRE-MALFORMED");
        let mut other = Vec::new();
        ciborium::into_writer(
            &Envelope {
                v: 99,
                msg: Message::EndOfInput,
            },
            &mut other,
        )
        .unwrap();
        assert_eq!(decode(&other).unwrap_err().code(), "WIRE-VERSION");
    }

    #[test]
    fn body_buffers_grow_by_doubling_up_to_the_frame() {
        assert_eq!(next_capacity(0, 10), 10);
        assert_eq!(next_capacity(0, MAX_FRAME), FIRST_CHUNK);
        assert_eq!(next_capacity(FIRST_CHUNK, MAX_FRAME), 2 * FIRST_CHUNK);
        assert_eq!(next_capacity(5 * FIRST_CHUNK, MAX_FRAME), 10 * FIRST_CHUNK);
        assert_eq!(next_capacity(MAX_FRAME - 1, MAX_FRAME), MAX_FRAME);
        assert_eq!(next_capacity(usize::MAX, usize::MAX), usize::MAX);
    }

    #[tokio::test]
    async fn a_peer_announcing_a_huge_frame_costs_only_what_it_sends() {
        // Announces MAX_FRAME, sends 10 bytes, stalls: a timeout, and no 16 MiB buffer.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&[7; 10]).await.unwrap();
        let mut body = Vec::new();
        let err = read_body(&mut b, MAX_FRAME, &mut body, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "WIRE-TIMEOUT");
        assert_eq!(body, [7; 10]);
        assert!(body.capacity() <= FIRST_CHUNK, "{}", body.capacity());

        // The same through the frame reader, length prefix included.
        let (mut a, b) = tokio::io::duplex(1 << 16);
        a.write_all(&u32::try_from(MAX_FRAME).unwrap().to_be_bytes())
            .await
            .unwrap();
        a.write_all(&[7; 10]).await.unwrap();
        let mut r = FrameReader::new(b, Duration::from_millis(50));
        assert_eq!(r.next().await.unwrap_err().code(), "WIRE-TIMEOUT");

        // A peer that sends more gets a buffer at most twice what it sent.
        for sent in [
            FIRST_CHUNK - 1,
            FIRST_CHUNK,
            FIRST_CHUNK + 1,
            300_001,
            1 << 20,
            3 << 20,
        ] {
            let (mut a, mut b) = tokio::io::duplex(sent + 1);
            a.write_all(&vec![1; sent]).await.unwrap();
            let mut body = Vec::new();
            let err = read_body(&mut b, MAX_FRAME, &mut body, Duration::from_millis(200))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "WIRE-TIMEOUT");
            // (All of it, unless the machine was too busy to read it in time.)
            assert!(body.len() <= sent && body[..] == vec![1; body.len()][..]);
            assert!(
                body.capacity() <= (2 * body.len()).max(FIRST_CHUNK),
                "{} bytes received, capacity {}",
                body.len(),
                body.capacity()
            );
            // A peer that hangs up mid-frame: the frame is truncated.
            drop(a);
            let mut body = Vec::new();
            let err = read_body(&mut b, MAX_FRAME, &mut body, Duration::from_secs(10))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "WIRE-CLOSED");
        }
    }

    #[tokio::test]
    async fn frames_of_many_sizes_round_trip() {
        let sizes = [
            0,
            1,
            2,
            3,
            4,
            100,
            4095,
            FIRST_CHUNK - 1,
            FIRST_CHUNK,
            FIRST_CHUNK + 1,
            2 * FIRST_CHUNK,
            2 * FIRST_CHUNK + 1,
            1_000_003,
            MAX_FRAME - 1,
            MAX_FRAME,
        ];
        let body = |i: usize, n: usize| -> Vec<u8> {
            (0..n)
                .map(|j| ((i * 31 + j * 7) % 251).to_le_bytes()[0])
                .collect()
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            for (i, n) in sizes.iter().enumerate() {
                write_raw(&mut a, &body(i, *n)).await.unwrap();
            }
        });
        for (i, n) in sizes.iter().enumerate() {
            let got = read_raw(&mut b, MAX_FRAME, Duration::from_secs(10))
                .await
                .unwrap()
                .unwrap();
            assert!(got == body(i, *n), "frame {i} of {n} bytes differs");
            // The last step of the growth stops at the declared length: no slack.
            assert_eq!(got.capacity(), *n);
        }
        writer.await.unwrap();
        assert!(
            read_raw(&mut b, MAX_FRAME, Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ping_and_pong_are_plain_variant_names() {
        // What `scripts/fuzz` seeds the frame target with: frames of the same shape as every
        // other message, so a peer older than them reads a malformed frame, nothing worse.
        let ping = b"\x00\x00\x00\x0d\xa2\x61v\x02\x63msg\x64Ping";
        assert_eq!(encode(&Message::Ping).unwrap(), ping);
        let pong = encode(&Message::Pong).unwrap();
        assert_eq!(decode(&pong[4..]).unwrap(), Message::Pong);
        assert_eq!(pong[..13], ping[..13]);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, Duration::from_millis(50));
        assert_eq!(r.next().await.unwrap_err().code(), "WIRE-TIMEOUT");
    }
}
