//! The rows and batches that cross the store boundary.

use jiff::Timestamp;
use writ_core::Sha256Digest;
use writ_core::case::{Case, CaseState};
use writ_core::event::EventKind;
use writ_core::exception::{DeadlineKind, Exception, ExceptionState};
use writ_core::finding::Finding;
use writ_core::identity::Identity;
use writ_core::ids::{CaseId, ExceptionId, JobId, TokenId};
use writ_core::job::{Job, JobState};
use writ_core::principal::{Principal, TokenRecord};

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
    /// The event kind.
    pub kind: EventKind,
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

/// The newest co-signature a witness returned, over the checkpoint of `size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureRow {
    /// The witness's name (its key name).
    pub witness: String,
    /// The tree size of the checkpoint it co-signed.
    pub size: u64,
    /// Its signature line (`— <name> <base64>`).
    pub cosignature: String,
    /// When writ received it.
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
    /// Insert or replace a case; when `decided`, entry `seq` is its decision in force from
    /// now on and votes for an earlier one stop counting.
    UpsertCase {
        /// The case as it now is.
        case: Case,
        /// Whether entry `seq` records a new decision.
        decided: bool,
        /// The entry that changed it.
        seq: u64,
    },
    /// Insert or replace a write-back job; when `intent`, entry `seq` records its plan and
    /// pre-image.
    UpsertJob {
        /// The job as it now is.
        job: Job,
        /// Whether entry `seq` is the job's intent.
        intent: bool,
        /// The entry that changed it.
        seq: u64,
    },
    /// Record `approver`'s vote for the decision in force on `case_id` (and mark the case
    /// changed by `seq`). A second vote by the same approver for the same decision is a
    /// conflict.
    InsertVote {
        /// The case.
        case_id: CaseId,
        /// Who approved.
        approver: String,
        /// The entry that recorded it.
        seq: u64,
    },
    /// Insert or replace a principal.
    UpsertPrincipal {
        /// The principal as it now is.
        principal: Principal,
        /// The entry that changed it.
        seq: u64,
    },
    /// Record a token (by its digest).
    InsertToken {
        /// The token.
        token: TokenRecord,
        /// The entry that issued it.
        seq: u64,
    },
    /// Mark a token revoked.
    RevokeToken {
        /// The token.
        id: TokenId,
        /// The entry that revoked it.
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
    /// Insert or replace an exception; an active one supersedes its case's earlier active
    /// ones.
    UpsertException {
        /// The exception.
        exception: Exception,
        /// Where it stands.
        state: ExceptionState,
        /// The entry that changed it.
        seq: u64,
    },
    /// A case's active exceptions (or only one of them) end.
    EndExceptions {
        /// The case.
        case_id: CaseId,
        /// Just this one, if given.
        only: Option<ExceptionId>,
        /// How they end.
        state: ExceptionState,
        /// The entry that ended them.
        seq: u64,
    },
    /// A case owes `kind` at `due` (replacing an earlier deadline of that kind).
    SetDeadline {
        /// The case.
        case_id: CaseId,
        /// What is owed.
        kind: DeadlineKind,
        /// When.
        due: Timestamp,
        /// The entry that set it.
        seq: u64,
    },
    /// A case's break-glass by `by`, reviewed or not.
    UpsertBypass {
        /// The case.
        case_id: CaseId,
        /// Who used it.
        by: String,
        /// Whether it has been reviewed.
        reviewed: bool,
        /// The entry that changed it.
        seq: u64,
    },
    /// These deadlines of a case are met (all of them when `kinds` is empty).
    MeetDeadlines {
        /// The case.
        case_id: CaseId,
        /// Which.
        kinds: Vec<DeadlineKind>,
        /// The entry that met them.
        seq: u64,
    },
    /// Record a system's sync (its last success kept when this one failed).
    UpsertSystem {
        /// What the sync recorded.
        status: writ_core::event::SystemSynced,
        /// The entry that recorded it.
        seq: u64,
    },
    /// Pause (with why) or resume (`None`) automation on a system.
    SetSystemPause {
        /// The system.
        system: String,
        /// Why it is paused.
        reason: Option<String>,
        /// The entry that recorded it.
        seq: u64,
    },
}

/// An exception as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionView {
    /// The exception.
    pub exception: Exception,
    /// Where it stands.
    pub state: ExceptionState,
    /// The entry that granted it.
    pub granted_seq: u64,
    /// The entry that last changed it.
    pub updated_seq: u64,
}

/// Which exceptions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionFilter {
    /// Only exceptions in this state.
    pub state: Option<ExceptionState>,
    /// Only those expiring before this time.
    pub expiring_before: Option<Timestamp>,
    /// Only this case's.
    pub case_id: Option<CaseId>,
    /// At most this many (default 100), soonest expiry first.
    pub limit: Option<u32>,
}

/// A deadline that has fallen due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDeadline {
    /// The case.
    pub case_id: CaseId,
    /// What is owed.
    pub kind: DeadlineKind,
    /// When it fell due.
    pub due: Timestamp,
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
    /// Notifications the entries call for, written in the same transaction (the outbox).
    pub outbox: Vec<OutboxRow>,
    /// What the writers of these entries read before deciding to append them. Checked in the
    /// same transaction, before anything is written: if any no longer holds, the whole batch
    /// fails with [`crate::StoreError::Stale`] and nothing is written (a conditional append).
    pub expectations: Vec<Expectation>,
}

/// Counts of what waits where ([`crate::JobQueue::queue_depths`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Cases by state.
    pub cases: Vec<(String, u64)>,
    /// Write-back jobs by system and state.
    pub jobs: Vec<(String, String, u64)>,
    /// Webhook notifications by endpoint and state.
    pub notifications: Vec<(String, String, u64)>,
}

/// A notification waiting in the outbox for its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The message id (the `webhook-id` header): the same on every attempt.
    pub id: String,
    /// The `[[webhooks]]` name it goes to.
    pub endpoint: String,
    /// The ledger entry that called for it.
    pub seq: u64,
    /// The notification kind (`approval_due`, ...).
    pub kind: String,
    /// The JSON body, exactly as it is sent and signed.
    pub payload: String,
    /// When it was written.
    pub created: Timestamp,
    /// Attempts made so far.
    pub attempts: u32,
}

/// How a delivery attempt ended, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryNext {
    /// The endpoint took it (2xx): done.
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// No more tries: it failed.
    Failed,
    /// The endpoint answered 410 Gone: it is disabled, and nothing more goes to it.
    EndpointGone,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When.
    pub at: Timestamp,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// What went wrong, if anything (never the secret or the signature).
    pub error: Option<String>,
}

/// A condition an append rests on: the case, job or principal is still in the state, and at
/// the version (the seq of the entry that last changed it), that the writer read. The sequencer
/// makes sure no earlier entry of the same batch changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The case is in `state`, last changed by entry `updated_seq`.
    Case {
        /// The case.
        id: CaseId,
        /// Its state as read.
        state: CaseState,
        /// Its version as read.
        updated_seq: u64,
    },
    /// The job is in `state`, last changed by entry `updated_seq`.
    Job {
        /// The job.
        id: JobId,
        /// Its state as read.
        state: JobState,
        /// Its version as read.
        updated_seq: u64,
    },
    /// The principal named `name` is at version `updated_seq`, or (`None`) does not exist.
    Principal {
        /// Its canonical name.
        name: String,
        /// Its version as read; `None`: no such principal.
        updated_seq: Option<u64>,
    },
}

/// A principal with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalView {
    /// The principal.
    pub principal: Principal,
    /// The entry that last changed it (its version, for [`Expectation::Principal`]).
    pub updated_seq: u64,
}

/// A token as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    /// The token (digest, owner, expiry).
    pub token: TokenRecord,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The entry that issued it.
    pub issued_seq: u64,
}

/// A case with what the engine decides from: its version, the decision in force and the votes
/// for it, and its latest job. Read from the projections, never by rescanning the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseView {
    /// The case.
    pub case: Case,
    /// The entry that opened it.
    pub opened_seq: u64,
    /// The entry that last changed it (its version, for [`Expectation::Case`]).
    pub updated_seq: u64,
    /// The entry that records the decision in force (read it from the ledger).
    pub decision_seq: Option<u64>,
    /// Who approved the decision in force, with the entry that recorded each vote.
    pub votes: Vec<(String, u64)>,
    /// The case's latest job.
    pub job: Option<JobView>,
}

/// A job with its version and where its plan is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The job.
    pub job: Job,
    /// The entry that queued it.
    pub created_seq: u64,
    /// The entry that last changed it (its version, for [`Expectation::Job`]).
    pub updated_seq: u64,
    /// The entry that records its intent (plan and pre-image), once there is one.
    pub intent_seq: Option<u64>,
}

/// A case with its version and the entry of its decision in force: what a writer needs to
/// change it (the version, for [`Expectation::Case`]) and to read its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseHead {
    /// The case.
    pub case: Case,
    /// The entry that last changed it.
    pub updated_seq: u64,
    /// The entry that records its decision in force, if any.
    pub decision_seq: Option<u64>,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    /// Only cases in this state.
    pub state: Option<CaseState>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
    /// Skip this many first (paging), newest changed first.
    pub offset: Option<u32>,
    /// Only cases of this finding type.
    pub finding_type: Option<String>,
}

/// A case in a [`ProjectionDump`]: the case, the seqs that opened and last changed it, and the
/// seq of its decision in force.
pub type CaseDumpRow = (Case, u64, u64, Option<u64>);

/// Every projection row, for comparing live tables with a rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionDump {
    /// Identities with the seq of the entry that last changed them.
    pub identities: Vec<(Identity, u64)>,
    /// Cases with the seqs that opened and last changed them, and the decision in force
    /// (as stored, parsed as JSON) with the seq that recorded it.
    pub cases: Vec<CaseDumpRow>,
    /// Votes: case, decision seq, approver, the seq that recorded the vote.
    pub votes: Vec<(CaseId, u64, String, u64)>,
    /// Findings with their case and the seq that recorded them.
    pub findings: Vec<(Finding, Option<CaseId>, u64)>,
    /// Jobs with the seqs that created and last changed them, and the seq of their intent.
    pub jobs: Vec<(Job, u64, u64, Option<u64>)>,
    /// Principals with the seq that last changed them.
    pub principals: Vec<(Principal, u64)>,
    /// Tokens, revoked or not, with the seqs that issued and last changed them.
    pub tokens: Vec<(TokenRecord, bool, u64, u64)>,
    /// Exceptions.
    pub exceptions: Vec<ExceptionView>,
    /// Break-glass changes: case, by, reviewed, the seq that last changed them.
    pub bypasses: Vec<(CaseId, String, bool, u64)>,
    /// Deadlines: case, kind, due, done, the seqs that set and last changed them.
    pub deadlines: Vec<(CaseId, DeadlineKind, Timestamp, bool, u64, u64)>,
    /// Systems' sync status.
    pub systems: Vec<SystemStatus>,
}

/// A target system's inventory sync, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemStatus {
    /// The system.
    pub system: String,
    /// Its `[[targets]]` name.
    pub target: String,
    /// When a sync last ended.
    pub last_attempt_at: Timestamp,
    /// When a sync last succeeded (the inventory's freshness), if ever.
    pub last_success_at: Option<Timestamp>,
    /// Whether the last one ran on the schedule.
    pub scheduled: bool,
    /// How the last one went.
    pub outcome: writ_core::event::SyncOutcome,
    /// Identities at the last successful sync.
    pub identities: Option<u64>,
    /// Of those, with an owner.
    pub owned: Option<u64>,
    /// Why automation is paused there, if it is.
    pub paused_reason: Option<String>,
    /// The entry that last changed the row.
    pub updated_seq: u64,
}

/// Ledger entries read for the audit: the variable-length columns of a whole page in one
/// buffer, so that reading a million entries does not allocate three times per entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryPage {
    bytes: Vec<u8>,
    rows: Vec<PageRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageRow {
    seq: u64,
    time: Timestamp,
    case_id: Option<CaseId>,
    kind: EventKind,
    actor: (usize, usize),
    idempotency_key: (usize, usize),
    leaf: (usize, usize),
    leaf_hash: [u8; 32],
}

/// One entry of an [`EntryPage`], borrowed from it. Text columns are bytes as stored (their
/// text is compared with the leaf's, which is UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its time column.
    pub time: Timestamp,
    /// Its case column.
    pub case_id: Option<CaseId>,
    /// Its kind column.
    pub kind: EventKind,
    /// Its actor column.
    pub actor: &'a [u8],
    /// Its idempotency key column.
    pub idempotency_key: &'a [u8],
    /// The leaf.
    pub leaf: &'a [u8],
    /// The stored leaf hash.
    pub leaf_hash: [u8; 32],
}

impl EntryPage {
    /// A page with room for `rows` entries of about `bytes` bytes of text and leaves.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            rows: Vec::with_capacity(rows),
        }
    }

    /// The page of `rows`.
    pub fn from_rows(rows: &[LedgerRow]) -> Self {
        let mut page = Self::with_capacity(rows.len(), 0);
        for row in rows {
            page.push(
                row.seq,
                row.time,
                row.case_id,
                row.kind,
                row.actor.as_bytes(),
                row.idempotency_key.as_bytes(),
                &row.leaf,
                row.leaf_hash,
            );
        }
        page
    }

    /// Appends an entry (its columns copied into the page's buffer).
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        seq: u64,
        time: Timestamp,
        case_id: Option<CaseId>,
        kind: EventKind,
        actor: &[u8],
        idempotency_key: &[u8],
        leaf: &[u8],
        leaf_hash: [u8; 32],
    ) {
        let mut span = |bytes: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(bytes);
            (start, self.bytes.len())
        };
        let actor = span(actor);
        let idempotency_key = span(idempotency_key);
        let leaf = span(leaf);
        self.rows.push(PageRow {
            seq,
            time,
            case_id,
            kind,
            actor,
            idempotency_key,
            leaf,
            leaf_hash,
        });
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> {
        let at = |(start, end): (usize, usize)| self.bytes.get(start..end).unwrap_or(&[]);
        self.rows.iter().map(move |row| EntryRef {
            seq: row.seq,
            time: row.time,
            case_id: row.case_id,
            kind: row.kind,
            actor: at(row.actor),
            idempotency_key: at(row.idempotency_key),
            leaf: at(row.leaf),
            leaf_hash: row.leaf_hash,
        })
    }
}
