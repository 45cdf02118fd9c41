//! Exceptions and deadlines: applying their effects (rare, one by one in entry order), listing
//! exceptions, the deadlines that have fallen due, and dumping both for rebuild checks.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! lifecycle_queries {
    ($db:ty) => {
        async fn apply_lifecycle_effect(conn: &mut Conn, effect: &Effect) -> Result<(), StoreError> {
            use writ_core::exception::ExceptionState;
            match effect {
                Effect::UpsertException {
                    exception,
                    state,
                    seq,
                } => {
                    let seq = seq_to_db(*seq)?;
                    if *state == ExceptionState::Active {
                        sqlx::query(
                            "UPDATE exceptions SET state = $1, updated_seq = $2
                             WHERE case_id = $3 AND state = $4 AND id <> $5",
                        )
                        .bind(enum_text(&ExceptionState::Superseded))
                        .bind(seq)
                        .bind(exception.case_id.as_uuid())
                        .bind(enum_text(&ExceptionState::Active))
                        .bind(exception.id.as_uuid())
                        .execute(&mut *conn)
                        .await?;
                    }
                    let snapshot = serde_json::to_string(exception).map_err(|err| {
                        StoreError::Conflict(format!("exception {}: {err}", exception.id))
                    })?;
                    sqlx::query(
                        "INSERT INTO exceptions (id, case_id, state, expires_us, snapshot, granted_seq, updated_seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $6)
                         ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                            expires_us = excluded.expires_us, snapshot = excluded.snapshot,
                            updated_seq = excluded.updated_seq",
                    )
                    .bind(exception.id.as_uuid())
                    .bind(exception.case_id.as_uuid())
                    .bind(enum_text(state))
                    .bind(micros(exception.expires_at))
                    .bind(snapshot)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::EndExceptions {
                    case_id,
                    only,
                    state,
                    seq,
                } => {
                    let mut builder = sqlx::QueryBuilder::<$db>::new("UPDATE exceptions SET state = ");
                    builder
                        .push_bind(enum_text(state))
                        .push(", updated_seq = ")
                        .push_bind(seq_to_db(*seq)?)
                        .push(" WHERE case_id = ")
                        .push_bind(case_id.as_uuid())
                        .push(" AND state = ")
                        .push_bind(enum_text(&ExceptionState::Active));
                    if let Some(id) = only {
                        builder.push(" AND id = ").push_bind(id.as_uuid());
                    }
                    builder.build().execute(&mut *conn).await?;
                }
                Effect::SetDeadline {
                    case_id,
                    kind,
                    due,
                    seq,
                } => {
                    let seq = seq_to_db(*seq)?;
                    sqlx::query(
                        "INSERT INTO deadlines (case_id, kind, due_us, done, set_seq, updated_seq)
                         VALUES ($1, $2, $3, $4, $5, $5)
                         ON CONFLICT (case_id, kind) DO UPDATE SET due_us = excluded.due_us,
                            done = excluded.done, set_seq = excluded.set_seq,
                            updated_seq = excluded.updated_seq",
                    )
                    .bind(case_id.as_uuid())
                    .bind(enum_text(kind))
                    .bind(micros(*due))
                    .bind(false)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::MeetDeadlines {
                    case_id,
                    kinds,
                    seq,
                } => {
                    let mut builder = sqlx::QueryBuilder::<$db>::new("UPDATE deadlines SET done = ");
                    builder
                        .push_bind(true)
                        .push(", updated_seq = ")
                        .push_bind(seq_to_db(*seq)?)
                        .push(" WHERE case_id = ")
                        .push_bind(case_id.as_uuid())
                        .push(" AND done = ")
                        .push_bind(false);
                    if !kinds.is_empty() {
                        builder.push(" AND kind IN (");
                        let mut list = builder.separated(", ");
                        for kind in kinds {
                            list.push_bind(enum_text(kind));
                        }
                        builder.push(")");
                    }
                    builder.build().execute(&mut *conn).await?;
                }
                Effect::UpsertBypass {
                    case_id,
                    by,
                    reviewed,
                    seq,
                } => {
                    sqlx::query(
                        "INSERT INTO bypasses (case_id, by_principal, reviewed, updated_seq)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (case_id) DO UPDATE SET by_principal = excluded.by_principal,
                            reviewed = excluded.reviewed, updated_seq = excluded.updated_seq",
                    )
                    .bind(case_id.as_uuid())
                    .bind(by.as_str())
                    .bind(*reviewed)
                    .bind(seq_to_db(*seq)?)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::UpsertSystem { status, seq } => {
                    use writ_core::event::SyncOutcome;
                    let success = matches!(status.outcome, SyncOutcome::Succeeded { .. })
                        .then(|| micros(status.finished_at));
                    let (identities, owned) = match status.outcome {
                        SyncOutcome::Succeeded { identities, owned, .. } => (
                            Some(i64::try_from(identities).unwrap_or(i64::MAX)),
                            Some(i64::try_from(owned).unwrap_or(i64::MAX)),
                        ),
                        SyncOutcome::Failed { .. } => (None, None),
                    };
                    let outcome = serde_json::to_string(&status.outcome).map_err(|err| {
                        StoreError::Conflict(format!("system {}: {err}", status.system))
                    })?;
                    sqlx::query(
                        "INSERT INTO systems (system, target, last_attempt_us, last_success_us, scheduled, outcome, identities, owned, updated_seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (system) DO UPDATE SET target = excluded.target,
                            last_attempt_us = excluded.last_attempt_us,
                            last_success_us = COALESCE(excluded.last_success_us, systems.last_success_us),
                            scheduled = excluded.scheduled, outcome = excluded.outcome,
                            identities = COALESCE(excluded.identities, systems.identities),
                            owned = COALESCE(excluded.owned, systems.owned),
                            updated_seq = excluded.updated_seq",
                    )
                    .bind(status.system.as_str())
                    .bind(status.target.as_str())
                    .bind(micros(status.finished_at))
                    .bind(success)
                    .bind(status.scheduled)
                    .bind(outcome)
                    .bind(identities)
                    .bind(owned)
                    .bind(seq_to_db(*seq)?)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::SetSystemPause { system, reason, seq } => {
                    sqlx::query(
                        "UPDATE systems SET paused_reason = $1, updated_seq = $2 WHERE system = $3",
                    )
                    .bind(reason.as_deref())
                    .bind(seq_to_db(*seq)?)
                    .bind(system.as_str())
                    .execute(&mut *conn)
                    .await?;
                }
                _ => {}
            }
            Ok(())
        }

        /// Every system's sync status, by name (ordered here, byte-wise, as collations differ).
        pub(crate) async fn systems(
            conn: &mut Conn,
        ) -> Result<Vec<$crate::model::SystemStatus>, StoreError> {
            const T: &str = "systems";
            let mut all = sqlx::query(
                "SELECT system, target, last_attempt_us, last_success_us, scheduled, outcome,
                        identities, owned, paused_reason, updated_seq
                 FROM systems",
            )
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                let outcome: String = row.try_get("outcome")?;
                Ok($crate::model::SystemStatus {
                    system: row.try_get("system")?,
                    target: row.try_get("target")?,
                    last_attempt_at: from_micros(T, row.try_get("last_attempt_us")?)?,
                    last_success_at: row
                        .try_get::<Option<i64>, _>("last_success_us")?
                        .map(|us| from_micros(T, us))
                        .transpose()?,
                    scheduled: row.try_get("scheduled")?,
                    outcome: serde_json::from_str(&outcome).map_err(|err| {
                        StoreError::Conflict(format!("systems.outcome: {err}"))
                    })?,
                    identities: row
                        .try_get::<Option<i64>, _>("identities")?
                        .map(|n| u64::try_from(n).unwrap_or(0)),
                    owned: row
                        .try_get::<Option<i64>, _>("owned")?
                        .map(|n| u64::try_from(n).unwrap_or(0)),
                    paused_reason: row.try_get("paused_reason")?,
                    updated_seq: seq_from_db(T, row.try_get("updated_seq")?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            all.sort_by(|a, b| a.system.cmp(&b.system));
            Ok(all)
        }

        /// Claims `system`'s scheduled sync of `round` for `holder`: true for exactly one
        /// caller per round (a conditional upsert), false when the round is taken or past.
        pub(crate) async fn claim_sync_round(
            conn: &mut Conn,
            system: &str,
            round: i64,
            holder: &str,
        ) -> Result<bool, StoreError> {
            Ok(sqlx::query(
                "INSERT INTO sync_claims (system, round, holder) VALUES ($1, $2, $3)
                 ON CONFLICT (system) DO UPDATE SET round = excluded.round, holder = excluded.holder
                 WHERE sync_claims.round < excluded.round",
            )
            .bind(system)
            .bind(round)
            .bind(holder)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1)
        }

        pub(crate) async fn unreviewed_bypasses_of(
            conn: &mut Conn,
            principal: &str,
        ) -> Result<Vec<CaseId>, StoreError> {
            sqlx::query("SELECT case_id FROM bypasses WHERE by_principal = $1 AND reviewed = $2 ORDER BY updated_seq")
                .bind(principal)
                .bind(false)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| Ok(CaseId(row.try_get("case_id")?)))
                .collect()
        }

        /// Writes notifications into the outbox, in the commit's transaction.
        async fn insert_outbox(
            conn: &mut Conn,
            statements: &mut Statements,
            rows: &[$crate::model::OutboxRow],
        ) -> Result<(), StoreError> {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let seqs = chunk
                    .iter()
                    .map(|row| seq_to_db(row.seq))
                    .collect::<Result<Vec<_>, _>>()?;
                statements
                    .start(
                        conn,
                        "INSERT INTO webhook_outbox (id, endpoint, seq, kind, payload, created_us, state, attempts, next_attempt_us) ",
                    )
                    .await?
                    .push_values(chunk.iter().zip(seqs), |mut values, (row, seq)| {
                        values
                            .push_bind(row.id.clone())
                            .push_bind(row.endpoint.clone())
                            .push_bind(seq)
                            .push_bind(row.kind.clone())
                            .push_bind(row.payload.clone())
                            .push_bind(micros(row.created))
                            .push("'pending'")
                            .push("0")
                            .push_bind(micros(row.created));
                    })
                    .push(" ON CONFLICT (id) DO NOTHING");
            }
            Ok(())
        }

        fn outbox_from_row(row: &DbRow) -> Result<$crate::model::OutboxRow, StoreError> {
            const T: &str = "webhook_outbox";
            Ok($crate::model::OutboxRow {
                id: row.try_get("id")?,
                endpoint: row.try_get("endpoint")?,
                seq: seq_from_db(T, row.try_get("seq")?)?,
                kind: row.try_get("kind")?,
                payload: row.try_get("payload")?,
                created: from_micros(T, row.try_get("created_us")?)?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            })
        }

        /// Claims due notifications one by one (a conditional update each), so that two
        /// workers never hold the same one.
        pub(crate) async fn claim_outbox(
            conn: &mut Conn,
            holder: &str,
            now: jiff::Timestamp,
            until: jiff::Timestamp,
            limit: u32,
        ) -> Result<Vec<$crate::model::OutboxRow>, StoreError> {
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT o.id FROM webhook_outbox o
                 WHERE o.state = 'pending' AND o.next_attempt_us <= $1
                   AND (o.lease_until_us IS NULL OR o.lease_until_us <= $1)
                   AND NOT EXISTS (SELECT 1 FROM webhook_endpoints_disabled d WHERE d.name = o.endpoint)
                 ORDER BY o.next_attempt_us, o.seq LIMIT $2",
            )
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            let mut claimed = Vec::new();
            for id in due {
                let taken = sqlx::query(
                    "UPDATE webhook_outbox SET lease_holder = $1, lease_until_us = $2
                     WHERE id = $3 AND state = 'pending'
                       AND (lease_until_us IS NULL OR lease_until_us <= $4)",
                )
                .bind(holder)
                .bind(micros(until))
                .bind(id.as_str())
                .bind(micros(now))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if taken == 1 {
                    let row = sqlx::query(
                        "SELECT id, endpoint, seq, kind, payload, created_us, attempts FROM webhook_outbox WHERE id = $1",
                    )
                    .bind(id.as_str())
                    .fetch_one(&mut *conn)
                    .await?;
                    claimed.push(outbox_from_row(&row)?);
                }
            }
            Ok(claimed)
        }

        pub(crate) async fn finish_delivery(
            conn: &mut Conn,
            id: &str,
            holder: &str,
            attempt: &$crate::model::DeliveryAttempt,
            next: &$crate::model::DeliveryNext,
        ) -> Result<(), StoreError> {
            use $crate::model::DeliveryNext as N;
            let attempts: Option<i64> = sqlx::query_scalar(
                "SELECT attempts FROM webhook_outbox WHERE id = $1 AND lease_holder = $2",
            )
            .bind(id)
            .bind(holder)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(attempts) = attempts else {
                // The lease passed to another worker: its attempt counts, not this one.
                return Ok(());
            };
            let number = attempts + 1;
            sqlx::query(
                "INSERT INTO webhook_deliveries (outbox_id, attempt, at_us, status, error)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (outbox_id, attempt) DO NOTHING",
            )
            .bind(id)
            .bind(number)
            .bind(micros(attempt.at))
            .bind(attempt.status.map(i64::from))
            .bind(attempt.error.as_deref())
            .execute(&mut *conn)
            .await?;
            let (state, next_at) = match next {
                N::Delivered => ("delivered", None),
                N::RetryAt(at) => ("pending", Some(micros(*at))),
                N::Failed => ("failed", None),
                N::EndpointGone => ("disabled", None),
            };
            sqlx::query(
                "UPDATE webhook_outbox SET state = $1, attempts = $2, next_attempt_us = $3,
                    lease_holder = NULL, lease_until_us = NULL, last_status = $4, last_error = $5
                 WHERE id = $6",
            )
            .bind(state)
            .bind(number)
            .bind(next_at)
            .bind(attempt.status.map(i64::from))
            .bind(attempt.error.as_deref())
            .bind(id)
            .execute(&mut *conn)
            .await?;
            if *next == N::EndpointGone {
                let endpoint: String =
                    sqlx::query_scalar("SELECT endpoint FROM webhook_outbox WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?;
                sqlx::query(
                    "INSERT INTO webhook_endpoints_disabled (name, reason, at_us) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(endpoint.as_str())
                .bind("the endpoint answered 410 Gone")
                .bind(micros(attempt.at))
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE webhook_outbox SET state = 'disabled', next_attempt_us = NULL
                     WHERE endpoint = $1 AND state = 'pending'",
                )
                .bind(endpoint.as_str())
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        pub(crate) async fn outbox(
            conn: &mut Conn,
            limit: u32,
        ) -> Result<Vec<($crate::model::OutboxRow, String)>, StoreError> {
            let mut rows = Vec::new();
            for row in sqlx::query(
                "SELECT id, endpoint, seq, kind, payload, created_us, attempts, state FROM webhook_outbox ORDER BY seq, endpoint LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            {
                rows.push((outbox_from_row(&row)?, row.try_get("state")?));
            }
            Ok(rows)
        }

        pub(crate) async fn queue_depths(
            conn: &mut Conn,
        ) -> Result<$crate::QueueDepths, StoreError> {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            let mut depths = $crate::QueueDepths::default();
            for row in sqlx::query("SELECT state, count(*) AS n FROM cases GROUP BY state")
                .fetch_all(&mut *conn)
                .await?
            {
                depths
                    .cases
                    .push((row.try_get("state")?, count(row.try_get("n")?)));
            }
            for row in sqlx::query(
                "SELECT system, state, count(*) AS n FROM jobs GROUP BY system, state",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                depths.jobs.push((
                    row.try_get("system")?,
                    row.try_get("state")?,
                    count(row.try_get("n")?),
                ));
            }
            for row in sqlx::query(
                "SELECT endpoint, state, count(*) AS n FROM webhook_outbox GROUP BY endpoint, state",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                depths.notifications.push((
                    row.try_get("endpoint")?,
                    row.try_get("state")?,
                    count(row.try_get("n")?),
                ));
            }
            Ok(depths)
        }

        fn exception_from_row(row: &DbRow) -> Result<$crate::model::ExceptionView, StoreError> {
            const T: &str = "exceptions";
            let snapshot: String = row.try_get("snapshot")?;
            let exception = serde_json::from_str(&snapshot).map_err(|err| StoreError::Corrupt {
                table: T,
                detail: format!("snapshot: {err}"),
            })?;
            Ok($crate::model::ExceptionView {
                exception,
                state: parse_enum(T, &row.try_get::<String, _>("state")?)?,
                granted_seq: seq_from_db(T, row.try_get("granted_seq")?)?,
                updated_seq: seq_from_db(T, row.try_get("updated_seq")?)?,
            })
        }

        pub(crate) async fn exceptions(
            conn: &mut Conn,
            filter: &$crate::model::ExceptionFilter,
        ) -> Result<Vec<$crate::model::ExceptionView>, StoreError> {
            let mut builder = sqlx::QueryBuilder::<$db>::new(
                "SELECT snapshot, state, granted_seq, updated_seq FROM exceptions WHERE 1 = 1",
            );
            if let Some(state) = &filter.state {
                builder.push(" AND state = ").push_bind(enum_text(state));
            }
            if let Some(before) = filter.expiring_before {
                builder.push(" AND expires_us <= ").push_bind(micros(before));
            }
            if let Some(case_id) = filter.case_id {
                builder.push(" AND case_id = ").push_bind(case_id.as_uuid());
            }
            builder
                .push(" ORDER BY expires_us, id LIMIT ")
                .push_bind(i64::from(filter.limit.unwrap_or(100)));
            builder
                .build()
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(exception_from_row)
                .collect()
        }

        pub(crate) async fn due_deadlines(
            conn: &mut Conn,
            now: jiff::Timestamp,
            limit: u32,
        ) -> Result<Vec<$crate::model::DueDeadline>, StoreError> {
            const T: &str = "deadlines";
            sqlx::query(
                "SELECT case_id, kind, due_us FROM deadlines
                 WHERE done = $1 AND due_us <= $2 ORDER BY due_us LIMIT $3",
            )
            .bind(false)
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok($crate::model::DueDeadline {
                    case_id: CaseId(row.try_get("case_id")?),
                    kind: parse_enum(T, &row.try_get::<String, _>("kind")?)?,
                    due: from_micros(T, row.try_get("due_us")?)?,
                })
            })
            .collect()
        }

        pub(crate) async fn live_grants(
            conn: &mut Conn,
            limit: u32,
        ) -> Result<Vec<(CaseId, String, u64)>, StoreError> {
            sqlx::query(
                "SELECT d.case_id, c.subject, d.set_seq FROM deadlines d
                 JOIN cases c ON c.id = d.case_id
                 WHERE d.done = $1 AND d.kind = $2
                 ORDER BY d.due_us LIMIT $3",
            )
            .bind(false)
            .bind(<&str>::from(writ_core::exception::DeadlineKind::AccessExpiry))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    CaseId(row.try_get("case_id")?),
                    row.try_get("subject")?,
                    u64::try_from(row.try_get::<i64, _>("set_seq")?).unwrap_or_default(),
                ))
            })
            .collect()
        }

        pub(crate) async fn finding_types_about(
            conn: &mut Conn,
            system: &str,
            external_id: &str,
            after_seq: u64,
        ) -> Result<Vec<String>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT finding_type FROM findings
                 WHERE subject_system = $1 AND subject_external_id = $2 AND seq > $3",
            )
            .bind(system)
            .bind(external_id)
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?)
        }

        async fn dump_lifecycle(
            conn: &mut Conn,
            dump: &mut $crate::model::ProjectionDump,
        ) -> Result<(), StoreError> {
            const T: &str = "deadlines";
            for row in sqlx::query(
                "SELECT snapshot, state, granted_seq, updated_seq FROM exceptions ORDER BY id",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                dump.exceptions.push(exception_from_row(&row)?);
            }
            for row in sqlx::query(
                "SELECT case_id, by_principal, reviewed, updated_seq FROM bypasses ORDER BY case_id",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                dump.bypasses.push((
                    CaseId(row.try_get("case_id")?),
                    row.try_get("by_principal")?,
                    row.try_get("reviewed")?,
                    seq_from_db("bypasses", row.try_get("updated_seq")?)?,
                ));
            }
            for row in sqlx::query(
                "SELECT case_id, kind, due_us, done, set_seq, updated_seq FROM deadlines ORDER BY case_id, kind",
            )
            .fetch_all(&mut *conn)
            .await?
            {
                dump.deadlines.push((
                    CaseId(row.try_get("case_id")?),
                    parse_enum(T, &row.try_get::<String, _>("kind")?)?,
                    from_micros(T, row.try_get("due_us")?)?,
                    row.try_get("done")?,
                    seq_from_db(T, row.try_get("set_seq")?)?,
                    seq_from_db(T, row.try_get("updated_seq")?)?,
                ));
            }
            dump.systems = systems(conn).await?;
            Ok(())
        }
    };
}

pub(crate) use lifecycle_queries;
