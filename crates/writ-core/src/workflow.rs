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

use std::collections::{BTreeMap, BTreeSet};

use crate::approval::{Approval, Verdict};
use crate::approvers::{ApprovalRule, ApproverGroup};
use crate::case::CaseState;
use crate::decision::{Decision, Tier};
use crate::event::{EventBody, EventKind, ReviewVerdict};
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

/// The states a case can be closed from, with evidence: nothing under way (no queued or
/// running job, no pending rollback, not frozen).
pub const CLOSABLE: &[CaseState] = &[
    CaseState::NeedsReview,
    CaseState::AwaitingApproval,
    CaseState::RiskAccepted,
    CaseState::Remediated,
    CaseState::WriteBackFailed,
    CaseState::RolledBack,
    CaseState::Denied,
    CaseState::Rejected,
];

/// The states a case can be dismissed from as a false positive: nothing under way and no
/// change in effect (roll a verified change back first).
pub const DISMISSABLE: &[CaseState] = &[
    CaseState::NeedsReview,
    CaseState::AwaitingApproval,
    CaseState::RiskAccepted,
    CaseState::WriteBackFailed,
    CaseState::RolledBack,
    CaseState::Denied,
    CaseState::Rejected,
];

/// The states an exception can be asked for from: decided, nothing under way and no change in
/// effect (and, to renew it, an exception in force).
pub const EXCEPTABLE: &[CaseState] = &[
    CaseState::NeedsReview,
    CaseState::AwaitingApproval,
    CaseState::Denied,
    CaseState::Rejected,
    CaseState::WriteBackFailed,
    CaseState::RiskAccepted,
];

/// The states a break-glass change can be made from: decided, nothing under way, no change in
/// effect, not frozen.
pub const BREAKABLE: &[CaseState] = &[
    CaseState::NeedsReview,
    CaseState::AwaitingApproval,
    CaseState::Denied,
    CaseState::Rejected,
    CaseState::WriteBackFailed,
    CaseState::RiskAccepted,
];

/// The Cedar action a dismissal as a false positive is decided as.
pub const DISMISS_ACTION: &str = "dismiss";

/// The Cedar action a break-glass change is decided as.
pub const BREAK_GLASS_ACTION: &str = "break_glass";

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
    // A request recorded with the state it was made in: that must be the state now.
    let was_is = |was: CaseState| {
        if from == Some(was) {
            Ok(())
        } else {
            Err(illegal(
                kind,
                format!(
                    "the event says the case was {}, but it is {}",
                    state_name(was),
                    from.map_or("missing", state_name)
                ),
            ))
        }
    };
    // A governance request goes ahead on the asker's word or with approvals, never otherwise.
    let decided_to_go_ahead = |tier: &Tier, what: &str| {
        if matches!(tier, Tier::Auto | Tier::Approval { .. }) {
            Ok(())
        } else {
            Err(illegal(
                kind,
                format!("a {} decision allows no {what}", tier_name(tier)),
            ))
        }
    };
    match body {
        B::IdentitySynced(_)
        | B::SystemSynced(_)
        | B::PolicyBundleLoaded(_)
        | B::AutomationPaused(_)
        | B::AutomationResumed(_)
        | B::CampaignStarted(_)
        | B::OwnershipImported(_)
        | B::PrincipalCreated(_)
        | B::PrincipalChanged(_)
        | B::PrincipalDisabled(_)
        | B::TokenIssued(_)
        | B::TokenRevoked(_)
        | B::LedgerSealed(_) => Ok(from),
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
            // A case is decided again (a stronger finding joined it, or its identity became
            // known) only while nothing is under way: no job, no verified change.
            expect(
                &[S::NeedsReview, S::AwaitingApproval, S::Denied, S::Rejected],
                b.case.state,
            )
        }
        B::CaseClosed(b) => {
            snapshot_is(S::Closed)?;
            if !b.case.compliance_closed {
                return Err(illegal(kind, "a closure must close the compliance side"));
            }
            expect(CLOSABLE, S::Closed)
        }
        B::CaseDismissed(_) => {
            snapshot_is(S::Closed)?;
            match from {
                Some(S::DismissalRequested) => Ok(Some(S::Closed)),
                _ => expect(DISMISSABLE, S::Closed),
            }
        }
        B::DismissalRequested(b) => {
            snapshot_is(S::DismissalRequested)?;
            decided_to_go_ahead(&b.decision.tier, "dismissal")?;
            was_is(b.was)?;
            expect(DISMISSABLE, S::DismissalRequested)
        }
        B::CaseFrozen(b) => {
            snapshot_is(S::Frozen)?;
            was_is(b.was)?;
            expect(&[S::AwaitingApproval, S::Remediating], S::Frozen)
        }
        B::ExceptionRequested(b) => {
            snapshot_is(S::ExceptionRequested)?;
            decided_to_go_ahead(&b.decision.tier, "exception")?;
            was_is(b.was)?;
            expect(EXCEPTABLE, S::ExceptionRequested)
        }
        B::ExceptionGranted(_) => {
            snapshot_is(S::RiskAccepted)?;
            expect(&[S::ExceptionRequested], S::RiskAccepted)
        }
        B::ExceptionExpired(_) => {
            snapshot_is(S::NeedsReview)?;
            expect(&[S::RiskAccepted], S::NeedsReview)
        }
        B::BreakGlassUsed(b) => {
            snapshot_is(S::Remediating)?;
            if b.decision.tier != Tier::Auto {
                return Err(illegal(
                    kind,
                    "a break-glass change needs policy's leave on the asker's word (auto)",
                ));
            }
            was_is(b.was)?;
            expect(BREAKABLE, S::Remediating)
        }
        B::OverrideRequested(b) => {
            snapshot_is(S::AwaitingApproval)?;
            if !matches!(b.decision.tier, Tier::Approval { .. }) {
                return Err(illegal(
                    kind,
                    "an override waits for the risk owner's approval",
                ));
            }
            expect(&[S::Denied, S::NeedsReview], S::AwaitingApproval)
        }
        B::BypassReviewed(b) if b.remedy.is_some() => {
            snapshot_is(S::Remediating)?;
            expect(&[S::Remediated], S::Remediating)
        }
        B::BypassReviewed(_) | B::BypassReviewOverdue(_) => match from {
            Some(_) => Ok(from),
            None => Err(illegal(kind, "the case does not exist")),
        },
        B::ExceptionRenewalDue(_) => match from {
            Some(S::RiskAccepted | S::ExceptionRequested) => Ok(from),
            _ => expect(&[S::RiskAccepted], S::RiskAccepted),
        },
        // An unanswered certification at its deadline: the case as it was (waiting for an
        // answer), decided again by the decision that follows in the same transaction.
        B::CertificationOverdue(b) => {
            snapshot_is(from.unwrap_or(S::Closed))?;
            expect(&[S::AwaitingApproval, S::NeedsReview], b.case.state)
        }
        B::CaseUnfrozen(b) => {
            if !matches!(
                b.case.state,
                S::NeedsReview | S::AwaitingApproval | S::Remediating
            ) {
                return Err(illegal(
                    kind,
                    format!(
                        "unfreezing cannot leave the case {}",
                        state_name(b.case.state)
                    ),
                ));
            }
            expect(&[S::Frozen], b.case.state)
        }
        B::RequestSubmitted(b) => {
            if from.is_some() {
                return Err(illegal(kind, "the case is already open"));
            }
            let to = decided_state(&b.decision.tier, true, true);
            snapshot_is(to)?;
            Ok(Some(to))
        }
        B::AccessExpired(_) => {
            snapshot_is(S::Remediating)?;
            expect(&[S::Remediated], S::Remediating)
        }
        // A rotation's steps while it is applied (remediating) and, for the old key's
        // deletion after the grace period, once verified (remediated).
        B::RotationProgressed(_) => match from {
            Some(S::Remediating | S::Remediated) => Ok(from),
            _ => expect(&[S::Remediating, S::Remediated], S::Remediating),
        },
        B::ChangeRequested(b) => match &b.case {
            Some(_) => {
                snapshot_is(S::Remediating)?;
                expect(&[S::AwaitingApproval], S::Remediating)
            }
            None => expect(&[S::Remediating], S::Remediating),
        },
        B::ApprovalGranted(_) => match from {
            Some(S::RollbackRequested | S::ExceptionRequested | S::DismissalRequested) => Ok(from),
            _ => expect(&[S::AwaitingApproval], S::AwaitingApproval),
        },
        B::ChangeRejected(b) => match from {
            // A rejected rollback leaves the change in effect.
            Some(S::RollbackRequested) => {
                snapshot_is(S::Remediated)?;
                Ok(Some(S::Remediated))
            }
            // A rejected exception or dismissal leaves the case as it was before.
            Some(S::ExceptionRequested) if EXCEPTABLE.contains(&b.case.state) => {
                Ok(Some(b.case.state))
            }
            Some(S::DismissalRequested) if DISMISSABLE.contains(&b.case.state) => {
                Ok(Some(b.case.state))
            }
            _ => {
                snapshot_is(S::Rejected)?;
                expect(&[S::AwaitingApproval], S::Rejected)
            }
        },
        B::RollbackRequested(b) => {
            let to = match b.decision.tier {
                Tier::Auto => S::Remediated,
                Tier::Approval { .. } => S::RollbackRequested,
                _ => {
                    return Err(illegal(
                        kind,
                        format!(
                            "a {} decision allows no rollback",
                            tier_name(&b.decision.tier)
                        ),
                    ));
                }
            };
            snapshot_is(to)?;
            expect(&[S::Remediated], to)
        }
        B::WriteBackIntent(_) | B::WriteBackApplied(_) => expect(&[S::Remediating], S::Remediating),
        B::WriteBackFailed(b) => match (&b.case, b.job.state) {
            (None, _) => match from {
                // A retry keeps the state: of the change, or of the rollback.
                Some(S::Remediated | S::RollbackRequested)
                    if b.job.state == JobState::RollbackIntent =>
                {
                    Ok(from)
                }
                _ => expect(&[S::Remediating], S::Remediating),
            },
            (Some(_), _) => {
                snapshot_is(S::WriteBackFailed)?;
                expect(
                    &[S::Remediating, S::Remediated, S::RollbackRequested],
                    S::WriteBackFailed,
                )
            }
        },
        B::WriteBackVerified(_) => {
            snapshot_is(S::Remediated)?;
            expect(&[S::Remediating], S::Remediated)
        }
        // The intent carries no case snapshot: the case keeps its state until the outcome.
        B::RollbackIntent(_) => match from {
            Some(S::Remediated | S::RollbackRequested) => Ok(from),
            _ => expect(&[S::Remediated, S::RollbackRequested], S::Remediated),
        },
        B::RolledBack(_) => {
            snapshot_is(S::RolledBack)?;
            expect(&[S::Remediated, S::RollbackRequested], S::RolledBack)
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
        B::ChangeRequested(_) | B::AccessExpired(_) => &[(None, J::Queued)],
        B::RotationProgressed(_) => &[
            (Some(J::Intent), J::Intent),
            (Some(J::Verified), J::Verified),
        ],
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
        // From `verified` directly: rollbacks recorded before `rollback_intent` existed
        // (ledgers written by writ before schema 6), so that those ledgers still replay. The
        // engine always records the intent first now.
        B::RolledBack(_) => &[
            (Some(J::RollbackIntent), J::RolledBack),
            (Some(J::Verified), J::RolledBack),
        ],
        B::FindingReceived(_)
        | B::IdentitySynced(_)
        | B::OwnershipImported(_)
        | B::DecisionRecorded(_)
        | B::ApprovalGranted(_)
        | B::ChangeRejected(_)
        | B::RollbackRequested(_)
        | B::PrincipalCreated(_)
        | B::PrincipalChanged(_)
        | B::PrincipalDisabled(_)
        | B::TokenIssued(_)
        | B::TokenRevoked(_)
        | B::LedgerSealed(_)
        | B::CaseClosed(_)
        | B::CaseDismissed(_)
        | B::CaseFrozen(_)
        | B::CaseUnfrozen(_)
        | B::ExceptionRequested(_)
        | B::ExceptionGranted(_)
        | B::ExceptionExpired(_)
        | B::ExceptionRenewalDue(_)
        | B::BreakGlassUsed(_)
        | B::BypassReviewed(_)
        | B::BypassReviewOverdue(_)
        | B::OverrideRequested(_)
        | B::DismissalRequested(_)
        | B::RequestSubmitted(_)
        | B::SystemSynced(_)
        | B::PolicyBundleLoaded(_)
        | B::AutomationPaused(_)
        | B::AutomationResumed(_)
        | B::CampaignStarted(_)
        | B::CertificationOverdue(_) => &[],
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
    /// Who has approved the decision in force, each with the approver groups it counts for.
    /// The engine refreshes the groups from the principals before it queues a job (a
    /// principal removed from a team, or disabled, stops counting); replaying the ledger uses
    /// the groups recorded with each vote.
    pub votes: BTreeMap<String, BTreeSet<ApproverGroup>>,
    /// The case's job and its state, if it has one.
    pub job: Option<(JobId, JobState)>,
    /// Who asked for the rollback or exception in force (a principal's name), when the
    /// decision in force is one's; never counted as an approver of it.
    pub requester: Option<String>,
    /// The state an exception request in force returns the case to when it is rejected.
    pub request_was: Option<CaseState>,
    /// How far the case's rotation has come, when its job is a rotation with cut-over: the
    /// case closes only once the rotation is complete (or a human was asked to decide).
    pub rotation: Option<crate::rotation::RotationStep>,
}

/// The Cedar action a rollback is decided as.
pub const ROLLBACK_ACTION: &str = "rollback";

/// The Cedar action an exception (a risk acceptance) is decided as.
pub const ACCEPT_RISK_ACTION: &str = "accept_risk";

/// Who may never approve a change: the engine asked for it.
pub const ENGINE_ACTOR: &str = "engine";

impl CaseWorkflow {
    /// The approval rule of the decision in force, when it calls for approvals.
    pub fn rule(&self) -> Option<ApprovalRule> {
        match self.decision.as_ref().map(|d| &d.tier) {
            Some(Tier::Approval {
                count,
                approver_group,
            }) => Some(ApprovalRule::from_recorded(*count, approver_group)),
            _ => None,
        }
    }

    /// Whether the decision in force is a rollback's.
    pub fn rollback_in_force(&self) -> bool {
        self.in_force(ROLLBACK_ACTION)
    }

    /// Whether the decision in force is an exception's.
    pub fn exception_in_force(&self) -> bool {
        self.in_force(ACCEPT_RISK_ACTION)
    }

    /// Whether the decision in force is a dismissal's.
    pub fn dismissal_in_force(&self) -> bool {
        self.in_force(DISMISS_ACTION)
    }

    /// Whether the decision in force lets the dismissal asked for go ahead now: automatic, or
    /// with its approval rule met.
    pub fn may_dismiss(&self) -> bool {
        self.dismissal_in_force() && self.goes_ahead(true)
    }

    /// Whether the decision in force lets the exception asked for be granted now: an
    /// exception's decision, automatic or with its approval rule met.
    pub fn may_grant_exception(&self) -> bool {
        self.exception_in_force() && self.goes_ahead(true)
    }

    /// Whether the decision in force lets the verified change be rolled back now: a rollback
    /// decision, automatic or with its approval rule met.
    pub fn may_roll_back(&self) -> bool {
        self.rollback_in_force() && self.goes_ahead(true)
    }

    /// Whether the decision in force lets a job be queued now: automatic, or its approval rule
    /// is met by the votes (each voter counting once, in a group it belongs to).
    pub fn may_queue(&self) -> bool {
        let governance =
            self.rollback_in_force() || self.exception_in_force() || self.dismissal_in_force();
        !governance && self.goes_ahead(!self.routed_to_human)
    }

    /// Puts `decision` in force: earlier votes stop counting; `requester` (who asked, never
    /// an approver of it) and `was` (where a rejection returns the case) are the request's.
    fn decide(&mut self, decision: &Decision, requester: Option<&str>, was: Option<CaseState>) {
        self.decision = Some(decision.clone());
        self.routed_to_human = false;
        self.votes.clear();
        self.requester = requester.map(str::to_owned);
        self.request_was = was;
    }

    /// Whether the decision in force is about `action`.
    fn in_force(&self, action: &str) -> bool {
        self.decision.as_ref().is_some_and(|d| d.action == action)
    }

    /// Whether the decision in force lets what it decides go ahead now: automatic (when `auto`
    /// allows it), or with its approval rule met by the votes.
    fn goes_ahead(&self, auto: bool) -> bool {
        match self.decision.as_ref().map(|d| &d.tier) {
            Some(Tier::Auto) => auto,
            Some(Tier::Approval { .. }) => self.rule().is_some_and(|rule| rule.is_met(&self.votes)),
            _ => false,
        }
    }

    /// How many more votes the decision in force needs, at least (0 when none are needed or
    /// the rule is met).
    pub fn votes_missing(&self) -> u64 {
        self.rule().map_or(0, |rule| rule.missing(&self.votes))
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
                if matches!(body, B::ChangeRequested(_) | B::AccessExpired(_))
                    && !state.is_pending()
                {
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
                self.check_vote(kind, &b.approval, &b.rationale, Verdict::Approve)?;
                if self.votes.contains_key(&b.approval.approver) {
                    return Err(illegal(
                        kind,
                        format!("{} has already approved", b.approval.approver),
                    ));
                }
            }
            B::ChangeRejected(b) => {
                self.check_vote(kind, &b.approval, &b.rationale, Verdict::Reject)?;
                if matches!(
                    self.state,
                    Some(CaseState::ExceptionRequested | CaseState::DismissalRequested)
                ) && self.request_was != Some(b.case.state)
                {
                    return Err(illegal(
                        kind,
                        "a rejected request returns the case to the state it was in",
                    ));
                }
            }
            B::RollbackRequested(b) => {
                if b.decision.action != ROLLBACK_ACTION {
                    return Err(illegal(kind, "the decision is not a rollback's"));
                }
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "a rollback needs a rationale"));
                }
                match self.job {
                    Some((live, JobState::Verified)) if live == b.job => {}
                    _ => {
                        return Err(illegal(
                            kind,
                            format!("job {} has no verified change to undo", b.job),
                        ));
                    }
                }
            }
            B::RequestSubmitted(b) if b.decision.action != b.request.change.name() => {
                return Err(illegal(
                    kind,
                    "the decision is not about the change the request makes",
                ));
            }
            B::AccessExpired(b) => {
                if b.job.case_id != case_id {
                    return Err(illegal(kind, "the job is for another case"));
                }
                if self.job != Some((b.ended, JobState::Verified)) {
                    return Err(illegal(
                        kind,
                        format!("job {} is not the case's verified change", b.ended),
                    ));
                }
            }
            B::ExceptionRequested(b) => {
                if b.decision.action != ACCEPT_RISK_ACTION {
                    return Err(illegal(kind, "the decision is not an exception's"));
                }
                if b.exception.case_id != case_id {
                    return Err(illegal(kind, "the exception is for another case"));
                }
            }
            B::BreakGlassUsed(b) => {
                if b.decision.action != BREAK_GLASS_ACTION {
                    return Err(illegal(kind, "the decision is not a break-glass's"));
                }
                if b.reason.trim().is_empty() || b.incident.trim().is_empty() {
                    return Err(illegal(
                        kind,
                        "a break-glass change needs a reason and an incident",
                    ));
                }
                if self.has_live_job() {
                    return Err(illegal(kind, "the case's job is still under way"));
                }
            }
            B::OverrideRequested(b) => {
                let overridable = self.decision.as_ref().is_some_and(|d| {
                    matches!(d.tier, Tier::Deny | Tier::CaseOnly { .. }) && *d == b.overridden
                });
                if !overridable {
                    return Err(illegal(
                        kind,
                        "only the automated deny or case-only decision in force can be overridden",
                    ));
                }
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "an override needs a rationale"));
                }
                if b.requester == b.risk_owner {
                    return Err(illegal(
                        kind,
                        "who overrides cannot also accept the residual risk",
                    ));
                }
            }
            B::BypassReviewed(b) => {
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "a review needs a rationale"));
                }
                if b.reviewer == b.by {
                    return Err(illegal(kind, "who used the break-glass cannot review it"));
                }
                if let Some(remedy) = &b.remedy {
                    if b.verdict != ReviewVerdict::Rejected || remedy.decision.tier != Tier::Auto {
                        return Err(illegal(
                            kind,
                            "only a rejecting review decides a change, on its own word (auto)",
                        ));
                    }
                    if !matches!(self.job, Some((_, JobState::Verified))) {
                        return Err(illegal(kind, "the case has no verified change to redo"));
                    }
                }
            }
            B::ExceptionGranted(b) => {
                if !self.may_grant_exception() {
                    return Err(illegal(
                        kind,
                        if self.exception_in_force() {
                            format!(
                                "the exception is not approved yet ({} more approval(s) needed)",
                                self.votes_missing()
                            )
                        } else {
                            "no exception was requested and decided".to_owned()
                        },
                    ));
                }
                if self.requester.as_deref() != Some(b.exception.requester.as_str()) {
                    return Err(illegal(kind, "the exception is not the one requested"));
                }
            }
            B::DecisionRecorded(_) if self.has_live_job() => {
                return Err(illegal(kind, "the case's job is still under way"));
            }
            B::CaseClosed(_)
                if self.rotation.is_some_and(|step| {
                    !matches!(
                        step,
                        crate::rotation::RotationStep::OldDeleted
                            | crate::rotation::RotationStep::Escalated
                    )
                }) =>
            {
                return Err(illegal(
                    kind,
                    "the rotation is not complete: the old key id, the new key id and the rotation record are not all linked yet",
                ));
            }
            B::CaseClosed(b) => {
                if let crate::event::ClosureEvidence::Reviewer { rationale, .. } = &b.evidence
                    && rationale.trim().is_empty()
                {
                    return Err(illegal(kind, "a closure needs a rationale"));
                }
                if let crate::event::ClosureEvidence::Certification {
                    answer,
                    answered_by,
                    rationale,
                    ..
                } = &b.evidence
                {
                    use crate::campaign::Answer;
                    if answered_by.is_empty() || rationale.trim().is_empty() {
                        return Err(illegal(
                            kind,
                            "a certification closes on who answered and why",
                        ));
                    }
                    match (answer, self.state) {
                        (Answer::Certify, Some(CaseState::Rejected))
                        | (Answer::Revoke, Some(CaseState::Remediated)) => {}
                        _ => {
                            return Err(illegal(
                                kind,
                                "a certification closes a certified (rejected) or revoked (remediated) case",
                            ));
                        }
                    }
                }
            }
            B::CaseDismissed(b) => {
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "a dismissal needs a rationale"));
                }
                if self.state == Some(CaseState::DismissalRequested) && !self.may_dismiss() {
                    return Err(illegal(
                        kind,
                        format!(
                            "the dismissal is not approved yet ({} more approval(s) needed)",
                            self.votes_missing()
                        ),
                    ));
                }
            }
            B::DismissalRequested(b) => {
                if b.decision.action != DISMISS_ACTION {
                    return Err(illegal(kind, "the decision is not a dismissal's"));
                }
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "a dismissal needs a rationale"));
                }
            }
            B::CaseFrozen(_)
                if self.state == Some(CaseState::Remediating)
                    && !matches!(self.job, Some((_, JobState::Queued))) =>
            {
                return Err(illegal(
                    kind,
                    "only a queued job can be frozen; this one is already being applied",
                ));
            }
            B::CaseUnfrozen(b) => {
                if b.rationale.trim().is_empty() {
                    return Err(illegal(kind, "unfreezing needs a rationale"));
                }
                match b.case.state {
                    CaseState::Remediating if !matches!(self.job, Some((_, JobState::Queued))) => {
                        return Err(illegal(kind, "the case has no queued job to go on with"));
                    }
                    CaseState::AwaitingApproval if self.rule().is_none() => {
                        return Err(illegal(
                            kind,
                            "the decision in force does not call for approvals",
                        ));
                    }
                    _ => {}
                }
            }
            B::RollbackIntent(_) if !self.may_roll_back() => {
                return Err(illegal(
                    kind,
                    if self.rollback_in_force() {
                        format!(
                            "the rollback is not approved yet ({} more approval(s) needed)",
                            self.votes_missing()
                        )
                    } else {
                        "no rollback was requested and decided".to_owned()
                    },
                ));
            }
            _ => {}
        }
        // Legal: take the step.
        self.case = Some(case_id);
        self.state = state;
        match body {
            B::DecisionRecorded(b) => {
                self.decide(&b.decision, None, None);
                self.routed_to_human = b.routing.is_some();
            }
            B::ExceptionRequested(b) => {
                self.decide(&b.decision, Some(&b.exception.requester), Some(b.was));
            }
            B::OverrideRequested(b) => self.decide(&b.decision, Some(&b.requester), None),
            B::DismissalRequested(b) => self.decide(&b.decision, Some(&b.reviewer), Some(b.was)),
            B::BreakGlassUsed(b) => self.decide(&b.decision, Some(&b.by), None),
            B::BypassReviewed(b) => {
                if let Some(remedy) = &b.remedy {
                    self.decide(&remedy.decision, Some(&b.reviewer), None);
                }
            }
            B::RollbackRequested(b) => self.decide(&b.decision, Some(&b.requester), None),
            B::RequestSubmitted(b) => {
                self.decide(&b.decision, Some(&b.request.requester), None);
            }
            B::ApprovalGranted(b) => {
                let groups = self.recorded_groups(&b.approval);
                self.votes.insert(b.approval.approver.clone(), groups);
            }
            _ => {}
        }
        if let (Some(job), Some(state)) = (body.job(), job_state) {
            self.job = Some((job.id, state));
            self.rotation = job.rotation.as_ref().map(|r| r.step);
        }
        Ok(())
    }
}

impl CaseWorkflow {
    /// The rules every vote keeps, approval or rejection: not the engine, a rationale, a
    /// decision that calls for approvals, the verdict the event says, and (when the vote is
    /// bound) bound to the decision in force and counting for one of its groups.
    fn check_vote(
        &self,
        kind: EventKind,
        approval: &Approval,
        rationale: &str,
        verdict: Verdict,
    ) -> Result<(), IllegalTransition> {
        if approval.approver == ENGINE_ACTOR {
            return Err(illegal(kind, "the engine cannot approve its own request"));
        }
        if self.requester.as_deref() == Some(approval.approver.as_str()) {
            return Err(illegal(
                kind,
                "the requester cannot vote on its own request",
            ));
        }
        if approval.verdict != verdict {
            return Err(illegal(kind, "the vote's verdict does not match the event"));
        }
        let Some(rule) = self.rule() else {
            return Err(illegal(kind, "the decision does not call for approvals"));
        };
        if rationale.trim().is_empty() {
            return Err(illegal(kind, "a vote needs a rationale"));
        }
        if let (Some(binding), Some(decision)) = (&approval.binding, &self.decision) {
            let bound_action = match (&binding.request, binding.rollback, &binding.action) {
                (Some(request), _, _) => request.as_str(),
                (None, true, _) => ROLLBACK_ACTION,
                (None, false, Some(action)) => action.name(),
                (None, false, None) => "",
            };
            if binding.bundle_hash != decision.bundle_hash || bound_action != decision.action {
                return Err(illegal(
                    kind,
                    "the vote is bound to another decision than the one in force",
                ));
            }
            let known: BTreeSet<String> =
                rule.quorums.iter().map(|q| q.group.to_string()).collect();
            if binding.groups.is_empty() || binding.groups.iter().any(|g| !known.contains(g)) {
                return Err(illegal(
                    kind,
                    format!("the voter counts for no group of the rule \"{rule}\""),
                ));
            }
        }
        Ok(())
    }

    /// The groups a recorded vote counts for: those it names, or, for a vote recorded before
    /// votes were bound (single-group rules only), every group of the rule.
    fn recorded_groups(&self, approval: &Approval) -> BTreeSet<ApproverGroup> {
        let Some(rule) = self.rule() else {
            return BTreeSet::new();
        };
        match &approval.binding {
            Some(binding) => rule
                .quorums
                .iter()
                .filter(|q| binding.groups.contains(&q.group.to_string()))
                .map(|q| q.group.clone())
                .collect(),
            None => rule.quorums.iter().map(|q| q.group.clone()).collect(),
        }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::change::{Action, ApplyOutcome, ObjectState, Plan, Reversibility};
    use crate::event::{
        ApprovalGranted, ChangeRejected, ChangeRequested, ReadBack, RollbackIntent, RolledBack,
        WriteBackApplied, WriteBackFailed, WriteBackIntent, WriteBackVerified,
    };
    use crate::example;
    use crate::ids::{ApprovalId, ChangeId};
    use crate::job::Job;

    /// What a person, the policy or the worker may try next.
    #[derive(Debug, Clone, Copy)]
    enum Command {
        Open,
        Join,
        Decide(u8),
        Approve(u8),
        Reject,
        Queue,
        NewJob,
        Intent,
        Applied,
        Verified,
        Retry,
        Fail,
        RollbackIntent,
        RolledBack,
        RequestRollback(u8),
        Close(bool),
        Dismiss,
        Freeze,
        Unfreeze(u8),
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            Just(Command::Open),
            Just(Command::Join),
            (0u8..6).prop_map(Command::Decide),
            (0u8..4).prop_map(Command::Approve),
            Just(Command::Reject),
            Just(Command::Queue),
            Just(Command::NewJob),
            Just(Command::Intent),
            Just(Command::Applied),
            Just(Command::Verified),
            Just(Command::Retry),
            Just(Command::Fail),
            Just(Command::RollbackIntent),
            Just(Command::RolledBack),
            (0u8..3).prop_map(Command::RequestRollback),
            any::<bool>().prop_map(Command::Close),
            Just(Command::Dismiss),
            Just(Command::Freeze),
            (0u8..3).prop_map(Command::Unfreeze),
        ]
    }

    /// The requester of every rollback the tests ask for: also an approver, so that its own
    /// vote must be refused.
    const ROLLBACK_REQUESTER: &str = "approver-0";

    fn rollback_tier(n: u8) -> Tier {
        match n {
            0 => Tier::Auto,
            1 => Tier::Approval {
                count: 2,
                approver_group: "security".into(),
            },
            _ => Tier::Deny,
        }
    }

    fn tier(n: u8) -> Tier {
        match n {
            0 => Tier::Auto,
            1 => example::one_owner_approval(),
            2 => Tier::Approval {
                count: 2,
                approver_group: "security".into(),
            },
            3 => Tier::CaseOnly { freeze: true },
            4 => Tier::CaseOnly { freeze: false },
            _ => Tier::Deny,
        }
    }

    fn plan() -> Plan {
        Plan {
            external_id: "svc-1".into(),
            action: Action::Disable,
            pre_image: ObjectState {
                external_id: "svc-1".into(),
                exists: true,
                attributes: serde_json::Value::Null,
            },
            reversibility: Reversibility::Reversible,
        }
    }

    /// The body a command would append, built from what the model knows now (the case as it
    /// is, the newest job), with the snapshot states the command means to reach.
    fn body(command: Command, model: &Model) -> EventBody {
        let case_in = |state: CaseState| {
            let mut case = example::case(1);
            case.state = state;
            case
        };
        let job_in = |state: JobState| {
            let mut job = model.job.clone();
            job.state = state;
            job
        };
        let current = model.workflow.job.map_or(JobState::Queued, |(_, s)| s);
        match command {
            Command::Open => example::opened(1, "k", b"raw"),
            Command::Join => {
                let mut body = example::opened(1, "k2", b"raw");
                if let EventBody::FindingReceived(b) = &mut body {
                    b.case = None;
                }
                body
            }
            Command::Decide(n) => example::decided(1, tier(n)),
            Command::Approve(n) => EventBody::ApprovalGranted(ApprovalGranted {
                approval: Approval {
                    id: ApprovalId(uuid::Uuid::nil()),
                    change_id: ChangeId(uuid::Uuid::nil()),
                    approver: if n == 3 {
                        ENGINE_ACTOR.into()
                    } else {
                        format!("approver-{n}")
                    },
                    verdict: Verdict::Approve,
                    rationale: "ok".into(),
                    at: example::time(),
                    binding: None,
                },
                rationale: "ok".into(),
            }),
            Command::Reject => EventBody::ChangeRejected(ChangeRejected {
                approval: Approval {
                    id: ApprovalId(uuid::Uuid::nil()),
                    change_id: ChangeId(uuid::Uuid::nil()),
                    approver: "approver-9".into(),
                    verdict: Verdict::Reject,
                    rationale: "no".into(),
                    at: example::time(),
                    binding: None,
                },
                rationale: "no".into(),
                case: case_in(CaseState::Rejected),
            }),
            Command::Queue | Command::NewJob => EventBody::ChangeRequested(ChangeRequested {
                job: if matches!(command, Command::NewJob) {
                    model.next_job.clone()
                } else {
                    job_in(JobState::Queued)
                },
                case: (model.workflow.state == Some(CaseState::AwaitingApproval))
                    .then(|| case_in(CaseState::Remediating)),
            }),
            Command::Intent => EventBody::WriteBackIntent(WriteBackIntent {
                job: job_in(JobState::Intent),
                plan: plan(),
            }),
            Command::Applied => EventBody::WriteBackApplied(WriteBackApplied {
                job: job_in(JobState::Applied),
                outcome: ApplyOutcome::Applied,
            }),
            Command::Verified => EventBody::WriteBackVerified(WriteBackVerified {
                job: job_in(JobState::Verified),
                case: case_in(CaseState::Remediated),
                verification: ReadBack::Confirmed,
            }),
            Command::Retry => EventBody::WriteBackFailed(WriteBackFailed {
                job: job_in(current),
                case: None,
                retryable: true,
                error: "timeout".into(),
                held_by_guard: false,
                needs_attention: false,
            }),
            Command::Fail => EventBody::WriteBackFailed(WriteBackFailed {
                job: job_in(JobState::Failed),
                case: Some(case_in(CaseState::WriteBackFailed)),
                retryable: false,
                error: "refused".into(),
                held_by_guard: false,
                needs_attention: true,
            }),
            Command::RollbackIntent => EventBody::RollbackIntent(RollbackIntent {
                job: job_in(JobState::RollbackIntent),
                rationale: "undo".into(),
            }),
            Command::RequestRollback(n) => {
                let tier = rollback_tier(n);
                let state = match tier {
                    Tier::Approval { .. } => CaseState::RollbackRequested,
                    _ => CaseState::Remediated,
                };
                let EventBody::DecisionRecorded(decided) = example::decided(1, tier) else {
                    unreachable!("example::decided makes a decision_recorded body")
                };
                let mut decision = decided.decision;
                decision.action = ROLLBACK_ACTION.into();
                EventBody::RollbackRequested(crate::event::RollbackRequested {
                    case: case_in(state),
                    job: model.job.id,
                    decision,
                    evaluation: decided.evaluation,
                    requester: ROLLBACK_REQUESTER.into(),
                    rationale: "still needed".into(),
                })
            }
            Command::RolledBack => EventBody::RolledBack(RolledBack {
                job: job_in(JobState::RolledBack),
                case: case_in(CaseState::RolledBack),
                outcome: ApplyOutcome::Applied,
                rationale: "undo".into(),
            }),
            Command::Close(by_scan) => {
                let mut case = case_in(CaseState::Closed);
                case.compliance_closed = true;
                EventBody::CaseClosed(crate::event::CaseClosed {
                    case,
                    evidence: if by_scan {
                        crate::event::ClosureEvidence::Scan {
                            finding: crate::ids::FindingId(uuid::Uuid::nil()),
                            source: "prowler".into(),
                            title: "passes".into(),
                        }
                    } else {
                        crate::event::ClosureEvidence::Reviewer {
                            reviewer: "reviewer".into(),
                            rationale: "fixed by hand".into(),
                        }
                    },
                })
            }
            Command::Dismiss => EventBody::CaseDismissed(crate::event::CaseDismissed {
                case: case_in(CaseState::Closed),
                reviewer: "reviewer".into(),
                rationale: "false positive".into(),
            }),
            Command::Freeze => EventBody::CaseFrozen(crate::event::CaseFrozen {
                case: case_in(CaseState::Frozen),
                was: model.workflow.state.unwrap_or(CaseState::NeedsReview),
                by_case: example::case_id(2),
                reason: "compromise".into(),
            }),
            Command::Unfreeze(n) => EventBody::CaseUnfrozen(crate::event::CaseUnfrozen {
                case: case_in(match n {
                    0 => CaseState::NeedsReview,
                    1 => CaseState::AwaitingApproval,
                    _ => CaseState::Remediating,
                }),
                by: "admin".into(),
                rationale: "cleared".into(),
            }),
        }
    }

    struct Model {
        workflow: CaseWorkflow,
        job: Job,
        next_job: Job,
        /// Jobs and their states, from accepted events.
        jobs: Vec<(JobId, JobState)>,
        /// Whether each accepted job was queued with its approvals complete.
        queued_with_approvals: Vec<(JobId, bool)>,
        /// The rollback request in force: how many approvals it needs, and who gave them.
        rollback: Option<(usize, BTreeSet<String>)>,
    }

    impl Model {
        /// Nothing tried yet.
        fn new() -> Self {
            Model {
                workflow: CaseWorkflow::default(),
                job: job(1),
                next_job: job(2),
                jobs: Vec::new(),
                queued_with_approvals: Vec::new(),
                rollback: None,
            }
        }
    }

    fn job(n: u128) -> Job {
        Job::queued(
            JobId(uuid::Uuid::from_u128(n)),
            example::case_id(1),
            example::SYSTEM,
            "svc-1",
            Action::Disable,
            false,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever is tried, in any order: a frozen case never becomes remediated, no job is
        /// applied without the approvals the decision in force asked for, a case never has
        /// two live jobs, and a refused event leaves the workflow as it was.
        #[test]
        fn the_state_machine_keeps_its_promises(commands in proptest::collection::vec(command(), 1..60)) {
            let mut model = Model::new();
            let case_id = example::case_id(1);
            for command in commands {
                let body = body(command, &model);
                let before = model.workflow.clone();
                match model.workflow.apply(case_id, &body) {
                    Err(_) => prop_assert_eq!(&model.workflow, &before),
                    Ok(()) => {
                        let after = &model.workflow;
                        if matches!(before.state, Some(CaseState::Frozen | CaseState::Rejected)) {
                            prop_assert_ne!(after.state, Some(CaseState::Remediated));
                        }
                        // Frozen work is never applied; a closed case takes nothing more.
                        if before.state == Some(CaseState::Frozen) {
                            prop_assert!(
                                !matches!(body, EventBody::WriteBackIntent(_) | EventBody::WriteBackApplied(_)),
                                "frozen work went ahead"
                            );
                        }
                        prop_assert_ne!(before.state, Some(CaseState::Closed), "a closed case changed");
                        if matches!(body, EventBody::CaseUnfrozen(_)) {
                            prop_assert_eq!(before.state, Some(CaseState::Frozen));
                        }
                        if let EventBody::ChangeRequested(b) = &body {
                            let complete = match before.decision.as_ref().map(|d| &d.tier) {
                                Some(Tier::Auto) => true,
                                Some(Tier::Approval { count, .. }) => {
                                    before.votes.len() >= *count as usize
                                        && !before.votes.contains_key(ENGINE_ACTOR)
                                }
                                _ => false,
                            };
                            model.queued_with_approvals.push((b.job.id, complete));
                            if b.job.id == model.next_job.id {
                                model.job = model.next_job.clone();
                                let next = b.job.id.as_uuid().as_u128() + 1;
                                model.next_job = job(next);
                            }
                        }
                        match &body {
                            EventBody::DecisionRecorded(_) => model.rollback = None,
                            EventBody::RollbackRequested(b) => {
                                let needed = match &b.decision.tier {
                                    Tier::Approval { count, .. } => *count as usize,
                                    _ => 0,
                                };
                                model.rollback = Some((needed, BTreeSet::new()));
                            }
                            EventBody::ApprovalGranted(b) => {
                                if let Some((_, votes)) = model.rollback.as_mut() {
                                    prop_assert_ne!(&b.approval.approver, ROLLBACK_REQUESTER);
                                    votes.insert(b.approval.approver.clone());
                                }
                            }
                            // No rollback without a decided request and its approvals.
                            EventBody::RollbackIntent(_) => {
                                let approved = model.rollback.as_ref().is_some_and(
                                    |(needed, votes)| {
                                        votes.len() >= *needed && !votes.contains(ENGINE_ACTOR)
                                    },
                                );
                                prop_assert!(approved, "a rollback without its approvals");
                            }
                            _ => {}
                        }
                        if let EventBody::WriteBackApplied(b) = &body {
                            let queued = model
                                .queued_with_approvals
                                .iter()
                                .find(|(id, _)| *id == b.job.id);
                            prop_assert_eq!(queued.map(|(_, ok)| *ok), Some(true));
                        }
                        if let Some(job) = body.job() {
                            match model.jobs.iter_mut().find(|(id, _)| *id == job.id) {
                                Some(entry) => entry.1 = job.state,
                                None => model.jobs.push((job.id, job.state)),
                            }
                        }
                        let live = model.jobs.iter().filter(|(_, s)| s.is_pending()).count();
                        prop_assert!(live <= 1, "two live jobs: {:?}", model.jobs);
                    }
                }
            }
        }
    }

    #[test]
    fn tiers_decide_the_state() {
        assert_eq!(
            decided_state(&Tier::Auto, true, true),
            CaseState::Remediating
        );
        assert_eq!(
            decided_state(&Tier::Auto, true, false),
            CaseState::NeedsReview
        );
        assert_eq!(
            decided_state(&Tier::Auto, false, true),
            CaseState::NeedsReview
        );
        assert_eq!(
            decided_state(&example::one_owner_approval(), true, false),
            CaseState::AwaitingApproval
        );
        assert_eq!(
            decided_state(&Tier::CaseOnly { freeze: true }, true, true),
            CaseState::Frozen
        );
        assert_eq!(decided_state(&Tier::Deny, true, true), CaseState::Denied);
    }

    #[test]
    fn a_frozen_case_takes_no_write_back() {
        let mut workflow = CaseWorkflow::default();
        let case_id = example::case_id(1);
        workflow
            .apply(case_id, &example::opened(1, "k", b"raw"))
            .unwrap();
        workflow
            .apply(
                case_id,
                &example::decided(1, Tier::CaseOnly { freeze: true }),
            )
            .unwrap();
        assert_eq!(workflow.state, Some(CaseState::Frozen));
        let mut remediated = example::case(1);
        remediated.state = CaseState::Remediated;
        let mut verified = job(1);
        verified.state = JobState::Verified;
        let err = workflow
            .apply(
                case_id,
                &EventBody::WriteBackVerified(WriteBackVerified {
                    job: verified,
                    case: remediated,
                    verification: ReadBack::Confirmed,
                }),
            )
            .unwrap_err();
        assert!(err.reason.contains("frozen"), "{err}");
    }

    /// A case whose change (approved by one owner) is applied and verified.
    fn verified_change() -> Model {
        let case_id = example::case_id(1);
        let mut model = Model::new();
        for command in [
            Command::Open,
            Command::Decide(1),
            Command::Approve(1),
            Command::Queue,
            Command::Intent,
            Command::Applied,
            Command::Verified,
        ] {
            let body = body(command, &model);
            model.workflow.apply(case_id, &body).unwrap();
        }
        model
    }

    /// A verified change is rolled back only after a decided request, with the approvals that
    /// decision asks for, and never with the requester's own vote.
    #[test]
    fn a_rollback_needs_a_decided_request_and_its_approvals() {
        let case_id = example::case_id(1);
        let mut model = verified_change();
        assert_eq!(model.workflow.state, Some(CaseState::Remediated));
        let intent = body(Command::RollbackIntent, &model);
        let err = model.workflow.apply(case_id, &intent).unwrap_err();
        assert!(err.reason.contains("no rollback was requested"), "{err}");
        let denied = body(Command::RequestRollback(2), &model);
        assert!(model.workflow.apply(case_id, &denied).is_err());

        let request = body(Command::RequestRollback(1), &model);
        model.workflow.apply(case_id, &request).unwrap();
        assert_eq!(model.workflow.state, Some(CaseState::RollbackRequested));
        assert!(CaseState::RollbackRequested.is_operationally_remediated());
        let err = model
            .workflow
            .apply(case_id, &body(Command::Approve(0), &model))
            .unwrap_err();
        assert!(err.reason.contains("requester"), "{err}");
        model
            .workflow
            .apply(case_id, &body(Command::Approve(1), &model))
            .unwrap();
        let err = model.workflow.apply(case_id, &intent).unwrap_err();
        assert!(err.reason.contains("1 more approval"), "{err}");
        model
            .workflow
            .apply(case_id, &body(Command::Approve(2), &model))
            .unwrap();
        model.workflow.apply(case_id, &intent).unwrap();
        model
            .workflow
            .apply(case_id, &body(Command::RolledBack, &model))
            .unwrap();
        assert_eq!(model.workflow.state, Some(CaseState::RolledBack));
    }

    /// A rejecting review of a change that cannot be undone decides the change again (on its
    /// own word) and the case takes a new job; an upheld review decides nothing, and nothing is
    /// redone before the change is verified.
    #[test]
    fn a_rejecting_review_may_redo_a_verified_change() {
        let case_id = example::case_id(1);
        let mut model = verified_change();
        let EventBody::DecisionRecorded(decided) = example::decided(1, Tier::Auto) else {
            unreachable!()
        };
        let review = |verdict, tier: Tier| {
            let mut decision = decided.decision.clone();
            decision.tier = tier;
            EventBody::BypassReviewed(crate::event::BypassReviewed {
                reviewer: "bob".into(),
                by: "eve".into(),
                verdict,
                rationale: "the new secret was seen".into(),
                bypass_seq: 5,
                remedy: Some(crate::event::ReviewRemedy {
                    case: {
                        let mut case = example::case(1);
                        case.state = CaseState::Remediating;
                        case
                    },
                    decision,
                    evaluation: decided.evaluation.clone(),
                }),
            })
        };
        for wrong in [
            review(ReviewVerdict::Upheld, Tier::Auto),
            review(ReviewVerdict::Rejected, rollback_tier(1)),
        ] {
            assert!(model.workflow.clone().apply(case_id, &wrong).is_err());
        }
        let mut fresh = Model::new();
        fresh
            .workflow
            .apply(case_id, &body(Command::Open, &fresh))
            .unwrap();
        assert!(
            fresh
                .workflow
                .apply(case_id, &review(ReviewVerdict::Rejected, Tier::Auto))
                .is_err(),
            "nothing verified to redo"
        );
        model
            .workflow
            .apply(case_id, &review(ReviewVerdict::Rejected, Tier::Auto))
            .unwrap();
        assert_eq!(model.workflow.state, Some(CaseState::Remediating));
        assert!(model.workflow.may_queue());
        let again = body(Command::NewJob, &model);
        model.workflow.apply(case_id, &again).unwrap();
        assert!(model.workflow.has_live_job());
    }

    /// A rejected rollback leaves the change in effect.
    #[test]
    fn a_rejected_rollback_leaves_the_case_remediated() {
        let case_id = example::case_id(1);
        let mut model = verified_change();
        let request = body(Command::RequestRollback(1), &model);
        model.workflow.apply(case_id, &request).unwrap();
        let mut reject = body(Command::Reject, &model);
        if let EventBody::ChangeRejected(b) = &mut reject {
            b.case.state = CaseState::Remediated;
        }
        model.workflow.apply(case_id, &reject).unwrap();
        assert_eq!(model.workflow.state, Some(CaseState::Remediated));
        let intent = body(Command::RollbackIntent, &model);
        assert!(model.workflow.apply(case_id, &intent).is_err());
    }

    /// strum's names (the store's text columns) are serde's names (the ledger's).
    #[test]
    fn stored_names_are_serde_names() {
        use strum::VariantArray as _;
        for state in CaseState::VARIANTS {
            let name: &str = (*state).into();
            assert_eq!(serde_json::to_value(state).unwrap(), name);
        }
        for state in JobState::VARIANTS {
            let name: &str = (*state).into();
            assert_eq!(serde_json::to_value(state).unwrap(), name);
        }
        for kind in EventKind::VARIANTS {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
            assert_eq!(kind.name().parse::<EventKind>().unwrap(), *kind);
        }
        for v in crate::identity::Criticality::VARIANTS {
            let name: &str = (*v).into();
            assert_eq!(serde_json::to_value(v).unwrap(), name);
        }
        for v in crate::identity::IdentityKind::VARIANTS {
            let name: &str = (*v).into();
            assert_eq!(serde_json::to_value(v).unwrap(), name);
        }
        for v in crate::finding::Severity::VARIANTS {
            let name: &str = (*v).into();
            assert_eq!(serde_json::to_value(v).unwrap(), name);
        }
    }
}
