//! The ledger: appending a batch (with its expectations and effects) and reading entries,
//! checkpoints and evidence back.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! ledger_queries {
    ($db:ty) => {
        pub(crate) async fn head_size(conn: &mut Conn) -> Result<u64, StoreError> {
            let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
            seq_from_db("ledger_head", size)
        }

        /// Writes a batch whose head has already been locked and read as `head`. Rows go in
        /// multi-row `INSERT`s (a few statements per batch, not a few per event), and the
        /// statements of a small batch in one call where the backend allows it ([`Statements`]).
        /// The expectations are checked before anything is written.
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
            check_expectations(conn, &batch.expectations).await?;
            let mut statements = Statements::new();
            for chunk in batch.entries.chunks(ROWS_PER_STATEMENT) {
                insert_entries(conn, &mut statements, chunk).await?;
            }
            if let Some(checkpoint) = &batch.checkpoint {
                let size = seq_to_db(checkpoint.size)?;
                statements
                    .start(conn, "INSERT INTO checkpoints (size, root, note, time_us) ")
                    .await?
                    .push_values([checkpoint], |mut row, checkpoint| {
                        row.push_bind(size)
                            .push_bind(checkpoint.root.to_vec())
                            .push_bind(checkpoint.note.clone())
                            .push_bind(micros(checkpoint.time));
                    });
            }
            apply_effects(conn, &mut statements, &batch.effects).await?;
            insert_outbox(conn, &mut statements, &batch.outbox).await?;
            if next != head {
                statements
                    .start(conn, "UPDATE ledger_head SET size = ")
                    .await?
                    .push_bind(seq_to_db(next)?)
                    .push(" WHERE id = 1");
            }
            statements.flush(conn).await
        }

        /// Fails with [`StoreError::Stale`] unless every case and job is still in the state and
        /// at the version its writer read. Runs under the writer lock, before any effect of the
        /// batch (the sequencer refuses an expectation about something an earlier entry of the
        /// same batch changed).
        async fn check_expectations(
            conn: &mut Conn,
            expectations: &[$crate::model::Expectation],
        ) -> Result<(), StoreError> {
            use $crate::model::Expectation;
            for expectation in expectations {
                if let Expectation::Principal { name, updated_seq } = expectation {
                    let found = principal_version(conn, name).await?;
                    if found != *updated_seq {
                        let show = |v: Option<u64>| v.map_or_else(|| "nothing".to_owned(), |q| format!("version {q}"));
                        return Err(StoreError::Stale {
                            what: format!("principal {name}"),
                            expected: show(*updated_seq),
                            found: show(found),
                        });
                    }
                    continue;
                }
                let (what, query, id, state, updated_seq) = match expectation {
                    Expectation::Case { id, state, updated_seq } => (
                        format!("case {id}"),
                        "SELECT state, updated_seq FROM cases WHERE id = $1",
                        id.as_uuid(),
                        enum_text(state),
                        *updated_seq,
                    ),
                    Expectation::Job { id, state, updated_seq } => (
                        format!("job {id}"),
                        "SELECT state, updated_seq FROM jobs WHERE id = $1",
                        id.as_uuid(),
                        enum_text(state),
                        *updated_seq,
                    ),
                    Expectation::Principal { .. } => continue,
                };
                let found = match sqlx::query(query).bind(id).fetch_optional(&mut *conn).await? {
                    Some(row) => Some((
                        row.try_get::<String, _>("state")?,
                        seq_from_db("expectations", row.try_get("updated_seq")?)?,
                    )),
                    None => None,
                };
                if found.as_ref().map(|(s, q)| (s.as_str(), *q)) != Some((state, updated_seq)) {
                    return Err(StoreError::Stale {
                        what,
                        expected: format!("{state} as of entry {updated_seq}"),
                        found: found.map_or_else(
                            || "nothing".to_owned(),
                            |(s, q)| format!("{s} as of entry {q}"),
                        ),
                    });
                }
            }
            Ok(())
        }

        async fn insert_entries(
            conn: &mut Conn,
            statements: &mut Statements,
            entries: &[LedgerRow],
        ) -> Result<(), StoreError> {
            let builder = statements
                .start(
                    conn,
                    "INSERT INTO ledger_entries (seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash) ",
                )
                .await?;
            let mut bad_seq = None;
            builder.push_values(entries, |mut row, entry| {
                let seq = seq_to_db(entry.seq).unwrap_or_else(|_| {
                    bad_seq = Some(entry.seq);
                    -1
                });
                row.push_bind(seq)
                    .push_bind(micros(entry.time))
                    .push_bind(entry.case_id.map(|id| id.as_uuid()))
                    .push_bind(entry.kind.name())
                    .push_bind(entry.actor.as_str())
                    .push_bind(entry.idempotency_key.as_str())
                    .push_bind(entry.leaf.as_slice())
                    .push_bind(entry.leaf_hash.to_vec());
            });
            if let Some(seq) = bad_seq {
                return Err(StoreError::BatchNotContiguous { seq });
            }
            Ok(())
        }

        fn checkpoint_from_row(row: &DbRow) -> Result<CheckpointRow, StoreError> {
            const T: &str = "checkpoints";
            Ok(CheckpointRow {
                size: seq_from_db(T, row.try_get("size")?)?,
                root: hash_from_db(T, row.try_get("root")?)?,
                note: row.try_get("note")?,
                time: from_micros(T, row.try_get("time_us")?)?,
            })
        }

        fn entry_from_row(row: &DbRow) -> Result<LedgerRow, StoreError> {
            const T: &str = "ledger_entries";
            Ok(LedgerRow {
                seq: seq_from_db(T, row.try_get("seq")?)?,
                time: from_micros(T, row.try_get("time_us")?)?,
                case_id: row.try_get::<Option<Uuid>, _>("case_id")?.map(CaseId),
                kind: parse_enum(T, &row.try_get::<String, _>("kind")?)?,
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
            kind: writ_core::event::EventKind,
        ) -> Result<Option<LedgerRow>, StoreError> {
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(kind.name())
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(entry_from_row)
            .transpose()
        }

        pub(crate) async fn campaigns_started(
            conn: &mut Conn,
            limit: u32,
        ) -> Result<Vec<LedgerRow>, StoreError> {
            // The literal kind matches the partial index `ledger_entries_campaigns`.
            sqlx::query(
                "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash
                 FROM ledger_entries WHERE kind = 'campaign_started' ORDER BY seq DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
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

        pub(crate) async fn entries_at(
            conn: &mut Conn,
            seqs: &[u64],
        ) -> Result<Vec<LedgerRow>, StoreError> {
            let mut rows = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks(KEYS_PER_LOOKUP) {
                let mut builder = sqlx::QueryBuilder::<$db>::new(
                    "SELECT seq, time_us, case_id, kind, actor, idempotency_key, leaf, leaf_hash FROM ledger_entries WHERE seq IN (",
                );
                let mut list = builder.separated(", ");
                for seq in chunk {
                    list.push_bind(seq_to_db(*seq)?);
                }
                builder.push(") ORDER BY seq");
                for row in builder.build().fetch_all(&mut *conn).await? {
                    rows.push(entry_from_row(&row)?);
                }
            }
            rows.sort_by_key(|row| row.seq);
            Ok(rows)
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
            sqlx::query("SELECT size, root, note, time_us FROM checkpoints ORDER BY size")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(checkpoint_from_row)
                .collect()
        }

        pub(crate) async fn checkpoint_at(
            conn: &mut Conn,
            size: u64,
        ) -> Result<Option<CheckpointRow>, StoreError> {
            sqlx::query("SELECT size, root, note, time_us FROM checkpoints WHERE size = $1")
                .bind(seq_to_db(size)?)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(checkpoint_from_row)
                .transpose()
        }

        pub(crate) async fn put_cosignature(
            conn: &mut Conn,
            row: &$crate::CosignatureRow,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO witness_cosignatures (witness, size, cosignature, time_us)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (witness) DO UPDATE SET size = excluded.size,
                    cosignature = excluded.cosignature, time_us = excluded.time_us
                 WHERE excluded.size >= witness_cosignatures.size",
            )
            .bind(&row.witness)
            .bind(seq_to_db(row.size)?)
            .bind(&row.cosignature)
            .bind(micros(row.time))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn cosignatures(
            conn: &mut Conn,
        ) -> Result<Vec<$crate::CosignatureRow>, StoreError> {
            const T: &str = "witness_cosignatures";
            sqlx::query("SELECT witness, size, cosignature, time_us FROM witness_cosignatures ORDER BY witness")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| {
                    Ok($crate::CosignatureRow {
                        witness: row.try_get("witness")?,
                        size: seq_from_db(T, row.try_get("size")?)?,
                        cosignature: row.try_get("cosignature")?,
                        time: from_micros(T, row.try_get("time_us")?)?,
                    })
                })
                .collect()
        }

        pub(crate) async fn latest_checkpoint(
            conn: &mut Conn,
        ) -> Result<Option<CheckpointRow>, StoreError> {
            sqlx::query(
                "SELECT size, root, note, time_us FROM checkpoints ORDER BY size DESC LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await?
            .as_ref()
            .map(checkpoint_from_row)
            .transpose()
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

        pub(crate) async fn evidence_page(
            conn: &mut Conn,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            let rows = match after {
                Some(after) => {
                    sqlx::query("SELECT digest, bytes FROM evidence WHERE digest > $1 ORDER BY digest LIMIT $2")
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *conn)
                        .await?
                }
                None => {
                    sqlx::query("SELECT digest, bytes FROM evidence ORDER BY digest LIMIT $1")
                        .bind(i64::from(limit))
                        .fetch_all(&mut *conn)
                        .await?
                }
            };
            rows.iter()
                .map(|row| Ok((row.try_get("digest")?, row.try_get("bytes")?)))
                .collect()
        }

        pub(crate) async fn evidence_meta(
            conn: &mut Conn,
            digests: &[Sha256Digest],
        ) -> Result<Vec<(String, String, jiff::Timestamp)>, StoreError> {
            const T: &str = "evidence";
            let mut found = Vec::new();
            for chunk in digests.chunks(KEYS_PER_LOOKUP) {
                let mut builder = sqlx::QueryBuilder::<$db>::new("SELECT digest, media_type, received_us FROM evidence WHERE digest IN (");
                let mut list = builder.separated(", ");
                for digest in chunk {
                    list.push_bind(digest.to_string());
                }
                builder.push(")");
                for row in builder.build().fetch_all(&mut *conn).await? {
                    found.push((
                        row.try_get::<String, _>("digest")?,
                        row.try_get::<String, _>("media_type")?,
                        from_micros(T, row.try_get("received_us")?)?,
                    ));
                }
            }
            Ok(found)
        }

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
    };
}

pub(crate) use ledger_queries;
