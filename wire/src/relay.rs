//! The KMS relay's handshake: how the enclave asks the host to connect it to the KMS.
//!
//! The enclave opens a stream to the host's relay and sends `CONNECT <host:port>`; the relay
//! answers `OK` and from then on copies bytes both ways (TLS the enclave terminates against the
//! KMS's CA, so the host can neither read nor forge them), or `DENIED <reason>` when the
//! destination is not the one it is allowed to reach. [`connect`] is the enclave's side,
//! [`accept`] the relay's.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::error::WireError;
use crate::line::{read_line, write_line};

/// Longest handshake line either side accepts.
pub const MAX_LINE: usize = 512;
/// How long either side waits for the other's line.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The enclave's request: a destination `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    destination: String,
}

impl Connect {
    /// A request for `destination` (`host:port`: no spaces, no control characters).
    pub fn new(destination: &str) -> Result<Self, WireError> {
        let ok = !destination.is_empty()
            && destination.len() < MAX_LINE - "CONNECT \n".len()
            && destination.contains(':')
            && destination.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(WireError::Handshake(format!(
                "relay destination {destination:?} is not host:port"
            )));
        }
        Ok(Self {
            destination: destination.to_owned(),
        })
    }

    /// The destination asked for.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    fn line(&self) -> String {
        format!("CONNECT {}", self.destination)
    }

    fn parse(line: &str) -> Result<Self, WireError> {
        let dest = line.strip_prefix("CONNECT ").ok_or_else(|| {
            WireError::Handshake(format!("expected \"CONNECT host:port\", got {line:?}"))
        })?;
        Self::new(dest)
    }
}

/// The relay's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Connected: the stream now reaches the destination.
    Ok,
    /// Refused, with the relay's reason.
    Denied(String),
}

impl Reply {
    fn line(&self) -> String {
        match self {
            Self::Ok => "OK".into(),
            Self::Denied(reason) => {
                let clean: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(MAX_LINE - "DENIED \n".len())
                    .collect();
                format!("DENIED {clean}")
            }
        }
    }

    fn parse(line: &str) -> Result<Self, WireError> {
        if line == "OK" {
            return Ok(Self::Ok);
        }
        match line.strip_prefix("DENIED") {
            Some(reason) => Ok(Self::Denied(reason.trim_start().to_owned())),
            None => Err(WireError::Handshake(format!(
                "expected \"OK\" or \"DENIED reason\" from the relay, got {line:?}"
            ))),
        }
    }
}

/// The enclave's side: asks the relay at the other end of `stream` for `request`'s destination.
/// On `OK` the returned stream reaches it; `DENIED` is [`WireError::RelayDenied`].
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: &Connect,
) -> Result<BufReader<S>, WireError> {
    let mut s = BufReader::new(stream);
    write_line(s.get_mut(), &request.line()).await?;
    match Reply::parse(&read_line(&mut s, MAX_LINE, TIMEOUT).await?)? {
        Reply::Ok => Ok(s),
        Reply::Denied(reason) => Err(WireError::RelayDenied(reason)),
    }
}

/// A request the relay has read and not yet answered.
#[derive(Debug)]
pub struct Pending<S> {
    stream: BufReader<S>,
    request: Connect,
}

/// The relay's side: reads the enclave's request from `stream`.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<Pending<S>, WireError> {
    let mut stream = BufReader::new(stream);
    let request = Connect::parse(&read_line(&mut stream, MAX_LINE, TIMEOUT).await?)?;
    Ok(Pending { stream, request })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pending<S> {
    /// What the enclave asked for.
    pub fn request(&self) -> &Connect {
        &self.request
    }

    /// Answers `OK`; the returned stream (with anything the enclave already sent) is to be
    /// joined to the destination.
    pub async fn grant(mut self) -> Result<BufReader<S>, WireError> {
        write_line(self.stream.get_mut(), &Reply::Ok.line()).await?;
        Ok(self.stream)
    }

    /// Answers `DENIED reason` and closes.
    pub async fn deny(mut self, reason: &str) -> Result<(), WireError> {
        write_line(self.stream.get_mut(), &Reply::Denied(reason.into()).line()).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn requests_and_replies_round_trip_and_bad_ones_are_refused() {
        let c = Connect::new("127.0.0.1:4600").unwrap();
        assert_eq!(Connect::parse(&c.line()).unwrap(), c);
        for bad in ["", "nohostport", "a b:1", "x:1\nCONNECT evil:1", "CONNECT"] {
            assert_eq!(
                Connect::new(bad).unwrap_err().code(),
                "WIRE-HANDSHAKE",
                "{bad:?}"
            );
        }
        assert!(Connect::parse("GET / HTTP/1.1").is_err());
        for r in [Reply::Ok, Reply::Denied("destination not allowed".into())] {
            assert_eq!(Reply::parse(&r.line()).unwrap(), r);
        }
        assert_eq!(
            Reply::Denied("two\nlines".into()).line(),
            "DENIED two lines",
            "a reason cannot smuggle a second line"
        );
        assert!(Reply::parse("OKAY").is_err());
    }

    #[tokio::test]
    async fn granted_streams_carry_bytes_and_denials_are_typed() {
        let (enclave, relay) = tokio::io::duplex(4096);
        let relay_side = tokio::spawn(async move {
            let pending = accept(relay).await.unwrap();
            assert_eq!(pending.request().destination(), "kms:443");
            let mut s = pending.grant().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let mut s = connect(enclave, &Connect::new("kms:443").unwrap())
            .await
            .unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        relay_side.await.unwrap();

        let (enclave, relay) = tokio::io::duplex(4096);
        let relay_side = tokio::spawn(async move {
            accept(relay)
                .await
                .unwrap()
                .deny("destination not allowed")
                .await
                .unwrap();
        });
        let e = connect(enclave, &Connect::new("evil:443").unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "WIRE-RELAY-DENIED");
        assert!(e.to_string().contains("destination not allowed"));
        relay_side.await.unwrap();

        // A relay that answers garbage is a handshake error, not a connection.
        let (enclave, mut relay) = tokio::io::duplex(4096);
        relay.write_all(b"HTTP/1.1 200 OK\n").await.unwrap();
        let e = connect(enclave, &Connect::new("kms:443").unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "WIRE-HANDSHAKE");
    }
}
