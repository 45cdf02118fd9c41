//! writ's storage edge: one [`Store`] trait, two backends.
//!
//! - [`SqliteStore`]: the embedded default. WAL journal, `synchronous=FULL`, and a single writer
//!   connection whose transactions start with `BEGIN IMMEDIATE`, so writes never interleave.
//! - [`PgStore`]: for several stateless writ replicas sharing one PostgreSQL. Writers serialise
//!   on the ledger head row (`SELECT ... FOR UPDATE`).
//!
//! The store is split by role, each trait with its contract: [`LedgerStore`] (the append-only
//! ledger), [`ProjectionStore`] (tables derived from it, and the engine's read models),
//! [`JobQueue`] (write-back jobs and worker leases) and [`AdminStore`] (health, rebuild).
//! [`Store`] is all four.
//!
//! The ledger is the source of truth. The only way to change state is [`LedgerStore::commit`], which
//! appends ledger entries and applies their projections (identities, cases, findings, evidence)
//! in **one transaction**: if any part fails, nothing is written (fail closed). The store does
//! no ledger math; it stores what the sequencer computed and checks that sequence numbers
//! continue the head exactly.

mod migrate;
mod model;
mod postgres;
mod redact;
mod sql;
mod sqlite;
mod sqlite_scan;

pub use redact::redact_url;

use std::sync::Arc;

use async_trait::async_trait;
use writ_core::Sha256Digest;
use writ_core::case::Case;
use writ_core::event::EventKind;
use writ_core::identity::Identity;
use writ_core::ids::{CaseId, IdentityId, JobId};
use writ_core::job::Job;

pub use migrate::{Migration, MigrationError};
pub use model::{
    CaseFilter, CaseHead, CaseView, CheckpointRow, CommitBatch, CosignatureRow, DeliveryAttempt,
    DeliveryNext, DueDeadline, Effect, EntryPage, EntryRef, EvidenceRow, ExceptionFilter,
    ExceptionView, Expectation, JobView, LedgerRow, OutboxRow, PrincipalView, ProjectionDump,
    QueueDepths, SystemStatus, TokenView,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend's name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one writ understands.
    #[error("unsupported database URL {url:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl {
        /// The URL, with any password removed.
        url: String,
    },
    /// The batch does not continue the ledger head: another writer got there first, or the
    /// caller computed sequence numbers from a stale head. Nothing was written.
    #[error("ledger head moved: batch starts at {batch_start}, ledger size is {head}")]
    HeadMoved {
        /// The sequence number the batch starts at.
        batch_start: u64,
        /// The actual ledger size.
        head: u64,
    },
    /// The batch's own sequence numbers are not contiguous.
    #[error("batch entries are not contiguous at seq {seq}")]
    BatchNotContiguous {
        /// The first out-of-place sequence number.
        seq: u64,
    },
    /// A finding in the batch does not carry the idempotency key of the entry that records
    /// it (or no entry of the batch has its seq). Nothing was written.
    #[error("the finding recorded by entry {seq} does not carry that entry's idempotency key")]
    FindingKeyMismatch {
        /// The seq the finding names.
        seq: u64,
    },
    /// An idempotency key or other unique value is already taken. Nothing was written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A case or job is no longer what the writer read before appending (another writer
    /// changed it first). Nothing was written; read again and decide again.
    #[error("{what} changed since it was read (expected {expected}, found {found})")]
    Stale {
        /// The case or job.
        what: String,
        /// What the writer read.
        expected: String,
        /// What the database holds now.
        found: String,
    },
    /// A stored row could not be turned back into the domain model.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Applying the schema failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The database said no.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            return StoreError::Conflict(db.message().to_owned());
        }
        StoreError::Database(err)
    }
}

/// The ledger: append-only entries, their checkpoints and evidence.
///
/// Contract: [`LedgerStore::commit`] is the only write path of the whole store. It appends the
/// batch's entries (which must start exactly at the ledger head and be contiguous), stores its
/// checkpoint and evidence, checks its [`Expectation`]s and applies its projection effects, in
/// **one transaction**: on any error nothing is written. Entries are never changed or removed.
/// Reads return entries in sequence order.
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug {
    /// The number of entries in the ledger.
    async fn ledger_size(&self) -> Result<u64, StoreError>;

    /// Appends `batch.entries` (which must start at the current ledger size), stores the
    /// checkpoint, checks the expectations and applies `batch.effects`, all in one transaction.
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;

    /// The entry with this idempotency key, if one was appended.
    async fn entry_by_idempotency_key(&self, key: &str) -> Result<Option<LedgerRow>, StoreError>;

    /// The entries with any of these idempotency keys (batch form of
    /// [`LedgerStore::entry_by_idempotency_key`]).
    async fn entries_by_idempotency_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<LedgerRow>, StoreError>;

    /// The newest entry of this kind, if any.
    async fn latest_entry_of_kind(&self, kind: EventKind) -> Result<Option<LedgerRow>, StoreError>;

    /// The newest `limit` `campaign_started` entries, newest first.
    async fn campaigns_started(&self, limit: u32) -> Result<Vec<LedgerRow>, StoreError>;

    /// Up to `limit` entries starting at `from`, in sequence order.
    async fn entries(&self, from: u64, limit: u32) -> Result<Vec<LedgerRow>, StoreError>;

    /// [`LedgerStore::entries`] as one [`EntryPage`], by the fastest path the backend has: for
    /// reading every entry (the audit). The same rows, the same order.
    async fn scan_page(&self, from: u64, limit: u32) -> Result<EntryPage, StoreError> {
        Ok(EntryPage::from_rows(&self.entries(from, limit).await?))
    }

    /// The entries at these sequence numbers (those that exist), in sequence order.
    async fn entries_at(&self, seqs: &[u64]) -> Result<Vec<LedgerRow>, StoreError>;

    /// Up to `limit` `(seq, leaf, leaf hash)` triples from `from`, in sequence order: just what
    /// verification needs, read without decoding the other columns.
    async fn leaves(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<u8>, [u8; 32])>, StoreError>;

    /// The entries of one case, in sequence order.
    async fn case_entries(&self, case: CaseId) -> Result<Vec<LedgerRow>, StoreError>;

    /// All checkpoints, by tree size.
    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError>;

    /// The checkpoint with the largest tree size, if any.
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;

    /// The checkpoint of tree size `size`, if any.
    async fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError>;

    /// Records `row` as its witness's newest co-signature, unless one of a larger size is
    /// already recorded.
    async fn put_cosignature(&self, row: &CosignatureRow) -> Result<(), StoreError>;

    /// Each witness's newest co-signature.
    async fn cosignatures(&self) -> Result<Vec<CosignatureRow>, StoreError>;

    /// Raw evidence by digest.
    async fn evidence(&self, digest: &Sha256Digest) -> Result<Option<EvidenceRow>, StoreError>;

    /// Evidence rows as stored (the digest column's text and the bytes), ordered by digest,
    /// after `after`: for auditing that every blob hashes to its digest.
    async fn evidence_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The media type and receipt time of each of `digests` the evidence table holds (the
    /// digest column's text with them); a digest it does not hold is absent.
    async fn evidence_meta(
        &self,
        digests: &[Sha256Digest],
    ) -> Result<Vec<(String, String, jiff::Timestamp)>, StoreError>;
}

/// The projections: identities, cases, findings and the read models, derived from the ledger.
///
/// Contract: every row here was written by [`LedgerStore::commit`] from the effects of ledger
/// entries (or by [`AdminStore::replace_projections`] from a replay of them), so each can be
/// rebuilt from the ledger. They are for speed, not for trust: whatever a decision to touch a
/// target rests on is checked against the ledger entries themselves.
#[async_trait]
pub trait ProjectionStore: Send + Sync + std::fmt::Debug {
    /// The identities matching any of these `(system, external id)` pairs.
    async fn identities_by_external_ids(
        &self,
        subjects: &[(String, String)],
    ) -> Result<Vec<Identity>, StoreError>;

    /// The open cases for any of these `(subject, finding type)` pairs.
    async fn open_cases_for(&self, keys: &[(String, String)]) -> Result<Vec<Case>, StoreError>;

    /// The open cases for any of these `(subject, finding type)` pairs, with their versions
    /// and decisions in force.
    async fn open_case_heads(&self, keys: &[(String, String)])
    -> Result<Vec<CaseHead>, StoreError>;

    /// The open cases of these finding types whose subject lies under the given subject
    /// (`subject/...`: a user's keys under the user), for each `(subject, finding type)` pair.
    async fn open_case_heads_under(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<CaseHead>, StoreError>;

    /// For each of these `(subject, finding type)` pairs that has closed cases, the one closed
    /// last.
    async fn last_closed_cases_for(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<CaseHead>, StoreError>;

    /// The cases awaiting approval or remediating about any identity of `system` (when
    /// `by_system`) or owned by the team `value` (otherwise): what a wide freeze reaches.
    async fn pending_cases_where(
        &self,
        by_system: bool,
        value: &str,
    ) -> Result<Vec<CaseHead>, StoreError>;

    /// The open cases about one identity, with their versions.
    async fn open_cases_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<CaseHead>, StoreError>;

    /// The open cases whose identity is not known yet, about any of these subjects
    /// (`system/external id`).
    async fn unresolved_cases_for(&self, subjects: &[String]) -> Result<Vec<CaseHead>, StoreError>;

    /// One identity by id.
    async fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError>;

    /// One identity by its system and its id there.
    async fn identity_by_external_id(
        &self,
        system: &str,
        external_id: &str,
    ) -> Result<Option<Identity>, StoreError>;

    /// All identities, ordered by system and external id.
    async fn identities(&self) -> Result<Vec<Identity>, StoreError>;

    /// One case by id.
    async fn case(&self, id: CaseId) -> Result<Option<Case>, StoreError>;

    /// One case with its version, decision in force, votes and latest job.
    async fn case_view(&self, id: CaseId) -> Result<Option<CaseView>, StoreError>;

    /// Cases matching `filter`, most recently changed first.
    async fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>, StoreError>;

    /// Exceptions matching `filter`, soonest expiry first.
    async fn exceptions(&self, filter: &ExceptionFilter) -> Result<Vec<ExceptionView>, StoreError>;

    /// The cases whose break-glass change by `principal` still owes its review.
    async fn unreviewed_bypasses_of(&self, principal: &str) -> Result<Vec<CaseId>, StoreError>;

    /// Deadlines not yet met that fell due at or before `now`, oldest first.
    async fn due_deadlines(
        &self,
        now: jiff::Timestamp,
        limit: u32,
    ) -> Result<Vec<DueDeadline>, StoreError>;

    /// Every system's inventory sync status, by name.
    async fn systems(&self) -> Result<Vec<crate::model::SystemStatus>, StoreError>;

    /// Claims `system`'s scheduled sync of `round` for `holder`: true for exactly one caller
    /// per round, across replicas.
    async fn claim_sync_round(
        &self,
        system: &str,
        round: i64,
        holder: &str,
    ) -> Result<bool, StoreError>;

    /// The accesses still granted (an `access_expiry` deadline not yet met): each case, its
    /// subject, and the entry that granted it. At most `limit`, soonest to end first.
    async fn live_grants(&self, limit: u32) -> Result<Vec<(CaseId, String, u64)>, StoreError>;

    /// The types of the findings recorded about one subject after entry `after_seq` (what a
    /// grant's revocation criteria are checked against; by index, not by scan).
    async fn finding_types_about(
        &self,
        system: &str,
        external_id: &str,
        after_seq: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// The sources (canonical principal names) of the findings in a case.
    async fn case_sources(&self, case: CaseId) -> Result<Vec<String>, StoreError>;

    /// One principal by canonical name.
    async fn principal(&self, name: &str) -> Result<Option<PrincipalView>, StoreError>;

    /// Every principal, by name.
    async fn principals(&self) -> Result<Vec<PrincipalView>, StoreError>;

    /// How many principals exist (zero on a database that still needs its first admin).
    async fn principal_count(&self) -> Result<u64, StoreError>;

    /// The token with this digest, revoked or not.
    async fn token_by_digest(&self, digest: &Sha256Digest)
    -> Result<Option<TokenView>, StoreError>;

    /// A principal's tokens, oldest first.
    async fn tokens_of(&self, name: &str) -> Result<Vec<TokenView>, StoreError>;
}

/// The write-back job queue: jobs (projected like cases) and the leases workers hold on them.
///
/// Contract: job rows change only through [`LedgerStore::commit`]; `job_leases` is the one
/// table written outside it (operational coordination, not domain state, never rebuilt). A
/// lease is held by one worker at a time until it expires.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Leases up to `limit` pending jobs that are due at `now` and not leased to another
    /// worker, to `holder` until `until`, oldest change first. On PostgreSQL, rows another
    /// replica is claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`), so
    /// concurrent workers never get the same job; on SQLite the single writer serialises claims.
    async fn claim_jobs(
        &self,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
        limit: u32,
    ) -> Result<Vec<JobView>, StoreError>;

    /// Extends `holder`'s lease on `job` to `until`. Returns false when the lease is no longer
    /// `holder`'s (it expired and another worker took the job): the caller must stop.
    async fn renew_lease(
        &self,
        job: JobId,
        holder: &str,
        until: jiff::Timestamp,
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` notifications due at `now` whose endpoint is not disabled and that
    /// no other worker holds, leasing them to `holder` until `until`.
    async fn claim_outbox(
        &self,
        holder: &str,
        now: jiff::Timestamp,
        until: jiff::Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Records a delivery attempt of notification `id` by `holder` and what follows it
    /// (done, a retry, failed, or the endpoint disabled), giving the lease up.
    async fn finish_delivery(
        &self,
        id: &str,
        holder: &str,
        attempt: DeliveryAttempt,
        next: DeliveryNext,
    ) -> Result<(), StoreError>;

    /// Each notification's state and attempts (`pending`, `delivered`, `failed`,
    /// `disabled`), oldest first, for inspection.
    async fn outbox(&self, limit: u32) -> Result<Vec<(OutboxRow, String)>, StoreError>;

    /// How much is where, counted by the database (one `GROUP BY` each, for metrics): cases
    /// by state, write-back jobs by system and state, webhook notifications by endpoint and
    /// state.
    async fn queue_depths(&self) -> Result<QueueDepths, StoreError>;

    /// Gives up `holder`'s lease on `job`, if it still holds it.
    async fn release_lease(&self, job: JobId, holder: &str) -> Result<(), StoreError>;

    /// The jobs of `system` whose change the target accepted at or after `since`.
    async fn jobs_applied_since(
        &self,
        system: &str,
        since: jiff::Timestamp,
    ) -> Result<Vec<Job>, StoreError>;

    /// One job with its version and plan.
    async fn job_view(&self, id: JobId) -> Result<Option<JobView>, StoreError>;

    /// The jobs of one case, oldest first.
    async fn jobs_for_case(&self, case: CaseId) -> Result<Vec<Job>, StoreError>;
}

/// Administration: health, and rebuilding or comparing the projections.
///
/// Contract: [`AdminStore::replace_projections`] swaps every projection table for the given
/// effects in one transaction under the writer lock; the ledger and evidence are untouched.
#[async_trait]
pub trait AdminStore: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Checks that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Replaces every projection row (identities, cases, findings, jobs, votes) with the result
    /// of `effects`, in one transaction, keeping the ledger and evidence. Used by
    /// `writ admin rebuild` after replaying the ledger.
    async fn replace_projections(&self, effects: Vec<Effect>) -> Result<(), StoreError>;

    /// Every projection row, ordered by id, with the ledger positions that produced it. Used
    /// to prove that a rebuild from the ledger equals the live tables.
    async fn projection_dump(&self) -> Result<ProjectionDump, StoreError>;
}

/// Everything a backend provides: the four roles together. Code that needs only one role
/// should take that trait.
pub trait Store: LedgerStore + ProjectionStore + JobQueue + AdminStore {}

impl<T: LedgerStore + ProjectionStore + JobQueue + AdminStore> Store for T {}

/// Opens the store named by `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://...`) and
/// brings its schema up to date.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}
