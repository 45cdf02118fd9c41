//! Approvals: one approver's recorded vote on a case's decision. Who may vote, and when the
//! votes are enough, is the state machine's business (`crate::workflow::CaseWorkflow`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{ApprovalId, ChangeId};

/// An approver's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead. (Rejections come with the case lifecycle of issue 12; an `approval_granted`
    /// event can carry nothing else, so every recorded vote is an approval.)
    Approve,
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
}
