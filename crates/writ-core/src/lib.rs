//! The pure core of writ.
//!
//! Everything in this crate is deterministic and free of I/O: the domain model (identities,
//! findings, cases, decisions, changes, approvals, ownership rules and typed ledger events), the
//! workflow state machine for cases and jobs, and the injected sources of time and randomness. The edges (store,
//! connectors, server, CLI) depend on this crate; it depends on none of them.

pub mod approval;
pub mod approvers;
pub mod campaign;
pub mod case;
pub mod change;
pub mod clock;
pub mod decision;
pub mod digest;
pub mod event;
pub mod example;
pub mod exception;
pub mod finding;
pub mod identity;
pub mod ids;
pub mod job;
pub mod lifecycle;
pub mod notification;
pub mod ownership;
pub mod principal;
pub mod projection;
pub mod reconcile;
pub mod request;
pub mod rotation;
pub mod workflow;

pub use clock::{Clock, IdSource, ManualClock, RandomSource, SystemClock};
pub use digest::Sha256Digest;
