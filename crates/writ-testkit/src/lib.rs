//! Test harness: real services, started on loopback by the tests themselves: PostgreSQL
//! ([`PgCluster`]) and moto ([`MotoServer`]).
//!
//! No test in writ depends on a server started by hand. [`PgCluster`] runs `initdb` and
//! `pg_ctl` on a temporary directory (as the `postgres` user when the tests run as root, since
//! PostgreSQL refuses to run as root) and stops the cluster when dropped. Later issues add moto,
//! slapd, a SCIM server and a browser here, following the same shape: start, wait until ready,
//! hand out a URL, stop on drop.

mod db;
mod moto;
mod oidc;
mod postgres;

pub use db::{TestBackend, TestDb, exec_sql};
pub use moto::{MotoServer, venv_program};
pub use oidc::{INITIAL_ACCESS_TOKEN, OidcProvider, SCOPES, SignInClient, oidc_dir};
pub use postgres::PgCluster;

use std::net::TcpListener;

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program the harness needs is not installed.
    #[error("{program} not found: {hint}")]
    Missing {
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {output}")]
    Failed {
        /// The command line.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// Filesystem or process error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Runs each named async case against both backends: expands to `mod sqlite` and
/// `mod postgres`, one `#[tokio::test]` per case, each calling
/// `super::CASE(super::harness(TestDb::sqlite()).await)` (or `postgres()`). The calling test
/// file defines `async fn harness(db: TestDb) -> H` (its world on that database) and depends on
/// tokio.
#[macro_export]
macro_rules! backend_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = $crate::TestDb::sqlite().expect("a SQLite test database");
                    super::$case(super::harness(db).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = $crate::TestDb::postgres().expect("a PostgreSQL test database");
                    super::$case(super::harness(db).await).await;
                }
            )*
        }
    };
}
