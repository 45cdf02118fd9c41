//! Approvals: one approver's recorded vote on a case's decision. Who may vote, and when the
//! votes are enough, is the state machine's business (`crate::workflow::CaseWorkflow`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::change::Action;
use crate::ids::{ApprovalId, ChangeId};

/// An approver's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead (recorded as `approval_granted`).
    Approve,
    /// No: the request ends (recorded as `change_rejected`).
    Reject,
}

/// What a vote is about, exactly: a vote counts only for the change it names. If the decision
/// is superseded, or the change queued differs in action, target or parameters, the vote does
/// not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBinding {
    /// The ledger entry of the decision it answers.
    pub decision_seq: u64,
    /// The bundle that made that decision.
    pub bundle_hash: Sha256Digest,
    /// The change's action, with its parameters (none when the vote answers a governance
    /// request that is not a change, such as an exception).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The target system.
    pub system: String,
    /// The subject in that system.
    pub external_id: String,
    /// The approver groups of the decision's rule the voter counted for when voting
    /// (`owner_team`, `team:security`, `role:admin`).
    pub groups: Vec<String>,
    /// Whether the vote answers a rollback of `action` (a `rollback_requested` decision)
    /// rather than the change itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The governance action the vote answers instead of the change (`accept_risk`: an
    /// exception), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// One approver's recorded verdict on a change, with their rationale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Its id.
    pub id: ApprovalId,
    /// The change it is about.
    pub change_id: ChangeId,
    /// Who decided.
    pub approver: String,
    /// Their verdict.
    pub verdict: Verdict,
    /// Why, in their words.
    pub rationale: String,
    /// When.
    pub at: Timestamp,
    /// The exact change voted on (absent in votes recorded before writ knew principals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<VoteBinding>,
}
