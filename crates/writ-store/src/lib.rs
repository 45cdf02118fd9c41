//! writ's storage edge: one [`Store`] trait, two backends.
//!
//! - [`SqliteStore`]: the embedded default. WAL journal, `synchronous=FULL`, and a single writer
//!   connection whose transactions start with `BEGIN IMMEDIATE`, so writes never interleave.
//! - [`PgStore`]: for several stateless writ replicas sharing one PostgreSQL. Writers serialise
//!   on the ledger head row (`SELECT ... FOR UPDATE`).
//!
//! The ledger is the source of truth. The only way to change state is [`Store::commit`], which
//! appends ledger entries and applies their projections (identities, cases, findings, evidence)
//! in **one transaction**: if any part fails, nothing is written (fail closed). The store does
//! no ledger math; it stores what the sequencer computed and checks that sequence numbers
//! continue the head exactly.

mod common;
mod migrate;
mod model;
mod postgres;
mod redact;
mod sqlite;

pub use redact::redact_url;

use std::sync::Arc;

use async_trait::async_trait;
use writ_core::Sha256Digest;
use writ_core::case::Case;
use writ_core::identity::Identity;
use writ_core::ids::{CaseId, IdentityId, JobId};

pub use migrate::{Migration, MigrationError};
pub use model::{
    CaseFilter, CheckpointRow, CommitBatch, Effect, EvidenceRow, LedgerRow, ProjectionDump,
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

/// The storage interface that every other part of writ uses.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Checks that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The number of entries in the ledger.
    async fn ledger_size(&self) -> Result<u64, StoreError>;

    /// Appends `batch.entries` (which must start at the current ledger size), stores the
    /// checkpoint, and applies `batch.effects`, all in one transaction.
    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;

    /// The entry with this idempotency key, if one was appended.
    async fn entry_by_idempotency_key(&self, key: &str) -> Result<Option<LedgerRow>, StoreError>;

    /// The newest entry of this kind (`ownership_imported`, ...), if any.
    async fn latest_entry_of_kind(&self, kind: &str) -> Result<Option<LedgerRow>, StoreError>;

    /// Up to `limit` entries starting at `from`, in sequence order.
    async fn entries(&self, from: u64, limit: u32) -> Result<Vec<LedgerRow>, StoreError>;

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

    /// Raw evidence by digest.
    async fn evidence(&self, digest: &Sha256Digest) -> Result<Option<EvidenceRow>, StoreError>;

    /// The entries with any of these idempotency keys (batch form of
    /// [`Store::entry_by_idempotency_key`]).
    async fn entries_by_idempotency_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<LedgerRow>, StoreError>;

    /// The identities matching any of these `(system, external id)` pairs.
    async fn identities_by_external_ids(
        &self,
        subjects: &[(String, String)],
    ) -> Result<Vec<Identity>, StoreError>;

    /// The open cases for any of these `(subject, finding type)` pairs.
    async fn open_cases_for(&self, keys: &[(String, String)]) -> Result<Vec<Case>, StoreError>;

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

    /// The open case for a subject and finding type, if any (for deduplication).
    async fn open_case(
        &self,
        subject: &str,
        finding_type: &str,
    ) -> Result<Option<Case>, StoreError>;

    /// Cases matching `filter`, newest first.
    async fn cases(&self, filter: &CaseFilter) -> Result<Vec<Case>, StoreError>;

    /// Write-back jobs a worker still has to finish (queued, intent recorded, or applied),
    /// oldest change first.
    async fn pending_jobs(&self, limit: u32) -> Result<Vec<writ_core::job::Job>, StoreError>;

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
    ) -> Result<Vec<writ_core::job::Job>, StoreError>;

    /// Extends `holder`'s lease on `job` to `until`. Returns false when the lease is no longer
    /// `holder`'s (it expired and another worker took the job): the caller must stop.
    async fn renew_lease(
        &self,
        job: JobId,
        holder: &str,
        until: jiff::Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives up `holder`'s lease on `job`, if it still holds it.
    async fn release_lease(&self, job: JobId, holder: &str) -> Result<(), StoreError>;

    /// The jobs of `system` whose change the target accepted at or after `since`.
    async fn jobs_applied_since(
        &self,
        system: &str,
        since: jiff::Timestamp,
    ) -> Result<Vec<writ_core::job::Job>, StoreError>;

    /// The jobs of one case, oldest first.
    async fn jobs_for_case(&self, case: CaseId) -> Result<Vec<writ_core::job::Job>, StoreError>;

    /// Replaces every projection row (identities, cases, findings) with the result of
    /// `effects`, in one transaction, keeping the ledger and evidence. Used by
    /// `writ admin rebuild` after replaying the ledger.
    async fn replace_projections(&self, effects: Vec<Effect>) -> Result<(), StoreError>;

    /// Every projection row, ordered by id, with the ledger positions that produced it. Used
    /// to prove that a rebuild from the ledger equals the live tables.
    async fn projection_dump(&self) -> Result<ProjectionDump, StoreError>;
}

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
