//! The enclave's record path beside the AES-GCM it is built on: single-threaded, same run.
//!
//! Sealed batches are AWS Encryption SDK messages of 1 MiB of plaintext: JSON-lines records of
//! 256 B and of 16 KiB (objects padded to the size, newline included), framed with the frame
//! length `cloister seal` writes by default. The record path is what the enclave does with a
//! message once its data key is released: `cloister_esdk::decrypt` (commitment, header tag, every
//! frame, and for 0x0578 the signature over the whole message), splitting the plaintext into
//! lines (`cloister_enclave::record::lines`, memchr), and dropping (zeroizing) it. The same path
//! with every record then parsed into zeroizing memory (`record::parse`, which every operation
//! does next) is printed beside it for information; the goals are about the record path.
//!
//! The reference is a bare aws-lc-rs AES-256-GCM open (`LessSafeKey::open_in_place`, a fresh
//! nonce per call, no AAD) of one record-sized buffer: 1 MiB of such buffers is restored untimed,
//! then opened timed.
//!
//! Goals, as ratios to the reference:
//! - 16 KiB records: record path MB/s at least 0.8x the reference's MB/s;
//! - 256 B records: record path ns/record at most 2x the reference's ns/op.
//!
//! The machine is shared, so every case of a table is timed in the same rounds: each round runs
//! every case once (about `BENCH_RUN_MS`, default 250 ms, after a warm-up), `BENCH_RUNS` rounds
//! (default 5). Figures are best / median of the rounds; a goal's ratio is the median over rounds
//! of the ratio within a round (the cases it compares ran back to back), with the ratio of the
//! best runs beside it. MB = 10^6 bytes. It prints PASS/MISS and asserts nothing about speed.
//!
//! Run: `scripts/bench-records`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use cloister_esdk::{DEFAULT_FRAME_LENGTH, DataKey, Edk, EncryptionContext, Encryptor, Suite};
use zeroize::{Zeroize, Zeroizing};

/// Plaintext per sealed message.
const MESSAGE_BYTES: usize = 1 << 20;
/// Record sizes, newline included.
const RECORD_SIZES: [usize; 2] = [256, 16 << 10];
const WARM_UP: Duration = Duration::from_millis(150);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One timed thing. `iteration` returns the duration of its measured part (so that set-up it
/// needs every time, such as restoring ciphertext, stays out), and covers `units` records (or
/// opens); samples are seconds per unit, one per round.
struct Case<'a> {
    name: String,
    units: usize,
    iteration: Box<dyn FnMut() -> Duration + 'a>,
    iters: u32,
    samples: Vec<f64>,
}

impl<'a> Case<'a> {
    fn new(name: String, units: usize, iteration: impl FnMut() -> Duration + 'a) -> Self {
        Self {
            name,
            units,
            iteration: Box::new(iteration),
            iters: 0,
            samples: Vec::new(),
        }
    }

    fn best(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }
}

/// Warms up and calibrates every case, then runs `rounds` rounds of every case in turn.
fn run_rounds(cases: &mut [Case<'_>], rounds: u64, run_time: Duration) {
    for c in cases.iter_mut() {
        let start = Instant::now();
        let (mut n, mut spent) = (0u32, Duration::ZERO);
        while start.elapsed() < WARM_UP || n < 3 {
            spent += (c.iteration)();
            n += 1;
        }
        let per = (spent / n).as_nanos().max(1);
        c.iters = (run_time.as_nanos() / per).clamp(3, 1 << 24) as u32;
    }
    for _ in 0..rounds {
        for c in cases.iter_mut() {
            let total: Duration = (0..c.iters).map(|_| (c.iteration)()).sum();
            c.samples
                .push(total.as_secs_f64() / f64::from(c.iters) / c.units as f64);
        }
    }
}

/// Median over rounds of `a`'s time over `b`'s within a round.
fn paired_ratio(a: &Case<'_>, b: &Case<'_>) -> f64 {
    let mut r: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| x / y)
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

/// One JSON object of exactly `size` bytes, newline included.
fn record(i: usize, size: usize) -> Vec<u8> {
    let head = format!("{{\"id\":{i},\"name\":\"record-{i}\",\"pad\":\"");
    let tail = "\"}\n";
    let mut r = head.into_bytes();
    r.resize(size - tail.len(), b'x');
    r.extend_from_slice(tail.as_bytes());
    assert_eq!(r.len(), size);
    r
}

fn batch(size: usize) -> Vec<u8> {
    let out: Vec<u8> = (0..MESSAGE_BYTES / size)
        .flat_map(|i| record(i, size))
        .collect();
    assert_eq!(out.len(), MESSAGE_BYTES);
    out
}

fn seal(suite: Suite, frame: Option<u32>, key: &DataKey, plaintext: &[u8]) -> Vec<u8> {
    let context: EncryptionContext = [("tenant".to_owned(), "acme".to_owned())].into();
    let edk = Edk {
        provider_id: "aws-kms".into(),
        provider_info: "arn:aws:kms:us-east-1:111122223333:key/bench".into(),
        ciphertext: vec![0x5a; 184],
    };
    Encryptor::new(suite, context, frame)
        .unwrap()
        .seal(key, vec![edk], plaintext)
        .unwrap()
}

/// The enclave's split (`cloister_enclave::record::lines`): lines, blank ones skipped.
fn split_lines(plain: &[u8]) -> usize {
    let mut n = 0;
    for (_, line) in cloister_enclave::record::lines(plain) {
        black_box(line);
        n += 1;
    }
    n
}

/// The split, then every record parsed into zeroizing memory (`record::parse`), as a job does
/// before its operation: for information, beside the goals.
fn split_and_parse(plain: &[u8]) -> usize {
    let mut n = 0;
    for (_, line) in cloister_enclave::record::lines(plain) {
        black_box(cloister_enclave::record::parse(line).unwrap());
        n += 1;
    }
    n
}

type Split = fn(&[u8]) -> usize;
const SPLITS: [(&str, Split); 2] = [("split", split_lines), ("split + parse", split_and_parse)];

/// The record path over one message.
fn record_path<'a>(
    name: String,
    message: &'a [u8],
    key: &'a DataKey,
    split: Split,
    records: usize,
) -> Case<'a> {
    let plain = cloister_esdk::decrypt(message, key).unwrap();
    assert_eq!(split(&plain), records);
    drop(plain);
    Case::new(name, records, move || {
        let t = Instant::now();
        let plain = cloister_esdk::decrypt(black_box(message), key).unwrap();
        let n = split(&plain);
        drop(plain);
        let e = t.elapsed();
        assert_eq!(n, records);
        e
    })
}

/// `decrypt` alone, its plaintext dropped.
fn decrypt_only<'a>(name: String, message: &'a [u8], key: &'a DataKey, records: usize) -> Case<'a> {
    Case::new(name, records, move || {
        let t = Instant::now();
        drop(black_box(
            cloister_esdk::decrypt(black_box(message), key).unwrap(),
        ));
        t.elapsed()
    })
}

/// A split alone, over plaintext already in memory.
fn split_only<'a>(name: String, plain: &'a [u8], split: Split, records: usize) -> Case<'a> {
    Case::new(name, records, move || {
        let t = Instant::now();
        let n = split(black_box(plain));
        let e = t.elapsed();
        assert_eq!(n, records);
        e
    })
}

/// aws-lc-rs AES-256-GCM `open_in_place` of `size`-byte buffers, 1 MiB of them per iteration.
fn reference_open(size: usize) -> Case<'static> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).unwrap());
    let count = MESSAGE_BYTES / size;
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&(i as u64).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let mut sealed = Vec::with_capacity(count * (size + 16));
    for i in 0..count {
        let mut buf: Vec<u8> = (0..size).map(|j| (i + j).to_le_bytes()[0]).collect();
        key.seal_in_place_append_tag(nonce(i), Aad::empty(), &mut buf)
            .unwrap();
        sealed.extend_from_slice(&buf);
    }
    let mut work = sealed.clone();
    Case::new(
        format!("aws-lc-rs AES-256-GCM open {}", size_name(size)),
        count,
        move || {
            work.copy_from_slice(&sealed);
            let t = Instant::now();
            for (i, buf) in work.chunks_exact_mut(size + 16).enumerate() {
                let plain = key
                    .open_in_place(nonce(i), Aad::empty(), black_box(buf))
                    .unwrap();
                black_box(plain);
            }
            t.elapsed()
        },
    )
}

fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn frame_name(frame: Option<u32>) -> String {
    frame.map_or("non-framed".into(), |f| size_name(f as usize))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn main() {
    let rounds = env_or("BENCH_RUNS", 5).max(1);
    let run_time = Duration::from_millis(env_or("BENCH_RUN_MS", 250));
    let key = DataKey::new([7; 32]);
    let frame = Some(DEFAULT_FRAME_LENGTH);
    println!(
        "record path = cloister_esdk::decrypt + split into lines + drop; 1 MiB of plaintext per \
         message; frame length {} (cloister seal's default); single thread",
        frame_name(frame)
    );
    println!(
        "reference = aws-lc-rs AES-256-GCM open_in_place of one record-sized buffer, fresh nonce \
         per call"
    );
    println!(
        "best / median of {rounds} rounds of about {} ms per case; MB = 10^6 B",
        run_time.as_millis()
    );
    let suites = [Suite::Committing, Suite::CommittingEcdsaP384];
    for size in RECORD_SIZES {
        let records = MESSAGE_BYTES / size;
        let plaintext = batch(size);
        let messages: Vec<Vec<u8>> = suites
            .iter()
            .map(|s| seal(*s, frame, &key, &plaintext))
            .collect();
        let mut cases = vec![reference_open(size)];
        for (suite, message) in suites.iter().zip(&messages) {
            for (name, split) in SPLITS {
                let name = format!("record path {:#06x}, {name}", suite.id());
                cases.push(record_path(name, message, &key, split, records));
            }
        }
        let paths = 1..cases.len();
        for (suite, message) in suites.iter().zip(&messages) {
            let name = format!("  part: decrypt {:#06x} (+ drop)", suite.id());
            cases.push(decrypt_only(name, message, &key, records));
        }
        for (name, split) in SPLITS {
            cases.push(split_only(
                format!("  part: {name}"),
                &plaintext,
                split,
                records,
            ));
        }
        run_rounds(&mut cases, rounds, run_time);

        println!(
            "\n== {} records ({records} per message) ==",
            size_name(size)
        );
        println!(
            "| {:<34} | {:>17} | {:>19} | {:>19} |",
            "case", "MB/s", "ns/record (ns/op)", "records/s"
        );
        println!("|{:-<36}|{:-<19}|{:-<21}|{:-<21}|", "", "", "", "");
        for c in &cases {
            let (b, m) = (c.best(), c.median());
            println!(
                "| {:<34} | {:>7.0} / {:>7.0} | {:>8.1} / {:>8.1} | {:>8.2}M / {:>7.2}M |",
                c.name,
                size as f64 / b / 1e6,
                size as f64 / m / 1e6,
                b * 1e9,
                m * 1e9,
                1.0 / b / 1e6,
                1.0 / m / 1e6,
            );
        }
        let reference = &cases[0];
        for c in &cases[paths] {
            if c.name.contains("parse") {
                let r = paired_ratio(reference, c);
                println!(
                    "info: {}: {r:.2}x aws-lc-rs MB/s (JSON parsing, not a goal)",
                    c.name
                );
                continue;
            }
            if size >= 16 << 10 {
                let r = paired_ratio(reference, c);
                let rb = reference.best() / c.best();
                println!(
                    "goal: {}: MB/s >= 0.8x aws-lc-rs: {r:.2}x (best runs {rb:.2}x) {}",
                    c.name,
                    verdict(r >= 0.8)
                );
            } else {
                let r = paired_ratio(c, reference);
                let rb = c.best() / reference.best();
                println!(
                    "goal: {}: ns/record <= 2x aws-lc-rs ns/op: {r:.2}x (best runs {rb:.2}x) {}",
                    c.name,
                    verdict(r <= 2.0)
                );
            }
        }
    }

    println!(
        "\n== zeroizing 1 MiB of plaintext on drop (what decrypt's result costs when dropped) =="
    );
    let mut cases = vec![
        Case::new("Zeroizing<Vec<u8>> (byte stores)".into(), 1, || {
            let v = Zeroizing::new(vec![1u8; MESSAGE_BYTES]);
            let t = Instant::now();
            drop(black_box(v));
            t.elapsed()
        }),
        Case::new("[u8]::zeroize, as Plaintext does".into(), 1, || {
            let mut v = black_box(vec![1u8; MESSAGE_BYTES]);
            let t = Instant::now();
            v.as_mut_slice().zeroize();
            drop(v);
            t.elapsed()
        }),
    ];
    run_rounds(&mut cases, rounds.min(3), run_time);
    for c in &cases {
        println!(
            "| {:<34} | {:>7.1} / {:>7.1} us | {:>6.0} / {:>6.0} MB/s |",
            c.name,
            c.best() * 1e6,
            c.median() * 1e6,
            MESSAGE_BYTES as f64 / c.best() / 1e6,
            MESSAGE_BYTES as f64 / c.median() / 1e6,
        );
    }

    let sweep_rounds = rounds.min(3);
    println!(
        "\n== frame length: decrypt 0x0478 (+ drop), MB/s best / median of {sweep_rounds} \
         rounds, and median MB/s ratio to aws-lc-rs open of the record size =="
    );
    let frames = [
        Some(4096),
        Some(16 << 10),
        Some(64 << 10),
        Some(256 << 10),
        Some(1 << 20),
        None,
    ];
    let messages: Vec<Vec<Vec<u8>>> = RECORD_SIZES
        .iter()
        .map(|size| {
            let plaintext = batch(*size);
            frames
                .iter()
                .map(|f| seal(Suite::Committing, *f, &key, &plaintext))
                .collect()
        })
        .collect();
    let mut cases = Vec::new();
    for (size, per_frame) in RECORD_SIZES.iter().zip(&messages) {
        cases.push(reference_open(*size));
        for (f, message) in frames.iter().zip(per_frame) {
            cases.push(decrypt_only(
                frame_name(*f),
                message,
                &key,
                MESSAGE_BYTES / size,
            ));
        }
    }
    run_rounds(&mut cases, sweep_rounds, run_time);
    print!("| {:<10} |", "frame");
    for size in RECORD_SIZES {
        print!(" {:>31} |", format!("{} records", size_name(size)));
    }
    println!();
    for (i, f) in frames.iter().enumerate() {
        print!("| {:<10} |", frame_name(*f));
        for (j, size) in RECORD_SIZES.iter().enumerate() {
            let reference = &cases[j * (frames.len() + 1)];
            let c = &cases[j * (frames.len() + 1) + 1 + i];
            print!(
                " {:>8.0} / {:>8.0} MB/s {:>5.2}x |",
                *size as f64 / c.best() / 1e6,
                *size as f64 / c.median() / 1e6,
                paired_ratio(reference, c)
            );
        }
        println!();
    }
}
