//! Mapping database errors to [`ConnectorError`]: transient ones are retryable, the rest
//! permanent. Messages carry the server's error text, never SQL text (which could hold a
//! verifier) nor the connection URL.

use writ_connectors::ConnectorError;

/// SQLSTATE `undefined_object`: the role (or a named group/table role) does not exist.
pub const UNDEFINED_OBJECT: &str = "42704";
/// SQLSTATE `dependent_privileges_descriptors_still_exist`: a REVOKE would need CASCADE.
pub const DEPENDENT_PRIVILEGES: &str = "2BP01";
/// SQLSTATE `undefined_table`.
pub const UNDEFINED_TABLE: &str = "42P01";

/// Whether a SQLSTATE names a transient condition.
fn transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || matches!(
            code,
            "40001" // serialization failure
            | "40P01" // deadlock
            | "55P03" // lock not available (lock_timeout)
            | "57014" // query canceled (statement_timeout)
            | "57P01" // admin shutdown
            | "57P02" // crash shutdown
            | "57P03" // cannot connect now
        )
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Maps a sqlx error, with a short description of what was being done.
pub fn map(context: &str, err: sqlx::Error) -> ConnectorError {
    match &err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = format!("{context}: {} (SQLSTATE {code})", db.message());
            if transient(&code) {
                ConnectorError::Retryable(message)
            } else {
                ConnectorError::Permanent(message)
            }
        }
        sqlx::Error::Io(e) => ConnectorError::Retryable(format!("{context}: i/o error: {e}")),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            ConnectorError::Retryable(format!("{context}: {err}"))
        }
        sqlx::Error::Tls(_) => ConnectorError::Retryable(format!("{context}: TLS error")),
        // Configuration errors may quote the URL, which may hold a password.
        sqlx::Error::Configuration(_) => {
            ConnectorError::Permanent(format!("{context}: invalid connection configuration"))
        }
        other => ConnectorError::Permanent(format!("{context}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sqlstates() {
        assert!(transient("08006"));
        assert!(transient("57P01"));
        assert!(transient("40P01"));
        assert!(!transient("42501")); // insufficient_privilege: permanent
        assert!(!transient(UNDEFINED_OBJECT));
        assert!(map("x", sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!map("x", sqlx::Error::RowNotFound).is_retryable());
        let config = map(
            "connect",
            sqlx::Error::Configuration("postgres://u:hunter2@h".into()),
        );
        assert!(!config.to_string().contains("hunter2"));
    }
}
