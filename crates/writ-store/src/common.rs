//! SQL shared by both backends.
//!
//! Both backends speak the same SQL here (`$N` placeholders, `ON CONFLICT`, partial indexes), so
//! the statements are written once, in [`backend_queries!`], and expanded for each backend's
//! concrete connection type. What differs (how a writer takes the lock, how migrations are
//! serialised) stays in `sqlite.rs` and `postgres.rs`.

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// A unit-like enum's serde name (`business_critical`), as stored in text columns.
pub(crate) fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(err) => format!("<unserialisable: {err}>"),
    }
}

/// Parses a text column written by [`enum_text`].
pub(crate) fn parse_enum<T: DeserializeOwned>(
    table: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|err| {
        StoreError::Corrupt {
            table,
            detail: format!("{text:?}: {err}"),
        }
    })
}

/// A 32-byte hash column.
pub(crate) fn hash_from_db(table: &'static str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("hash of {} bytes, expected 32", bytes.len()),
    })
}

/// Expands the shared statements for one backend. `$db` is the sqlx database type.
macro_rules! backend_queries {
    ($db:ty) => {
        use sqlx::Row as _;
        use uuid::Uuid;
        use writ_core::Sha256Digest;
        use writ_core::case::Case;
        use writ_core::identity::Identity;
        use writ_core::ids::{CaseId, IdentityId};

        use $crate::StoreError;
        use $crate::common::{
            enum_text, from_micros, hash_from_db, micros, parse_enum, seq_from_db, seq_to_db,
        };
        use $crate::model::{CheckpointRow, Effect, EvidenceRow, LedgerRow};

        type Conn = <$db as sqlx::Database>::Connection;
        type DbRow = <$db as sqlx::Database>::Row;

        async fn recorded_migrations(
            conn: &mut Conn,
        ) -> Result<Vec<(i64, String)>, StoreError> {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS writ_migrations (
                    version    BIGINT PRIMARY KEY,
                    name       TEXT   NOT NULL,
                    checksum   TEXT   NOT NULL,
                    applied_us BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let rows = sqlx::query("SELECT version, checksum FROM writ_migrations ORDER BY version")
                .fetch_all(&mut *conn)
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("version")?, row.try_get("checksum")?)))
                .collect()
        }

        /// Applies the migrations of `known` that the database lacks, inside the caller's
        /// transaction (which already holds whatever lock serialises migrations).
        // `applied_at` of a schema migration is bookkeeping outside the ledger: wall clock.
        #[allow(clippy::disallowed_methods)]
        pub(crate) async fn migrate(
            conn: &mut Conn,
            known: &'static [$crate::migrate::Migration],
        ) -> Result<(), StoreError> {
            let recorded = recorded_migrations(conn).await?;
            let now_us = micros(jiff::Timestamp::now());
            for migration in $crate::migrate::pending(known, &recorded)? {
                tracing::info!(
                    version = migration.version,
                    name = migration.name,
                    "applying migration"
                );
                apply_migration(conn, migration, now_us).await?;
            }
            Ok(())
        }

        async fn apply_migration(
            conn: &mut Conn,
            migration: &$crate::migrate::Migration,
            now_us: i64,
        ) -> Result<(), StoreError> {
            sqlx::raw_sql(migration.sql).execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO writ_migrations (version, name, checksum, applied_us) VALUES ($1, $2, $3, $4)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .bind(now_us)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn head_size(conn: &mut Conn) -> Result<u64, StoreError> {
            let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
            seq_from_db("ledger_head", size)
        }

        /// Writes a batch whose head has already been locked and read as `head`. Rows go in
        /// multi-row `INSERT`s (a few statements per batch, not a few per event).
        pub(crate) async fn write_batch(
            conn: &mut Conn,
            head: u64,
            batch: &$crate::model::CommitBatch,
        ) -> Result<(), StoreError> {
            if let Some(first) = batch.entries.first()
                && first.seq != head
            {
                return Err(StoreError::HeadMoved {
                    batch_start: first.seq,
                    head,
                });
            }
            let mut next = head;
            for entry in &batch.entries {
                if entry.seq != next {
                    return Err(StoreError::BatchNotContiguous { seq: entry.seq });
                }
                next += 1;
            }
            // A finding's key is its entry's key, so the ledger's unique index keeps findings
            // unique too (the findings table has no index of its own on it).
            for effect in &batch.effects {
                if let Effect::InsertFinding { finding, seq, .. } = effect {
                    let entry = seq
                        .checked_sub(head)
                        .and_then(|at| usize::try_from(at).ok())
                        .and_then(|at| batch.entries.get(at));
                    if entry.is_none_or(|e| e.idempotency_key != finding.idempotency_key) {
                        return Err(StoreError::FindingKeyMismatch { seq: *seq });
                    }
                }
            }
            for chunk in batch.entries.chunks(ROWS_PER_STATEMENT) {
                insert_entries(conn, chunk).await?;
            }
            if let Some(checkpoint) = &batch.checkpoint {
                sqlx::query(
                    "INSERT INTO checkpoints (size, root, note, time_us) VALUES ($1, $2, $3, $4)",
                )
                .bind(seq_to_db(checkpoint.size)?)
                .bind(checkpoint.root.to_vec())
                .bind(checkpoint.note.as_str())
                .bind(micros(checkpoint.time))
                .execute(&mut *conn)
                .await?;
            }
            apply_effects(conn, &batch.effects).await?;
            if next != head {
                sqlx::query("UPDATE ledger_head SET size = $1 WHERE id = 1")
                    .bind(seq_to_db(next)?)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Rows per multi-row statement: under SQLite's 32766 bound variables at 12 columns.
        const ROWS_PER_STATEMENT: usize = 1000;

        async fn insert_entries(conn: &mut Conn, entries: &[LedgerRow]) -> Result<(), StoreError> {
            let mut builder = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO ledger_entries (seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash) ",
            );
            let mut bad_seq = None;
            builder.push_values(entries, |mut row, entry| {
                let seq = seq_to_db(entry.seq).unwrap_or_else(|_| {
                    bad_seq = Some(entry.seq);
                    -1
                });
                row.push_bind(seq)
                    .push_bind(micros(entry.time))
                    .push_bind(entry.case_id.map(|id| id.as_uuid()))
                    .push_bind(entry.kind.as_str())
                    .push_bind(entry.actor.as_str())
                    .push_bind(entry.idempotency_key.as_str())
                    .push_bind(entry.leaf.as_slice())
                    .push_bind(entry.leaf_hash.to_vec());
            });
            if let Some(seq) = bad_seq {
                return Err(StoreError::BatchNotContiguous { seq });
            }
            builder.build().execute(&mut *conn).await?;
            Ok(())
        }

        /// Applies projection effects with as few statements as possible. Several changes to
        /// one identity or case collapse into one row carrying the first and last seq, so the
        /// result equals applying them one by one.
        async fn apply_effects(conn: &mut Conn, effects: &[Effect]) -> Result<(), StoreError> {
            let mut evidence: Vec<&EvidenceRow> = Vec::new();
            let mut identities: Vec<(&Identity, u64)> = Vec::new();
            let mut cases: Vec<(&Case, u64, u64)> = Vec::new();
            let mut findings = Vec::new();
            let mut jobs: Vec<(&writ_core::job::Job, u64, u64)> = Vec::new();
            let mut job_at: std::collections::HashMap<writ_core::ids::JobId, usize> =
                std::collections::HashMap::new();
            let mut seen_evidence = std::collections::HashSet::new();
            let mut identity_at: std::collections::HashMap<IdentityId, usize> =
                std::collections::HashMap::new();
            let mut case_at: std::collections::HashMap<CaseId, usize> = std::collections::HashMap::new();
            for effect in effects {
                match effect {
                    Effect::PutEvidence(row) => {
                        if seen_evidence.insert(row.digest) {
                            evidence.push(row);
                        }
                    }
                    Effect::UpsertIdentity { identity, seq } => match identity_at.get(&identity.id) {
                        Some(&at) => identities[at] = (identity, *seq),
                        None => {
                            identity_at.insert(identity.id, identities.len());
                            identities.push((identity, *seq));
                        }
                    },
                    Effect::UpsertCase { case, seq } => match case_at.get(&case.id) {
                        Some(&at) => {
                            let opened = cases[at].1;
                            cases[at] = (case, opened, *seq);
                        }
                        None => {
                            case_at.insert(case.id, cases.len());
                            cases.push((case, *seq, *seq));
                        }
                    },
                    Effect::UpsertJob { job, seq } => match job_at.get(&job.id) {
                        Some(&at) => {
                            let created = jobs[at].1;
                            jobs[at] = (job, created, *seq);
                        }
                        None => {
                            job_at.insert(job.id, jobs.len());
                            jobs.push((job, *seq, *seq));
                        }
                    },
                    Effect::InsertFinding {
                        finding,
                        case_id,
                        seq,
                    } => findings.push((finding, *case_id, *seq)),
                }
            }
            for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO jobs (id, case_id, system, state, next_attempt_us, snapshot, created_seq, updated_seq) ",
                );
                let mut bad = None;
                builder.push_values(chunk, |mut row, (job, created, updated)| {
                    let mut seq = |s: u64| {
                        seq_to_db(s).unwrap_or_else(|_| {
                            bad = Some(s);
                            -1
                        })
                    };
                    let (created, updated) = (seq(*created), seq(*updated));
                    row.push_bind(job.id.as_uuid())
                        .push_bind(job.case_id.as_uuid())
                        .push_bind(job.system.clone())
                        .push_bind(enum_text(&job.state))
                        .push_bind(job.next_attempt_at.map(micros))
                        .push_bind(serde_json::to_string(job).unwrap_or_default())
                        .push_bind(created)
                        .push_bind(updated);
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.push(
                    " ON CONFLICT (id) DO UPDATE SET
                        state = excluded.state, next_attempt_us = excluded.next_attempt_us,
                        snapshot = excluded.snapshot, updated_seq = excluded.updated_seq",
                );
                builder.build().execute(&mut *conn).await?;
            }
            for chunk in evidence.chunks(ROWS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO evidence (digest, media_type, bytes, received_us) ",
                );
                builder.push_values(chunk, |mut row, e| {
                    row.push_bind(e.digest.to_string())
                        .push_bind(e.media_type.as_str())
                        .push_bind(e.bytes.as_slice())
                        .push_bind(micros(e.received));
                });
                builder.push(" ON CONFLICT (digest) DO NOTHING");
                builder.build().execute(&mut *conn).await?;
            }
            for chunk in identities.chunks(ROWS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO identities (id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us, updated_seq) ",
                );
                let mut bad = None;
                builder.push_values(chunk, |mut row, (identity, seq)| {
                    let tags = serde_json::to_string(&identity.tags).unwrap_or_else(|_| "[]".into());
                    row.push_bind(identity.id.as_uuid())
                        .push_bind(identity.system.clone())
                        .push_bind(identity.external_id.clone())
                        .push_bind(enum_text(&identity.kind))
                        .push_bind(identity.owner_team.clone())
                        .push_bind(enum_text(&identity.criticality))
                        .push_bind(identity.privileged)
                        .push_bind(tags)
                        .push_bind(identity.last_used_at.map(micros))
                        .push_bind(identity.reconciled_at.map(micros))
                        .push_bind(seq_to_db(*seq).unwrap_or_else(|_| {
                            bad = Some(*seq);
                            -1
                        }));
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.push(
                    " ON CONFLICT (id) DO UPDATE SET
                        system = excluded.system, external_id = excluded.external_id,
                        kind = excluded.kind, owner_team = excluded.owner_team,
                        criticality = excluded.criticality, privileged = excluded.privileged,
                        tags = excluded.tags, last_used_us = excluded.last_used_us,
                        reconciled_us = excluded.reconciled_us, updated_seq = excluded.updated_seq",
                );
                builder.build().execute(&mut *conn).await?;
            }
            for chunk in cases.chunks(ROWS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO cases (id, identity_id, subject, finding_type, state, compliance_closed, opened_seq, updated_seq) ",
                );
                let mut bad = None;
                builder.push_values(chunk, |mut row, (case, opened, updated)| {
                    let mut seq = |s: u64| {
                        seq_to_db(s).unwrap_or_else(|_| {
                            bad = Some(s);
                            -1
                        })
                    };
                    let (opened, updated) = (seq(*opened), seq(*updated));
                    row.push_bind(case.id.as_uuid())
                        .push_bind(case.identity_id.map(|id| id.as_uuid()))
                        .push_bind(case.subject.clone())
                        .push_bind(case.finding_type.clone())
                        .push_bind(enum_text(&case.state))
                        .push_bind(case.compliance_closed)
                        .push_bind(opened)
                        .push_bind(updated);
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.push(
                    " ON CONFLICT (id) DO UPDATE SET
                        identity_id = excluded.identity_id, subject = excluded.subject,
                        finding_type = excluded.finding_type, state = excluded.state,
                        compliance_closed = excluded.compliance_closed,
                        updated_seq = excluded.updated_seq",
                );
                builder.build().execute(&mut *conn).await?;
            }
            for chunk in findings.chunks(ROWS_PER_STATEMENT) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO findings (id, case_id, source, finding_type, severity, confidence_bp, subject_system, subject_external_id, observed_us, evidence, idempotency_key, seq) ",
                );
                let mut bad = None;
                builder.push_values(chunk, |mut row, (finding, case_id, seq)| {
                    row.push_bind(finding.id.as_uuid())
                        .push_bind(case_id.map(|id| id.as_uuid()))
                        .push_bind(finding.source.clone())
                        .push_bind(finding.finding_type.clone())
                        .push_bind(enum_text(&finding.severity))
                        .push_bind(i32::from(finding.confidence_bp))
                        .push_bind(finding.subject_system.clone())
                        .push_bind(finding.subject_external_id.clone())
                        .push_bind(micros(finding.observed_at))
                        .push_bind(finding.evidence.to_string())
                        .push_bind(finding.idempotency_key.clone())
                        .push_bind(seq_to_db(*seq).unwrap_or_else(|_| {
                            bad = Some(*seq);
                            -1
                        }));
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Empties the projection tables, then applies `effects`; the caller holds the writer
        /// lock, so this is atomic with respect to every other write.
        pub(crate) async fn replace_projections(
            conn: &mut Conn,
            effects: &[Effect],
        ) -> Result<(), StoreError> {
            for statement in [
                "DELETE FROM findings",
                "DELETE FROM cases",
                "DELETE FROM identities",
                "DELETE FROM jobs",
            ] {
                sqlx::query(statement).execute(&mut *conn).await?;
            }
            apply_effects(conn, effects).await
        }

        pub(crate) async fn projection_dump(
            conn: &mut Conn,
        ) -> Result<$crate::model::ProjectionDump, StoreError> {
            let mut dump = $crate::model::ProjectionDump::default();
            for row in sqlx::query("SELECT id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us, updated_seq FROM identities ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.identities.push((identity_from_row(&row)?, seq_from_db("identities", row.try_get("updated_seq")?)?));
            }
            for row in sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed, opened_seq, updated_seq FROM cases ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.cases.push((
                    case_from_row(&row)?,
                    seq_from_db("cases", row.try_get("opened_seq")?)?,
                    seq_from_db("cases", row.try_get("updated_seq")?)?,
                ));
            }
            for row in sqlx::query("SELECT id, case_id, source, finding_type, severity, confidence_bp, subject_system, subject_external_id, observed_us, evidence, idempotency_key, seq FROM findings ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.findings.push((
                    finding_from_row(&row)?,
                    row.try_get::<Option<Uuid>, _>("case_id")?.map(CaseId),
                    seq_from_db("findings", row.try_get("seq")?)?,
                ));
            }
            for row in sqlx::query("SELECT snapshot, created_seq, updated_seq FROM jobs ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.jobs.push((
                    job_from_row(&row)?,
                    seq_from_db("jobs", row.try_get("created_seq")?)?,
                    seq_from_db("jobs", row.try_get("updated_seq")?)?,
                ));
            }
            Ok(dump)
        }

        fn job_from_row(row: &DbRow) -> Result<writ_core::job::Job, StoreError> {
            let snapshot: String = row.try_get("snapshot")?;
            serde_json::from_str(&snapshot).map_err(|err| StoreError::Corrupt {
                table: "jobs",
                detail: err.to_string(),
            })
        }

        pub(crate) async fn pending_jobs(
            conn: &mut Conn,
            limit: u32,
        ) -> Result<Vec<writ_core::job::Job>, StoreError> {
            sqlx::query("SELECT snapshot FROM jobs WHERE state IN ('queued', 'intent', 'applied') ORDER BY updated_seq LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(job_from_row)
                .collect()
        }

        /// Leases due, unleased pending jobs to `holder`. `lock` is the row-locking clause
        /// of the candidate query (`FOR UPDATE OF j SKIP LOCKED` on PostgreSQL, empty on
        /// SQLite, whose one writer already excludes every other claim). Run inside the
        /// writer's transaction.
        pub(crate) async fn claim_jobs(
            conn: &mut Conn,
            lock: &str,
            holder: &str,
            now: jiff::Timestamp,
            until: jiff::Timestamp,
            limit: u32,
        ) -> Result<Vec<writ_core::job::Job>, StoreError> {
            // `lock` is one of two constant clauses, never input.
            let due: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT j.id FROM jobs j
                 WHERE j.state IN ('queued', 'intent', 'applied')
                   AND (j.next_attempt_us IS NULL OR j.next_attempt_us <= $1)
                   AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.job_id = j.id AND l.expires_us > $1)
                 ORDER BY j.updated_seq
                 LIMIT $2 {lock}"
            )))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            let mut jobs = Vec::with_capacity(due.len());
            for id in due {
                // Takes a free or expired lease; a live lease of another worker stays.
                let leased = sqlx::query(
                    "INSERT INTO job_leases (job_id, holder, expires_us) VALUES ($1, $2, $3)
                     ON CONFLICT (job_id) DO UPDATE SET holder = excluded.holder, expires_us = excluded.expires_us
                     WHERE job_leases.expires_us <= $4",
                )
                .bind(id)
                .bind(holder)
                .bind(micros(until))
                .bind(micros(now))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if leased == 1 {
                    let row = sqlx::query("SELECT snapshot FROM jobs WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                    jobs.push(job_from_row(&row)?);
                }
            }
            Ok(jobs)
        }

        pub(crate) async fn renew_lease(
            conn: &mut Conn,
            job: writ_core::ids::JobId,
            holder: &str,
            until: jiff::Timestamp,
        ) -> Result<bool, StoreError> {
            let renewed = sqlx::query(
                "UPDATE job_leases SET expires_us = $1 WHERE job_id = $2 AND holder = $3",
            )
            .bind(micros(until))
            .bind(job.as_uuid())
            .bind(holder)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(renewed == 1)
        }

        pub(crate) async fn release_lease(
            conn: &mut Conn,
            job: writ_core::ids::JobId,
            holder: &str,
        ) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM job_leases WHERE job_id = $1 AND holder = $2")
                .bind(job.as_uuid())
                .bind(holder)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(crate) async fn jobs_applied_since(
            conn: &mut Conn,
            system: &str,
            since: jiff::Timestamp,
        ) -> Result<Vec<writ_core::job::Job>, StoreError> {
            let jobs: Vec<writ_core::job::Job> = sqlx::query(
                "SELECT snapshot FROM jobs WHERE system = $1 AND state IN ('applied', 'verified', 'failed', 'rolled_back')",
            )
            .bind(system)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<_, _>>()?;
            Ok(jobs
                .into_iter()
                .filter(|j| j.applied_at.is_some_and(|at| at >= since))
                .collect())
        }

        pub(crate) async fn jobs_for_case(
            conn: &mut Conn,
            case: CaseId,
        ) -> Result<Vec<writ_core::job::Job>, StoreError> {
            sqlx::query("SELECT snapshot FROM jobs WHERE case_id = $1 ORDER BY created_seq")
                .bind(case.as_uuid())
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(job_from_row)
                .collect()
        }

        fn finding_from_row(row: &DbRow) -> Result<writ_core::finding::Finding, StoreError> {
            const T: &str = "findings";
            let evidence: String = row.try_get("evidence")?;
            let confidence: i32 = row.try_get("confidence_bp")?;
            Ok(writ_core::finding::Finding {
                id: writ_core::ids::FindingId(row.try_get("id")?),
                source: row.try_get("source")?,
                finding_type: row.try_get("finding_type")?,
                severity: parse_enum(T, &row.try_get::<String, _>("severity")?)?,
                confidence_bp: u16::try_from(confidence).map_err(|_| StoreError::Corrupt {
                    table: T,
                    detail: format!("confidence {confidence}"),
                })?,
                subject_system: row.try_get("subject_system")?,
                subject_external_id: row.try_get("subject_external_id")?,
                observed_at: from_micros(T, row.try_get("observed_us")?)?,
                evidence: evidence.parse().map_err(|err| StoreError::Corrupt {
                    table: T,
                    detail: format!("evidence digest: {err}"),
                })?,
                idempotency_key: row.try_get("idempotency_key")?,
            })
        }

        fn entry_from_row(row: &DbRow) -> Result<LedgerRow, StoreError> {
            const T: &str = "ledger_entries";
            Ok(LedgerRow {
                seq: seq_from_db(T, row.try_get("seq")?)?,
                time: from_micros(T, row.try_get("time_us")?)?,
                case_id: row.try_get::<Option<Uuid>, _>("case_id")?.map(CaseId),
                kind: row.try_get("kind")?,
                actor: row.try_get("actor")?,
                idempotency_key: row.try_get("idempotency_key")?,
                leaf: row.try_get("leaf")?,
                leaf_hash: hash_from_db(T, row.try_get("leaf_hash")?)?,
            })
        }

        pub(crate) async fn entry_by_idempotency_key(
            conn: &mut Conn,
            key: &str,
        ) -> Result<Option<LedgerRow>, StoreError> {
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(entry_from_row)
            .transpose()
        }

        pub(crate) async fn latest_entry_of_kind(
            conn: &mut Conn,
            kind: &str,
        ) -> Result<Option<LedgerRow>, StoreError> {
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(entry_from_row)
            .transpose()
        }

        pub(crate) async fn entries(
            conn: &mut Conn,
            from: u64,
            limit: u32,
        ) -> Result<Vec<LedgerRow>, StoreError> {
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq_to_db(from)?)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
        }

        pub(crate) async fn leaves(
            conn: &mut Conn,
            from: u64,
            limit: u32,
        ) -> Result<Vec<(u64, Vec<u8>, [u8; 32])>, StoreError> {
            const T: &str = "ledger_entries";
            sqlx::query(
                "SELECT seq, leaf, leaf_hash FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq_to_db(from)?)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    seq_from_db(T, row.try_get("seq")?)?,
                    row.try_get("leaf")?,
                    hash_from_db(T, row.try_get("leaf_hash")?)?,
                ))
            })
            .collect()
        }

        pub(crate) async fn case_entries(
            conn: &mut Conn,
            case: CaseId,
        ) -> Result<Vec<LedgerRow>, StoreError> {
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE case_id = $1 ORDER BY seq",
            )
            .bind(case.as_uuid())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
        }

        pub(crate) async fn checkpoints(conn: &mut Conn) -> Result<Vec<CheckpointRow>, StoreError> {
            const T: &str = "checkpoints";
            sqlx::query("SELECT size, root, note, time_us FROM checkpoints ORDER BY size")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| {
                    Ok(CheckpointRow {
                        size: seq_from_db(T, row.try_get("size")?)?,
                        root: hash_from_db(T, row.try_get("root")?)?,
                        note: row.try_get("note")?,
                        time: from_micros(T, row.try_get("time_us")?)?,
                    })
                })
                .collect()
        }

        pub(crate) async fn latest_checkpoint(
            conn: &mut Conn,
        ) -> Result<Option<CheckpointRow>, StoreError> {
            const T: &str = "checkpoints";
            let Some(row) = sqlx::query(
                "SELECT size, root, note, time_us FROM checkpoints ORDER BY size DESC LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(CheckpointRow {
                size: seq_from_db(T, row.try_get("size")?)?,
                root: hash_from_db(T, row.try_get("root")?)?,
                note: row.try_get("note")?,
                time: from_micros(T, row.try_get("time_us")?)?,
            }))
        }

        pub(crate) async fn evidence(
            conn: &mut Conn,
            digest: &Sha256Digest,
        ) -> Result<Option<EvidenceRow>, StoreError> {
            const T: &str = "evidence";
            let Some(row) = sqlx::query(
                "SELECT media_type, bytes, received_us FROM evidence WHERE digest = $1",
            )
            .bind(digest.to_string())
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(EvidenceRow {
                digest: *digest,
                media_type: row.try_get("media_type")?,
                bytes: row.try_get("bytes")?,
                received: from_micros(T, row.try_get("received_us")?)?,
            }))
        }

        /// Rows per `IN (...)` lookup.
        const KEYS_PER_LOOKUP: usize = 500;

        pub(crate) async fn entries_by_idempotency_keys(
            conn: &mut Conn,
            keys: &[String],
        ) -> Result<Vec<LedgerRow>, StoreError> {
            let mut rows = Vec::new();
            for chunk in keys.chunks(KEYS_PER_LOOKUP) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash FROM ledger_entries WHERE idempotency_key IN (",
                );
                let mut list = builder.separated(", ");
                for key in chunk {
                    list.push_bind(key.clone());
                }
                builder.push(")");
                for row in builder.build().fetch_all(&mut *conn).await? {
                    rows.push(entry_from_row(&row)?);
                }
            }
            Ok(rows)
        }

        pub(crate) async fn identities_by_external_ids(
            conn: &mut Conn,
            subjects: &[(String, String)],
        ) -> Result<Vec<Identity>, StoreError> {
            // One system at a time, so that each look-up walks the (system, external_id) index.
            let groups = $crate::common::grouped(
                subjects.iter().map(|(system, external_id)| (system.as_str(), external_id.as_str())),
            );
            rows_in_groups(
                conn,
                "SELECT id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us FROM identities WHERE system = ",
                " AND external_id IN (",
                groups,
            )
            .await?
            .iter()
            .map(identity_from_row)
            .collect()
        }

        pub(crate) async fn open_cases_for(
            conn: &mut Conn,
            keys: &[(String, String)],
        ) -> Result<Vec<Case>, StoreError> {
            // Keys are (subject, finding type); one finding type at a time, so that each
            // look-up walks the one-open-case index on both of its columns.
            let groups = $crate::common::grouped(
                keys.iter().map(|(subject, finding_type)| (finding_type.as_str(), subject.as_str())),
            );
            rows_in_groups(
                conn,
                "SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases WHERE state <> 'closed' AND finding_type = ",
                " AND subject IN (",
                groups,
            )
            .await?
            .iter()
            .map(case_from_row)
            .collect()
        }

        /// The rows of `select` (which ends comparing a column to the group's first element)
        /// followed by `in_list` (which opens an `IN (` of the group's second elements), for
        /// every group, in chunks of [`KEYS_PER_LOOKUP`].
        async fn rows_in_groups(
            conn: &mut Conn,
            select: &str,
            in_list: &str,
            groups: Vec<(&str, Vec<&str>)>,
        ) -> Result<Vec<DbRow>, StoreError> {
            let mut rows = Vec::new();
            for (first, seconds) in groups {
                for chunk in seconds.chunks(KEYS_PER_LOOKUP) {
                    let mut builder = sqlx::QueryBuilder::<$db>::new(select);
                    builder.push_bind(first).push(in_list);
                    let mut list = builder.separated(", ");
                    for second in chunk {
                        list.push_bind(*second);
                    }
                    builder.push(")");
                    rows.extend(builder.build().fetch_all(&mut *conn).await?);
                }
            }
            Ok(rows)
        }

        fn identity_from_row(row: &DbRow) -> Result<Identity, StoreError> {
            const T: &str = "identities";
            let tags: String = row.try_get("tags")?;
            Ok(Identity {
                id: IdentityId(row.try_get("id")?),
                system: row.try_get("system")?,
                external_id: row.try_get("external_id")?,
                kind: parse_enum(T, &row.try_get::<String, _>("kind")?)?,
                owner_team: row.try_get("owner_team")?,
                criticality: parse_enum(T, &row.try_get::<String, _>("criticality")?)?,
                privileged: row.try_get("privileged")?,
                tags: serde_json::from_str(&tags).map_err(|err| StoreError::Corrupt {
                    table: T,
                    detail: format!("tags: {err}"),
                })?,
                last_used_at: row
                    .try_get::<Option<i64>, _>("last_used_us")?
                    .map(|us| from_micros(T, us))
                    .transpose()?,
                reconciled_at: row
                    .try_get::<Option<i64>, _>("reconciled_us")?
                    .map(|us| from_micros(T, us))
                    .transpose()?,
            })
        }

        pub(crate) async fn identity(
            conn: &mut Conn,
            id: IdentityId,
        ) -> Result<Option<Identity>, StoreError> {
            sqlx::query("SELECT id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us FROM identities WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(identity_from_row)
                .transpose()
        }

        pub(crate) async fn identity_by_external_id(
            conn: &mut Conn,
            system: &str,
            external_id: &str,
        ) -> Result<Option<Identity>, StoreError> {
            sqlx::query("SELECT id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us FROM identities WHERE system = $1 AND external_id = $2")
                .bind(system)
                .bind(external_id)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(identity_from_row)
                .transpose()
        }

        pub(crate) async fn identities(conn: &mut Conn) -> Result<Vec<Identity>, StoreError> {
            sqlx::query("SELECT id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us FROM identities ORDER BY system, external_id")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(identity_from_row)
                .collect()
        }

        fn case_from_row(row: &DbRow) -> Result<Case, StoreError> {
            const T: &str = "cases";
            Ok(Case {
                id: CaseId(row.try_get("id")?),
                identity_id: row.try_get::<Option<Uuid>, _>("identity_id")?.map(IdentityId),
                subject: row.try_get("subject")?,
                finding_type: row.try_get("finding_type")?,
                state: parse_enum(T, &row.try_get::<String, _>("state")?)?,
                compliance_closed: row.try_get("compliance_closed")?,
            })
        }

        pub(crate) async fn case(conn: &mut Conn, id: CaseId) -> Result<Option<Case>, StoreError> {
            sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(case_from_row)
                .transpose()
        }

        pub(crate) async fn open_case(
            conn: &mut Conn,
            subject: &str,
            finding_type: &str,
        ) -> Result<Option<Case>, StoreError> {
            sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases WHERE subject = $1 AND finding_type = $2 AND state <> 'closed' ORDER BY opened_seq DESC LIMIT 1")
                .bind(subject)
                .bind(finding_type)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(case_from_row)
                .transpose()
        }

        pub(crate) async fn cases(
            conn: &mut Conn,
            filter: &$crate::model::CaseFilter,
        ) -> Result<Vec<Case>, StoreError> {
            let limit = i64::from(filter.limit.unwrap_or(100));
            let rows = match filter.state {
                Some(state) => {
                    sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases WHERE state = $1 ORDER BY updated_seq DESC LIMIT $2")
                        .bind(enum_text(&state))
                        .bind(limit)
                        .fetch_all(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases ORDER BY updated_seq DESC LIMIT $1")
                        .bind(limit)
                        .fetch_all(&mut *conn)
                        .await?
                }
            };
            rows.iter().map(case_from_row).collect()
        }
    };
}

pub(crate) use backend_queries;

/// Implements [`crate::Store`] for a backend type that has a `reader` pool, an inherent
/// `begin_write()` that opens a write transaction holding the writer lock, and an inherent
/// `locked_head(&mut tx)` that reads the ledger size under that lock. Expand inside a module that
/// also expanded [`backend_queries!`] as `q`.
macro_rules! impl_store {
    ($store:ty, $backend:expr) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> $crate::Backend {
                $backend
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            async fn ledger_size(&self) -> Result<u64, $crate::StoreError> {
                q::head_size(&mut *self.reader.acquire().await?).await
            }

            async fn commit(&self, batch: $crate::CommitBatch) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let head = Self::locked_head(&mut tx).await?;
                q::write_batch(&mut tx, head, &batch).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn entry_by_idempotency_key(
                &self,
                key: &str,
            ) -> Result<Option<$crate::LedgerRow>, $crate::StoreError> {
                q::entry_by_idempotency_key(&mut *self.reader.acquire().await?, key).await
            }

            async fn latest_entry_of_kind(
                &self,
                kind: &str,
            ) -> Result<Option<$crate::LedgerRow>, $crate::StoreError> {
                q::latest_entry_of_kind(&mut *self.reader.acquire().await?, kind).await
            }

            async fn entries(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::entries(&mut *self.reader.acquire().await?, from, limit).await
            }

            async fn leaves(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<Vec<(u64, Vec<u8>, [u8; 32])>, $crate::StoreError> {
                q::leaves(&mut *self.reader.acquire().await?, from, limit).await
            }

            async fn case_entries(
                &self,
                case: writ_core::ids::CaseId,
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::case_entries(&mut *self.reader.acquire().await?, case).await
            }

            async fn checkpoints(&self) -> Result<Vec<$crate::CheckpointRow>, $crate::StoreError> {
                q::checkpoints(&mut *self.reader.acquire().await?).await
            }

            async fn latest_checkpoint(
                &self,
            ) -> Result<Option<$crate::CheckpointRow>, $crate::StoreError> {
                q::latest_checkpoint(&mut *self.reader.acquire().await?).await
            }

            async fn evidence(
                &self,
                digest: &writ_core::Sha256Digest,
            ) -> Result<Option<$crate::EvidenceRow>, $crate::StoreError> {
                q::evidence(&mut *self.reader.acquire().await?, digest).await
            }

            async fn entries_by_idempotency_keys(
                &self,
                keys: &[String],
            ) -> Result<Vec<$crate::LedgerRow>, $crate::StoreError> {
                q::entries_by_idempotency_keys(&mut *self.reader.acquire().await?, keys).await
            }

            async fn identities_by_external_ids(
                &self,
                subjects: &[(String, String)],
            ) -> Result<Vec<writ_core::identity::Identity>, $crate::StoreError> {
                q::identities_by_external_ids(&mut *self.reader.acquire().await?, subjects).await
            }

            async fn open_cases_for(
                &self,
                keys: &[(String, String)],
            ) -> Result<Vec<writ_core::case::Case>, $crate::StoreError> {
                q::open_cases_for(&mut *self.reader.acquire().await?, keys).await
            }

            async fn identity(
                &self,
                id: writ_core::ids::IdentityId,
            ) -> Result<Option<writ_core::identity::Identity>, $crate::StoreError> {
                q::identity(&mut *self.reader.acquire().await?, id).await
            }

            async fn identity_by_external_id(
                &self,
                system: &str,
                external_id: &str,
            ) -> Result<Option<writ_core::identity::Identity>, $crate::StoreError> {
                q::identity_by_external_id(&mut *self.reader.acquire().await?, system, external_id)
                    .await
            }

            async fn identities(
                &self,
            ) -> Result<Vec<writ_core::identity::Identity>, $crate::StoreError> {
                q::identities(&mut *self.reader.acquire().await?).await
            }

            async fn case(
                &self,
                id: writ_core::ids::CaseId,
            ) -> Result<Option<writ_core::case::Case>, $crate::StoreError> {
                q::case(&mut *self.reader.acquire().await?, id).await
            }

            async fn open_case(
                &self,
                subject: &str,
                finding_type: &str,
            ) -> Result<Option<writ_core::case::Case>, $crate::StoreError> {
                q::open_case(&mut *self.reader.acquire().await?, subject, finding_type).await
            }

            async fn cases(
                &self,
                filter: &$crate::CaseFilter,
            ) -> Result<Vec<writ_core::case::Case>, $crate::StoreError> {
                q::cases(&mut *self.reader.acquire().await?, filter).await
            }

            async fn pending_jobs(
                &self,
                limit: u32,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                q::pending_jobs(&mut *self.reader.acquire().await?, limit).await
            }

            async fn claim_jobs(
                &self,
                holder: &str,
                now: jiff::Timestamp,
                until: jiff::Timestamp,
                limit: u32,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let jobs =
                    q::claim_jobs(&mut tx, Self::CLAIM_LOCK, holder, now, until, limit).await?;
                tx.commit().await?;
                Ok(jobs)
            }

            async fn renew_lease(
                &self,
                job: writ_core::ids::JobId,
                holder: &str,
                until: jiff::Timestamp,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let renewed = q::renew_lease(&mut tx, job, holder, until).await?;
                tx.commit().await?;
                Ok(renewed)
            }

            async fn release_lease(
                &self,
                job: writ_core::ids::JobId,
                holder: &str,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                q::release_lease(&mut tx, job, holder).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn jobs_applied_since(
                &self,
                system: &str,
                since: jiff::Timestamp,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                q::jobs_applied_since(&mut *self.reader.acquire().await?, system, since).await
            }

            async fn jobs_for_case(
                &self,
                case: writ_core::ids::CaseId,
            ) -> Result<Vec<writ_core::job::Job>, $crate::StoreError> {
                q::jobs_for_case(&mut *self.reader.acquire().await?, case).await
            }

            async fn replace_projections(
                &self,
                effects: Vec<$crate::Effect>,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                Self::locked_head(&mut tx).await?;
                q::replace_projections(&mut tx, &effects).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn projection_dump(&self) -> Result<$crate::ProjectionDump, $crate::StoreError> {
                // One read transaction, so the three tables are from the same instant.
                let mut tx = self.reader.begin().await?;
                let dump = q::projection_dump(&mut tx).await?;
                tx.commit().await?;
                Ok(dump)
            }
        }
    };
}

pub(crate) use impl_store;
