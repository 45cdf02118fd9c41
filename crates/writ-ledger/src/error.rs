//! Error types: [`LedgerError`] for encoding, parsing, signing and proof
//! generation, and [`ProofError`] for Merkle proof verification.
//!
//! Chain and bundle verification report [`crate::verify::VerifyFailure`]
//! instead, which names the offending entry.

use thiserror::Error;

/// Why a Merkle inclusion or consistency proof was rejected (or could not be
/// produced).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree (`index >= size`).
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("old tree size {size1} is larger than new tree size {size2}")]
    SizeOutOfOrder {
        /// The old (first) tree size.
        size1: u64,
        /// The new (second) tree size.
        size2: u64,
    },
    /// A consistency proof from the empty tree to a non-empty tree carries no
    /// information and is rejected, as in RFC 9162 reference implementations.
    #[error("consistency proof from the empty tree is meaningless")]
    EmptyOldTree,
    /// The proof has more hashes than any valid proof for 64-bit tree sizes.
    #[error("proof has {len} hashes, more than any valid proof")]
    ProofTooLong {
        /// The number of hashes in the proof.
        len: usize,
    },
    /// The requested tree size exceeds the number of leaves available.
    #[error("tree size {size} exceeds the {available} leaves available")]
    SizeBeyondTree {
        /// The requested size.
        size: u64,
        /// The number of leaves in the tree.
        available: u64,
    },
    /// The proof does not verify: wrong length or shape, or it recomputes a
    /// different root.
    #[error("proof does not verify against the given root(s)")]
    Mismatch,
}

/// Errors from encoding, decoding, key handling, signing and proof
/// generation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    /// The leaf does not start with the `writ.event.v1\n` format tag.
    #[error("leaf does not start with the format tag \"writ.event.v1\\n\"")]
    BadLeafTag,
    /// The leaf body is not RFC 8785 canonical JSON.
    #[error("leaf JSON is not RFC 8785 canonical: {0}")]
    NotCanonical(String),
    /// The event could not be serialized as canonical JSON.
    #[error("cannot serialize event as canonical JSON: {0}")]
    Serialize(String),
    /// A base64 or hex string, or a hash length, is invalid.
    #[error("invalid encoding: {0}")]
    Encoding(String),
    /// A Merkle proof was rejected or could not be produced.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A key name is empty or contains whitespace or `+`.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A signer or verifier key text is malformed or its key ID is wrong.
    #[error("malformed key text: {0}")]
    MalformedKey(&'static str),
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A signed note is malformed.
    #[error("malformed signed note")]
    MalformedNote,
    /// The note carries no valid signature by the given key, or carries an
    /// invalid one.
    #[error("signature verification failed: {0}")]
    BadSignature(String),
    /// The checkpoint origin is not the expected one.
    #[error("checkpoint origin {found:?} does not match the expected origin {expected:?}")]
    WrongOrigin {
        /// The origin the caller expected.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// An audit bundle could not be built or parsed.
    #[error("bundle: {0}")]
    Bundle(String),
}
