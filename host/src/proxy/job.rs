//! One job in replay mode: the proxy reads the protocol's frames both ways, so that a job whose
//! enclave dies before answering is re-run on another enclave, and the client sees its results
//! once.
//!
//! - **Input**: the client's frames (`Job`, `Sealed`..., `EndOfInput`) are read and kept, in
//!   order, while they are forwarded to the enclave running the job. A re-run sends them all
//!   again to the next enclave.
//! - **Output**: `Progress` is forwarded as it comes (a re-run starts counting again); result
//!   frames (`Rows`, `Resealed`, `MessageFailed`) are held until the enclave answers `Done` or
//!   `Failed`, then forwarded with it. So if the enclave's connection dies first, the client has
//!   seen no result and the job can be re-run elsewhere: no job is lost, none is counted twice.
//! - **Bounded**: what is held (input and results together) is at most the replay buffer. A job
//!   that outgrows it is still run, but it is committed to its enclave: held results go out,
//!   input frames are dropped once sent, the client is read at most [`WINDOW`] ahead of the
//!   enclave, and if that enclave dies the job fails `PROXY-ENCLAVE-LOST`.
//! - **Never re-run**: a job the enclave answered `Failed` (it answered); a job already tried
//!   on `max_attempts` enclaves. Connections that could not be opened are not attempts (nothing
//!   was sent): the next enclave is tried, and when none can be reached the job fails
//!   `PROXY-NO-ENCLAVE`.
//! - A client's malformed frame or stall ([`Limits::io_timeout`]) fails its job
//!   `PROXY-BAD-INPUT`, and a client that stops reading is dropped after as long; an enclave's
//!   malformed or out-of-place frame, or its silence past [`ENCLAVE_GRACE`] more, counts as its
//!   death.
//! - A client's `Ping` (instead of a `Job`) goes to one enclave like a job, and its `Pong`
//!   back: a probe through the proxy, counted as no job.
//!
//! Every failure is one `Failed` frame to the client and a log line; the proxy goes on serving.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cloister_wire::frame::{decode, encode, read_raw, write_raw};
use cloister_wire::{MAX_FRAME, Message, Stream};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::pool::{Outcome, Pool};

/// How far the client is read ahead of the enclave once a job can no longer be replayed.
pub(crate) const WINDOW: usize = MAX_FRAME;

/// How long connecting to an enclave may take (the hybrid handshake included).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than [`Limits::io_timeout`] the proxy waits for an enclave's next frame.
/// An enclave waiting for a stalled client's input answers `Failed` itself after its own I/O
/// timeout (from the last frame it got, which may be later than its own last frame): the
/// proxy must not call it dead first, or one slow client would take enclaves out and re-run
/// its job on them.
pub(crate) const ENCLAVE_GRACE: Duration = Duration::from_secs(30);

/// The codes of the failures the proxy itself answers.
pub(crate) const NO_ENCLAVE: &str = "PROXY-NO-ENCLAVE";
pub(crate) const ENCLAVE_LOST: &str = "PROXY-ENCLAVE-LOST";
pub(crate) const BAD_INPUT: &str = "PROXY-BAD-INPUT";

/// A job's limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Most bytes held for a re-run (input and held results together).
    pub(crate) replay_buffer: usize,
    /// Most enclaves a job is sent to.
    pub(crate) max_attempts: u32,
    /// How long the proxy waits for the client's next frame, or the enclave's.
    pub(crate) io_timeout: Duration,
}

/// How the client's input ended.
#[derive(Debug)]
enum End {
    /// `EndOfInput`.
    Complete,
    /// End of stream before `EndOfInput` (the enclave is told the same way).
    Closed,
    /// A malformed frame, a read error or a stall.
    Broken(String),
}

/// The client's input as far as it has arrived, shared by the client's reader and the attempt
/// feeding the enclave.
#[derive(Debug)]
struct Input {
    /// Frame bodies; `frames[k]` is frame number `first + k`.
    frames: VecDeque<Arc<Vec<u8>>>,
    first: usize,
    /// Bytes in `frames`.
    held: usize,
    /// Result bytes held by the current attempt.
    output_held: usize,
    /// Frames the current attempt has sent to its enclave (a frame number).
    written: usize,
    /// Bytes of frames not yet sent to the current attempt's enclave.
    pending: usize,
    end: Option<End>,
    /// Why the job can no longer be re-run, once it cannot.
    committed: Option<String>,
    limit: usize,
    /// The client's first frame was `Ping` (a health probe, not a job): the enclave's `Pong`
    /// answers it.
    probe: bool,
}

impl Input {
    /// A job's input before its first frame, kept for a re-run up to `limit` bytes.
    fn new(limit: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            first: 0,
            held: 0,
            output_held: 0,
            written: 0,
            pending: 0,
            end: None,
            committed: None,
            limit,
            probe: false,
        }
    }

    fn replayable(&self) -> bool {
        self.committed.is_none()
    }

    /// Commits the job to its enclave if what is held exceeds the replay buffer.
    fn check_limit(&mut self) {
        if self.replayable() && self.held.saturating_add(self.output_held) > self.limit {
            self.committed = Some(format!(
                "it outgrew the replay buffer of {} bytes",
                self.limit
            ));
            self.drop_written();
        }
    }

    /// Drops the frames already sent (only once committed: a re-run needs them all).
    fn drop_written(&mut self) {
        while self.first < self.written {
            let Some(f) = self.frames.pop_front() else {
                break;
            };
            self.held = self.held.saturating_sub(f.len());
            self.first += 1;
        }
    }

    /// A new attempt starts from the first frame, with no result held.
    fn start_attempt(&mut self) {
        self.written = self.first;
        self.pending = self.held;
        self.output_held = 0;
    }
}

fn lock(input: &Mutex<Input>) -> MutexGuard<'_, Input> {
    input.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an attempt ended.
#[derive(Debug)]
enum Ended {
    /// The enclave answered `Done`, forwarded with the results.
    Done,
    /// The enclave answered `Failed`, forwarded.
    Failed,
    /// The enclave answered the client's `Ping` with `Pong`, forwarded (not a job).
    Pong,
    /// The enclave's connection died (or it broke the protocol) before `Done`/`Failed`.
    Died(String),
    /// The client could not be written to.
    ClientGone(String),
    /// The client's input was broken.
    BadInput(String),
}

/// Runs one client's job over the pool's enclaves.
pub(crate) async fn run(client: Stream, pool: &Pool, limits: &Limits) -> Result<(), String> {
    let (mut cr, mut cw) = tokio::io::split(client);
    let input = Mutex::new(Input::new(limits.replay_buffer));
    let (bell, _) = watch::channel(());
    let reader = async {
        read_client(&mut cr, &input, &bell, limits).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = reader => Ok(()),
        r = attempts(&mut cw, &input, &bell, pool, limits) => r,
    }
}

/// Reads the client's frames into `input` until its end, staying at most [`WINDOW`] ahead of
/// the enclave once the job is committed.
async fn read_client(
    r: &mut ReadHalf<Stream>,
    input: &Mutex<Input>,
    bell: &watch::Sender<()>,
    limits: &Limits,
) {
    let mut rx = bell.subscribe();
    loop {
        loop {
            rx.borrow_and_update();
            {
                let i = lock(input);
                if i.replayable() || i.pending < WINDOW {
                    break;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
        let end = match read_raw(r, MAX_FRAME, limits.io_timeout).await {
            Ok(Some(body)) => match decode(&body) {
                Ok(msg) => {
                    let last = matches!(msg, Message::EndOfInput);
                    let ping = matches!(msg, Message::Ping);
                    drop(msg);
                    let mut i = lock(input);
                    if ping && i.first + i.frames.len() == 0 {
                        i.probe = true;
                    }
                    i.held += body.len();
                    i.pending += body.len();
                    i.frames.push_back(Arc::new(body));
                    i.check_limit();
                    last.then_some(End::Complete)
                }
                Err(e) => Some(End::Broken(format!(
                    "a malformed frame from the client: {e}"
                ))),
            },
            Ok(None) => Some(End::Closed),
            Err(e) => Some(End::Broken(format!("reading the client's input: {e}"))),
        };
        let done = end.is_some();
        if end.is_some() {
            lock(input).end = end;
        }
        bell.send_replace(());
        if done {
            return;
        }
    }
}

/// What the feeder does next.
enum Next {
    Frame(Arc<Vec<u8>>),
    Wait,
    Idle,
    Shutdown,
    Broken(String),
}

/// Sends the input to the enclave as it arrives. Returns only if the client's input is broken
/// (the reason); otherwise, once all is sent (or the enclave stops reading), it waits for the
/// answer side to end the attempt.
async fn feed(w: &mut WriteHalf<Stream>, input: &Mutex<Input>, bell: &watch::Sender<()>) -> String {
    let mut rx = bell.subscribe();
    loop {
        rx.borrow_and_update();
        let next = {
            let i = lock(input);
            if i.written < i.first + i.frames.len() {
                Next::Frame(i.frames[i.written - i.first].clone())
            } else {
                match &i.end {
                    None => Next::Wait,
                    Some(End::Complete) => Next::Idle,
                    Some(End::Closed) => Next::Shutdown,
                    Some(End::Broken(why)) => Next::Broken(why.clone()),
                }
            }
        };
        match next {
            Next::Frame(f) => {
                if write_raw(w, &f).await.is_err() {
                    // The enclave stopped reading: its answer (or its death) ends the attempt.
                    break;
                }
                let mut i = lock(input);
                i.written += 1;
                i.pending = i.pending.saturating_sub(f.len());
                if !i.replayable() {
                    i.drop_written();
                }
                drop(i);
                bell.send_replace(());
            }
            Next::Wait => {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            Next::Idle => break,
            Next::Shutdown => {
                let _ = w.shutdown().await;
                break;
            }
            Next::Broken(why) => return why,
        }
    }
    std::future::pending().await
}

/// Reads the enclave's answer: forwards `Progress`, holds results while the job is replayable,
/// and forwards them with `Done` or `Failed`.
async fn answer(
    r: &mut ReadHalf<Stream>,
    client: &mut WriteHalf<Stream>,
    input: &Mutex<Input>,
    limits: &Limits,
) -> Ended {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let body = match read_raw(r, MAX_FRAME, limits.io_timeout + ENCLAVE_GRACE).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Ended::Died(
                    "the enclave closed the connection before Done or Failed".into(),
                );
            }
            Err(e) => return Ended::Died(format!("reading the enclave's answer: {e}")),
        };
        let last = match decode(&body) {
            Ok(Message::Progress { .. }) => {
                // Counts only: forwarded now, ahead of any results still held (unless the job
                // was committed meanwhile: then what was held goes first).
                if !held.is_empty() && !lock(input).replayable() {
                    for h in held.drain(..) {
                        if let Err(e) = to_client(client, &h, limits).await {
                            return Ended::ClientGone(e);
                        }
                    }
                }
                if let Err(e) = to_client(client, &body, limits).await {
                    return Ended::ClientGone(e);
                }
                continue;
            }
            Ok(Message::Rows { .. } | Message::Resealed { .. } | Message::MessageFailed { .. }) => {
                let mut i = lock(input);
                if i.replayable() {
                    i.output_held += body.len();
                    i.check_limit();
                }
                if i.replayable() {
                    drop(i);
                    held.push(body);
                    continue;
                }
                None
            }
            Ok(Message::Done { .. }) => Some(Ended::Done),
            Ok(Message::Failed { .. }) => Some(Ended::Failed),
            Ok(Message::Pong) if lock(input).probe => Some(Ended::Pong),
            Ok(_) => return Ended::Died("the enclave sent a host's message during a job".into()),
            Err(e) => return Ended::Died(format!("a malformed frame from the enclave: {e}")),
        };
        for h in held.drain(..) {
            if let Err(e) = to_client(client, &h, limits).await {
                return Ended::ClientGone(e);
            }
        }
        if let Err(e) = to_client(client, &body, limits).await {
            return Ended::ClientGone(e);
        }
        if let Some(end) = last {
            return end;
        }
    }
}

/// Sends the client one `Failed` frame of the proxy's own (it may be gone, or not reading:
/// that is ignored after [`Limits::io_timeout`]).
async fn fail(client: &mut WriteHalf<Stream>, code: &str, reason: String, limits: &Limits) {
    if let Ok(frame) = encode(&Message::Failed {
        code: code.to_owned(),
        reason,
    }) {
        let _ = tokio::time::timeout(limits.io_timeout, async {
            let _ = client.write_all(&frame).await;
            let _ = client.flush().await;
        })
        .await;
    }
}

/// Writes one frame to the client, waiting at most [`Limits::io_timeout`] for it to take it: a
/// client that stops reading must not hold its job (its lease, its held results) forever.
async fn to_client(
    client: &mut WriteHalf<Stream>,
    body: &[u8],
    limits: &Limits,
) -> Result<(), String> {
    match tokio::time::timeout(limits.io_timeout, write_raw(client, body)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "it took no answer for {:?} (it stopped reading)",
            limits.io_timeout
        )),
    }
}

/// Runs the job's attempts until one ends it; the error says why the job failed in the proxy.
async fn attempts(
    client: &mut WriteHalf<Stream>,
    input: &Mutex<Input>,
    bell: &watch::Sender<()>,
    pool: &Pool,
    limits: &Limits,
) -> Result<(), String> {
    let mut unreachable: Vec<usize> = Vec::new();
    let mut why_unreachable: Vec<String> = Vec::new();
    let mut attempt = 0u32;
    // Why the last attempt was lost, if one was.
    let mut lost: Option<String> = None;
    loop {
        let Some(lease) = pool.choose(&unreachable) else {
            let mut why = format!(
                "no enclave could be reached: {}",
                why_unreachable.join("; ")
            );
            if let Some(lost) = &lost {
                why = format!("{lost}; then {why}");
            }
            fail(client, NO_ENCLAVE, why.clone(), limits).await;
            return Err(why);
        };
        let (index, address) = (lease.index, lease.address().to_string());
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, lease.address().connect()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let why = format!("{address}: {e}");
                if !super::pool::own_shortage(&e) {
                    pool.mark_down(index, &why);
                }
                unreachable.push(index);
                why_unreachable.push(why);
                continue;
            }
            Err(_) => {
                let why = format!("{address}: no connection within {CONNECT_TIMEOUT:?}");
                pool.mark_down(index, &why);
                unreachable.push(index);
                why_unreachable.push(why);
                continue;
            }
        };
        attempt += 1;
        lock(input).start_attempt();
        let (mut er, mut ew) = tokio::io::split(stream);
        let ended = tokio::select! {
            why = feed(&mut ew, input, bell) => Ended::BadInput(why),
            e = answer(&mut er, client, input, limits) => e,
        };
        match ended {
            Ended::Done => {
                pool.count(index, Outcome::Done);
                return Ok(());
            }
            Ended::Failed => {
                pool.count(index, Outcome::Failed);
                return Ok(());
            }
            // A probe through the proxy: answered, and no job to count.
            Ended::Pong => return Ok(()),
            Ended::ClientGone(why) => {
                pool.count(index, Outcome::Failed);
                return Err(format!("the client went away: {why}"));
            }
            Ended::BadInput(why) => {
                pool.count(index, Outcome::Failed);
                fail(client, BAD_INPUT, why.clone(), limits).await;
                return Err(why);
            }
            Ended::Died(why) => {
                let why = format!("the enclave {address} was lost mid-job: {why}");
                pool.mark_down(index, &why);
                let committed = lock(input).committed.clone();
                let refusal = match committed {
                    Some(c) => Some(format!("{why}; the job cannot be re-run: {c}")),
                    None if attempt >= limits.max_attempts => Some(format!(
                        "{why}; the job was not re-run again: it was tried on {attempt} enclave(s) (--max-attempts)"
                    )),
                    None => None,
                };
                if let Some(reason) = refusal {
                    pool.count(index, Outcome::Failed);
                    fail(client, ENCLAVE_LOST, reason.clone(), limits).await;
                    return Err(reason);
                }
                pool.count(index, Outcome::Rerun);
                eprintln!("cloister proxy: {why}; re-running the job on another enclave");
                lost = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(limit: usize) -> Input {
        Input::new(limit)
    }

    fn push(i: &mut Input, n: usize) {
        i.held += n;
        i.pending += n;
        i.frames.push_back(Arc::new(vec![0; n]));
        i.check_limit();
    }

    #[test]
    fn a_job_within_the_buffer_keeps_every_frame_for_a_re_run() {
        let mut i = input(100);
        push(&mut i, 40);
        push(&mut i, 40);
        i.written = 2;
        i.pending = 0;
        i.output_held = 20;
        i.check_limit();
        assert!(i.replayable(), "100 bytes held of 100");
        i.start_attempt();
        assert_eq!(
            (i.written, i.pending, i.output_held, i.frames.len()),
            (0, 80, 0, 2)
        );
    }

    #[test]
    fn past_the_buffer_the_job_is_committed_and_sent_frames_are_dropped() {
        let mut i = input(100);
        push(&mut i, 60);
        i.written = 1;
        i.pending = 0;
        push(&mut i, 60);
        assert!(!i.replayable());
        assert!(i.committed.as_deref().unwrap().contains("100 bytes"));
        // The sent frame is gone, the unsent one kept.
        assert_eq!((i.first, i.frames.len(), i.held, i.pending), (1, 1, 60, 60));
        // Results count too.
        let mut j = input(100);
        push(&mut j, 60);
        j.output_held = 41;
        j.check_limit();
        assert!(!j.replayable());
    }
}
