//! Rotation with cut-over: the record a `rotate` job carries while its steps go by. A new
//! credential is created and delivered where its consumers read it; the old one is deactivated
//! only once the consumers use the new one (or a human decides, when they never do by the
//! deadline); it is deleted after a grace period. Each step is recorded (on the job snapshot)
//! before the next is taken, so a crash resumes where it stopped, and the case links the old
//! key id, the new key id (never a secret) and where the new one went.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How far a rotation has come.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RotationStep {
    /// Planned: the old key is known; nothing is created yet.
    Planned,
    /// The new credential exists and is delivered; waiting for consumers to use it.
    Delivered,
    /// Consumers use the new credential: the old one may go.
    CutOver,
    /// The old credential is deactivated (the job is applied, then verified).
    OldDeactivated,
    /// Consumers never used the new credential by the deadline: a human decides; the old
    /// credential stays active so nothing breaks.
    Escalated,
    /// The old credential is deleted after the grace period: the rotation is complete.
    OldDeleted,
}

/// What a rotation has done so far, on its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationRecord {
    /// The step reached.
    pub step: RotationStep,
    /// The credential being replaced.
    pub old_key_id: String,
    /// The new credential's id, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_id: Option<String>,
    /// Where the new credential went (the secret its consumers read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The secret version holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// By when consumers must use the new credential, else a human is asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover_deadline: Option<Timestamp>,
    /// When the new credential was first seen in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_used_at: Option<Timestamp>,
    /// When the old credential is deleted (after the grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_old_at: Option<Timestamp>,
}

impl RotationRecord {
    /// A rotation of `old_key_id`, nothing done yet.
    pub fn planned(old_key_id: &str) -> Self {
        RotationRecord {
            step: RotationStep::Planned,
            old_key_id: old_key_id.to_owned(),
            new_key_id: None,
            secret_name: None,
            secret_version: None,
            delivered_at: None,
            cutover_deadline: None,
            new_key_used_at: None,
            delete_old_at: None,
        }
    }

    /// Whether the record links everything a closed rotation case must: the old key, the new
    /// key, where it went, and the old key gone.
    pub fn is_complete(&self) -> bool {
        self.step == RotationStep::OldDeleted
            && self.new_key_id.is_some()
            && self.secret_version.is_some()
    }
}
