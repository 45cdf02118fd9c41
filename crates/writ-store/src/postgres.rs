//! The PostgreSQL backend: for several stateless writ replicas sharing one database.
//!
//! Writers serialise on the ledger head row (`SELECT ... FOR UPDATE`), so appends from any
//! replica form one gap-free sequence. Migrations run under a transaction-scoped advisory lock,
//! so replicas that start together apply them once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres, Transaction};

use crate::{Backend, StoreError, migrate};

mod q {
    crate::sql::backend_queries!(sqlx::Postgres, combine = crate::sql::Combine::WithClauses);
}

/// The advisory lock key that serialises migrations ("writ" in ASCII).
const MIGRATION_LOCK: i64 = 0x7772_6974;

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    reader: Pool<Postgres>,
}

impl PgStore {
    /// Connects to `url` (`postgres://...`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("writ");
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let store = Self { reader: pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The row-locking clause of a job claim: replicas claiming at the same moment skip each other's candidate rows.
    const CLAIM_LOCK: &str = "FOR UPDATE OF j SKIP LOCKED";

    /// The audit's bulk read: the ordinary query (PostgreSQL streams rows fast enough).
    async fn scan(&self, from: u64, limit: u32) -> Result<crate::EntryPage, StoreError> {
        let rows = q::entries(&mut *self.reader.acquire().await?, from, limit).await?;
        Ok(crate::EntryPage::from_rows(&rows))
    }

    /// Readers and writers share one pool; writers lock the head row.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.reader.begin().await?)
    }

    async fn locked_head(tx: &mut Transaction<'static, Postgres>) -> Result<u64, StoreError> {
        let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut **tx)
            .await?;
        crate::sql::seq_from_db("ledger_head", size)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.reader.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        q::migrate(&mut tx, migrate::POSTGRES).await?;
        tx.commit().await?;
        Ok(())
    }
}

crate::sql::impls::impl_store!(PgStore, Backend::Postgres);
