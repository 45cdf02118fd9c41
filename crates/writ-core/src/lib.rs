//! The pure core of writ.
//!
//! Everything in this crate is deterministic and free of I/O: the domain model (identities,
//! findings, cases, decisions, change requests, approvals, exceptions and ledger events), the
//! case state machine, and the injected sources of time and randomness. The edges (store,
//! connectors, server, CLI) depend on this crate; it depends on none of them.

pub mod approval;
pub mod case;
pub mod change;
pub mod clock;
pub mod decision;
pub mod digest;
pub mod event;
pub mod exception;
pub mod finding;
pub mod identity;
pub mod ids;
pub mod job;
pub mod projection;

pub use clock::{Clock, IdSource, ManualClock, SystemClock};
pub use digest::Sha256Digest;
