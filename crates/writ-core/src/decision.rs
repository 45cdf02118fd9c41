//! Policy decisions: what policy said may happen to a finding.

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;

/// The tier a decision lands in, evaluated in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Tier {
    /// The engine may apply the change without a human.
    Auto,
    /// The change needs approvals.
    Approval {
        /// How many distinct approvers.
        count: u32,
        /// The group they must belong to (for example `owner_team`).
        approver_group: String,
    },
    /// Only open a case; optionally freeze pending approvals on the identity.
    CaseOnly {
        /// Freeze approvals already pending.
        freeze: bool,
    },
    /// No change may be made.
    Deny,
}

/// A recorded decision, with everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The outcome.
    pub tier: Tier,
    /// The action the decision is about (for example `disable`).
    pub action: String,
    /// The hash of the policy bundle that decided.
    pub bundle_hash: Sha256Digest,
    /// The ids of the policies that determined the outcome; empty for a default deny.
    pub determining_policies: Vec<String>,
    /// Why, in words (for example "no permit matched").
    pub reason: String,
}

/// The exact inputs a decision was evaluated from. Re-evaluating it against the same bundle
/// (writ-policy's `PolicyBundle::replay`) gives the same [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The remediation action (`disable`); both `auto:disable` and `disable` are evaluated.
    pub action: String,
    /// The principal's Cedar uid (`Writ::Engine::"automation"`).
    pub principal: String,
    /// The resource's Cedar uid (`Writ::Identity::"<id>"`).
    pub resource: String,
    /// The entities, in Cedar's entities JSON format.
    pub entities: serde_json::Value,
    /// The context, in Cedar's context JSON format.
    pub context: serde_json::Value,
}
