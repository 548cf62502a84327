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

/// Reads one length-prefixed frame body of at most `max` bytes; `Ok(None)` on a clean end of
/// stream before the frame. Each read waits at most `timeout`.
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
    let mut body = vec![0u8; n];
    read_exact(r, &mut body, timeout).await?;
    Ok(Some(body))
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

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, Duration::from_millis(50));
        assert_eq!(r.next().await.unwrap_err().code(), "WIRE-TIMEOUT");
    }
}
