//! Offline audit bundles: selected ledger entries with inclusion proofs to a
//! signed checkpoint, verifiable without access to the ledger.
//!
//! JSON shape (`writ.audit-bundle.v1`):
//!
//! ```json
//! {
//!   "format": "writ.audit-bundle.v1",
//!   "origin": "<checkpoint origin>",
//!   "public_key": "<verifier key text>",
//!   "checkpoint": "<signed checkpoint note text>",
//!   "tree_size": 1234,
//!   "entries": [
//!     { "seq": 7, "leaf": "<base64 leaf bytes>", "inclusion_proof": ["<base64 hash>", ...] }
//!   ],
//!   "consistency": { "old_size": 1000, "old_root": "<base64>", "proof": ["<base64>", ...] }
//! }
//! ```
//!
//! `consistency` is optional (omitted when absent): a proof that the
//! checkpointed tree extends an earlier tree the auditor already knows.

use crate::checkpoint::{VerifierKey, open_with_origin, parse_unverified};
use crate::error::LedgerError;
use crate::leaf::{LeafProblem, check_body, leaf_hash};
use crate::tree::{Hash, Tree, verify_consistency, verify_inclusion};
use crate::verify::{CanonicalCheck, FailureReason, VerifyFailure, checkpoint_reason};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The bundle format identifier.
pub const BUNDLE_FORMAT: &str = "writ.audit-bundle.v1";

/// An offline audit bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The checkpoint origin.
    pub origin: String,
    /// The log's verifier key text.
    pub public_key: String,
    /// The signed checkpoint note text.
    pub checkpoint: String,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The selected entries, in increasing `seq` order.
    pub entries: Vec<BundleEntry>,
    /// Optional consistency proof from an earlier tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<BundleConsistency>,
}

/// One entry of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// The entry's sequence number (leaf index).
    pub seq: u64,
    /// The leaf bytes (base64 in JSON).
    #[serde(serialize_with = "ser_b64", deserialize_with = "de_b64")]
    pub leaf: Vec<u8>,
    /// The inclusion proof at `tree_size` (base64 hashes in JSON).
    pub inclusion_proof: Vec<Hash>,
}

/// A consistency proof from an earlier tree to the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConsistency {
    /// The earlier tree size.
    pub old_size: u64,
    /// The earlier root.
    pub old_root: Hash,
    /// The RFC 6962 consistency proof from `old_size` to `tree_size`.
    pub proof: Vec<Hash>,
    /// The signed checkpoint of the earlier tree, when the export started from one (`writ
    /// audit export --since`): its signature, size and root are checked too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_checkpoint: Option<String>,
}

fn ser_b64<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(v))
}

fn de_b64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
}

impl Bundle {
    /// Serializes the bundle as pretty JSON.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Bundle`] (should not happen).
    pub fn to_json(&self) -> Result<String, LedgerError> {
        serde_json::to_string_pretty(self).map_err(|e| LedgerError::Bundle(e.to_string()))
    }

    /// Parses a bundle from JSON (unknown fields are rejected).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Bundle`].
    pub fn from_json(json: &str) -> Result<Self, LedgerError> {
        serde_json::from_str(json).map_err(|e| LedgerError::Bundle(e.to_string()))
    }

    /// Adds a consistency proof from the tree of size `old_size` (taken
    /// from the same leaf hashes) to the bundle's tree.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Proof`] for bad sizes.
    pub fn with_consistency(
        mut self,
        all_leaf_hashes: &[Hash],
        old_size: u64,
    ) -> Result<Self, LedgerError> {
        let tree = Tree::from_leaf_hashes(prefix(all_leaf_hashes, self.tree_size)?);
        let proof = tree.consistency_proof(old_size, self.tree_size)?;
        self.consistency = Some(BundleConsistency {
            old_size,
            old_root: tree.root_at(old_size)?,
            proof,
            old_checkpoint: None,
        });
        Ok(self)
    }
}

fn prefix(all: &[Hash], size: u64) -> Result<&[Hash], LedgerError> {
    usize::try_from(size)
        .ok()
        .and_then(|n| all.get(..n))
        .ok_or_else(|| {
            LedgerError::Bundle(format!(
                "checkpoint size {size} exceeds the {} leaf hashes given",
                all.len()
            ))
        })
}

/// Builds a bundle for the `selected` `(seq, leaf)` entries, with inclusion
/// proofs to the tree described by `checkpoint_note`.
///
/// `all_leaf_hashes` are the ledger's leaf hashes from seq 0 (at least the
/// checkpoint size of them). The checkpoint is parsed but its signature is
/// not verified here; its root must match the recomputed root.
///
/// # Errors
///
/// [`LedgerError::Bundle`] if the checkpoint does not match the leaf hashes,
/// a selected seq is beyond the checkpoint, or a selected leaf does not hash
/// to the stored leaf hash; checkpoint or key parse errors.
pub fn build_bundle(
    all_leaf_hashes: &[Hash],
    selected: &[(u64, Vec<u8>)],
    checkpoint_note: &str,
    public_key: &str,
) -> Result<Bundle, LedgerError> {
    let key = VerifierKey::parse(public_key)?;
    let cp = parse_unverified(checkpoint_note)?;
    let tree = Tree::from_leaf_hashes(prefix(all_leaf_hashes, cp.size)?);
    if tree.root() != cp.root {
        return Err(LedgerError::Bundle(
            "checkpoint root does not match the leaf hashes".to_owned(),
        ));
    }
    let mut sel: Vec<&(u64, Vec<u8>)> = selected.iter().collect();
    sel.sort_by_key(|e| e.0);
    sel.dedup_by_key(|e| e.0);
    let mut entries = Vec::with_capacity(sel.len());
    for (seq, leaf) in sel {
        if tree.leaf_hash(*seq) != Some(leaf_hash(leaf)) {
            return Err(LedgerError::Bundle(format!(
                "entry {seq}: leaf does not match the stored leaf hash, or is beyond the checkpoint"
            )));
        }
        entries.push(BundleEntry {
            seq: *seq,
            leaf: leaf.clone(),
            inclusion_proof: tree.inclusion_proof(*seq, cp.size)?,
        });
    }
    Ok(Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        origin: cp.origin,
        public_key: key.to_text().to_owned(),
        checkpoint: checkpoint_note.to_owned(),
        tree_size: cp.size,
        entries,
        consistency: None,
    })
}

/// The result of a successful [`verify_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The checkpoint origin.
    pub origin: String,
    /// The checkpoint tree size.
    pub tree_size: u64,
    /// The checkpoint root.
    pub root: Hash,
    /// The verified entries' sequence numbers, in order.
    pub seqs: Vec<u64>,
    /// `(old_size, old_root)` proven consistent with the checkpoint, if the
    /// bundle had a consistency proof. Compare it with a root you trust.
    pub consistent_with: Option<(u64, Hash)>,
}

/// Verifies a bundle against the trusted verifier key: format, public key,
/// checkpoint signature and origin, tree size, and for each entry its leaf
/// format, canonical JSON, `"seq"` field and inclusion proof; then the
/// optional consistency proof.
///
/// # Errors
///
/// The first [`VerifyFailure`]; entry problems carry the entry's `seq`.
pub fn verify_bundle(bundle: &Bundle, key: &VerifierKey) -> Result<BundleReport, VerifyFailure> {
    let malformed = |m: &str| VerifyFailure::global(FailureReason::MalformedBundle(m.to_owned()));
    if bundle.format != BUNDLE_FORMAT {
        return Err(malformed("unsupported format"));
    }
    if bundle.public_key != key.to_text() {
        return Err(VerifyFailure::global(FailureReason::PublicKeyMismatch));
    }
    let cp = open_with_origin(&bundle.checkpoint, key, &bundle.origin)
        .map_err(|e| VerifyFailure::global(checkpoint_reason(bundle.tree_size, &e)))?;
    if cp.size != bundle.tree_size {
        return Err(VerifyFailure::global(
            FailureReason::CheckpointSizeMismatch {
                declared: bundle.tree_size,
                signed: cp.size,
            },
        ));
    }
    let mut seqs = Vec::with_capacity(bundle.entries.len());
    let mut prev: Option<u64> = None;
    for e in &bundle.entries {
        if prev.is_some_and(|p| e.seq <= p) {
            return Err(VerifyFailure::at(
                e.seq,
                FailureReason::MalformedBundle("entries not in increasing seq order".to_owned()),
            ));
        }
        prev = Some(e.seq);
        if e.seq >= cp.size {
            return Err(VerifyFailure::at(
                e.seq,
                FailureReason::SeqBeyondTree { size: cp.size },
            ));
        }
        match check_body(&e.leaf, CanonicalCheck::Streaming) {
            Ok(Some(s)) if s == e.seq => {}
            Ok(found) => {
                return Err(VerifyFailure::at(
                    e.seq,
                    FailureReason::SeqFieldMismatch { found },
                ));
            }
            Err(LeafProblem::BadTag) => {
                return Err(VerifyFailure::at(e.seq, FailureReason::BadLeafTag));
            }
            Err(LeafProblem::NotCanonical) => {
                return Err(VerifyFailure::at(e.seq, FailureReason::NotCanonical));
            }
        }
        verify_inclusion(
            &leaf_hash(&e.leaf),
            e.seq,
            cp.size,
            &e.inclusion_proof,
            &cp.root,
        )
        .map_err(|_| VerifyFailure::at(e.seq, FailureReason::BadInclusionProof))?;
        seqs.push(e.seq);
    }
    let consistent_with = match &bundle.consistency {
        None => None,
        Some(c) => {
            verify_consistency(c.old_size, cp.size, &c.proof, &c.old_root, &cp.root)
                .map_err(|_| VerifyFailure::global(FailureReason::BadConsistencyProof))?;
            if let Some(note) = &c.old_checkpoint {
                let old = open_with_origin(note, key, &bundle.origin)
                    .map_err(|e| VerifyFailure::global(checkpoint_reason(c.old_size, &e)))?;
                if old.size != c.old_size || old.root != c.old_root {
                    return Err(VerifyFailure::global(FailureReason::BadConsistencyProof));
                }
            }
            Some((c.old_size, c.old_root))
        }
    };
    Ok(BundleReport {
        origin: cp.origin,
        tree_size: cp.size,
        root: cp.root,
        seqs,
        consistent_with,
    })
}
