//! Approvals and rejections, with separation of duties.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{ApprovalId, ChangeId};

/// An approver's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead.
    Approve,
    /// Do not.
    Reject,
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

/// Whether a set of approvals satisfies a requirement of `count` distinct approvers, none of
/// whom is the requester (separation of duties). Any rejection blocks.
pub fn approvals_satisfied(approvals: &[Approval], count: u32, requester: &str) -> bool {
    if approvals.iter().any(|a| a.verdict == Verdict::Reject) {
        return false;
    }
    let mut distinct: Vec<&str> = approvals
        .iter()
        .filter(|a| a.verdict == Verdict::Approve && a.approver != requester)
        .map(|a| a.approver.as_str())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() >= usize::try_from(count).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn approval(approver: &str, verdict: Verdict) -> Approval {
        Approval {
            id: ApprovalId(Uuid::nil()),
            change_id: ChangeId(Uuid::nil()),
            approver: approver.into(),
            verdict,
            rationale: "checked with the owner".into(),
            at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn requester_and_duplicates_do_not_count() {
        let list = [
            approval("alice", Verdict::Approve),
            approval("alice", Verdict::Approve),
            approval("bob", Verdict::Approve),
        ];
        assert!(!approvals_satisfied(&list, 2, "bob"));
        assert!(approvals_satisfied(&list, 2, "carol"));
        let rejected = [
            approval("alice", Verdict::Approve),
            approval("dave", Verdict::Reject),
        ];
        assert!(!approvals_satisfied(&rejected, 1, "carol"));
    }
}
