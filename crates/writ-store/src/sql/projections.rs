//! Projections: applying effects to identities, cases, findings, jobs and the read models
//! (where the decision in force and each job's intent are, votes), reading them, and replacing or dumping them for rebuild.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! projection_queries {
    ($db:ty) => {
        /// Applies projection effects with as few statements as possible. Several changes to
        /// one identity or case collapse into one row carrying the first and last seq, so the
        /// result equals applying them one by one.
        ///
        /// Adds `effects` to `statements`; what it must run at once (votes, whose count it
        /// checks, and the rare administrative effects) runs in order after flushing them.
        async fn apply_effects(
            conn: &mut Conn,
            statements: &mut Statements,
            effects: &[Effect],
        ) -> Result<(), StoreError> {
            let mut evidence: Vec<&EvidenceRow> = Vec::new();
            let mut identities: Vec<(&Identity, u64)> = Vec::new();
            // (case, opened seq, updated seq, seq of its decision in force)
            let mut cases: Vec<(&Case, u64, u64, Option<u64>)> = Vec::new();
            let mut findings = Vec::new();
            // (job, created seq, updated seq, seq of its intent)
            let mut jobs: Vec<(&writ_core::job::Job, u64, u64, Option<u64>)> = Vec::new();
            let mut votes: Vec<(CaseId, &str, u64)> = Vec::new();
            // Rare (administration), applied one by one in order.
            let mut principal_effects: Vec<&Effect> = Vec::new();
            // Rare too (exceptions and deadlines), applied one by one in order, last.
            let mut lifecycle_effects: Vec<&Effect> = Vec::new();

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
                    Effect::UpsertCase { case, decided, seq } => {
                        let decision = decided.then_some(*seq);
                        match case_at.get(&case.id) {
                            Some(&at) => {
                                let (_, opened, _, earlier) = cases[at];
                                cases[at] = (case, opened, *seq, decision.or(earlier));
                            }
                            None => {
                                case_at.insert(case.id, cases.len());
                                cases.push((case, *seq, *seq, decision));
                            }
                        }
                    }
                    Effect::UpsertJob { job, intent, seq } => {
                        let intent = intent.then_some(*seq);
                        match job_at.get(&job.id) {
                            Some(&at) => {
                                let (_, created, _, earlier) = jobs[at];
                                jobs[at] = (job, created, *seq, intent.or(earlier));
                            }
                            None => {
                                job_at.insert(job.id, jobs.len());
                                jobs.push((job, *seq, *seq, intent));
                            }
                        }
                    }
                    Effect::InsertVote { case_id, approver, seq } => {
                        votes.push((*case_id, approver.as_str(), *seq));
                    }
                    Effect::InsertFinding {
                        finding,
                        case_id,
                        seq,
                    } => findings.push((finding, *case_id, *seq)),
                    Effect::UpsertPrincipal { .. }
                    | Effect::InsertToken { .. }
                    | Effect::RevokeToken { .. } => principal_effects.push(effect),
                    Effect::UpsertException { .. }
                    | Effect::EndExceptions { .. }
                    | Effect::SetDeadline { .. }
                    | Effect::UpsertBypass { .. }
                    | Effect::MeetDeadlines { .. }
                    | Effect::UpsertSystem { .. }
                    | Effect::SetSystemPause { .. } => lifecycle_effects.push(effect),
                }
            }
            for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
                let builder = statements.start(conn,
                    "INSERT INTO jobs (id, case_id, system, state, next_attempt_us, snapshot, created_seq, updated_seq, intent_seq) ",
                ).await?;
                let mut bad = None;
                builder.push_values(chunk, |mut row, (job, created, updated, intent)| {
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
                        .push_bind(updated)
                        .push_bind(intent.map(&mut seq));
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.push(
                    " ON CONFLICT (id) DO UPDATE SET
                        state = excluded.state, next_attempt_us = excluded.next_attempt_us,
                        snapshot = excluded.snapshot, updated_seq = excluded.updated_seq,
                        intent_seq = COALESCE(excluded.intent_seq, jobs.intent_seq)",
                );
            }
            for chunk in evidence.chunks(ROWS_PER_STATEMENT) {
                let builder = statements.start(conn,
                    "INSERT INTO evidence (digest, media_type, bytes, received_us) ",
                ).await?;
                builder.push_values(chunk, |mut row, e| {
                    row.push_bind(e.digest.to_string())
                        .push_bind(e.media_type.as_str())
                        .push_bind(e.bytes.as_slice())
                        .push_bind(micros(e.received));
                });
                builder.push(" ON CONFLICT (digest) DO NOTHING");
            }
            for chunk in identities.chunks(ROWS_PER_STATEMENT) {
                let builder = statements.start(conn,
                    "INSERT INTO identities (id, system, external_id, kind, owner_team, criticality, privileged, tags, last_used_us, reconciled_us, updated_seq) ",
                ).await?;
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
            }
            for chunk in cases.chunks(ROWS_PER_STATEMENT) {
                let builder = statements.start(conn,
                    "INSERT INTO cases (id, identity_id, subject, finding_type, state, compliance_closed, opened_seq, updated_seq, decision_seq) ",
                ).await?;
                let mut bad = None;
                builder.push_values(chunk, |mut row, (case, opened, updated, decision)| {
                    let mut seq = |s: u64| {
                        seq_to_db(s).unwrap_or_else(|_| {
                            bad = Some(s);
                            -1
                        })
                    };
                    let (opened, updated) = (seq(*opened), seq(*updated));
                    let decision_seq = decision.map(&mut seq);
                    row.push_bind(case.id.as_uuid())
                        .push_bind(case.identity_id.map(|id| id.as_uuid()))
                        .push_bind(case.subject.clone())
                        .push_bind(case.finding_type.clone())
                        .push_bind(enum_text(&case.state))
                        .push_bind(case.compliance_closed)
                        .push_bind(opened)
                        .push_bind(updated)
                        .push_bind(decision_seq);
                });
                if let Some(seq) = bad {
                    return Err(StoreError::BatchNotContiguous { seq });
                }
                builder.push(
                    " ON CONFLICT (id) DO UPDATE SET
                        identity_id = excluded.identity_id, subject = excluded.subject,
                        finding_type = excluded.finding_type, state = excluded.state,
                        compliance_closed = excluded.compliance_closed,
                        updated_seq = excluded.updated_seq,
                        decision_seq = COALESCE(excluded.decision_seq, cases.decision_seq)",
                );
            }
            // Votes count for the decision in force when they are recorded, and make the case
            // newer (its version is what an approval's expectation compares).
            if !votes.is_empty() {
                statements.flush(conn).await?;
            }
            for (case_id, approver, seq) in votes {
                let seq = seq_to_db(seq)?;
                sqlx::query(
                    "INSERT INTO case_votes (case_id, decision_seq, approver, seq)
                     SELECT id, decision_seq, $2, $3 FROM cases WHERE id = $1 AND decision_seq IS NOT NULL",
                )
                .bind(case_id.as_uuid())
                .bind(approver)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
                let touched = sqlx::query(
                    "UPDATE cases SET updated_seq = CASE WHEN updated_seq < $2 THEN $2 ELSE updated_seq END
                     WHERE id = $1 AND decision_seq IS NOT NULL",
                )
                .bind(case_id.as_uuid())
                .bind(seq)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if touched != 1 {
                    return Err(StoreError::Conflict(format!(
                        "a vote for case {case_id}, which has no decision in force"
                    )));
                }
            }
            for chunk in findings.chunks(ROWS_PER_STATEMENT) {
                let builder = statements.start(conn,
                    "INSERT INTO findings (id, case_id, source, finding_type, severity, confidence_bp, subject_system, subject_external_id, observed_us, evidence, idempotency_key, seq) ",
                ).await?;
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
            }
            if !principal_effects.is_empty() || !lifecycle_effects.is_empty() {
                statements.flush(conn).await?;
            }
            for effect in principal_effects {
                apply_principal_effect(conn, effect).await?;
            }
            for effect in lifecycle_effects {
                apply_lifecycle_effect(conn, effect).await?;
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
                "DELETE FROM case_votes",
                "DELETE FROM principals",
                "DELETE FROM principal_tokens",
                "DELETE FROM exceptions",
                "DELETE FROM deadlines",
                "DELETE FROM bypasses",
                "DELETE FROM systems",
            ] {
                sqlx::query(statement).execute(&mut *conn).await?;
            }
            let mut statements = Statements::new();
            apply_effects(conn, &mut statements, effects).await?;
            statements.flush(conn).await
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
            for row in sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed, opened_seq, updated_seq, decision_seq FROM cases ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.cases.push((
                    case_from_row(&row)?,
                    seq_from_db("cases", row.try_get("opened_seq")?)?,
                    seq_from_db("cases", row.try_get("updated_seq")?)?,
                    row.try_get::<Option<i64>, _>("decision_seq")?
                        .map(|seq| seq_from_db("cases", seq))
                        .transpose()?,
                ));
            }
            for row in sqlx::query("SELECT case_id, decision_seq, approver, seq FROM case_votes ORDER BY case_id, decision_seq, approver")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.votes.push((
                    CaseId(row.try_get("case_id")?),
                    seq_from_db("case_votes", row.try_get("decision_seq")?)?,
                    row.try_get("approver")?,
                    seq_from_db("case_votes", row.try_get("seq")?)?,
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
            for row in sqlx::query("SELECT snapshot, created_seq, updated_seq, intent_seq FROM jobs ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                dump.jobs.push((
                    job_from_row(&row)?,
                    seq_from_db("jobs", row.try_get("created_seq")?)?,
                    seq_from_db("jobs", row.try_get("updated_seq")?)?,
                    row.try_get::<Option<i64>, _>("intent_seq")?
                        .map(|seq| seq_from_db("jobs", seq))
                        .transpose()?,
                ));
            }
            dump_principals(conn, &mut dump).await?;
            dump_lifecycle(conn, &mut dump).await?;
            Ok(dump)
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

        pub(crate) async fn identities_by_external_ids(
            conn: &mut Conn,
            subjects: &[(String, String)],
        ) -> Result<Vec<Identity>, StoreError> {
            // One system at a time, so that each look-up walks the (system, external_id) index.
            let groups = $crate::sql::grouped(
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
            let groups = $crate::sql::grouped(
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

        const CASE_HEAD_COLUMNS: &str = "id, identity_id, subject, finding_type, state, compliance_closed, updated_seq, decision_seq";

        fn case_head_from_row(row: &DbRow) -> Result<$crate::model::CaseHead, StoreError> {
            const T: &str = "cases";
            Ok($crate::model::CaseHead {
                case: case_from_row(row)?,
                updated_seq: seq_from_db(T, row.try_get("updated_seq")?)?,
                decision_seq: row
                    .try_get::<Option<i64>, _>("decision_seq")?
                    .map(|seq| seq_from_db(T, seq))
                    .transpose()?,
            })
        }

        pub(crate) async fn open_case_heads(
            conn: &mut Conn,
            keys: &[(String, String)],
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            let groups = $crate::sql::grouped(
                keys.iter().map(|(subject, finding_type)| (finding_type.as_str(), subject.as_str())),
            );
            rows_in_groups(
                conn,
                &format!("SELECT {CASE_HEAD_COLUMNS} FROM cases WHERE state <> 'closed' AND finding_type = "),
                " AND subject IN (",
                groups,
            )
            .await?
            .iter()
            .map(case_head_from_row)
            .collect()
        }

        pub(crate) async fn open_case_heads_under(
            conn: &mut Conn,
            keys: &[(String, String)],
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            // A prefix compared with `substr`, not `LIKE`: exact, case-sensitive, and nothing
            // in the subject needs escaping.
            let mut heads = Vec::new();
            for (subject, finding_type) in keys {
                let prefix = format!("{subject}/");
                let chars = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
                for row in sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CASE_HEAD_COLUMNS} FROM cases
                     WHERE state <> 'closed' AND finding_type = $1 AND substr(subject, 1, $2) = $3
                     ORDER BY opened_seq"
                )))
                .bind(finding_type.as_str())
                .bind(chars)
                .bind(prefix.as_str())
                .fetch_all(&mut *conn)
                .await?
                {
                    heads.push(case_head_from_row(&row)?);
                }
            }
            Ok(heads)
        }

        pub(crate) async fn last_closed_cases_for(
            conn: &mut Conn,
            keys: &[(String, String)],
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            let groups = $crate::sql::grouped(
                keys.iter().map(|(subject, finding_type)| (finding_type.as_str(), subject.as_str())),
            );
            let heads = rows_in_groups(
                conn,
                &format!("SELECT {CASE_HEAD_COLUMNS} FROM cases WHERE state = 'closed' AND finding_type = "),
                " AND subject IN (",
                groups,
            )
            .await?
            .iter()
            .map(case_head_from_row)
            .collect::<Result<Vec<_>, _>>()?;
            let mut last: std::collections::HashMap<(String, String), $crate::model::CaseHead> =
                std::collections::HashMap::new();
            for head in heads {
                let key = (head.case.subject.clone(), head.case.finding_type.clone());
                match last.get(&key) {
                    Some(kept) if kept.updated_seq >= head.updated_seq => {}
                    _ => {
                        last.insert(key, head);
                    }
                }
            }
            Ok(last.into_values().collect())
        }

        pub(crate) async fn pending_cases_where(
            conn: &mut Conn,
            by_system: bool,
            value: &str,
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            // `column` is one of two constants, never input.
            let column = if by_system { "system" } else { "owner_team" };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT c.id, c.identity_id, c.subject, c.finding_type, c.state, c.compliance_closed, c.updated_seq, c.decision_seq
                 FROM cases c JOIN identities i ON i.id = c.identity_id
                 WHERE i.{column} = $1 AND c.state IN ('awaiting_approval', 'remediating')
                 ORDER BY c.opened_seq"
            )))
            .bind(value)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(case_head_from_row)
            .collect()
        }

        pub(crate) async fn open_cases_of_identity(
            conn: &mut Conn,
            identity: IdentityId,
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {CASE_HEAD_COLUMNS} FROM cases WHERE identity_id = $1 AND state <> 'closed' ORDER BY opened_seq"
            )))
            .bind(identity.as_uuid())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(case_head_from_row)
            .collect()
        }

        pub(crate) async fn unresolved_cases_for(
            conn: &mut Conn,
            subjects: &[String],
        ) -> Result<Vec<$crate::model::CaseHead>, StoreError> {
            let mut heads = Vec::new();
            for chunk in subjects.chunks(KEYS_PER_LOOKUP) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {CASE_HEAD_COLUMNS} FROM cases WHERE identity_id IS NULL AND state <> 'closed' AND subject IN ("
                ));
                let mut list = builder.separated(", ");
                for subject in chunk {
                    list.push_bind(subject.as_str());
                }
                builder.push(") ORDER BY opened_seq");
                for row in builder.build().fetch_all(&mut *conn).await? {
                    heads.push(case_head_from_row(&row)?);
                }
            }
            Ok(heads)
        }

        /// The rows of `select` (which ends comparing a column to the group's first element)
        /// followed by `in_list` (which opens an `IN (` of the group's second elements), for
        /// every group. The groups' look-ups are joined with `UNION ALL` into as few
        /// statements as [`KEYS_PER_LOOKUP`] bound values allow (each branch still walks its
        /// index on both columns): a batch of findings of several types is one round trip,
        /// not one per type.
        async fn rows_in_groups(
            conn: &mut Conn,
            select: &str,
            in_list: &str,
            groups: Vec<(&str, Vec<&str>)>,
        ) -> Result<Vec<DbRow>, StoreError> {
            // SQLite allows 500 terms in a compound select; stay well below.
            const BRANCHES_PER_STATEMENT: usize = 64;
            let mut statements: Vec<Vec<(&str, &[&str])>> = Vec::new();
            let mut binds = 0;
            for (first, seconds) in &groups {
                for chunk in seconds.chunks(KEYS_PER_LOOKUP) {
                    let full = statements.last().is_none_or(|branches| {
                        branches.len() == BRANCHES_PER_STATEMENT
                            || binds + chunk.len() + 1 > KEYS_PER_LOOKUP + 1
                    });
                    if full {
                        statements.push(Vec::new());
                        binds = 0;
                    }
                    binds += chunk.len() + 1;
                    if let Some(branches) = statements.last_mut() {
                        branches.push((first, chunk));
                    }
                }
            }
            let mut rows = Vec::new();
            for branches in statements {
                let mut builder = sqlx::QueryBuilder::<$db>::new("");
                for (at, (first, chunk)) in branches.into_iter().enumerate() {
                    if at > 0 {
                        builder.push(" UNION ALL ");
                    }
                    builder.push(select).push_bind(first).push(in_list);
                    let mut list = builder.separated(", ");
                    for second in chunk {
                        list.push_bind(*second);
                    }
                    builder.push(")");
                }
                rows.extend(builder.build().fetch_all(&mut *conn).await?);
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

        pub(crate) async fn case_view(
            conn: &mut Conn,
            id: CaseId,
        ) -> Result<Option<$crate::model::CaseView>, StoreError> {
            const T: &str = "cases";
            let Some(row) = sqlx::query("SELECT id, identity_id, subject, finding_type, state, compliance_closed, opened_seq, updated_seq, decision_seq FROM cases WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(None);
            };
            let decision_seq = row
                .try_get::<Option<i64>, _>("decision_seq")?
                .map(|seq| seq_from_db(T, seq))
                .transpose()?;
            let mut votes = Vec::new();
            if let Some(decision_seq) = &decision_seq {
                for vote in sqlx::query("SELECT approver, seq FROM case_votes WHERE case_id = $1 AND decision_seq = $2 ORDER BY seq")
                    .bind(id.as_uuid())
                    .bind(seq_to_db(*decision_seq)?)
                    .fetch_all(&mut *conn)
                    .await?
                {
                    votes.push((vote.try_get("approver")?, seq_from_db("case_votes", vote.try_get("seq")?)?));
                }
            }
            let job = match sqlx::query("SELECT id FROM jobs WHERE case_id = $1 ORDER BY created_seq DESC LIMIT 1")
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
            {
                Some(job) => job_view(conn, writ_core::ids::JobId(job.try_get("id")?)).await?,
                None => None,
            };
            Ok(Some($crate::model::CaseView {
                case: case_from_row(&row)?,
                opened_seq: seq_from_db(T, row.try_get("opened_seq")?)?,
                updated_seq: seq_from_db(T, row.try_get("updated_seq")?)?,
                decision_seq,
                votes,
                job,
            }))
        }

        pub(crate) async fn cases(
            conn: &mut Conn,
            filter: &$crate::model::CaseFilter,
        ) -> Result<Vec<Case>, StoreError> {
            let mut builder = sqlx::QueryBuilder::<$db>::new(
                "SELECT id, identity_id, subject, finding_type, state, compliance_closed FROM cases WHERE 1 = 1",
            );
            if let Some(state) = filter.state {
                builder.push(" AND state = ").push_bind(enum_text(&state));
            }
            if let Some(finding_type) = &filter.finding_type {
                builder.push(" AND finding_type = ").push_bind(finding_type.clone());
            }
            builder
                .push(" ORDER BY updated_seq DESC LIMIT ")
                .push_bind(i64::from(filter.limit.unwrap_or(100)))
                .push(" OFFSET ")
                .push_bind(i64::from(filter.offset.unwrap_or(0)));
            let rows = builder.build().fetch_all(&mut *conn).await?;
            rows.iter().map(case_from_row).collect()
        }
    };
}

pub(crate) use projection_queries;
