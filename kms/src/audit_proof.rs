//! Proofs about the audit log that a verifier checks offline, with only the KMS's public key.
//!
//! `cloister-kms audit prove` writes them; `cloister-kms audit check-proof` (and the fuzz target
//! `kms_audit_proof`) reads them with [`check`]. They arrive from elsewhere, so parsing is
//! strict: a size bound, exact field sets (`deny_unknown_fields`), exact `format` strings,
//! lower-case hex of exact lengths, bounded paths; every failure is an error, never a panic.
//!
//! An inclusion proof (RFC 9162 §2.1.3) shows that `entry` is leaf `leaf_index` (audit entry
//! `seq = leaf_index + 1`) of the tree a signed head commits to:
//!
//! ```json
//! {"format": "cloister-kms inclusion proof v1", "leaf_index": 4, "entry": "{\"time_ms\":...}",
//!  "audit_path": ["<64 hex>", ...], "tree_head": {<signed tree head, see tree_head.rs>}}
//! ```
//!
//! `entry` holds the stored entry's exact text: its leaf hash is over those bytes. A consistency
//! proof (RFC 9162 §2.1.4) shows that the log a signed head commits to extends a checkpoint the
//! verifier kept, of `from_size` entries:
//!
//! ```json
//! {"format": "cloister-kms consistency proof v1", "from_size": 40,
//!  "consistency_path": ["<64 hex>", ...], "tree_head": {...}}
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash, MAX_CONSISTENCY_PATH, MAX_INCLUSION_PATH};
use crate::tree_head::{HexHash, KeyFormatError, SignedTreeHead, TreeHeadJson, TreeKey};

/// The largest proof or checkpoint file accepted.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// Why a proof or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("the {0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(&'static str),
    /// The file does not parse as what it should be.
    #[error("the {what} does not parse: {reason}")]
    Malformed {
        /// Which file.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The public key file is not an Ed25519 public key.
    #[error(transparent)]
    Key(#[from] KeyFormatError),
    /// The proof parses but does not hold.
    #[error("{0}")]
    Invalid(String),
}

/// Proof that an entry is in the log a signed head commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's position from 0 (its `seq` is one more).
    pub leaf_index: u64,
    /// The entry's stored text.
    pub entry: String,
    /// The audit path, leaf to root.
    pub audit_path: Vec<Hash>,
    /// The head the path leads to.
    pub tree_head: SignedTreeHead,
}

/// Proof that the log a signed head commits to extends an older head of `from_size` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub from_size: u64,
    /// The consistency path.
    pub consistency_path: Vec<Hash>,
    /// The newer head.
    pub tree_head: SignedTreeHead,
}

/// What a proof that holds showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// `entry` is audit entry `seq` of the signed log of `tree_size` entries.
    Inclusion {
        /// The entry's sequence number.
        seq: u64,
        /// The signed head's size.
        tree_size: u64,
        /// The entry's text.
        entry: String,
    },
    /// The signed log of `tree_size` entries extends the checkpoint of `from_size` entries.
    Consistency {
        /// The checkpoint's size.
        from_size: u64,
        /// The signed head's size.
        tree_size: u64,
    },
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inclusion { seq, tree_size, .. } => write!(
                f,
                "inclusion proof valid: entry {seq} is in the signed log of {tree_size} entries"
            ),
            Self::Consistency {
                from_size,
                tree_size,
            } => write!(
                f,
                "consistency proof valid: the signed log of {tree_size} entries extends the checkpoint of {from_size} entries"
            ),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionJson {
    format: InclusionFormat,
    leaf_index: u64,
    entry: String,
    audit_path: Vec<HexHash>,
    tree_head: TreeHeadJson,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum InclusionFormat {
    #[serde(rename = "cloister-kms inclusion proof v1")]
    V1,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyJson {
    format: ConsistencyFormat,
    from_size: u64,
    consistency_path: Vec<HexHash>,
    tree_head: TreeHeadJson,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum ConsistencyFormat {
    #[serde(rename = "cloister-kms consistency proof v1")]
    V1,
}

fn parse_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ProofError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ProofError::TooLarge(what));
    }
    serde_json::from_slice(bytes).map_err(|e| ProofError::Malformed {
        what,
        reason: e.to_string(),
    })
}

fn hashes(what: &'static str, path: Vec<HexHash>, max: usize) -> Result<Vec<Hash>, ProofError> {
    if path.len() > max {
        return Err(ProofError::Malformed {
            what,
            reason: format!(
                "a path of {} hashes; no tree needs more than {max}",
                path.len()
            ),
        });
    }
    Ok(path.into_iter().map(|h| h.0).collect())
}

fn pretty<T: Serialize>(v: &T) -> String {
    // Plain strings, integers and lists always serialize.
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn check_head(key: &TreeKey, head: &SignedTreeHead, what: &str) -> Result<(), ProofError> {
    if key.verifies(head) {
        Ok(())
    } else {
        Err(ProofError::Invalid(format!(
            "the {what} of {} entries is not signed by the given public key",
            head.tree_size
        )))
    }
}

/// Parses a checkpoint (a signed tree head's JSON, see [`SignedTreeHead::to_json`]).
pub fn parse_checkpoint(bytes: &[u8]) -> Result<SignedTreeHead, ProofError> {
    parse_json::<TreeHeadJson>("checkpoint", bytes).map(SignedTreeHead::from)
}

impl InclusionProof {
    /// Parses an inclusion proof file.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofError> {
        let j: InclusionJson = parse_json("inclusion proof", bytes)?;
        Ok(Self {
            leaf_index: j.leaf_index,
            entry: j.entry,
            audit_path: hashes("inclusion proof", j.audit_path, MAX_INCLUSION_PATH)?,
            tree_head: j.tree_head.into(),
        })
    }

    /// The proof file (pretty JSON).
    pub fn to_json(&self) -> String {
        pretty(&InclusionJson {
            format: InclusionFormat::V1,
            leaf_index: self.leaf_index,
            entry: self.entry.clone(),
            audit_path: self.audit_path.iter().copied().map(HexHash).collect(),
            tree_head: (&self.tree_head).into(),
        })
    }

    /// The root the entry and audit path lead to, if the path fits the position.
    pub fn computed_root(&self) -> Option<Hash> {
        merkle::root_from_inclusion(
            &merkle::leaf_hash(self.entry.as_bytes()),
            self.leaf_index,
            self.tree_head.tree_size,
            &self.audit_path,
        )
    }

    /// Checks the head's signature under `key` and that the entry and path lead to its root.
    pub fn check(&self, key: &TreeKey) -> Result<Checked, ProofError> {
        check_head(key, &self.tree_head, "tree head")?;
        if self.leaf_index >= self.tree_head.tree_size {
            return Err(ProofError::Invalid(format!(
                "leaf {} is not in a tree of {} entries",
                self.leaf_index, self.tree_head.tree_size
            )));
        }
        let leaf = merkle::leaf_hash(self.entry.as_bytes());
        let head = &self.tree_head;
        if !merkle::verify_inclusion(
            &leaf,
            self.leaf_index,
            head.tree_size,
            &self.audit_path,
            &head.root_hash,
        ) {
            return Err(ProofError::Invalid(format!(
                "entry {} and its audit path do not lead to the signed root: the entry or the proof was changed",
                self.leaf_index + 1
            )));
        }
        Ok(Checked::Inclusion {
            seq: self.leaf_index + 1,
            tree_size: self.tree_head.tree_size,
            entry: self.entry.clone(),
        })
    }
}

impl ConsistencyProof {
    /// Parses a consistency proof file.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofError> {
        let j: ConsistencyJson = parse_json("consistency proof", bytes)?;
        Ok(Self {
            from_size: j.from_size,
            consistency_path: hashes(
                "consistency proof",
                j.consistency_path,
                MAX_CONSISTENCY_PATH,
            )?,
            tree_head: j.tree_head.into(),
        })
    }

    /// The proof file (pretty JSON).
    pub fn to_json(&self) -> String {
        pretty(&ConsistencyJson {
            format: ConsistencyFormat::V1,
            from_size: self.from_size,
            consistency_path: self.consistency_path.iter().copied().map(HexHash).collect(),
            tree_head: (&self.tree_head).into(),
        })
    }

    /// Checks both heads' signatures under `key` and that the proof's head extends `old`.
    pub fn check(&self, key: &TreeKey, old: &SignedTreeHead) -> Result<Checked, ProofError> {
        check_head(key, old, "checkpoint")?;
        check_head(key, &self.tree_head, "tree head")?;
        let new = &self.tree_head;
        if self.from_size != old.tree_size {
            return Err(ProofError::Invalid(format!(
                "the proof starts from {} entries but the checkpoint has {}",
                self.from_size, old.tree_size
            )));
        }
        if old.tree_size > new.tree_size {
            return Err(ProofError::Invalid(format!(
                "the signed log has {} entries, fewer than the checkpoint's {}: its tail was cut off",
                new.tree_size, old.tree_size
            )));
        }
        if !merkle::verify_consistency(
            old.tree_size,
            new.tree_size,
            &old.root_hash,
            &new.root_hash,
            &self.consistency_path,
        ) {
            return Err(ProofError::Invalid(format!(
                "the signed log of {} entries does not extend the checkpoint of {}: an entry at or before {} was changed, or the proof was",
                new.tree_size, old.tree_size, old.tree_size
            )));
        }
        Ok(Checked::Consistency {
            from_size: old.tree_size,
            tree_size: new.tree_size,
        })
    }
}

/// Checks a proof file offline with only the KMS's public key (PEM): an inclusion proof, or,
/// given the checkpoint it starts from, a consistency proof.
pub fn check(
    public_key_pem: &[u8],
    proof: &[u8],
    checkpoint: Option<&[u8]>,
) -> Result<Checked, ProofError> {
    let key = TreeKey::from_pem(public_key_pem)?;
    match checkpoint {
        None => InclusionProof::parse(proof)?.check(&key),
        Some(c) => {
            let old = parse_checkpoint(c)?;
            ConsistencyProof::parse(proof)?.check(&key, &old)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Frontier, RangeHasher, consistency_ranges, inclusion_ranges, leaf_hash};
    use crate::tree_head::TreeSigner;

    const N: u64 = 11;

    fn entries() -> Vec<String> {
        (0..N).map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    fn hasher(ranges: &[std::ops::Range<u64>], upto: u64) -> (Vec<Hash>, Hash) {
        let mut h = RangeHasher::new(ranges);
        for e in entries().iter().take(usize::try_from(upto).unwrap()) {
            h.push(leaf_hash(e.as_bytes()));
        }
        let root = h.tree().root();
        (h.finish().unwrap(), root)
    }

    fn inclusion(signer: &TreeSigner, index: u64) -> InclusionProof {
        let (path, root) = hasher(&inclusion_ranges(index, N).unwrap(), N);
        InclusionProof {
            leaf_index: index,
            entry: entries()[usize::try_from(index).unwrap()].clone(),
            audit_path: path,
            tree_head: signer.sign(N, root, 9),
        }
    }

    #[test]
    fn inclusion_proofs_check_offline_and_catch_changes() {
        let signer = TreeSigner::generate().unwrap();
        let pem = signer.public_key().to_pem();
        for i in 0..N {
            let p = inclusion(&signer, i);
            let json = p.to_json();
            assert_eq!(InclusionProof::parse(json.as_bytes()).unwrap(), p);
            let ok = check(pem.as_bytes(), json.as_bytes(), None).unwrap();
            assert_eq!(
                ok.to_string(),
                format!(
                    "inclusion proof valid: entry {} is in the signed log of {N} entries",
                    i + 1
                )
            );
        }
        let p = inclusion(&signer, 3);
        let changed = InclusionProof {
            entry: "{\"n\":4}".into(),
            ..p.clone()
        };
        let err = changed.check(signer.public_key()).unwrap_err();
        assert!(
            err.to_string()
                .contains("entry 4 and its audit path do not lead"),
            "{err}"
        );
        let moved = InclusionProof {
            leaf_index: 4,
            ..p.clone()
        };
        assert!(moved.check(signer.public_key()).is_err());
        let outside = InclusionProof {
            leaf_index: N,
            ..p.clone()
        };
        assert!(outside.check(signer.public_key()).is_err());
        // A head re-signed over the changed entry by another key: only that key accepts it.
        let forger = TreeSigner::generate().unwrap();
        let root = changed.computed_root().unwrap();
        let forged = InclusionProof {
            tree_head: forger.sign(N, root, 9),
            ..changed
        };
        assert!(forged.check(forger.public_key()).is_ok());
        let err = forged.check(signer.public_key()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the tree head of {N} entries is not signed by the given public key")
        );
    }

    #[test]
    fn consistency_proofs_check_against_a_kept_checkpoint() {
        let signer = TreeSigner::generate().unwrap();
        let pem = signer.public_key().to_pem();
        let (_, new_root) = hasher(&[], N);
        let head = signer.sign(N, new_root, 10);
        for m in 0..=N {
            let mut old = Frontier::new();
            for e in entries().iter().take(usize::try_from(m).unwrap()) {
                old.push(leaf_hash(e.as_bytes()));
            }
            let checkpoint = signer.sign(m, old.root(), 1).to_json();
            let (path, _) = hasher(&consistency_ranges(m, N).unwrap(), N);
            let proof = ConsistencyProof {
                from_size: m,
                consistency_path: path,
                tree_head: head.clone(),
            };
            let json = proof.to_json();
            assert_eq!(ConsistencyProof::parse(json.as_bytes()).unwrap(), proof);
            let ok = check(pem.as_bytes(), json.as_bytes(), Some(checkpoint.as_bytes())).unwrap();
            assert_eq!(
                ok,
                Checked::Consistency {
                    from_size: m,
                    tree_size: N
                }
            );
            if m > 0 {
                // A checkpoint of a different log of the same size.
                let other = signer.sign(m, [7; 32], 1).to_json();
                let err =
                    check(pem.as_bytes(), json.as_bytes(), Some(other.as_bytes())).unwrap_err();
                assert!(
                    err.to_string().contains("does not extend the checkpoint"),
                    "{err}"
                );
            }
        }
        // The log is shorter than the checkpoint.
        let later = signer.sign(N + 1, [1; 32], 1).to_json();
        let proof = ConsistencyProof {
            from_size: N + 1,
            consistency_path: vec![],
            tree_head: head,
        };
        let err = check(
            pem.as_bytes(),
            proof.to_json().as_bytes(),
            Some(later.as_bytes()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("its tail was cut off"), "{err}");
        // A checkpoint from another key.
        let other = TreeSigner::generate()
            .unwrap()
            .sign(0, merkle::empty_root(), 1)
            .to_json();
        let err = check(
            pem.as_bytes(),
            proof.to_json().as_bytes(),
            Some(other.as_bytes()),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("checkpoint of 0 entries is not signed"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let signer = TreeSigner::generate().unwrap();
        let pem = signer.public_key().to_pem();
        let good: serde_json::Value =
            serde_json::from_str(&inclusion(&signer, 2).to_json()).unwrap();
        let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
        let mut with = |f: &dyn Fn(&mut serde_json::Value), expect: &'static str| {
            let mut v = good.clone();
            f(&mut v);
            cases.push((v, expect));
        };
        with(&|v| v["extra"] = 1.into(), "unknown field `extra`");
        with(
            &|v| v["tree_head"]["extra"] = 1.into(),
            "unknown field `extra`",
        );
        with(
            &|v| v["format"] = "cloister-kms inclusion proof v2".into(),
            "unknown variant",
        );
        with(&|v| v["leaf_index"] = (-1).into(), "invalid value");
        with(
            &|v| v["audit_path"][0] = "00".into(),
            "64 lower-case hex digits",
        );
        with(
            &|v| v["audit_path"] = serde_json::json!(vec!["00".repeat(32); 65]),
            "no tree needs more than 64",
        );
        with(
            &|v| {
                v.as_object_mut()
                    .unwrap()
                    .remove("entry")
                    .map(drop)
                    .unwrap_or(())
            },
            "missing field `entry`",
        );
        for (v, expect) in cases {
            let err = check(pem.as_bytes(), v.to_string().as_bytes(), None).unwrap_err();
            assert!(matches!(err, ProofError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains(expect), "{err} / {expect}");
        }
        let huge = vec![b' '; MAX_FILE_BYTES + 1];
        assert_eq!(
            check(pem.as_bytes(), &huge, None),
            Err(ProofError::TooLarge("inclusion proof"))
        );
        assert!(matches!(
            check(b"nope", b"{}", None),
            Err(ProofError::Key(_))
        ));
        assert!(check(pem.as_bytes(), b"", None).is_err());
        assert!(check(pem.as_bytes(), b"{}", Some(b"[]")).is_err());
    }
}
