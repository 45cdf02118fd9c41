//! [`TestDb`]: one throwaway database for one test, on either backend.
//!
//! Every suite that runs on both backends (the store suite, the engine's ledger, ingest and
//! write-back tests) gets its database here, through [`crate::backend_suite!`]: a SQLite file
//! in a temporary directory, or a fresh database in its own throwaway PostgreSQL cluster. The
//! database lives as long as the `TestDb`.

use crate::{HarnessError, PgCluster};

/// Which backend a [`TestDb`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A database for one test, and whatever keeps it alive.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL, for `writ_store::open` or the `writ` binary's `--database`.
    pub url: String,
    /// Its backend.
    pub backend: TestBackend,
    /// A temporary directory that lives as long as the database: a SQLite database's file is
    /// in it, and a test keeps its other files there (an end-to-end site's `writ.toml`, keys).
    pub dir: tempfile::TempDir,
    cluster: Option<PgCluster>,
}

impl TestDb {
    /// A fresh database on `backend`.
    pub fn new(backend: TestBackend) -> Result<Self, HarnessError> {
        match backend {
            TestBackend::Sqlite => Self::sqlite(),
            TestBackend::Postgres => Self::postgres(),
        }
    }

    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("writ.db").display());
        Ok(TestDb {
            url,
            backend: TestBackend::Sqlite,
            dir,
            cluster: None,
        })
    }

    /// A fresh database in its own throwaway PostgreSQL cluster.
    pub fn postgres() -> Result<Self, HarnessError> {
        let cluster = PgCluster::start()?;
        let url = cluster.create_database("writ")?;
        Ok(TestDb {
            url,
            backend: TestBackend::Postgres,
            dir: tempfile::tempdir()?,
            cluster: Some(cluster),
        })
    }

    /// The PostgreSQL cluster, for tests that need another database or replica on it.
    pub fn cluster(&self) -> Option<&PgCluster> {
        self.cluster.as_ref()
    }

    /// Takes the PostgreSQL cluster out, so a test can stop it (by dropping it) while the
    /// database's users keep running: the database is gone.
    pub fn take_cluster(&mut self) -> Option<PgCluster> {
        self.cluster.take()
    }
}

/// Runs `sql` (one or more statements) directly against the database at `url`, behind writ's
/// back: how tests play an attacker or an operator with write access to the database.
pub async fn exec_sql(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        sqlx::raw_sql(sql).execute(&pool).await?;
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql(sql).execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}
