//! The workflow state machine: which event may follow which, for cases and for jobs.
//!
//! Every event that changes a case or a job carries the new snapshot of it. The functions here
//! say whether that change is a legal step from the state before, and they are the only path:
//! the engine asks [`CaseWorkflow::apply`] before it appends (with the read models' view of the
//! case), the sequencer asks [`case_transition`] and [`job_transition`] again as it projects a
//! batch (and refuses an illegal event), and `writ admin rebuild` replays the whole ledger
//! through them.
//!
//! Transitions are pure functions of `(state before, event body)`; nothing here reads a clock
//! or a database.

use std::collections::BTreeSet;

use crate::case::CaseState;
use crate::decision::{Decision, Tier};
use crate::event::{EventBody, EventKind};
use crate::ids::{CaseId, JobId};
use crate::job::JobState;

/// An event that the state before does not allow. Names the event and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} is not allowed here: {reason}")]
pub struct IllegalTransition {
    /// The event asked for.
    pub kind: EventKind,
    /// Why not, for people.
    pub reason: String,
}

fn illegal(kind: EventKind, reason: impl Into<String>) -> IllegalTransition {
    IllegalTransition {
        kind,
        reason: reason.into(),
    }
}

/// The state a case moves to when a decision is recorded for it.
///
/// - `reconciled`: whether the identity's source of truth is complete and fresh; if not, the
///   case goes to a human whatever the tier.
/// - `automatable`: for the auto tier, whether a job can be queued right away (the identity is
///   known and the action needs no parameters from a person); if not, a human looks.
pub fn decided_state(tier: &Tier, reconciled: bool, automatable: bool) -> CaseState {
    match (tier, reconciled) {
        (_, false) => CaseState::NeedsReview,
        (Tier::Auto, true) if automatable => CaseState::Remediating,
        (Tier::Auto, true) => CaseState::NeedsReview,
        (Tier::Approval { .. }, true) => CaseState::AwaitingApproval,
        (Tier::CaseOnly { freeze: true }, true) => CaseState::Frozen,
        (Tier::CaseOnly { freeze: false }, true) => CaseState::NeedsReview,
        (Tier::Deny, true) => CaseState::Denied,
    }
}

/// The case state after `body`, given the state before (`None`: the case does not exist yet).
/// Events that do not concern a case's state return `from` unchanged.
pub fn case_transition(
    from: Option<CaseState>,
    body: &EventBody,
) -> Result<Option<CaseState>, IllegalTransition> {
    use CaseState as S;
    use EventBody as B;
    let kind = body.kind();
    let to = body.case().map(|case| case.state);
    let expect = |allowed: &[CaseState], to: CaseState| match from {
        Some(state) if allowed.contains(&state) => Ok(Some(to)),
        Some(state) => Err(illegal(
            kind,
            format!("the case is {}, not {}", state_name(state), names(allowed)),
        )),
        None => Err(illegal(kind, "the case does not exist")),
    };
    let snapshot_is = |want: CaseState| match to {
        Some(to) if to == want => Ok(()),
        Some(to) => Err(illegal(
            kind,
            format!(
                "the case would become {}, not {}",
                state_name(to),
                state_name(want)
            ),
        )),
        None => Ok(()),
    };
    match body {
        B::IdentitySynced(_) | B::OwnershipImported(_) => Ok(from),
        B::FindingReceived(b) => match (&b.case, from) {
            (Some(_), None) => {
                snapshot_is(S::NeedsReview)?;
                Ok(Some(S::NeedsReview))
            }
            (Some(_), Some(_)) => Err(illegal(kind, "the case is already open")),
            (None, Some(state)) if state.is_open() => Ok(Some(state)),
            (None, Some(state)) => Err(illegal(
                kind,
                format!("a finding cannot join a {} case", state_name(state)),
            )),
            (None, None) => Err(illegal(kind, "the case does not exist")),
        },
        B::DecisionRecorded(b) => {
            let reconciled = b.routing.is_none();
            let allowed: &[CaseState] = match (&b.decision.tier, reconciled) {
                (_, false) => &[S::NeedsReview],
                (Tier::Auto, true) => &[S::Remediating, S::NeedsReview],
                (tier, true) => &[decided_state(tier, true, true)],
            };
            if !allowed.contains(&b.case.state) {
                return Err(illegal(
                    kind,
                    format!(
                        "a {} decision cannot leave the case {}",
                        tier_name(&b.decision.tier),
                        state_name(b.case.state)
                    ),
                ));
            }
            expect(&[S::NeedsReview], b.case.state)
        }
        B::ChangeRequested(b) => match &b.case {
            Some(_) => {
                snapshot_is(S::Remediating)?;
                expect(&[S::AwaitingApproval], S::Remediating)
            }
            None => expect(&[S::Remediating], S::Remediating),
        },
        B::ApprovalGranted(_) => expect(&[S::AwaitingApproval], S::AwaitingApproval),
        B::WriteBackIntent(_) | B::WriteBackApplied(_) => expect(&[S::Remediating], S::Remediating),
        B::WriteBackFailed(b) => match (&b.case, b.job.state) {
            (None, _) => match from {
                // A retry keeps the state: of the change, or of the rollback.
                Some(S::Remediated) if b.job.state == JobState::RollbackIntent => Ok(from),
                _ => expect(&[S::Remediating], S::Remediating),
            },
            (Some(_), _) => {
                snapshot_is(S::WriteBackFailed)?;
                expect(&[S::Remediating, S::Remediated], S::WriteBackFailed)
            }
        },
        B::WriteBackVerified(_) => {
            snapshot_is(S::Remediated)?;
            expect(&[S::Remediating], S::Remediated)
        }
        B::RollbackIntent(_) => expect(&[S::Remediated], S::Remediated),
        B::RolledBack(_) => {
            snapshot_is(S::RolledBack)?;
            expect(&[S::Remediated], S::RolledBack)
        }
    }
}

/// The job state after `body`, given the job's state before (`None`: no such job yet).
/// Events without a job snapshot return `from` unchanged.
pub fn job_transition(
    from: Option<JobState>,
    body: &EventBody,
) -> Result<Option<JobState>, IllegalTransition> {
    use EventBody as B;
    use JobState as J;
    let kind = body.kind();
    let Some(job) = body.job() else {
        return Ok(from);
    };
    let to = job.state;
    let allowed: &[(Option<JobState>, JobState)] = match body {
        B::ChangeRequested(_) => &[(None, J::Queued)],
        B::WriteBackIntent(_) => &[(Some(J::Queued), J::Intent), (Some(J::Queued), J::Planned)],
        B::WriteBackApplied(_) => &[(Some(J::Intent), J::Applied)],
        B::WriteBackVerified(_) => &[(Some(J::Applied), J::Verified)],
        B::WriteBackFailed(b) if b.retryable => &[
            (Some(J::Queued), J::Queued),
            (Some(J::Intent), J::Intent),
            (Some(J::Applied), J::Applied),
            (Some(J::RollbackIntent), J::RollbackIntent),
        ],
        B::WriteBackFailed(_) => &[
            (Some(J::Queued), J::Failed),
            (Some(J::Intent), J::Failed),
            (Some(J::Applied), J::Failed),
            (Some(J::RollbackIntent), J::Failed),
        ],
        B::RollbackIntent(_) => &[(Some(J::Verified), J::RollbackIntent)],
        B::RolledBack(_) => &[(Some(J::RollbackIntent), J::RolledBack)],
        B::FindingReceived(_)
        | B::IdentitySynced(_)
        | B::OwnershipImported(_)
        | B::DecisionRecorded(_)
        | B::ApprovalGranted(_) => &[],
    };
    if allowed.contains(&(from, to)) {
        Ok(Some(to))
    } else {
        Err(illegal(
            kind,
            format!(
                "a job cannot go from {} to {}",
                from.map_or("nothing", job_state_name),
                job_state_name(to)
            ),
        ))
    }
}

/// What the engine knows about one case when it asks whether an event may be appended: its
/// state, its current decision, the votes for that decision, and its live job. The engine builds
/// it from the read models (or by folding the case's events), then [`CaseWorkflow::apply`]s the
/// event it wants to append; the rules of governance live here, not in the services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseWorkflow {
    /// The case, once opened.
    pub case: Option<CaseId>,
    /// Its state.
    pub state: Option<CaseState>,
    /// The decision in force.
    pub decision: Option<Decision>,
    /// Whether that decision sent the case to a human (source of truth incomplete).
    pub routed_to_human: bool,
    /// Who has approved the decision in force.
    pub votes: BTreeSet<String>,
    /// The case's job and its state, if it has one.
    pub job: Option<(JobId, JobState)>,
}

/// Who may never approve a change: the engine asked for it.
pub const ENGINE_ACTOR: &str = "engine";

impl CaseWorkflow {
    /// Whether the decision in force lets a job be queued now: automatic, or its approvals are
    /// complete.
    pub fn may_queue(&self) -> bool {
        match self.decision.as_ref().map(|d| &d.tier) {
            Some(Tier::Auto) => !self.routed_to_human,
            Some(Tier::Approval { count, .. }) => {
                self.votes.len() >= usize::try_from(*count).unwrap_or(usize::MAX)
            }
            _ => false,
        }
    }

    /// How many more votes the decision in force needs (0 when none are needed or it is met).
    pub fn votes_missing(&self) -> u32 {
        match self.decision.as_ref().map(|d| &d.tier) {
            Some(Tier::Approval { count, .. }) => {
                count.saturating_sub(u32::try_from(self.votes.len()).unwrap_or(u32::MAX))
            }
            _ => 0,
        }
    }

    /// Whether the case's job is still in the worker's hands.
    pub fn has_live_job(&self) -> bool {
        self.job.is_some_and(|(_, state)| state.is_pending())
    }

    /// Applies `body` (appended to case `case_id`) if it is a legal step, and refuses it
    /// otherwise, leaving `self` unchanged.
    pub fn apply(&mut self, case_id: CaseId, body: &EventBody) -> Result<(), IllegalTransition> {
        use EventBody as B;
        let kind = body.kind();
        if let Some(case) = self.case
            && case != case_id
        {
            return Err(illegal(kind, "the event belongs to another case"));
        }
        if let Some(case) = body.case()
            && case.id != case_id
        {
            return Err(illegal(kind, "the snapshot is of another case"));
        }
        let state = case_transition(self.state, body)?;
        let job_before = match (body.job(), self.job) {
            (Some(job), Some((live, state))) if job.id == live => Some(state),
            (Some(job), Some((live, state))) => {
                if matches!(body, B::ChangeRequested(_)) && !state.is_pending() {
                    None
                } else {
                    return Err(illegal(
                        kind,
                        format!("job {} is not the case's job {live}", job.id),
                    ));
                }
            }
            _ => None,
        };
        let job_state = job_transition(job_before, body)?;
        match body {
            B::ChangeRequested(b) => {
                if b.job.case_id != case_id {
                    return Err(illegal(kind, "the job is for another case"));
                }
                if self.has_live_job() {
                    return Err(illegal(kind, "the case already has a live job"));
                }
                if !self.may_queue() {
                    return Err(illegal(
                        kind,
                        format!(
                            "the decision does not allow a change yet ({} more approval(s) needed)",
                            self.votes_missing()
                        ),
                    ));
                }
            }
            B::ApprovalGranted(b) => {
                let approver = b.approval.approver.as_str();
                if approver == ENGINE_ACTOR {
                    return Err(illegal(kind, "the engine cannot approve its own request"));
                }
                if !matches!(
                    self.decision.as_ref().map(|d| &d.tier),
                    Some(Tier::Approval { .. })
                ) {
                    return Err(illegal(kind, "the decision does not call for approvals"));
                }
                if self.votes.contains(approver) {
                    return Err(illegal(kind, format!("{approver} has already approved")));
                }
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "an approval needs a rationale"));
                }
            }
            _ => {}
        }
        // Legal: take the step.
        self.case = Some(case_id);
        self.state = state;
        match body {
            B::DecisionRecorded(b) => {
                self.decision = Some(b.decision.clone());
                self.routed_to_human = b.routing.is_some();
                self.votes.clear();
            }
            B::ApprovalGranted(b) => {
                self.votes.insert(b.approval.approver.clone());
            }
            _ => {}
        }
        if let (Some(job), Some(state)) = (body.job(), job_state) {
            self.job = Some((job.id, state));
        }
        Ok(())
    }
}

fn state_name(state: CaseState) -> &'static str {
    state.into()
}

fn job_state_name(state: JobState) -> &'static str {
    state.into()
}

fn names(states: &[CaseState]) -> String {
    states
        .iter()
        .map(|s| state_name(*s))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn tier_name(tier: &Tier) -> &'static str {
    match tier {
        Tier::Auto => "auto",
        Tier::Approval { .. } => "approval",
        Tier::CaseOnly { .. } => "case-only",
        Tier::Deny => "deny",
    }
}
