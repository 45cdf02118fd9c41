//! Findings: what analytics tools say about identities.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::ids::FindingId;

/// How bad the finding's tool says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A finding after normalisation, whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// writ's id for it.
    pub id: FindingId,
    /// The authenticated source that sent it.
    pub source: String,
    /// What the tool found (for example `iam_user_accesskey_unused`, `leaked_secret`).
    pub finding_type: String,
    /// How bad.
    pub severity: Severity,
    /// The tool's confidence, in ten-thousandths (0..=10000), kept exact for policy.
    pub confidence_bp: u16,
    /// The system holding the subject.
    pub subject_system: String,
    /// The subject's id in that system.
    pub subject_external_id: String,
    /// When the tool observed it.
    pub observed_at: Timestamp,
    /// The digest of the finding exactly as received (stored as evidence).
    pub evidence: Sha256Digest,
    /// The idempotency key the source gave (or one derived from the evidence).
    pub idempotency_key: String,
}
