//! Write-back jobs: an approved change on its way into a target system.
//!
//! A job is projected from the ledger like cases are: every step (queued, intent recorded,
//! applied, verified, failed, rolled back) is an event carrying the job's new snapshot. The
//! intent is recorded before anything touches the target, so that after a crash the engine
//! knows what may have happened and can read the target to find out.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::change::Action;
use crate::ids::{CaseId, JobId};

/// Where a job stands.
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
pub enum JobState {
    /// Waiting for a worker (possibly until `next_attempt_at`).
    Queued,
    /// The plan and pre-image are recorded; the target may or may not have changed.
    Intent,
    /// The target accepted the change; not yet read back.
    Applied,
    /// Reading the target back confirmed the change.
    Verified,
    /// The change failed or did not verify: a human must look.
    Failed,
    /// The change was undone from the pre-image.
    RolledBack,
    /// Dry run: planned and recorded, never applied.
    Planned,
    /// A person asked to undo the verified change; recorded before the target is touched.
    RollbackIntent,
}

impl JobState {
    /// Whether a worker still has something to do.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Intent | JobState::Applied | JobState::RollbackIntent
        )
    }
}

/// A write-back job as projected from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The case it remediates.
    pub case_id: CaseId,
    /// The target system (a `[[targets]]` connector's system name).
    pub system: String,
    /// The object to change, in the target's terms.
    pub external_id: String,
    /// What to do.
    pub action: Action,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (backoff after a retryable failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// Plan and record only; never apply.
    #[serde(default)]
    pub dry_run: bool,
    /// The last failure, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the target accepted the change (for the per-system change cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Timestamp>,
    /// When the change ends by itself (a requested account's expiry, an agent's time-boxed
    /// access): once verified, the scheduler undoes it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// A rotation with cut-over: how far it has come (old and new key ids, where the new one
    /// went).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Box<crate::rotation::RotationRecord>>,
}

impl Job {
    /// A new job for `case_id`: `action` on `external_id` in `system`, queued now. The one
    /// place a job is made, whether policy allowed it automatically or approvals completed.
    pub fn queued(
        id: JobId,
        case_id: CaseId,
        system: &str,
        external_id: &str,
        action: Action,
        dry_run: bool,
    ) -> Self {
        Job {
            id,
            case_id,
            system: system.to_owned(),
            external_id: external_id.to_owned(),
            action,
            state: JobState::Queued,
            attempts: 0,
            next_attempt_at: None,
            dry_run,
            last_error: None,
            applied_at: None,
            expires_at: None,
            rotation: None,
        }
    }
}

/// The action a policy decision names, when it needs no parameters from a person.
pub fn action_from_name(name: &str) -> Option<Action> {
    match name {
        "disable" => Some(Action::Disable),
        "enable" => Some(Action::Enable),
        "delete" => Some(Action::Delete),
        "rotate" => Some(Action::Rotate),
        _ => None,
    }
}
