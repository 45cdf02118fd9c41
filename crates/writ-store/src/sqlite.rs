//! The SQLite backend: writ's embedded default.
//!
//! One file, WAL journal, `synchronous=FULL` (a committed entry survives power loss), foreign
//! keys on. All writes go through a pool of exactly one connection and start with
//! `BEGIN IMMEDIATE`, so there is a single writer and no write ever waits on a lock upgrade.
//! Reads use their own small read-only pool and see committed data only.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite, Transaction};

use crate::{Backend, StoreError, migrate};

mod q {
    crate::sql::backend_queries!(sqlx::Sqlite, combine = crate::sql::Combine::Semicolons);
}

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: Pool<Sqlite>,
    writer: Pool<Sqlite>,
    /// The audit's bulk reader (a file database only).
    scanner: Option<crate::sqlite_scan::Scanner>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH` or `sqlite::memory:`)
    /// and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // No ping before each use: a connection to a local file does not go stale, and
            // each ping is one more round trip to the connection's worker thread.
            .test_before_acquire(false)
            // The one writer: 16 MiB of page cache (the ledger's random-keyed indexes outgrow
            // SQLite's 2 MiB default within some hundred thousand entries, after which every
            // commit spills and re-reads index pages). Not more: at the end of every write
            // transaction SQLite scans the cache's whole hash table (`pcache1TruncateUnsafe`),
            // which with 64 MiB took 6% of the server's time under many small commits, and
            // measured slower both for one-finding requests and for a 100,000-line file
            // (`writ bench http`: 2,048/s and 7,483/s at 64 MiB, 2,577/s and 7,893/s at 16 MiB,
            // 2,281/s and 7,521/s at 2 MiB, one run each); statement journals of multi-row
            // INSERTs in memory; a WAL checkpoint every ~200 MiB rather than every 4 MiB: a
            // commit of a few thousand findings dirties most pages of the random-keyed
            // indexes, and a page rewritten by many commits is copied back once per
            // checkpoint (the WAL file on disk grows to about that size). Durability is
            // unchanged: `synchronous=FULL` still syncs the WAL at every commit.
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", "-16384")
                    .pragma("temp_store", "memory")
                    .pragma("wal_autocheckpoint", "50000"),
            )
            .await?;
        let store = Self {
            reader: writer.clone(),
            writer,
            scanner: None,
        };
        store.migrate().await?;
        if in_memory {
            return Ok(store);
        }
        // Readers open only after the schema exists, read-only, so they can never write. They
        // map the database file (up to 1 GiB) rather than copy each page they read through a
        // private cache: ingest's batch look-ups touch pages all over the random-keyed indexes.
        // The price, as SQLite documents: an I/O error while reading a mapped page is a signal
        // that ends the process rather than an error. That fails closed (nothing is written
        // by a reader, and nothing unacknowledged was promised).
        let path = options.get_filename().to_path_buf();
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            // As the writer's: nothing to test on a local file.
            .test_before_acquire(false)
            .connect_with(options.read_only(true).pragma("mmap_size", "1073741824"))
            .await?;
        let scanner = Some(crate::sqlite_scan::Scanner::new(path));
        Ok(Self {
            reader,
            scanner,
            ..store
        })
    }

    /// The audit's bulk read: rusqlite on a file database, else the ordinary query.
    async fn scan(&self, from: u64, limit: u32) -> Result<crate::EntryPage, StoreError> {
        match &self.scanner {
            Some(scanner) => scanner.page(from, limit).await,
            None => {
                let rows = q::entries(&mut *self.reader.acquire().await?, from, limit).await?;
                Ok(crate::EntryPage::from_rows(&rows))
            }
        }
    }

    /// The row-locking clause of a job claim: the one writer connection already excludes every other claim.
    const CLAIM_LOCK: &str = "";

    /// Opens the single writer's transaction.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn locked_head(tx: &mut Transaction<'static, Sqlite>) -> Result<u64, StoreError> {
        q::head_size(tx).await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        q::migrate(&mut tx, migrate::SQLITE).await?;
        tx.commit().await?;
        Ok(())
    }
}

crate::sql::impls::impl_store!(SqliteStore, Backend::Sqlite);

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions as _, Connection as _};

    use super::*;
    use crate::AdminStore as _;

    /// Migration 5 rebuilds the findings table: rows recorded before it are all still there.
    #[tokio::test]
    async fn findings_survive_the_rebuild_of_migration_5() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writ.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        q::migrate(&mut tx, &migrate::SQLITE[..4]).await.unwrap();
        sqlx::query(
            "INSERT INTO findings (id, case_id, source, finding_type, severity, confidence_bp, subject_system, subject_external_id, observed_us, evidence, idempotency_key, seq)
             VALUES (X'0190c0de000070008000000000000001', NULL, 'prowler', 'iam_user_accesskey_unused', 'high', 9500, 'aws:1', 'ci/AccessKey1', 1800000000000000, 'sha256:0000000000000000000000000000000000000000000000000000000000000000', 'finding:prowler:k', 0)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let findings = store.projection_dump().await.unwrap().findings;
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].0.idempotency_key, "finding:prowler:k");
    }
}
