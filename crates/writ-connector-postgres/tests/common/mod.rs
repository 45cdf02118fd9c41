//! Shared test helpers: an in-memory secret sink and SQL helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use writ_connector_postgres::{PostgresRoles, PostgresRolesConfig, SecretSink};
use writ_connectors::ConnectorError;

/// Keeps delivered secrets in memory, as a secrets manager would.
#[derive(Default)]
pub struct MemorySink {
    delivered: Mutex<Vec<(String, String, String)>>,
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySink([redacted])")
    }
}

impl MemorySink {
    /// Everything delivered: (system, role, secret).
    pub fn delivered(&self) -> Vec<(String, String, String)> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait]
impl SecretSink for MemorySink {
    async fn deliver(
        &self,
        system: &str,
        role: &str,
        secret: &str,
    ) -> Result<String, ConnectorError> {
        let mut d = self.delivered.lock().unwrap();
        d.push((system.into(), role.into(), secret.into()));
        Ok(format!("v{}", d.len()))
    }
}

/// Runs statements as the admin (test setup only).
pub async fn admin(url: &str, statements: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A URL for `role` (with an optional password) on a loopback port.
pub fn role_url(port: u16, db: &str, role: &str, password: Option<&str>) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    match password {
        Some(p) => format!("postgres://{}:{}@127.0.0.1:{port}/{db}", enc(role), enc(p)),
        None => format!("postgres://{}@127.0.0.1:{port}/{db}", enc(role)),
    }
}

/// Connects the connector to `url`, with a memory sink.
pub async fn connector(url: &str) -> (PostgresRoles, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let connector = PostgresRoles::connect(PostgresRolesConfig {
        system: "postgres:test".into(),
        url: url.into(),
        rotation_secret_sink: Some(sink.clone()),
    })
    .await
    .unwrap();
    (connector, sink)
}

/// Whether `url` accepts a login.
pub async fn can_log_in(url: &str) -> bool {
    match PgConnection::connect(url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(_) => false,
    }
}
