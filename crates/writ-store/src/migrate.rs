//! Schema migrations, embedded in the binary.
//!
//! Each backend has its own ordered list of SQL files under `migrations/<backend>/`. Applied
//! migrations are recorded in `writ_migrations` with a SHA-256 of their text; a database whose
//! recorded text differs from the binary's, or that is newer than the binary, is refused rather
//! than guessed at. On PostgreSQL the run holds an advisory lock, so replicas starting together
//! migrate once.
//!
//! Why not `sqlx::migrate::Migrator`: writ's runner applies every pending migration inside the
//! writer's own lock (SQLite `BEGIN IMMEDIATE`, the PostgreSQL advisory lock) and one
//! transaction, so a replica never sees a half-migrated schema, and databases in the field
//! already record their migrations in `writ_migrations` with SHA-256 checksums. sqlx's migrator
//! keeps its own table (`_sqlx_migrations`, SHA-384) and runs each migration in its own
//! transaction; adopting it would mean translating every existing database's history for no
//! gain in safety. The runner is the ~60 lines below and `migrate` in `common.rs`.

use writ_core::Sha256Digest;

/// One migration step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number, from 1, strictly increasing.
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// The SQL to run.
    pub sql: &'static str,
}

impl Migration {
    /// The checksum recorded for this migration.
    pub fn checksum(&self) -> String {
        Sha256Digest::of(self.sql.as_bytes()).to_string()
    }
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// An applied migration's text differs from the one in this binary.
    #[error(
        "migration {version} ({name}) was applied with different SQL (checksum {recorded}, expected {expected}); refusing to start"
    )]
    ChecksumMismatch {
        /// Version.
        version: i64,
        /// Name.
        name: &'static str,
        /// Checksum in the database.
        recorded: String,
        /// Checksum in this binary.
        expected: String,
    },
    /// The database has migrations this binary does not know.
    #[error("database schema version {found} is newer than this writ (knows up to {known})")]
    TooNew {
        /// Highest version in the database.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
    },
}

/// SQLite migrations.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "one_open_case",
        sql: include_str!("../migrations/sqlite/0002_one_open_case.sql"),
    },
    Migration {
        version: 3,
        name: "jobs",
        sql: include_str!("../migrations/sqlite/0003_jobs.sql"),
    },
    Migration {
        version: 4,
        name: "job_leases",
        sql: include_str!("../migrations/sqlite/0004_job_leases.sql"),
    },
    Migration {
        version: 5,
        name: "findings_keyed_by_entry",
        sql: include_str!("../migrations/sqlite/0005_findings_keyed_by_entry.sql"),
    },
    Migration {
        version: 6,
        name: "read_models",
        sql: include_str!("../migrations/sqlite/0006_read_models.sql"),
    },
    Migration {
        version: 7,
        name: "principals",
        sql: include_str!("../migrations/sqlite/0007_principals.sql"),
    },
    Migration {
        version: 8,
        name: "case_lifecycle",
        sql: include_str!("../migrations/sqlite/0008_case_lifecycle.sql"),
    },
    Migration {
        version: 9,
        name: "exceptions_and_deadlines",
        sql: include_str!("../migrations/sqlite/0009_exceptions_and_deadlines.sql"),
    },
    Migration {
        version: 10,
        name: "bypasses",
        sql: include_str!("../migrations/sqlite/0010_bypasses.sql"),
    },
    Migration {
        version: 11,
        name: "webhook_outbox",
        sql: include_str!("../migrations/sqlite/0011_webhook_outbox.sql"),
    },
    Migration {
        version: 12,
        name: "witness_cosignatures",
        sql: include_str!("../migrations/sqlite/0012_witness_cosignatures.sql"),
    },
    Migration {
        version: 13,
        name: "findings_by_subject",
        sql: include_str!("../migrations/sqlite/0013_findings_by_subject.sql"),
    },
    Migration {
        version: 14,
        name: "systems",
        sql: include_str!("../migrations/sqlite/0014_systems.sql"),
    },
    Migration {
        version: 15,
        name: "campaigns",
        sql: include_str!("../migrations/sqlite/0015_campaigns.sql"),
    },
    Migration {
        version: 16,
        name: "cases_by_state",
        sql: include_str!("../migrations/sqlite/0016_cases_by_state.sql"),
    },
    Migration {
        version: 17,
        name: "closed_cases_by_subject",
        sql: include_str!("../migrations/sqlite/0017_closed_cases_by_subject.sql"),
    },
];

/// PostgreSQL migrations.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "one_open_case",
        sql: include_str!("../migrations/postgres/0002_one_open_case.sql"),
    },
    Migration {
        version: 3,
        name: "jobs",
        sql: include_str!("../migrations/postgres/0003_jobs.sql"),
    },
    Migration {
        version: 4,
        name: "job_leases",
        sql: include_str!("../migrations/postgres/0004_job_leases.sql"),
    },
    Migration {
        version: 5,
        name: "findings_keyed_by_entry",
        sql: include_str!("../migrations/postgres/0005_findings_keyed_by_entry.sql"),
    },
    Migration {
        version: 6,
        name: "read_models",
        sql: include_str!("../migrations/postgres/0006_read_models.sql"),
    },
    Migration {
        version: 7,
        name: "principals",
        sql: include_str!("../migrations/postgres/0007_principals.sql"),
    },
    Migration {
        version: 8,
        name: "case_lifecycle",
        sql: include_str!("../migrations/postgres/0008_case_lifecycle.sql"),
    },
    Migration {
        version: 9,
        name: "exceptions_and_deadlines",
        sql: include_str!("../migrations/postgres/0009_exceptions_and_deadlines.sql"),
    },
    Migration {
        version: 10,
        name: "bypasses",
        sql: include_str!("../migrations/postgres/0010_bypasses.sql"),
    },
    Migration {
        version: 11,
        name: "webhook_outbox",
        sql: include_str!("../migrations/postgres/0011_webhook_outbox.sql"),
    },
    Migration {
        version: 12,
        name: "witness_cosignatures",
        sql: include_str!("../migrations/postgres/0012_witness_cosignatures.sql"),
    },
    Migration {
        version: 13,
        name: "findings_by_subject",
        sql: include_str!("../migrations/postgres/0013_findings_by_subject.sql"),
    },
    Migration {
        version: 14,
        name: "systems",
        sql: include_str!("../migrations/postgres/0014_systems.sql"),
    },
    Migration {
        version: 15,
        name: "campaigns",
        sql: include_str!("../migrations/postgres/0015_campaigns.sql"),
    },
    Migration {
        version: 16,
        name: "cases_by_state",
        sql: include_str!("../migrations/postgres/0016_cases_by_state.sql"),
    },
    Migration {
        version: 17,
        name: "closed_cases_by_subject",
        sql: include_str!("../migrations/postgres/0017_closed_cases_by_subject.sql"),
    },
];

/// Checks the recorded migrations against `known` and returns the ones still to apply.
pub(crate) fn pending(
    known: &'static [Migration],
    recorded: &[(i64, String)],
) -> Result<Vec<&'static Migration>, MigrationError> {
    let highest_known = known.last().map_or(0, |m| m.version);
    if let Some((found, _)) = recorded.iter().find(|(v, _)| *v > highest_known) {
        return Err(MigrationError::TooNew {
            found: *found,
            known: highest_known,
        });
    }
    let mut todo = Vec::new();
    for migration in known {
        match recorded.iter().find(|(v, _)| *v == migration.version) {
            Some((_, checksum)) if *checksum != migration.checksum() => {
                return Err(MigrationError::ChecksumMismatch {
                    version: migration.version,
                    name: migration.name,
                    recorded: checksum.clone(),
                    expected: migration.checksum(),
                });
            }
            Some(_) => {}
            None => todo.push(migration),
        }
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
            assert_eq!(list.first().map(|m| m.version), Some(1));
        }
    }

    #[test]
    fn refuses_edited_or_unknown_migrations() {
        let good = SQLITE[0].checksum();
        assert_eq!(
            pending(SQLITE, &[(1, good)]).unwrap().len(),
            SQLITE.len() - 1
        );
        assert_eq!(pending(SQLITE, &[]).unwrap().len(), SQLITE.len());
        assert!(matches!(
            pending(SQLITE, &[(1, "sha256:00".into())]),
            Err(MigrationError::ChecksumMismatch { version: 1, .. })
        ));
        assert!(matches!(
            pending(SQLITE, &[(99, "x".into())]),
            Err(MigrationError::TooNew { found: 99, .. })
        ));
    }
}
