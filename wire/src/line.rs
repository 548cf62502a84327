//! Line handshakes: the one helper behind the hybrid-vsock `CONNECT <port>` / `OK <port>` and
//! the KMS relay's `CONNECT host:port` / `OK` / `DENIED reason`.
//!
//! A handshake line comes from a peer that is not trusted: it is bounded in length and time,
//! must be UTF-8, and ends at the first `\n`; bytes after it stay in the buffered reader for
//! the stream that follows.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::WireError;

/// Reads one `\n`-terminated line of at most `max` bytes (terminator included) within `timeout`,
/// and returns it without the terminator (and without a `\r` before it).
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<String, WireError> {
    let mut line = Vec::new();
    let complete = tokio::time::timeout(timeout, async {
        loop {
            let buf = r.fill_buf().await?;
            if buf.is_empty() {
                return Ok::<bool, std::io::Error>(false);
            }
            let room = max.saturating_sub(line.len());
            if let Some(i) = buf.iter().take(room).position(|b| *b == b'\n') {
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                return Ok(true);
            }
            if buf.len() >= room {
                return Ok(false);
            }
            let n = buf.len();
            line.extend_from_slice(buf);
            r.consume(n);
        }
    })
    .await
    .map_err(|_| WireError::Timeout(timeout))?
    .map_err(WireError::io("reading a handshake line"))?;
    if !complete {
        return Err(WireError::Handshake(format!(
            "no complete handshake line within {max} bytes"
        )));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| WireError::Handshake("handshake is not text".into()))
}

/// Writes `line` and its `\n`, and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> Result<(), WireError> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    w.write_all(&bytes)
        .await
        .map_err(WireError::io("writing a handshake line"))?;
    w.flush()
        .await
        .map_err(WireError::io("writing a handshake line"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, BufReader};

    use super::*;

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn reads_one_line_and_leaves_the_rest() {
        let mut r = BufReader::new(&b"OK 5000\r\nTLS bytes"[..]);
        assert_eq!(read_line(&mut r, 64, T).await.unwrap(), "OK 5000");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"TLS bytes");
    }

    #[tokio::test]
    async fn long_unterminated_binary_and_silent_lines_are_refused() {
        let long = [b'x'; 100];
        let code = |e: WireError| e.code();
        assert_eq!(
            code(
                read_line(&mut BufReader::new(&long[..]), 64, T)
                    .await
                    .unwrap_err()
            ),
            "WIRE-HANDSHAKE"
        );
        // Exactly at the limit with the terminator is fine; one more byte is not.
        let mut at = vec![b'y'; 63];
        at.push(b'\n');
        assert_eq!(
            read_line(&mut BufReader::new(&at[..]), 64, T)
                .await
                .unwrap()
                .len(),
            63
        );
        let mut over = vec![b'y'; 64];
        over.push(b'\n');
        assert!(
            read_line(&mut BufReader::new(&over[..]), 64, T)
                .await
                .is_err()
        );
        assert!(
            read_line(&mut BufReader::new(&b"no newline"[..]), 64, T)
                .await
                .is_err()
        );
        assert!(
            read_line(&mut BufReader::new(&b"\xff\xfe\n"[..]), 64, T)
                .await
                .is_err()
        );
        let (_keep, silent) = tokio::io::duplex(16);
        let e = read_line(&mut BufReader::new(silent), 64, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "WIRE-TIMEOUT");
    }
}
