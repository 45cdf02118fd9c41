//! Migrations: the schema brought up to date inside the writer's lock.

/// See the module documentation; expanded by `backend_queries!` with its imports in scope.
macro_rules! admin_queries {
    ($db:ty) => {
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
    };
}

pub(crate) use admin_queries;
