//! Attested release: the `Recipient` parameter of Decrypt, GenerateDataKey and GenerateRandom.
//!
//! The attestation document is verified with cloister-attestation against the AWS Nitro root and
//! the operator's `--trust-root`s only, at the current time; debug documents and documents older
//! than `--max-attestation-age` are refused, and the document must carry an RSA public key of
//! 2048-4096 bits. Only then do the `kms:RecipientAttestation:*` condition keys exist for the key
//! policy, and the sensitive output is returned only as `CiphertextForRecipient` (CMS
//! EnvelopedData to that key), never as `Plaintext`.
//!
//! Every trust root verifies documents for every key, so a key policy must be able to say which
//! root it accepts: whoever holds a dev PKI can mint a document with a real image's PCR0.
//! [`TRUST_ROOT_KEY`] (`cloister:RecipientAttestation:TrustRootSha256`, in cloister's own
//! namespace since `kms:RecipientAttestation:*` is AWS's) is the SHA-256 of the DER of the root
//! that verified the document (its `cabundle[0]`), lower-case hex; `cloister-kms trust-roots`
//! prints each root's. The audit entry records a verified document's module id, PCR0 and root,
//! and a refused document's module id and PCR0 only as `claimed_*`, since nothing vouches for
//! them.

use std::collections::HashMap;

use cloister_attestation::recipient::{self, RecipientKey};
use cloister_attestation::{PcrIndex, PcrValue, Policy, VerifiedDocument, VerifyAt};

use serde::Deserialize;

use crate::app::App;
use crate::audit::AuditEntry;
use crate::error::{KmsError, Result};
use crate::input::{Base64, Member};

/// The `Recipient` structure of an input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RecipientInput {
    key_encryption_algorithm: Member<String>,
    attestation_document: Member<Base64>,
}

/// The condition key naming the trust root that verified a recipient's document (lower-case, as
/// condition keys are stored): SHA-256 of the root's DER, lower-case hex.
pub(crate) const TRUST_ROOT_KEY: &str = "cloister:recipientattestation:trustrootsha256";

/// A verified recipient.
#[derive(Debug)]
pub(crate) struct Recipient {
    doc: VerifiedDocument,
    /// SHA-256 (hex) of the trust anchor the document's chain starts with.
    trust_root_sha256: String,
    key: RecipientKey,
}

/// Largest attestation document accepted in a request, as AWS's model allows.
const MAX_DOCUMENT: usize = 262_144;

/// Verifies a `Recipient`; records the attempt in the audit entry.
pub(crate) fn verify(app: &App, r: &RecipientInput, audit: &mut AuditEntry) -> Result<Recipient> {
    let algorithm = r
        .key_encryption_algorithm
        .one_of("KeyEncryptionAlgorithm", &["RSAES_OAEP_SHA_256"])?;
    if algorithm.is_none() {
        return Err(KmsError::validation(
            "Value null at 'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: Member must not be null",
        ));
    }
    let doc = r
        .attestation_document
        .req_blob("AttestationDocument", 1, MAX_DOCUMENT)?;
    let policy = Policy::new()
        .require_public_key(true)
        .max_age(app.cfg.max_attestation_age);
    let verified = match app.verifier.verify(&doc, VerifyAt::Now, &policy) {
        Ok(v) => v,
        Err(e) => {
            // What a refused document says is only a claim: audited apart from verified values.
            if let Ok(d) = cloister_attestation::decode(&doc) {
                audit.claimed_pcr0 = d.document.pcrs.get(PcrIndex::IMAGE).map(PcrValue::to_hex);
                audit.claimed_module_id = Some(d.document.module_id);
            }
            return Err(match e.code() {
                "ATT-COSE" | "ATT-SYNTAX" | "ATT-NO-KEY" => KmsError::validation(format!(
                    "Value at 'recipient.attestationDocument' is not a valid attestation document: error[{}]: {e}",
                    e.code()
                )),
                code => KmsError::AccessDenied(format!(
                    "The attestation document was refused: error[{code}]: {e}"
                )),
            });
        }
    };
    let trust_root_sha256 = trust_root_of(app, &verified)?;
    audit.module_id = Some(verified.module_id.clone());
    audit.pcr0 = verified.pcrs.get(PcrIndex::IMAGE).map(PcrValue::to_hex);
    audit.trust_root_sha256 = Some(trust_root_sha256.clone());
    let spki = verified.public_key.as_deref().unwrap_or_default();
    let key = RecipientKey::from_spki_der(spki).map_err(|e| {
        KmsError::validation(format!(
            "Value at 'recipient.attestationDocument' does not carry a usable public key: {e}"
        ))
    })?;
    Ok(Recipient {
        doc: verified,
        trust_root_sha256,
        key,
    })
}

/// The fingerprint of the trust anchor a verified document's chain starts with (verification
/// checked that `cabundle[0]` is byte-identical to one of the verifier's anchors).
fn trust_root_of(app: &App, doc: &VerifiedDocument) -> Result<String> {
    doc.cabundle
        .first()
        .and_then(|first| {
            app.verifier
                .anchors()
                .iter()
                .find(|a| a.der() == first.as_slice())
        })
        .map(|a| hex::encode(a.sha256()))
        .ok_or_else(|| {
            KmsError::AccessDenied(
                "The attestation document was refused: its chain does not start at a trust root"
                    .into(),
            )
        })
}

impl Recipient {
    /// The `kms:RecipientAttestation:*` condition keys and [`TRUST_ROOT_KEY`] (lower-case names,
    /// lower-case hex values).
    pub(crate) fn conditions(&self) -> HashMap<String, Vec<String>> {
        let mut out = HashMap::new();
        out.insert(
            TRUST_ROOT_KEY.to_owned(),
            vec![self.trust_root_sha256.clone()],
        );
        for (index, value) in self.doc.pcrs.iter() {
            out.insert(
                format!("kms:recipientattestation:pcr{}", index.get()),
                vec![value.to_hex()],
            );
            if index == PcrIndex::IMAGE {
                out.insert(
                    "kms:recipientattestation:imagesha384".into(),
                    vec![value.to_hex()],
                );
            }
        }
        out
    }

    /// Encrypts `plaintext` to the enclave's key.
    pub(crate) fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        Ok(recipient::seal(&self.key, plaintext)?)
    }
}

/// Adds a recipient's condition keys (if any) to `conditions`.
pub(crate) fn with_conditions(
    mut conditions: HashMap<String, Vec<String>>,
    r: Option<&Recipient>,
) -> HashMap<String, Vec<String>> {
    if let Some(r) = r {
        conditions.extend(r.conditions());
    }
    conditions
}
