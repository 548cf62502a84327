//! The proxy's job pipe: a job's bytes both ways between a client and the enclave.
//!
//! Between two plain Unix sockets (process mode, and a microVM's hybrid vsock) the bytes move by
//! `splice(2)` through one kernel pipe per direction: the proxy never copies them through its own
//! memory (and Linux 6.5 and later passes the pages on to the other socket without copying them
//! either). Anything else (AF_VSOCK, a hybrid handshake that left bytes buffered, no pipe to be
//! had) is copied through a buffer of [`PIPE_BUFFER`] per direction.
//!
//! Either way each direction runs until its source ends: then the destination's writing half is
//! shut down (the enclave reads end of stream when a client hangs up, the client when the
//! enclave does), or until writing fails (the destination is gone). The pipe returns when both
//! directions have ended, and the caller drops both connections, which frees the enclave's side.
//! A direction that fails does not cut the other short: an enclave that answers `Failed` and
//! hangs up while the client is still sending gets its answer through, where
//! `tokio::io::copy_bidirectional` drops everything at the first error.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use cloister_wire::Stream;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Interest};
use tokio::net::unix::{ReadHalf, WriteHalf};

/// The copy buffer for each direction when the bytes cannot be spliced (two per job, on the
/// host). Measured with `scripts/bench-pipe` forced to copy (2 shared cores, best runs): 8 KiB
/// (tokio's default) 3.0 GB/s, 64 KiB 6.3, 128 KiB 6.4, 256 KiB 6.7, 1 MiB 6.6.
pub(crate) const PIPE_BUFFER: usize = 256 << 10;

/// The capacity asked for each direction's kernel pipe (it holds page references, not a copy);
/// if the kernel refuses, the pipe keeps its default size. Measured: 64 KiB (the default) 8.5
/// GB/s, 256 KiB 9.2, 1 MiB 9.5.
const KERNEL_PIPE: usize = 1 << 20;

/// Forwards a job's bytes both ways until both directions have ended; the bytes each way
/// (client to enclave, enclave to client), or the first direction's error.
pub(crate) async fn pipe(client: &mut Stream, enclave: &mut Stream) -> io::Result<(u64, u64)> {
    if let (Stream::Unix(c), Stream::Unix(e)) = (&mut *client, &mut *enclave)
        && c.buffer().is_empty()
        && e.buffer().is_empty()
        && let (Ok(up_pipe), Ok(down_pipe)) = (KernelPipe::new(), KernelPipe::new())
    {
        let (c_read, c_write) = c.get_mut().split();
        let (e_read, e_write) = e.get_mut().split();
        let (up, down) = tokio::join!(
            splice_one_way(c_read, e_write, &up_pipe),
            splice_one_way(e_read, c_write, &down_pipe)
        );
        return Ok((up?, down?));
    }
    let (c_read, c_write) = tokio::io::split(client);
    let (e_read, e_write) = tokio::io::split(enclave);
    let (up, down) = tokio::join!(copy_one_way(c_read, e_write), copy_one_way(e_read, c_write));
    Ok((up?, down?))
}

/// Copies `from` to `to` through a buffer of [`PIPE_BUFFER`] until `from` ends (then shuts
/// down `to`'s writing half) or writing fails; the bytes copied. `to` must not buffer what it
/// is given (a socket), as nothing is flushed but at the end.
async fn copy_one_way<R, W>(from: R, mut to: W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = BufReader::with_capacity(PIPE_BUFFER, from);
    let mut total = 0u64;
    loop {
        let chunk = match from.fill_buf().await {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = to.shutdown().await;
                return Err(e);
            }
        };
        if chunk.is_empty() {
            to.shutdown().await?;
            return Ok(total);
        }
        to.write_all(chunk).await?;
        let n = chunk.len();
        from.consume(n);
        total += n as u64;
    }
}

/// A kernel pipe that holds one direction's bytes between two splices.
#[derive(Debug)]
struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes.
    size: usize,
}

impl KernelPipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let asked = i32::try_from(KERNEL_PIPE).unwrap_or(i32::MAX);
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(asked));
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?;
        Ok(Self {
            read,
            write,
            size: usize::try_from(size).unwrap_or(4096).max(1),
        })
    }
}

/// Moves bytes from `from` to `to` through `pipe` until `from` ends (then shuts down `to`'s
/// writing half) or writing fails; the bytes moved.
async fn splice_one_way(
    from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    pipe: &KernelPipe,
) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so "would block" can only mean the socket has nothing yet.
        let n = loop {
            let taken = match from.readable().await {
                Ok(()) => from.as_ref().try_io(Interest::READABLE, || {
                    Ok(splice(
                        from.as_ref().as_fd(),
                        None,
                        &pipe.write,
                        None,
                        pipe.size,
                        flags,
                    )?)
                }),
                Err(e) => Err(e),
            };
            match taken {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = to.shutdown().await;
                    return Err(e);
                }
            }
        };
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        // Everything in the pipe goes out before more is taken in.
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.as_ref().try_io(Interest::WRITABLE, || {
                Ok(splice(
                    &pipe.read,
                    None,
                    to.as_ref().as_fd(),
                    None,
                    left,
                    flags,
                )?)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    use super::*;

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7 + seed) % 251).to_le_bytes()[0])
            .collect()
    }

    /// A user's end and the proxy's end of a Unix connection; with `buffered`, the proxy's end
    /// holds bytes already read into its buffer (as a hybrid handshake may leave), which
    /// makes the pipe copy instead of splice.
    async fn connection(buffered: bool) -> (UnixStream, Stream) {
        let (mut user, proxy) = UnixStream::pair().unwrap();
        let mut proxy = BufReader::new(proxy);
        if buffered {
            user.write_all(b"early").await.unwrap();
            assert_eq!(proxy.fill_buf().await.unwrap(), b"early");
        }
        (user, Stream::Unix(proxy))
    }

    /// A piped job: the client's and the enclave's ends, and the pipe's task.
    async fn piped(
        buffered: bool,
    ) -> (
        UnixStream,
        UnixStream,
        tokio::task::JoinHandle<io::Result<(u64, u64)>>,
    ) {
        let (client, mut c) = connection(buffered).await;
        let (enclave, mut e) = connection(false).await;
        let task = tokio::spawn(async move { pipe(&mut c, &mut e).await });
        (client, enclave, task)
    }

    async fn read_all(s: &mut UnixStream) -> Vec<u8> {
        let mut v = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut v))
            .await
            .unwrap()
            .unwrap();
        v
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_ends_are_passed_on() {
        for buffered in [false, true] {
            let (mut client, mut enclave, task) = piped(buffered).await;
            let (up, down) = (pattern(5 << 20, 1), pattern(3 << 20, 2));
            let sent = up.clone();
            let writer = tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client.shutdown().await.unwrap();
                client
            });
            let got = read_all(&mut enclave).await;
            let early = if buffered { &b"early"[..] } else { b"" };
            assert!(got == [early, &up].concat(), "buffered {buffered}");
            let mut client = writer.await.unwrap();
            let sent = down.clone();
            let writer = tokio::spawn(async move {
                enclave.write_all(&sent).await.unwrap();
                enclave.shutdown().await.unwrap();
                enclave
            });
            assert!(read_all(&mut client).await == down, "buffered {buffered}");
            writer.await.unwrap();
            let (a, b) = task.await.unwrap().unwrap();
            assert_eq!((a, b), ((up.len() + early.len()) as u64, down.len() as u64));
        }
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_mid_job_frees_the_enclave_side() {
        for buffered in [false, true] {
            // The enclave, seeing the end of its input, gives up and closes: the pipe ends.
            let (mut client, mut enclave, task) = piped(buffered).await;
            client.write_all(&pattern(100_000, 3)).await.unwrap();
            drop(client);
            let got = read_all(&mut enclave).await;
            assert_eq!(got.len(), 100_000 + if buffered { 5 } else { 0 });
            drop(enclave);
            let done = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(done.unwrap().unwrap().is_ok(), "buffered {buffered}");

            // The enclave answers into the void: the pipe fails and drops the enclave's side.
            let (mut client, mut enclave, task) = piped(buffered).await;
            client.write_all(b"half a job").await.unwrap();
            drop(client);
            read_all(&mut enclave).await;
            let answer = pattern(64 << 10, 4);
            let freed = tokio::time::timeout(Duration::from_secs(10), async {
                // Until the proxy lets go, writes land in the socket's buffer.
                while enclave.write_all(&answer).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(
                freed.is_ok(),
                "buffered {buffered}: the enclave's side was kept"
            );
            assert!(task.await.unwrap().is_err(), "buffered {buffered}");
        }
    }

    #[tokio::test]
    async fn an_enclave_that_hangs_up_ends_the_client_side() {
        for buffered in [false, true] {
            let (mut client, mut enclave, task) = piped(buffered).await;
            enclave.write_all(b"Failed").await.unwrap();
            drop(enclave);
            assert_eq!(read_all(&mut client).await, b"Failed");
            drop(client);
            // Buffered, the early bytes could not reach the closed enclave: an error, but the
            // answer went through.
            let done = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(done.is_ok(), "buffered {buffered}");
        }
    }

    #[tokio::test]
    async fn an_enclave_that_fails_while_the_client_sends_gets_its_answer_through() {
        for buffered in [false, true] {
            let (client, mut enclave, task) = piped(buffered).await;
            let (mut from_proxy, mut to_proxy) = client.into_split();
            let sender = tokio::spawn(async move {
                let chunk = pattern(64 << 10, 5);
                while to_proxy.write_all(&chunk).await.is_ok() {}
            });
            // The enclave reads a little, answers and hangs up on the rest of its input.
            let mut first = [0u8; 16];
            enclave.read_exact(&mut first).await.unwrap();
            enclave.write_all(b"Failed").await.unwrap();
            drop(enclave);
            let mut got = Vec::new();
            // The end is an end of stream or a reset (the proxy had unread input): either way
            // the answer came first.
            let _ = tokio::time::timeout(Duration::from_secs(10), from_proxy.read_to_end(&mut got))
                .await
                .unwrap();
            assert_eq!(got, b"Failed", "buffered {buffered}");
            let done = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(done.unwrap().unwrap().is_err(), "buffered {buffered}");
            tokio::time::timeout(Duration::from_secs(10), sender)
                .await
                .unwrap()
                .unwrap();
        }
    }
}
