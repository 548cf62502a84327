//! `cloister attest inspect|verify`: what a user runs to check a document by hand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use cloister_attestation::{
    AttestationDocument, CertificateInfo, PcrIndex, PcrValue, Policy, Timestamp, TrustAnchor,
    Verifier, VerifyAt,
};
use serde_json::{Value, json};

use crate::Failure;
use crate::input::read_document;

#[derive(Debug, Subcommand)]
pub(crate) enum AttestCommand {
    /// Decode a document and print its fields WITHOUT verifying anything.
    Inspect {
        /// The document: a file (raw CBOR, hex or base64), or - for stdin.
        doc: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a document's chain, signature and the given policy.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The document: a file (raw CBOR, hex or base64), or - for stdin.
    doc: PathBuf,
    /// A PEM file of trusted root(s); replaces the built-in AWS Nitro root. Repeatable.
    #[arg(long = "root", value_name = "PEM")]
    roots: Vec<PathBuf>,
    /// Verify at this instant (unix seconds or RFC 3339) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS|RFC3339", value_parser = parse_instant)]
    at: Option<Timestamp>,
    /// Require PCR N to equal HEX (96 hex digits). Repeatable.
    #[arg(long = "expect-pcr", value_name = "N=HEX", value_parser = parse_pcr)]
    expect_pcr: Vec<(PcrIndex, PcrValue)>,
    /// Require the document's nonce to equal HEX.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    nonce: Option<HexBytes>,
    /// Refuse documents whose timestamp is more than SECONDS away from the instant.
    #[arg(long = "max-age", value_name = "SECONDS")]
    max_age: Option<u64>,
    /// Accept documents from debug-mode enclaves (PCR0 all zero).
    #[arg(long = "allow-debug")]
    allow_debug: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_instant(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).ok_or_else(|| format!("{s:?} is neither unix seconds nor RFC 3339"))
}

/// `N=HEX` (or `PCRN=HEX`): a PCR index and its 96-hex-digit value.
pub(crate) fn parse_pcr(s: &str) -> Result<(PcrIndex, PcrValue), String> {
    let (n, value) = s.split_once('=').ok_or("expected N=HEX")?;
    let index = n
        .trim()
        .trim_start_matches("PCR")
        .parse::<u64>()
        .ok()
        .and_then(PcrIndex::new)
        .ok_or_else(|| format!("PCR index {n:?} is not in 0..32"))?;
    let value = value.parse::<PcrValue>().map_err(|e| e.to_string())?;
    Ok((index, value))
}

/// Bytes given as hex on the command line (a newtype: clap would read `Vec<u8>` as many values).
#[derive(Debug, Clone)]
pub(crate) struct HexBytes(Vec<u8>);

fn parse_hex(s: &str) -> Result<HexBytes, String> {
    hex::decode(s.trim())
        .map(HexBytes)
        .map_err(|e| format!("not hex: {e}"))
}

pub(crate) fn run(cmd: AttestCommand) -> Result<(), Failure> {
    match cmd {
        AttestCommand::Inspect { doc, json } => inspect(doc, json),
        AttestCommand::Verify(args) => verify(args),
    }
}

fn inspect(path: PathBuf, as_json: bool) -> Result<(), Failure> {
    let bytes = read_document(&path).map_err(Failure::Input)?;
    let decoded = cloister_attestation::decode(&bytes)?;
    let d = &decoded.document;
    let hex_opt = |v: &Option<Vec<u8>>| v.as_ref().map_or(Value::Null, |b| json!(hex::encode(b)));
    let report = json!({
        "verified": false,
        "tagged": decoded.tagged,
        "module_id": d.module_id,
        "digest": "SHA384",
        "timestamp_ms": d.timestamp.as_millis(),
        "timestamp": d.timestamp.to_rfc3339(),
        "pcrs": pcrs_json(d),
        "certificate": cert_json(&d.certificate),
        "cabundle": d.cabundle.iter().map(|c| cert_json(c)).collect::<Vec<_>>(),
        "public_key": hex_opt(&d.public_key),
        "user_data": hex_opt(&d.user_data),
        "nonce": hex_opt(&d.nonce),
        "signature": hex::encode(&decoded.signature),
    });
    if as_json {
        println!("{report:#}");
        return Ok(());
    }
    println!("NOT VERIFIED (inspect only decodes)");
    print_summary(d);
    println!("certificate  {}", describe_cert(&d.certificate));
    for (i, c) in d.cabundle.iter().enumerate() {
        println!("cabundle[{i}]  {}", describe_cert(c));
    }
    for (name, v) in [
        ("public_key", &d.public_key),
        ("user_data", &d.user_data),
        ("nonce", &d.nonce),
    ] {
        println!(
            "{name:<12} {}",
            v.as_ref().map_or("null".into(), hex::encode)
        );
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let bytes = read_document(&args.doc).map_err(Failure::Input)?;
    let anchors = if args.roots.is_empty() {
        vec![TrustAnchor::aws_nitro_root_g1()]
    } else {
        let mut anchors = Vec::new();
        for path in &args.roots {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| Failure::Input(anyhow::anyhow!("reading {}: {e}", path.display())))?;
            let found = TrustAnchor::all_from_pem(&pem)
                .map_err(|e| Failure::Input(anyhow::anyhow!("{}: {e}", path.display())))?;
            anchors.extend(found);
        }
        anchors
    };
    let mut policy = Policy::new().allow_debug(args.allow_debug);
    for (index, value) in args.expect_pcr {
        policy = policy.expect_pcr(index, value);
    }
    if let Some(nonce) = args.nonce {
        policy = policy.nonce(nonce.0);
    }
    if let Some(secs) = args.max_age {
        policy = policy.max_age(Duration::from_secs(secs));
    }
    let at = args.at.map_or(VerifyAt::Now, VerifyAt::Instant);
    let v = Verifier::new(anchors).verify(&bytes, at, &policy)?;
    let len = |x: &Option<Vec<u8>>| x.as_ref().map(Vec::len);
    if args.json {
        let report = json!({
            "verified": true,
            "module_id": v.module_id,
            "timestamp_ms": v.timestamp.as_millis(),
            "timestamp": v.timestamp.to_rfc3339(),
            "verified_at_ms": v.verified_at().as_millis(),
            "tagged": v.tagged(),
            "pcrs": pcrs_json(&v),
            "public_key_len": len(&v.public_key),
            "user_data_len": len(&v.user_data),
            "nonce_len": len(&v.nonce),
        });
        println!("{report:#}");
        return Ok(());
    }
    println!("VERIFIED at {}", v.verified_at());
    print_summary(&v);
    for (name, x) in [
        ("public_key", &v.public_key),
        ("user_data", &v.user_data),
        ("nonce", &v.nonce),
    ] {
        println!(
            "{name:<12} {}",
            len(x).map_or("null".into(), |n| format!("{n} bytes"))
        );
    }
    Ok(())
}

fn print_summary(d: &AttestationDocument) {
    println!("module_id    {}", d.module_id);
    println!(
        "timestamp    {} ({} ms)",
        d.timestamp,
        d.timestamp.as_millis()
    );
    if d.pcrs.is_debug() {
        println!("debug mode   yes (PCR0 is all zero)");
    }
    for (i, v) in d.pcrs.iter() {
        println!("PCR{:<9} {v}", i.get());
    }
}

fn pcrs_json(d: &AttestationDocument) -> Value {
    d.pcrs
        .iter()
        .map(|(i, v)| (i.get().to_string(), json!(v.to_hex())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn cert_json(der: &[u8]) -> Value {
    match CertificateInfo::parse(der) {
        Some(c) => json!({
            "subject": c.subject,
            "issuer": c.issuer,
            "not_before": Timestamp::from_secs(u64::try_from(c.not_before).unwrap_or(0)).to_rfc3339(),
            "not_after": Timestamp::from_secs(u64::try_from(c.not_after).unwrap_or(0)).to_rfc3339(),
            "sha256": c.sha256,
        }),
        None => json!({"unparseable": true, "len": der.len()}),
    }
}

fn describe_cert(der: &[u8]) -> String {
    match CertificateInfo::parse(der) {
        Some(c) => format!(
            "{} (valid {} .. {})",
            c.subject,
            Timestamp::from_secs(u64::try_from(c.not_before).unwrap_or(0)),
            Timestamp::from_secs(u64::try_from(c.not_after).unwrap_or(0))
        ),
        None => format!("<{} bytes, not a certificate>", der.len()),
    }
}
