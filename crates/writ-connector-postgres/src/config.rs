//! Configuration of the PostgreSQL roles connector, and the sink rotated secrets go to.

use std::sync::Arc;

pub use writ_connectors::SecretSink;

/// How to reach one PostgreSQL server.
#[derive(Clone)]
pub struct PostgresRolesConfig {
    /// The system's name as identities refer to it, e.g. `postgres:billing`.
    pub system: String,
    /// The admin connection URL (`postgres://user:password@host:port/db`). It comes from
    /// configuration or the environment, never from writ's database. It may hold a password:
    /// it is never logged and `Debug` shows it redacted.
    pub url: String,
    /// Where rotated passwords go. Without one, `rotate` is not offered.
    pub rotation_secret_sink: Option<Arc<dyn SecretSink>>,
}

impl std::fmt::Debug for PostgresRolesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRolesConfig")
            .field("system", &self.system)
            .field("url", &"[redacted]")
            .field(
                "rotation_secret_sink",
                &self.rotation_secret_sink.as_ref().map(|_| "configured"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_url() {
        let config = PostgresRolesConfig {
            system: "postgres:billing".into(),
            url: "postgres://admin:hunter2@db/billing".into(),
            rotation_secret_sink: None,
        };
        let debug = format!("{config:?}");
        assert!(debug.contains("postgres:billing"));
        assert!(!debug.contains("hunter2"));
    }
}
