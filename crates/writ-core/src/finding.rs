//! Findings: what analytics tools say about identities.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::ids::FindingId;

/// How bad the finding's tool says it is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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

/// The format a finding arrived in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SourceFormat {
    /// writ's own JSON.
    Native,
    /// OCSF Detection Finding (class_uid 2004) from any producer.
    Ocsf,
    /// Prowler's OCSF JSON output.
    Prowler,
    /// A detect-secrets baseline.
    DetectSecrets,
    /// A gitleaks JSON report.
    Gitleaks,
}

/// How much a findings source is trusted; policies can read it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Trust {
    /// Unvetted or experimental source.
    Low,
    /// Ordinary production scanner.
    Medium,
    /// Authoritative source.
    High,
}

/// What a finding is about, as the tool names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubjectRef {
    /// The system holding it (`aws:123456789012`, `postgres:billing`, `git:repo`).
    pub system: String,
    /// Its id in that system (`ci-deployer/AccessKey1`, `role/app`).
    pub external_id: String,
    /// What kind of identity the tool believes it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind_hint: Option<crate::identity::IdentityKind>,
}

/// What a tool reported about a check on a resource.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FindingStatus {
    /// A problem: it opens or joins a case.
    #[default]
    Fail,
    /// The check passes now: evidence that closes the compliance side of an open case about
    /// the same check and resource; it never opens a case.
    Pass,
}

impl FindingStatus {
    /// Whether this is the default, a problem.
    pub fn is_fail(&self) -> bool {
        *self == FindingStatus::Fail
    }
}

/// A finding as a format parser understands it, before writ authenticates, identifies,
/// resolves or decides anything. Never holds secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The format it came in.
    pub format: SourceFormat,
    /// What was found, as a stable type name (`iam_user_accesskey_unused`, `leaked_secret`).
    pub finding_type: String,
    /// How bad.
    pub severity: Severity,
    /// Confidence in ten-thousandths (0..=10000).
    pub confidence_bp: u16,
    /// The identity it is about.
    pub subject: SubjectRef,
    /// When the tool observed it, if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
    /// A one-line summary for people.
    pub title: String,
    /// The tool's own unique id for the finding, if it has one (used for idempotency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// OWASP NHI Top 10 tags the finding is evidence for (`NHI-02`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<String>,
    /// Format-specific details worth keeping (no secrets).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// A problem, or a pass of the check.
    #[serde(default, skip_serializing_if = "FindingStatus::is_fail")]
    pub status: FindingStatus,
}
