//! The COSE_Sign1 envelope (RFC 9052) around a Nitro attestation document.
//!
//! The NSM emits the envelope *untagged* although AWS's documentation shows tag 18, so both are
//! accepted and every other tag is refused. The protected header must be exactly ES384; the bytes
//! that were signed are rebuilt from the protected header *as received*, never re-encoded.

use coset::{CborSerializable, CoseSign1, TaggedCborSerializable, iana};

use crate::error::{Error, Result};

/// CBOR major type 6, tag 18 (COSE_Sign1), in its one-byte form.
const TAG_18: u8 = 0xd2;
/// Length of a raw ES384 signature, `r ‖ s`.
pub(crate) const SIGNATURE_LEN: usize = 96;

/// A decoded envelope: what is signed, what signs it, and the payload.
#[derive(Debug, Clone)]
pub(crate) struct Sign1 {
    /// The `Sig_structure` bytes that the signature covers.
    pub(crate) to_be_signed: Vec<u8>,
    /// The attestation document payload (a CBOR map).
    pub(crate) payload: Vec<u8>,
    /// Raw `r ‖ s`.
    pub(crate) signature: [u8; SIGNATURE_LEN],
    /// Whether the input carried tag 18.
    pub(crate) tagged: bool,
}

/// Decodes a COSE_Sign1 envelope, tagged (18) or untagged, and checks that it is ES384.
pub(crate) fn decode(bytes: &[u8]) -> Result<Sign1> {
    let tagged = bytes.first() == Some(&TAG_18);
    let parsed = if tagged {
        CoseSign1::from_tagged_slice(bytes)
    } else {
        CoseSign1::from_slice(bytes)
    }
    .map_err(|e| Error::Cose(e.to_string()))?;

    let protected = &parsed.protected;
    let es384 = coset::Algorithm::Assigned(iana::Algorithm::ES384);
    if protected.header.alg.as_ref() != Some(&es384) {
        return Err(Error::Cose(format!(
            "protected header algorithm is {:?}, expected ES384 (-35)",
            protected.header.alg
        )));
    }
    if !protected.header.crit.is_empty() {
        return Err(Error::Cose(
            "protected header lists critical parameters".into(),
        ));
    }
    let Some(protected_bytes) = protected.original_data.as_deref() else {
        return Err(Error::Cose("protected header bytes missing".into()));
    };
    let Some(payload) = parsed.payload.as_deref() else {
        return Err(Error::Cose("detached (nil) payload".into()));
    };
    if payload.is_empty() {
        return Err(Error::Cose("empty payload".into()));
    }
    let signature = <[u8; SIGNATURE_LEN]>::try_from(parsed.signature.as_slice()).map_err(|_| {
        Error::Cose(format!(
            "signature is {} bytes, expected {SIGNATURE_LEN} (raw r||s)",
            parsed.signature.len()
        ))
    })?;
    Ok(Sign1 {
        to_be_signed: sig_structure(protected_bytes, payload),
        payload: payload.to_vec(),
        signature,
        tagged,
    })
}

/// `Sig_structure = ["Signature1", protected: bstr, external_aad: h'', payload: bstr]`.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + protected.len() + 32);
    out.push(0x84); // array(4)
    out.push(0x6a); // text(10)
    out.extend_from_slice(b"Signature1");
    push_bstr(&mut out, protected);
    push_bstr(&mut out, &[]);
    push_bstr(&mut out, payload);
    out
}

/// Appends a CBOR byte string with its shortest-form header.
#[allow(clippy::cast_possible_truncation)] // each arm's range guarantees the cast is exact
pub(crate) fn push_bstr(out: &mut Vec<u8>, data: &[u8]) {
    let len = data.len() as u64;
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        0x100..=0xffff => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0x5a);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            out.push(0x5b);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(data);
}

/// Encodes an untagged COSE_Sign1 with the ES384 protected header, as the NSM does.
#[cfg(feature = "dev-signer")]
pub(crate) fn encode_untagged(payload: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 128);
    out.push(0x84); // array(4)
    push_bstr(&mut out, &ES384_PROTECTED);
    out.push(0xa0); // unprotected: {}
    push_bstr(&mut out, payload);
    push_bstr(&mut out, signature);
    out
}

/// `{1: -35}`: the protected header every Nitro document carries.
#[cfg(any(test, feature = "dev-signer"))]
pub(crate) const ES384_PROTECTED: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bstr_headers_match_ciborium() {
        for len in [0usize, 23, 24, 255, 256, 65535, 65536] {
            let data = vec![7u8; len];
            let mut ours = Vec::new();
            push_bstr(&mut ours, &data);
            let mut theirs = Vec::new();
            ciborium::into_writer(&ciborium::Value::Bytes(data), &mut theirs).unwrap();
            assert_eq!(ours, theirs, "len {len}");
        }
    }

    #[test]
    fn sig_structure_matches_coset() {
        let payload = vec![0xa0];
        let sign1 = coset::CoseSign1Builder::new()
            .protected(
                coset::HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload.clone())
            .build();
        assert_eq!(
            sig_structure(&ES384_PROTECTED, &payload),
            sign1.tbs_data(&[])
        );
    }

    #[test]
    fn refuses_other_tags_and_garbage() {
        assert_eq!(decode(&[]).unwrap_err().code(), "ATT-COSE");
        assert_eq!(decode(&[0xd3, 0x80]).unwrap_err().code(), "ATT-COSE");
        assert_eq!(
            decode(&[0x84, 0x40, 0xa0, 0xf6, 0x40]).unwrap_err().code(),
            "ATT-COSE"
        );
    }
}
