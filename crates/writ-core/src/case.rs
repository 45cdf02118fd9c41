//! Cases and their state machine.
//!
//! A case gathers the findings about one identity and one finding type while it is open. Its
//! operational state (is the risk closed?) and its compliance state (is the finding closed, with
//! evidence?) are tracked apart. [`CaseState::apply`] is the only way a state changes, so the
//! rules can be checked exhaustively.

use serde::{Deserialize, Serialize};

use crate::ids::{CaseId, IdentityId};

/// Where a case stands operationally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// A human must look at it before anything happens (incomplete source of truth, case-only tier).
    NeedsReview,
    /// Waiting for approvals.
    AwaitingApproval,
    /// Frozen: nothing may be approved or applied until someone unfreezes it.
    Frozen,
    /// A write-back is queued or running.
    Remediating,
    /// The change was applied and verified by reading the target back.
    Remediated,
    /// The write-back did not verify: a human must look.
    WriteBackFailed,
    /// The change was undone from its pre-image.
    RolledBack,
    /// The risk was accepted under an exception until it expires.
    RiskAccepted,
    /// Policy denied any change; the case stays for the record.
    Denied,
    /// Closed for good.
    Closed,
}

/// Something that moves a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseTransition {
    /// Policy requires approvals.
    RequireApproval,
    /// Policy or a human freezes the case.
    Freeze,
    /// A human lifts a freeze; the case returns to review.
    Unfreeze,
    /// Approvals are complete, or policy allows automation: queue the write-back.
    StartWriteBack,
    /// The target was read back and shows the change.
    Verified,
    /// The write-back failed or did not verify.
    WriteBackFailed,
    /// Retry a failed write-back.
    Retry,
    /// The change was undone.
    RolledBack,
    /// An approver rejected the change.
    Reject,
    /// An exception accepts the risk.
    AcceptRisk,
    /// An exception expired: the case needs review again.
    ExceptionExpired,
    /// Policy denies change.
    Deny,
    /// Close the case.
    Close,
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("case in state {from:?} cannot take transition {transition:?}")]
pub struct IllegalTransition {
    /// The state the case was in.
    pub from: CaseState,
    /// The transition asked for.
    pub transition: CaseTransition,
}

impl CaseState {
    /// The state after `transition`, or why it is not allowed.
    pub fn apply(self, transition: CaseTransition) -> Result<CaseState, IllegalTransition> {
        use CaseState as S;
        use CaseTransition as T;
        let next = match (self, transition) {
            (S::Closed, _) => None,
            (S::Frozen, T::Unfreeze) => Some(S::NeedsReview),
            (S::Frozen, T::Close) => Some(S::Closed),
            (S::Frozen, _) => None,
            (_, T::Freeze) => match self {
                S::Remediated | S::RolledBack | S::Denied => None,
                _ => Some(S::Frozen),
            },
            (S::NeedsReview, T::RequireApproval) => Some(S::AwaitingApproval),
            (S::NeedsReview | S::AwaitingApproval, T::StartWriteBack) => Some(S::Remediating),
            (S::NeedsReview | S::AwaitingApproval, T::Reject) => Some(S::NeedsReview),
            (S::NeedsReview | S::AwaitingApproval | S::WriteBackFailed, T::AcceptRisk) => {
                Some(S::RiskAccepted)
            }
            (S::NeedsReview, T::Deny) => Some(S::Denied),
            (S::Remediating, T::Verified) => Some(S::Remediated),
            (S::Remediating, T::WriteBackFailed) => Some(S::WriteBackFailed),
            (S::WriteBackFailed, T::Retry) => Some(S::Remediating),
            (S::Remediated | S::WriteBackFailed, T::RolledBack) => Some(S::RolledBack),
            (S::RiskAccepted, T::ExceptionExpired) => Some(S::NeedsReview),
            (
                S::Remediated | S::RolledBack | S::RiskAccepted | S::Denied | S::NeedsReview,
                T::Close,
            ) => Some(S::Closed),
            _ => None,
        };
        next.ok_or(IllegalTransition {
            from: self,
            transition,
        })
    }

    /// Whether new findings about the same identity and type join this case.
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Closed)
    }

    /// Whether the risk is closed operationally.
    pub fn is_operationally_remediated(self) -> bool {
        matches!(self, CaseState::Remediated)
    }
}

/// A case as projected from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Its id.
    pub id: CaseId,
    /// The identity it is about, if resolved.
    pub identity_id: Option<IdentityId>,
    /// The system and external id of the subject, as the findings named it.
    pub subject: String,
    /// The finding type that groups it.
    pub finding_type: String,
    /// Its operational state.
    pub state: CaseState,
    /// Whether the finding is closed for compliance, with evidence.
    pub compliance_closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATES: [CaseState; 10] = [
        CaseState::NeedsReview,
        CaseState::AwaitingApproval,
        CaseState::Frozen,
        CaseState::Remediating,
        CaseState::Remediated,
        CaseState::WriteBackFailed,
        CaseState::RolledBack,
        CaseState::RiskAccepted,
        CaseState::Denied,
        CaseState::Closed,
    ];
    const TRANSITIONS: [CaseTransition; 13] = [
        CaseTransition::RequireApproval,
        CaseTransition::Freeze,
        CaseTransition::Unfreeze,
        CaseTransition::StartWriteBack,
        CaseTransition::Verified,
        CaseTransition::WriteBackFailed,
        CaseTransition::Retry,
        CaseTransition::RolledBack,
        CaseTransition::Reject,
        CaseTransition::AcceptRisk,
        CaseTransition::ExceptionExpired,
        CaseTransition::Deny,
        CaseTransition::Close,
    ];

    proptest! {
        /// Whatever happens, a closed case stays closed, a frozen case can only be unfrozen or
        /// closed, and nothing reaches Remediated without passing through Remediating.
        #[test]
        fn state_machine_invariants(steps in proptest::collection::vec(0usize..TRANSITIONS.len(), 0..64)) {
            let mut state = CaseState::NeedsReview;
            for step in steps {
                let transition = TRANSITIONS[step];
                match state.apply(transition) {
                    Ok(next) => {
                        prop_assert!(state != CaseState::Closed);
                        if state == CaseState::Frozen {
                            prop_assert!(matches!(transition, CaseTransition::Unfreeze | CaseTransition::Close));
                        }
                        if next == CaseState::Remediated {
                            prop_assert_eq!(state, CaseState::Remediating);
                        }
                        state = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, state);
                    }
                }
            }
        }
    }

    #[test]
    fn every_state_but_closed_can_reach_closed() {
        for start in STATES {
            if start == CaseState::Closed {
                continue;
            }
            let mut frontier = vec![start];
            let mut seen = vec![start];
            while let Some(state) = frontier.pop() {
                for transition in TRANSITIONS {
                    if let Ok(next) = state.apply(transition)
                        && !seen.contains(&next)
                    {
                        seen.push(next);
                        frontier.push(next);
                    }
                }
            }
            assert!(
                seen.contains(&CaseState::Closed),
                "{start:?} cannot reach Closed"
            );
        }
    }
}
