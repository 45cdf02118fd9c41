//! `writ-ledger`: the pure ledger math of writ's tamper-evident event log.
//!
//! Every control event writ records becomes one *leaf* of an append-only
//! RFC 6962 Merkle tree. The log operator periodically signs a C2SP
//! `tlog-checkpoint` over the tree, and auditors check either the whole chain
//! ([`verify::verify_chain`]) or an offline [`bundle::Bundle`] of selected
//! entries with inclusion proofs.
//!
//! The crate does no I/O, reads no clock and draws no randomness: key
//! generation takes the 32 seed bytes from the caller.
//!
//! Modules:
//! - [`leaf`]: leaf encoding (`writ.event.v1\n` + RFC 8785 canonical JSON).
//! - [`tree`]: the [`Hash`](struct@Hash) type, Merkle tree builder, proofs, verification.
//! - [`checkpoint`]: keys, signed notes and signed checkpoints.
//! - [`verify`]: whole-chain verification with precise failure reporting.
//! - [`bundle`]: offline audit bundles.
//! - [`witness`]: C2SP `tlog-cosignature` co-signatures and the pure
//!   `tlog-witness` protocol logic (witness keys, `add-checkpoint`).
//! - [`error`]: the crate's error types.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
mod canonical;
pub mod checkpoint;
pub mod error;
mod jcs;
pub mod leaf;
pub mod tree;
pub mod verify;
pub mod witness;

pub use bundle::{
    BUNDLE_FORMAT, Bundle, BundleConsistency, BundleEntry, BundleReport, build_bundle,
    verify_bundle,
};
pub use checkpoint::{
    Checkpoint, SignerKey, VerifierKey, generate_key, open, open_with_origin, parse_unverified,
    sign, sign_note, verify_note,
};
pub use error::{LedgerError, ProofError};
pub use leaf::{LEAF_TAG, decode_leaf, encode_leaf, encode_members_leaf, leaf_hash, validate_leaf};
pub use tree::{
    ConsistencyBuilder, EMPTY_ROOT, Hash, Tree, TreeBuilder, consistency_ranges, hash_children,
    root_of, verify_consistency, verify_inclusion,
};
pub use verify::{
    CanonicalCheck, ChainVerifier, FailureReason, LeafMembers, VerifyFailure, VerifyOptions,
    VerifyReport, check_leaf, verify_chain, verify_chain_with,
};
pub use witness::{
    AddCheckpoint, Cosigned, VerifiedCosignature, WitnessError, WitnessKey, WitnessRefusal,
    WitnessVerifier, WitnessedTree, add_checkpoint, cosign, cosign_body, cosignature_message,
    parse_size_body, verify_cosignatures,
};
