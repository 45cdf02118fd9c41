//! Principals and their tokens: applying their effects, the expectation on a principal's
//! version, and the reads authentication and approval eligibility need.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! principal_queries {
    ($db:ty) => {
        fn principal_from_row(row: &DbRow) -> Result<$crate::model::PrincipalView, StoreError> {
            let snapshot: String = row.try_get("snapshot")?;
            let principal: writ_core::principal::Principal = serde_json::from_str(&snapshot)
                .map_err(|err| StoreError::Corrupt {
                    table: "principals",
                    detail: format!("snapshot: {err}"),
                })?;
            Ok($crate::model::PrincipalView {
                principal,
                updated_seq: seq_from_db("principals", row.try_get("updated_seq")?)?,
            })
        }

        fn token_from_row(row: &DbRow) -> Result<$crate::model::TokenView, StoreError> {
            const T: &str = "principal_tokens";
            let sha256: String = row.try_get("sha256")?;
            Ok($crate::model::TokenView {
                token: writ_core::principal::TokenRecord {
                    id: writ_core::ids::TokenId(row.try_get("id")?),
                    principal: row.try_get("principal")?,
                    sha256: sha256.parse().map_err(|_| StoreError::Corrupt {
                        table: T,
                        detail: format!("digest {sha256:?}"),
                    })?,
                    expires_at: row
                        .try_get::<Option<i64>, _>("expires_us")?
                        .map(|us| from_micros(T, us))
                        .transpose()?,
                },
                revoked: row.try_get("revoked")?,
                issued_seq: seq_from_db(T, row.try_get("issued_seq")?)?,
            })
        }

        /// Applies principal and token effects, in order.
        async fn apply_principal_effect(conn: &mut Conn, effect: &Effect) -> Result<(), StoreError> {
            match effect {
                Effect::UpsertPrincipal { principal, seq } => {
                    let snapshot = serde_json::to_string(principal).map_err(|err| {
                        StoreError::Conflict(format!("principal {}: {err}", principal.name))
                    })?;
                    sqlx::query(
                        "INSERT INTO principals (name, id, snapshot, disabled, updated_seq)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (name) DO UPDATE SET snapshot = excluded.snapshot,
                            disabled = excluded.disabled, updated_seq = excluded.updated_seq
                         WHERE principals.id = excluded.id",
                    )
                    .bind(principal.name.as_str())
                    .bind(principal.id.as_uuid())
                    .bind(snapshot)
                    .bind(principal.disabled)
                    .bind(seq_to_db(*seq)?)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::InsertToken { token, seq } => {
                    let seq = seq_to_db(*seq)?;
                    sqlx::query(
                        "INSERT INTO principal_tokens (id, principal, sha256, expires_us, revoked, issued_seq, updated_seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    )
                    .bind(token.id.as_uuid())
                    .bind(token.principal.as_str())
                    .bind(token.sha256.to_string())
                    .bind(token.expires_at.map(micros))
                    .bind(false)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::RevokeToken { id, seq } => {
                    sqlx::query("UPDATE principal_tokens SET revoked = $2, updated_seq = $3 WHERE id = $1")
                        .bind(id.as_uuid())
                        .bind(true)
                        .bind(seq_to_db(*seq)?)
                        .execute(&mut *conn)
                        .await?;
                }
                _ => {}
            }
            Ok(())
        }

        /// The version of the principal named `name`, if it exists.
        async fn principal_version(conn: &mut Conn, name: &str) -> Result<Option<u64>, StoreError> {
            sqlx::query("SELECT updated_seq FROM principals WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| seq_from_db("principals", row.try_get("updated_seq")?))
                .transpose()
        }

        pub(crate) async fn principal(
            conn: &mut Conn,
            name: &str,
        ) -> Result<Option<$crate::model::PrincipalView>, StoreError> {
            sqlx::query("SELECT snapshot, updated_seq FROM principals WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(principal_from_row)
                .transpose()
        }

        pub(crate) async fn principals(
            conn: &mut Conn,
        ) -> Result<Vec<$crate::model::PrincipalView>, StoreError> {
            sqlx::query("SELECT snapshot, updated_seq FROM principals ORDER BY name")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(principal_from_row)
                .collect()
        }

        pub(crate) async fn principal_count(conn: &mut Conn) -> Result<u64, StoreError> {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM principals")
                .fetch_one(&mut *conn)
                .await?;
            seq_from_db("principals", row.try_get("n")?)
        }

        pub(crate) async fn token_by_digest(
            conn: &mut Conn,
            digest: &Sha256Digest,
        ) -> Result<Option<$crate::model::TokenView>, StoreError> {
            sqlx::query("SELECT id, principal, sha256, expires_us, revoked, issued_seq FROM principal_tokens WHERE sha256 = $1")
                .bind(digest.to_string())
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(token_from_row)
                .transpose()
        }

        pub(crate) async fn tokens_of(
            conn: &mut Conn,
            name: &str,
        ) -> Result<Vec<$crate::model::TokenView>, StoreError> {
            sqlx::query("SELECT id, principal, sha256, expires_us, revoked, issued_seq FROM principal_tokens WHERE principal = $1 ORDER BY issued_seq")
                .bind(name)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(token_from_row)
                .collect()
        }

        pub(crate) async fn case_sources(conn: &mut Conn, case: CaseId) -> Result<Vec<String>, StoreError> {
            sqlx::query("SELECT DISTINCT source FROM findings WHERE case_id = $1 ORDER BY source")
                .bind(case.as_uuid())
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| Ok(row.try_get("source")?))
                .collect()
        }

        async fn dump_principals(
            conn: &mut Conn,
            dump: &mut $crate::model::ProjectionDump,
        ) -> Result<(), StoreError> {
            for view in principals(conn).await? {
                dump.principals.push((view.principal, view.updated_seq));
            }
            for row in sqlx::query("SELECT id, principal, sha256, expires_us, revoked, issued_seq, updated_seq FROM principal_tokens ORDER BY id")
                .fetch_all(&mut *conn)
                .await?
            {
                let view = token_from_row(&row)?;
                dump.tokens.push((
                    view.token,
                    view.revoked,
                    view.issued_seq,
                    seq_from_db("principal_tokens", row.try_get("updated_seq")?)?,
                ));
            }
            Ok(())
        }
    };
}

pub(crate) use principal_queries;
