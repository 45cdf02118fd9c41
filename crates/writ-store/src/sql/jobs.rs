//! The job queue: claiming due jobs under a lease, renewing and releasing leases, and reading
//! jobs with where their intents are.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! job_queries {
    ($db:ty) => {
        /// The job snapshot of a `jobs` row.
        pub(crate) fn job_from_row(row: &DbRow) -> Result<writ_core::job::Job, StoreError> {
            let snapshot: String = row.try_get("snapshot")?;
            serde_json::from_str(&snapshot).map_err(|err| StoreError::Corrupt {
                table: "jobs",
                detail: err.to_string(),
            })
        }

        /// A `jobs` row read with `JOB_VIEW_COLUMNS`.
        fn job_view_from_row(row: &DbRow) -> Result<$crate::model::JobView, StoreError> {
            const T: &str = "jobs";
            let intent_seq = row
                .try_get::<Option<i64>, _>("intent_seq")?
                .map(|seq| seq_from_db(T, seq))
                .transpose()?;
            Ok($crate::model::JobView {
                job: job_from_row(row)?,
                created_seq: seq_from_db(T, row.try_get("created_seq")?)?,
                updated_seq: seq_from_db(T, row.try_get("updated_seq")?)?,
                intent_seq,
            })
        }

        /// The columns `job_view_from_row` reads.
        const JOB_VIEW_COLUMNS: &str = "snapshot, created_seq, updated_seq, intent_seq";

        pub(crate) async fn job_view(
            conn: &mut Conn,
            id: writ_core::ids::JobId,
        ) -> Result<Option<$crate::model::JobView>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_VIEW_COLUMNS} FROM jobs WHERE id = $1"
            )))
            .bind(id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(job_view_from_row)
            .transpose()
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
        ) -> Result<Vec<$crate::model::JobView>, StoreError> {
            // `lock` is one of two constant clauses, never input.
            let due: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT j.id FROM jobs j
                 WHERE j.state IN ('queued', 'intent', 'applied', 'rollback_intent')
                   AND (j.next_attempt_us IS NULL OR j.next_attempt_us <= $1)
                   AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.job_id = j.id AND l.expires_us > $1)
                   AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.id = j.case_id AND c.state = 'frozen')
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
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {JOB_VIEW_COLUMNS} FROM jobs WHERE id = $1"
                    )))
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                    jobs.push(job_view_from_row(&row)?);
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
    };
}

pub(crate) use job_queries;
