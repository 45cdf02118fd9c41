//! The audit's bulk read of ledger entries from SQLite, with rusqlite on a blocking thread.
//!
//! Why not sqlx, which every other query uses: its SQLite driver hands each row from its worker
//! thread to the caller as owned values, about 4.5 microseconds a row here (220k rows/s), which
//! caps `writ audit verify` far below the hashing it has to do. rusqlite steps the statement
//! in place on the calling (blocking) thread. The connection is read-only, opened once per
//! store and kept; it reads only committed data (WAL), like the sqlx readers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use writ_core::ids::CaseId;

use crate::sql::{from_micros, parse_enum, seq_from_db};
use crate::{EntryPage, StoreError};

const T: &str = "ledger_entries";

/// Lazily opened read-only rusqlite connections to one database file: as many as the audit
/// reads pages at once, so two readers never wait on one connection.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    path: PathBuf,
    connections: Arc<[Mutex<Option<Connection>>; 3]>,
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table: T,
        detail: detail.into(),
    }
}

impl Scanner {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            connections: Arc::new([Mutex::new(None), Mutex::new(None), Mutex::new(None)]),
        }
    }

    /// Up to `limit` entries from `from`, in sequence order (as `LedgerStore::entries`).
    pub(crate) async fn page(&self, from: u64, limit: u32) -> Result<EntryPage, StoreError> {
        let scanner = self.clone();
        tokio::task::spawn_blocking(move || scanner.page_blocking(from, limit))
            .await
            .map_err(|err| corrupt(format!("the reader thread failed: {err}")))?
    }

    fn page_blocking(&self, from: u64, limit: u32) -> Result<EntryPage, StoreError> {
        let sqlite = |err: rusqlite::Error| corrupt(format!("reading: {err}"));
        // A free connection, else wait for the first.
        let mut guard = match self.connections.iter().find_map(|c| c.try_lock().ok()) {
            Some(guard) => guard,
            None => self.connections[0]
                .lock()
                .map_err(|_| corrupt("the reader connection was poisoned"))?,
        };
        if guard.is_none() {
            let connection = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sqlite)?;
            // Read through SQLite's page cache, not a map of the file: a map would count the
            // whole database in the process's resident memory, and the audit keeps memory
            // flat however long the ledger is.
            connection
                .pragma_update(None, "mmap_size", 0_i64)
                .map_err(sqlite)?;
            connection
                .busy_timeout(std::time::Duration::from_secs(10))
                .map_err(sqlite)?;
            *guard = Some(connection);
        }
        let connection = guard
            .as_ref()
            .ok_or_else(|| corrupt("no reader connection"))?;
        let mut statement = connection
            .prepare(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(sqlite)?;
        let from = i64::try_from(from).map_err(|_| corrupt(format!("seq {from} too large")))?;
        let mut rows = statement
            .query(rusqlite::params![from, i64::from(limit)])
            .map_err(sqlite)?;
        // About 600 bytes of text and leaf an entry.
        let mut page = EntryPage::with_capacity(limit as usize, limit as usize * 640);
        while let Some(row) = rows.next().map_err(sqlite)? {
            let case_id = match row.get_ref(2).map_err(sqlite)? {
                rusqlite::types::ValueRef::Null => None,
                rusqlite::types::ValueRef::Blob(bytes) => {
                    Some(CaseId(uuid::Uuid::from_slice(bytes).map_err(|_| {
                        corrupt(format!("a case id of {} bytes", bytes.len()))
                    })?))
                }
                _ => return Err(corrupt("a case id that is not a blob")),
            };
            // Text or blob (the audit compares the bytes with the leaf's text).
            let text = |index: usize| -> Result<&[u8], StoreError> {
                row.get_ref(index)
                    .map_err(sqlite)?
                    .as_bytes()
                    .map_err(|err| corrupt(format!("column {index}: {err}")))
            };
            let kind = std::str::from_utf8(text(3)?).map_err(|err| corrupt(err.to_string()))?;
            let hash = row
                .get_ref(7)
                .map_err(sqlite)?
                .as_blob()
                .map_err(|err| corrupt(err.to_string()))?;
            page.push(
                seq_from_db(T, row.get(0).map_err(sqlite)?)?,
                from_micros(T, row.get(1).map_err(sqlite)?)?,
                case_id,
                parse_enum(T, kind)?,
                text(4)?,
                text(5)?,
                // Text or blob: SQLite's `||` on blobs gives text, and the leaf is checked
                // against its hash either way.
                row.get_ref(6)
                    .map_err(sqlite)?
                    .as_bytes()
                    .map_err(|err| corrupt(err.to_string()))?,
                <[u8; 32]>::try_from(hash)
                    .map_err(|_| corrupt(format!("hash of {} bytes, expected 32", hash.len())))?,
            );
        }
        Ok(page)
    }
}
