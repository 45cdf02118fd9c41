//! writ connector for the roles of one PostgreSQL server (the "database roles" target).
//!
//! Service accounts are `LOGIN` roles. [`PostgresRoles`] implements
//! [`writ_connectors::Connector`]: it discovers roles with their memberships and direct table
//! grants, and disables, enables, expires, rotates and narrows them, reading back to verify and
//! restoring the pre-image on rollback. See the crate README for the SQL each action runs.
//!
//! Secrets: the admin connection's credentials come from configuration, never from writ's
//! database. A rotation sends PostgreSQL only a SCRAM-SHA-256 verifier computed here
//! ([`scram`]), hands the new plaintext only to the configured [`SecretSink`], and logs only the
//! verifier's SHA-256 digest and the sink's version id.

#![forbid(unsafe_code)]

mod config;
mod connector;
mod error;
pub mod scram;
pub mod sql;
mod state;

pub use config::{PostgresRolesConfig, SecretSink};
pub use connector::PostgresRoles;
