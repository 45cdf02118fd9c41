//! writ's application services: the pieces that combine the pure core and ledger math with the
//! store.
//!
//! - [`engine`]: the composition root: [`Engine::builder`] wires a store, the signing key, the
//!   clock, ids, policy and connectors into the services below.
//! - [`entries`]: reading ledger entries back as typed events, checked against their leaves.
//! - [`sequencer`]: the single ledger writer. Batches appends (group commit) into one
//!   transaction and one signed checkpoint; callers learn their sequence number only after the
//!   commit.
//! - [`ingest`]: from an authenticated finding to a case with a recorded policy decision.
//! - [`inventory`]: identities from target discovery, ownership and criticality from a rules file.
//! - [`keys`]: the checkpoint signing key on disk (never in the database).
//! - [`audit`]: verifying the stored ledger, and exporting and checking offline bundles.
//! - [`rebuild`]: re-deriving the projection tables from the ledger.
//! - [`publish`]: publishing each signed checkpoint outside the database (a directory, S3,
//!   witnesses).
//! - [`writeback`]: approvals, the write-back job worker (intent, apply, verify), rollback.
//! - [`lifecycle`]: closing, dismissing and unfreezing cases on a principal's word.
//! - [`exceptions`]: exceptions (risk acceptance) and the scheduler that acts on deadlines.
//! - [`bypass`]: break-glass changes, their review and its escalation.
//! - [`notify`]: webhook delivery from the outbox (Standard Webhooks signatures, retries).
//! - [`sources`]: authenticating findings sources (bearer token or HMAC signature).
//! - [`witness`]: asking witnesses (C2SP `tlog-witness`) to co-sign each checkpoint, and
//!   keeping their co-signatures.

pub mod audit;
mod auth_cache;
pub mod automation;
pub mod bypass;
pub mod campaigns;
pub mod engine;
pub mod entries;
pub mod exceptions;
pub mod group_commit;
pub mod ingest;
pub mod inventory;
pub mod keys;
pub mod lifecycle;
pub mod notify;
pub mod principals;
pub mod publish;
pub mod rebuild;
pub mod replay;
pub mod requests;
pub mod rotation;
pub mod sequencer;
pub mod simulate;
pub mod sources;
pub mod witness;
pub mod writeback;

pub use engine::{Engine, EngineBuilder, NoPolicy};
pub use sequencer::{
    AppendError, Appended, CommitObserver, Draft, EvidenceBlob, Sequencer, SequencerConfig,
    WebhookRoute,
};
