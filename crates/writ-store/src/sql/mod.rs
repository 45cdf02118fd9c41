//! SQL shared by both backends.
//!
//! Both backends speak the same SQL here (`$N` placeholders, `ON CONFLICT`, partial indexes), so
//! the statements are written once and expanded for each backend's concrete connection type by
//! [`backend_queries!`]. They are split by concern, one macro per file, matching the store's
//! roles: `ledger` (appends, expectations, entries, checkpoints, evidence), `projections`
//! (effects, identities, cases and the read models, rebuild), `principals` (principals,
//! their tokens, the sources of a case's findings), `jobs` (the queue and its
//! leases), `lifecycle` (exceptions and deadlines), `admin` (migrations). `impls` implements the four role traits on a backend. What
//! differs between backends (how a writer takes the lock, how migrations are serialised) stays
//! in `sqlite.rs` and `postgres.rs`.

pub(crate) mod admin;
pub(crate) mod impls;
pub(crate) mod jobs;
pub(crate) mod ledger;
pub(crate) mod lifecycle;
pub(crate) mod principals;
pub(crate) mod projections;

use jiff::Timestamp;

use crate::StoreError;

/// `time` as microseconds since the epoch, the unit every `*_us` column uses.
pub(crate) fn micros(time: Timestamp) -> i64 {
    time.as_microsecond()
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(table: &'static str, us: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(us).map_err(|err| StoreError::Corrupt {
        table,
        detail: format!("time {us}: {err}"),
    })
}

/// Pairs grouped by their first element, each group's second elements distinct and sorted.
pub(crate) fn grouped<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut groups: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for (first, second) in pairs {
        groups.entry(first).or_default().insert(second);
    }
    groups
        .into_iter()
        .map(|(first, seconds)| (first, seconds.into_iter().collect()))
        .collect()
}

/// A sequence number as the database stores it.
pub(crate) fn seq_to_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt {
        table: "ledger_entries",
        detail: format!("sequence number {seq} out of range"),
    })
}

/// A sequence number as read from the database.
pub(crate) fn seq_from_db(table: &'static str, seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("negative sequence number {seq}"),
    })
}

/// A unit-like enum's name (`business_critical`), as stored in text columns: the strum name,
/// which a core test holds equal to the serde name.
pub(crate) fn enum_text<T: Copy + Into<&'static str>>(value: &T) -> &'static str {
    (*value).into()
}

/// Parses a text column written by [`enum_text`].
pub(crate) fn parse_enum<T: std::str::FromStr>(
    table: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("unknown value {text:?}"),
    })
}

/// A 32-byte hash column.
pub(crate) fn hash_from_db(table: &'static str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("hash of {} bytes, expected 32", bytes.len()),
    })
}

/// How a backend takes several write statements in one call (see `Statements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    /// `;`-separated, each statement's `?` parameters bound in order (SQLite's driver runs
    /// them one after the other).
    Semicolons,
    /// As the data-modifying `WITH` clauses of one statement, `$N` numbers running on across
    /// them (PostgreSQL's extended protocol prepares one statement at a time). They see one
    /// snapshot, not each other's rows: fine for writes of distinct rows with no reads.
    WithClauses,
}

/// Expands the shared statements for one backend. `$db` is the sqlx database type, `$combine`
/// a [`Combine`].
macro_rules! backend_queries {
    ($db:ty, combine = $combine:expr) => {
        use sqlx::Row as _;
        use uuid::Uuid;
        use writ_core::Sha256Digest;
        use writ_core::case::Case;
        use writ_core::identity::Identity;
        use writ_core::ids::{CaseId, IdentityId};

        use $crate::StoreError;
        use $crate::model::{CheckpointRow, Effect, EvidenceRow, LedgerRow};
        use $crate::sql::{
            enum_text, from_micros, hash_from_db, micros, parse_enum, seq_from_db, seq_to_db,
        };

        type Conn = <$db as sqlx::Database>::Connection;
        type DbRow = <$db as sqlx::Database>::Row;

        /// Rows per multi-row statement: under SQLite's 32766 bound variables at 12 columns.
        const ROWS_PER_STATEMENT: usize = 1000;

        /// Rows per `IN (...)` lookup.
        const KEYS_PER_LOOKUP: usize = 500;

        /// SQL text past which [`Statements`] runs what it holds rather than add more: a
        /// batch of a few findings becomes one call, a file's thousand-row statements go
        /// one by one as before (and do not fill the prepared-statement cache with megabytes).
        /// It also keeps a PostgreSQL statement under its 65,535 parameters: each `$N` takes
        /// at least three bytes, so 64 KiB hold fewer than 22,000, and the statement that
        /// crosses the line adds at most `ROWS_PER_STATEMENT` rows of 12 columns.
        const COMBINED_SQL_BYTES: usize = 64 * 1024;

        /// Writes whose results nobody reads, sent to the database together: each statement
        /// sent on its own is a round trip (to SQLite's worker thread, or to the PostgreSQL
        /// server), and a commit of a few findings spent more time in those than in the
        /// database (nine statements, about 0.1 ms each under load on SQLite). How they are
        /// put together is the backend's [`Combine`](crate::sql::Combine).
        ///
        /// Whoever then reads, or writes with a result it checks, on the same connection calls
        /// [`Statements::flush`] first, so that everything runs in the order it was written.
        struct Statements {
            builder: sqlx::QueryBuilder<$db>,
            pending: usize,
        }

        impl Statements {
            fn new() -> Self {
                Self {
                    builder: sqlx::QueryBuilder::new(""),
                    pending: 0,
                }
            }

            /// Starts a statement with `sql` and returns the builder to go on with it. Values go
            /// in with `push_bind` only: a `$N` written into the SQL would count from the first
            /// statement of the call, not this one.
            async fn start(
                &mut self,
                conn: &mut Conn,
                sql: &str,
            ) -> Result<&mut sqlx::QueryBuilder<$db>, StoreError> {
                if self.pending > 0 && self.builder.sql().as_str().len() >= COMBINED_SQL_BYTES {
                    self.flush(conn).await?;
                }
                match $combine {
                    $crate::sql::Combine::Semicolons if self.pending > 0 => {
                        self.builder.push(";\n");
                    }
                    $crate::sql::Combine::Semicolons => {}
                    $crate::sql::Combine::WithClauses => {
                        let lead = if self.pending == 0 { "WITH" } else { ")," };
                        self.builder
                            .push(format_args!("{lead} w{} AS (", self.pending));
                    }
                }
                self.pending += 1;
                Ok(self.builder.push(sql))
            }

            /// Runs the statements not sent yet.
            async fn flush(&mut self, conn: &mut Conn) -> Result<(), StoreError> {
                if self.pending == 0 {
                    return Ok(());
                }
                self.pending = 0;
                if $combine == $crate::sql::Combine::WithClauses {
                    self.builder.push(") SELECT 1");
                }
                let result = self.builder.build().execute(&mut *conn).await;
                self.builder.reset();
                result?;
                Ok(())
            }
        }

        $crate::sql::admin::admin_queries!($db);
        $crate::sql::ledger::ledger_queries!($db);
        $crate::sql::projections::projection_queries!($db);
        $crate::sql::jobs::job_queries!($db);
        $crate::sql::principals::principal_queries!($db);
        $crate::sql::lifecycle::lifecycle_queries!($db);
    };
}

pub(crate) use backend_queries;
