//! The rows and batches that cross the store boundary.

use jiff::Timestamp;
use writ_core::Sha256Digest;
use writ_core::case::{Case, CaseState};
use writ_core::finding::Finding;
use writ_core::identity::Identity;
use writ_core::ids::CaseId;
use writ_core::job::Job;

/// One ledger entry as stored: the leaf bytes and their hash, plus a few columns copied out of
/// the leaf for indexing. The leaf is authoritative; the columns are conveniences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// Append time.
    pub time: Timestamp,
    /// The case the event belongs to.
    pub case_id: Option<CaseId>,
    /// The event kind, as its snake_case name.
    pub kind: String,
    /// Who caused it.
    pub actor: String,
    /// Unique per logical event.
    pub idempotency_key: String,
    /// The leaf: format tag plus canonical JSON.
    pub leaf: Vec<u8>,
    /// The RFC 6962 leaf hash of `leaf`.
    pub leaf_hash: [u8; 32],
}

/// A signed checkpoint of the ledger at some size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Tree size it commits to.
    pub size: u64,
    /// Root hash at that size.
    pub root: [u8; 32],
    /// The signed note text (C2SP tlog-checkpoint + signed-note).
    pub note: String,
    /// When it was signed.
    pub time: Timestamp,
}

/// Raw evidence, stored by digest beside the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    /// SHA-256 of `bytes`.
    pub digest: Sha256Digest,
    /// What it is (`application/json`, ...).
    pub media_type: String,
    /// Exactly as received.
    pub bytes: Vec<u8>,
    /// When it was stored.
    pub received: Timestamp,
}

/// A projection change caused by a ledger entry. `seq` is that entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Store evidence (a no-op if the digest is already stored).
    PutEvidence(EvidenceRow),
    /// Insert or replace an identity.
    UpsertIdentity {
        /// The identity as it now is.
        identity: Identity,
        /// The entry that changed it.
        seq: u64,
    },
    /// Insert or replace a case.
    UpsertCase {
        /// The case as it now is.
        case: Case,
        /// The entry that changed it.
        seq: u64,
    },
    /// Insert or replace a write-back job.
    UpsertJob {
        /// The job as it now is.
        job: Job,
        /// The entry that changed it.
        seq: u64,
    },
    /// Record a finding, attached to a case.
    InsertFinding {
        /// The finding.
        finding: Finding,
        /// The case it joined, if any.
        case_id: Option<CaseId>,
        /// The entry that recorded it.
        seq: u64,
    },
}

/// One atomic write: ledger entries, the checkpoint that covers them, and their projections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// New entries; their `seq` must run on from the current ledger size without gaps.
    pub entries: Vec<LedgerRow>,
    /// The checkpoint signed over the ledger including these entries.
    pub checkpoint: Option<CheckpointRow>,
    /// Projection changes.
    pub effects: Vec<Effect>,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// Every projection row, for comparing live tables with a rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionDump {
    /// Identities with the seq of the entry that last changed them.
    pub identities: Vec<(Identity, u64)>,
    /// Cases with the seqs that opened and last changed them.
    pub cases: Vec<(Case, u64, u64)>,
    /// Findings with their case and the seq that recorded them.
    pub findings: Vec<(Finding, Option<CaseId>, u64)>,
    /// Jobs with the seqs that created and last changed them.
    pub jobs: Vec<(Job, u64, u64)>,
}
