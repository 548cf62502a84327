//! Reading an attestation document from the user: a file or stdin, raw CBOR, hex or base64.
//!
//! The encoding is detected: a COSE_Sign1 starts with 0x84 (array of 4) or 0xd2 (tag 18), bytes
//! no text encoding begins with; otherwise the input must be hex (preferred when it parses) or
//! base64 (standard or URL-safe, padded or not), with whitespace ignored.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Largest input accepted, in any encoding.
const MAX_INPUT: u64 = 1 << 20;

/// Reads `path` (`-` for stdin) and returns the document's raw bytes.
pub(crate) fn read_document(path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut raw)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut raw))
            .with_context(|| format!("reading {}", path.display()))?;
    }
    if raw.len() as u64 > MAX_INPUT {
        bail!("{} is larger than {MAX_INPUT} bytes", path.display());
    }
    decode_any(&raw).with_context(|| format!("decoding {}", path.display()))
}

/// Detects raw CBOR, hex or base64 and returns the raw bytes.
pub(crate) fn decode_any(raw: &[u8]) -> Result<Vec<u8>> {
    match raw.first() {
        None => bail!("input is empty"),
        Some(0x84 | 0xd2) => return Ok(raw.to_vec()),
        Some(_) => {}
    }
    let text: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        bail!("input is only whitespace");
    }
    if text.iter().all(u8::is_ascii_hexdigit) && text.len().is_multiple_of(2) {
        return hex::decode(&text).context("not valid hex");
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(&text) {
            return Ok(bytes);
        }
    }
    bail!("input is neither a CBOR document, hex, nor base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        let doc = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xff];
        assert_eq!(decode_any(&doc).unwrap(), doc);
        assert_eq!(decode_any(hex::encode(&doc).as_bytes()).unwrap(), doc);
        assert_eq!(
            decode_any(format!("{}\n", STANDARD.encode(&doc)).as_bytes()).unwrap(),
            doc
        );
        assert_eq!(
            decode_any(URL_SAFE_NO_PAD.encode(&doc).as_bytes()).unwrap(),
            doc
        );
        assert!(decode_any(b"").is_err());
        assert!(decode_any(b" \n").is_err());
        assert!(decode_any(b"not a document!").is_err());
    }
}
