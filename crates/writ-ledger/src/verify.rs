//! Whole-chain verification of a stored ledger.
//!
//! [`verify_chain`] walks the stored rows `(seq, leaf, stored leaf hash)` in
//! order, in one pass and without per-entry allocation, and checks:
//!
//! 1. sequence numbers are contiguous from 0 (detects deleted and reordered
//!    rows): [`FailureReason::SequenceGap`];
//! 2. the stored hash equals `SHA-256(0x00 || leaf)`:
//!    [`FailureReason::LeafHashMismatch`];
//! 3. the leaf has the format tag and is RFC 8785 canonical JSON:
//!    [`FailureReason::BadLeafTag`], [`FailureReason::NotCanonical`];
//! 4. the leaf's top-level `"seq"` equals its position:
//!    [`FailureReason::SeqFieldMismatch`];
//! 5. at every checkpoint size, the checkpoint's signature, origin, declared
//!    size and root hash (recomputed incrementally).
//!
//! The first problem in log order is reported, naming the entry's `seq`.

use crate::checkpoint::{Checkpoint, VerifierKey, open};
use crate::error::LedgerError;
use crate::leaf::{LeafProblem, check_body_members, leaf_hash};
use crate::tree::{Hash, TreeBuilder};
use thiserror::Error;

/// How leaves are checked for RFC 8785 canonical form. Both modes accept
/// exactly the same leaves (tested differentially).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CanonicalCheck {
    /// Single-pass validator that checks canonical form directly on the
    /// bytes (sorted UTF-16 keys, escapes, ECMAScript numbers) without
    /// building a value or allocating. The default.
    #[default]
    Streaming,
    /// Parse with `serde_json`, re-serialize with `serde_json_canonicalizer`
    /// and compare bytes. Reference behaviour; several times slower.
    Recanonicalize,
}

/// Options for [`verify_chain_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyOptions {
    /// How to check canonical JSON.
    pub canonical: CanonicalCheck,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FailureReason {
    /// The stored leaf hash does not equal `SHA-256(0x00 || leaf)`.
    #[error("stored leaf hash does not match the leaf")]
    LeafHashMismatch,
    /// The leaf does not start with `writ.event.v1\n`.
    #[error("leaf format tag missing")]
    BadLeafTag,
    /// The leaf JSON is not RFC 8785 canonical.
    #[error("leaf JSON is not canonical")]
    NotCanonical,
    /// Row sequence numbers are not contiguous (deleted or reordered rows).
    #[error("expected seq {expected}, found {found}")]
    SequenceGap {
        /// The sequence number expected at this position.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// The leaf's `"seq"` field is missing or differs from its position.
    #[error("leaf \"seq\" field is {found:?}, expected its position")]
    SeqFieldMismatch {
        /// The leaf's `"seq"` value, if it is a non-negative integer.
        found: Option<u64>,
    },
    /// The log's own head claims more entries than are stored (rows deleted from the end).
    #[error("the log claims {claimed} entries but {found} are stored")]
    TruncatedLog {
        /// The size the log's head records.
        claimed: u64,
        /// The entries found.
        found: u64,
    },
    /// The recomputed root at `size` differs from the checkpoint's root.
    #[error("root at size {size} does not match the checkpoint")]
    CheckpointRootMismatch {
        /// The checkpoint size.
        size: u64,
    },
    /// The checkpoint at `size` has no valid signature by the key.
    #[error("checkpoint at size {size} has a bad or missing signature")]
    BadSignature {
        /// The checkpoint size.
        size: u64,
    },
    /// The checkpoint note or body at `size` is malformed.
    #[error("checkpoint at size {size} is malformed")]
    MalformedCheckpoint {
        /// The checkpoint size.
        size: u64,
    },
    /// The checkpoint's origin is not the key's name / bundle origin.
    #[error("checkpoint at size {size} has the wrong origin")]
    WrongOrigin {
        /// The checkpoint size.
        size: u64,
    },
    /// The size given next to a checkpoint differs from the signed size.
    #[error("checkpoint declared at size {declared} is signed for size {signed}")]
    CheckpointSizeMismatch {
        /// The size the caller declared.
        declared: u64,
        /// The size in the signed checkpoint.
        signed: u64,
    },
    /// A checkpoint covers more entries than the log has (trailing rows
    /// deleted).
    #[error("checkpoint at size {size} but the log has only {entries} entries")]
    CheckpointBeyondLog {
        /// The checkpoint size.
        size: u64,
        /// The number of entries in the log.
        entries: u64,
    },
    /// A bundle entry's inclusion proof does not verify.
    #[error("inclusion proof does not verify")]
    BadInclusionProof,
    /// A bundle entry's seq is not below the tree size.
    #[error("seq is beyond the tree size {size}")]
    SeqBeyondTree {
        /// The tree size.
        size: u64,
    },
    /// The bundle's consistency proof does not verify.
    #[error("consistency proof does not verify")]
    BadConsistencyProof,
    /// The bundle's public key is not the one the auditor trusts.
    #[error("bundle public key does not match the trusted key")]
    PublicKeyMismatch,
    /// The bundle is malformed (format, tree size, origin, ordering).
    #[error("malformed bundle: {0}")]
    MalformedBundle(String),
    /// Entries that no signed checkpoint covers (a tail the signing key never vouched for).
    #[error(
        "the latest signed checkpoint covers {signed} of {entries} entries: the tail is unsigned"
    )]
    UnsignedTail {
        /// The size of the latest signed checkpoint (0: none).
        signed: u64,
        /// The entries stored.
        entries: u64,
    },
    /// A checkpoint's stored column (its size, or its time: the time of the newest entry it
    /// covers, as both are written in one commit) is not what it should be.
    #[error("checkpoint at size {size}: the stored {column} is not the signed checkpoint's")]
    CheckpointColumnMismatch {
        /// The checkpoint size (as stored).
        size: u64,
        /// The column.
        column: String,
    },
    /// An evidence row's stored metadata (its media type, by the kind of event that names
    /// it; its receipt time, the time of the first entry that names it) is not what it should
    /// be.
    #[error("evidence {digest}: the stored {column} is not what the entry naming it says")]
    EvidenceColumnMismatch {
        /// The digest.
        digest: String,
        /// The column.
        column: String,
    },
    /// A checkpoint published outside the database is not in it (deleted, or replaced).
    #[error("checkpoint at size {size} was published but the database does not hold it")]
    CheckpointNotStored {
        /// Its tree size.
        size: u64,
    },
    /// The ledger head records fewer entries than are stored.
    #[error("the ledger head says {claimed} entries but {found} are stored")]
    HeadMismatch {
        /// What the head says.
        claimed: u64,
        /// What is stored.
        found: u64,
    },
    /// A required witness has not co-signed a checkpoint covering every entry.
    #[error("witness {witness} has co-signed {witnessed} of {entries} entries")]
    NotWitnessed {
        /// The witness's name.
        witness: String,
        /// The size of the newest checkpoint it co-signed (0: none).
        witnessed: u64,
        /// The entries stored.
        entries: u64,
    },
    /// A required witness's stored co-signature does not verify over the checkpoint it names.
    #[error("witness {witness}: the co-signature of the checkpoint at size {size} does not verify")]
    BadCosignature {
        /// The witness's name.
        witness: String,
        /// The checkpoint size it names.
        size: u64,
    },
    /// A checkpoint's stored root is not the root its signed note states.
    #[error("checkpoint at size {size}: the stored root differs from the signed note's")]
    StoredRootMismatch {
        /// The checkpoint size.
        size: u64,
    },
    /// A stored column of an entry differs from its leaf.
    #[error("the stored {column} differs from the leaf's")]
    ColumnMismatch {
        /// The column.
        column: String,
    },
    /// A stored evidence blob does not hash to its digest.
    #[error("evidence {digest}: the stored bytes do not hash to the digest")]
    EvidenceMismatch {
        /// The digest.
        digest: String,
    },
    /// An entry names evidence the store does not hold.
    #[error("the entry names evidence {digest}, which is not stored")]
    EvidenceMissing {
        /// The digest.
        digest: String,
    },
}

/// A verification failure: the first bad entry (by `seq`, when the problem
/// belongs to one entry) and the reason.
///
/// `seq` is `None` for problems that belong to no single entry: checkpoint
/// signature or root problems, and bundle-level problems.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {reason}", match seq { Some(s) => format!("entry {s}"), None => "ledger".to_owned() })]
pub struct VerifyFailure {
    /// The sequence number of the first bad entry, if attributable.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: FailureReason,
}

impl VerifyFailure {
    pub(crate) fn at(seq: u64, reason: FailureReason) -> Self {
        Self {
            seq: Some(seq),
            reason,
        }
    }

    pub(crate) fn global(reason: FailureReason) -> Self {
        Self { seq: None, reason }
    }
}

/// The result of a successful [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries verified.
    pub entries: u64,
    /// The root at the final size.
    pub root: Hash,
    /// Number of checkpoints verified.
    pub checkpoints_verified: usize,
    /// The largest verified checkpoint, if any.
    pub latest_checkpoint: Option<Checkpoint>,
    /// When a kept checkpoint was given (`writ audit verify --trusted NOTE`): its size and the
    /// number of hashes of the RFC 6962 consistency proof, built from the stored leaves and
    /// verified, that today's tree extends it.
    pub consistent_with: Option<(u64, usize)>,
}

/// Verifies a whole stored chain with the default options (streaming
/// canonical check). See the module documentation for what is checked.
///
/// `entries` yields `(seq, leaf bytes, stored leaf hash)` in storage order;
/// `checkpoints` are `(declared size, signed checkpoint note)` in any order.
///
/// # Errors
///
/// The first [`VerifyFailure`] in log order.
pub fn verify_chain<'a, I, S>(
    entries: I,
    checkpoints: &[(u64, S)],
    key: &VerifierKey,
) -> Result<VerifyReport, VerifyFailure>
where
    I: IntoIterator<Item = (u64, &'a [u8], Hash)>,
    S: AsRef<str>,
{
    verify_chain_with(entries, checkpoints, key, VerifyOptions::default())
}

/// [`verify_chain`] with explicit options.
///
/// # Errors
///
/// The first [`VerifyFailure`] in log order.
pub fn verify_chain_with<'a, I, S>(
    entries: I,
    checkpoints: &[(u64, S)],
    key: &VerifierKey,
    options: VerifyOptions,
) -> Result<VerifyReport, VerifyFailure>
where
    I: IntoIterator<Item = (u64, &'a [u8], Hash)>,
    S: AsRef<str>,
{
    let mut verifier = ChainVerifier::new(
        checkpoints
            .iter()
            .map(|(size, note)| (*size, note.as_ref().to_owned())),
        key.clone(),
        options,
    )?;
    for (seq, leaf, stored) in entries {
        verifier.push(seq, leaf, stored)?;
    }
    verifier.finish()
}

/// The top-level members of a verified leaf's JSON, by name: raw JSON values borrowed from the
/// leaf.
#[derive(Debug, Clone, Copy)]
pub struct LeafMembers<'a> {
    json: &'a [u8],
    members: crate::canonical::TopMembers,
}

impl<'a> LeafMembers<'a> {
    /// The raw (canonical) JSON value of the top-level member `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.members.get(self.json, name)
    }
}

/// Checks one stored entry on its own (no order, no tree): its leaf hashes to `stored`, is
/// canonical, and carries `seq`. Pure, so a page of entries can be checked on several threads
/// and then added in order with [`ChainVerifier::push_checked`]. Returns the leaf hash and the
/// leaf's top-level members.
///
/// # Errors
///
/// The problem, naming `seq`.
pub fn check_leaf(
    options: VerifyOptions,
    seq: u64,
    leaf: &[u8],
    stored: Hash,
) -> Result<(Hash, LeafMembers<'_>), VerifyFailure> {
    let h = leaf_hash(leaf);
    if h != stored {
        return Err(VerifyFailure::at(seq, FailureReason::LeafHashMismatch));
    }
    match check_body_members(leaf, options.canonical) {
        Ok((Some(s), members)) if s == seq => Ok((
            h,
            LeafMembers {
                json: leaf.get(crate::leaf::LEAF_TAG.len()..).unwrap_or(&[]),
                members,
            },
        )),
        Ok((found, _)) => Err(VerifyFailure::at(
            seq,
            FailureReason::SeqFieldMismatch { found },
        )),
        Err(LeafProblem::BadTag) => Err(VerifyFailure::at(seq, FailureReason::BadLeafTag)),
        Err(LeafProblem::NotCanonical) => Err(VerifyFailure::at(seq, FailureReason::NotCanonical)),
    }
}

/// The incremental form of [`verify_chain`]: feed entries one by one (for example page by
/// page from a database) with [`ChainVerifier::push`], then call [`ChainVerifier::finish`].
/// Memory stays O(log n) plus the checkpoints.
#[derive(Debug)]
pub struct ChainVerifier {
    key: VerifierKey,
    options: VerifyOptions,
    /// Checkpoints not yet reached, sorted by size descending (next one at the end).
    pending: Vec<(u64, String)>,
    builder: TreeBuilder,
    verified: usize,
    latest: Option<Checkpoint>,
}

impl ChainVerifier {
    /// Starts a verification against `checkpoints` (`(declared size, signed note)`, any order).
    ///
    /// # Errors
    ///
    /// A checkpoint at size 0 that does not verify.
    pub fn new(
        checkpoints: impl IntoIterator<Item = (u64, String)>,
        key: VerifierKey,
        options: VerifyOptions,
    ) -> Result<Self, VerifyFailure> {
        let mut pending: Vec<(u64, String)> = checkpoints.into_iter().collect();
        pending.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
        let mut verifier = Self {
            key,
            options,
            pending,
            builder: TreeBuilder::new(),
            verified: 0,
            latest: None,
        };
        verifier.drain_due()?;
        Ok(verifier)
    }

    /// The number of entries accepted so far.
    pub fn size(&self) -> u64 {
        self.builder.size()
    }

    /// Checks the next stored entry.
    ///
    /// # Errors
    ///
    /// The first problem, naming the entry (or the checkpoint it completes).
    pub fn push(&mut self, seq: u64, leaf: &[u8], stored: Hash) -> Result<(), VerifyFailure> {
        self.expect_seq(seq)?;
        let (hash, _) = check_leaf(self.options, seq, leaf, stored)?;
        self.push_checked(seq, hash)
    }

    /// The tree of the entries accepted so far (its frontier).
    pub fn tree(&self) -> &crate::tree::TreeBuilder {
        &self.builder
    }

    /// The options this verifier checks leaves with (for [`check_leaf`] on other threads).
    pub fn options(&self) -> VerifyOptions {
        self.options
    }

    /// Fails unless `seq` is the next entry's.
    ///
    /// # Errors
    ///
    /// [`FailureReason::SequenceGap`].
    pub fn expect_seq(&self, seq: u64) -> Result<(), VerifyFailure> {
        let expected = self.builder.size();
        if seq == expected {
            Ok(())
        } else {
            Err(VerifyFailure::at(
                expected,
                FailureReason::SequenceGap {
                    expected,
                    found: seq,
                },
            ))
        }
    }

    /// Adds the next entry, whose leaf [`check_leaf`] accepted with hash `hash`, and checks
    /// every checkpoint it completes.
    ///
    /// # Errors
    ///
    /// A gap in the sequence, or a checkpoint that does not verify.
    pub fn push_checked(&mut self, seq: u64, hash: Hash) -> Result<(), VerifyFailure> {
        self.expect_seq(seq)?;
        self.builder.push(hash);
        self.drain_due()
    }

    /// Ends the verification.
    ///
    /// # Errors
    ///
    /// A checkpoint that claims more entries than were pushed.
    pub fn finish(mut self) -> Result<VerifyReport, VerifyFailure> {
        let entries = self.builder.size();
        if let Some((size, _)) = self.pending.pop() {
            return Err(VerifyFailure::at(
                entries,
                FailureReason::CheckpointBeyondLog { size, entries },
            ));
        }
        Ok(VerifyReport {
            entries,
            root: self.builder.root(),
            checkpoints_verified: self.verified,
            latest_checkpoint: self.latest,
            consistent_with: None,
        })
    }

    /// Checks every pending checkpoint whose size equals the current size.
    fn drain_due(&mut self) -> Result<(), VerifyFailure> {
        while let Some((size, _)) = self.pending.last() {
            if *size != self.builder.size() {
                break;
            }
            if let Some((size, note)) = self.pending.pop() {
                let cp = check_checkpoint(size, &note, &self.key, &self.builder)?;
                self.verified += 1;
                self.latest = Some(cp);
            }
        }
        Ok(())
    }
}

fn check_checkpoint(
    size: u64,
    note: &str,
    key: &VerifierKey,
    builder: &TreeBuilder,
) -> Result<Checkpoint, VerifyFailure> {
    let cp = open(note, key).map_err(|e| VerifyFailure::global(checkpoint_reason(size, &e)))?;
    if cp.size != size {
        return Err(VerifyFailure::global(
            FailureReason::CheckpointSizeMismatch {
                declared: size,
                signed: cp.size,
            },
        ));
    }
    if cp.root != builder.root() {
        return Err(VerifyFailure::global(
            FailureReason::CheckpointRootMismatch { size },
        ));
    }
    Ok(cp)
}

/// Maps a checkpoint-opening error to a failure reason.
pub(crate) fn checkpoint_reason(size: u64, e: &LedgerError) -> FailureReason {
    match e {
        LedgerError::BadSignature(_) => FailureReason::BadSignature { size },
        LedgerError::WrongOrigin { .. } => FailureReason::WrongOrigin { size },
        _ => FailureReason::MalformedCheckpoint { size },
    }
}
