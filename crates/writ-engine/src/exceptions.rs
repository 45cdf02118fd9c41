//! Exceptions (risk acceptance) and the scheduler that acts on what cases owe by a time.
//!
//! A principal asks for an exception on a case; policy decides it as the action
//! `accept_risk` (the asker as principal, the case's identity, finding and source), its
//! `@max_days` bounding the expiry. On the asker's word it is in force at once; with approvals,
//! the case waits in `exception_requested` and the vote that completes the rule puts it in
//! force ([`WriteBack::vote`]). The asker never counts as an approver.
//!
//! The scheduler ([`WriteBack::run_deadlines`]) runs in the worker loop of every replica with
//! the injected clock. It reads the deadlines that fell due and records what each calls for;
//! every event rests on the case as read and has a key naming the deadline, so each deadline is
//! acted on once however many replicas race for it. At an exception's expiry the case reopens
//! and is decided again in the same transaction; at its renewal time re-approval is asked for.

use jiff::Timestamp;
use writ_core::case::CaseState;
use writ_core::decision::Tier;
use writ_core::event::{EventBody, ExceptionExpired, ExceptionRenewalDue, ExceptionRequested};
use writ_core::exception::{DeadlineKind, Exception, ExceptionState};
use writ_core::ids::{CaseId, ExceptionId};
use writ_core::principal::Principal;
use writ_store::{DueDeadline, ExceptionFilter};

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::Draft;
use crate::writeback::{
    STALE_RETRIES, WriteBack, WriteBackError, case_expectation, grant_exception, workflow_of,
};

/// An exception as a principal asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionAsk {
    /// Why the risk is accepted.
    pub justification: String,
    /// When it ends.
    pub expires_at: Timestamp,
    /// What makes up for the risk meanwhile (at least one).
    pub compensating_controls: Vec<String>,
    /// What will be done about it.
    pub follow_up: String,
}

/// What an exception request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionOutcome {
    /// Policy allowed it on the asker's word: it is in force.
    Granted(Exception),
    /// Policy asks for approvals first: the case waits in `exception_requested`.
    AwaitingApproval {
        /// The exception asked for.
        exception: Exception,
        /// The approval rule.
        rule: String,
        /// How many more approvals, at least.
        missing: u64,
        /// Why, as the decision says.
        reason: String,
    },
}

/// What one pass of the scheduler did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadlineReport {
    /// Exceptions that expired (their cases reopened and decided again).
    pub expired: usize,
    /// Renewals asked for.
    pub renewals: usize,
    /// Requested changes whose time was up (their end queued).
    pub access_ended: usize,
    /// Certifications whose campaign deadline came: closed on their answer, or overdue.
    pub certifications: usize,
    /// Deadlines that fell due but must wait (the case is busy, say a renewal pending).
    pub waiting: usize,
}

/// Deadlines acted on at most in one pass.
const DEADLINES_PER_PASS: u32 = 100;

impl WriteBack {
    /// Asks for an exception on `case_id` as `requester`. Policy decides it (`accept_risk`);
    /// the expiry must be in the future and within the policy's `@max_days` (a year when it
    /// sets none), and the justification, at least one compensating control and the follow-up
    /// must be given.
    pub async fn request_exception(
        &self,
        case_id: CaseId,
        requester: &Principal,
        ask: ExceptionAsk,
    ) -> Result<ExceptionOutcome, WriteBackError> {
        let policy = self.policy.clone().ok_or_else(|| {
            WriteBackError::Refused("no policy bundle is loaded to decide exceptions".into())
        })?;
        for _ in 0..STALE_RETRIES {
            let view = self.case_view(case_id).await?;
            let Some(decision_seq) = view.decision_seq else {
                return Err(WriteBackError::Refused(format!(
                    "case {case_id} has no decision: there is no risk to accept yet"
                )));
            };
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let evaluation = writ_policy::asked_evaluation(
                &recorded.evaluation,
                writ_policy::ACCEPT_RISK,
                &requester.name,
            )
            .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let decision = policy.replay(&evaluation).map_err(|err| {
                WriteBackError::Forbidden(format!("policy cannot decide an exception: {err}"))
            })?;
            if !matches!(decision.tier, Tier::Auto | Tier::Approval { .. }) {
                return Err(WriteBackError::Forbidden(format!(
                    "policy does not allow this exception: {}",
                    decision.reason
                )));
            }
            let now = self.clock.now();
            let mut exception = Exception {
                id: ExceptionId(self.ids.next_id(now)),
                case_id,
                requester: requester.name.clone(),
                justification: ask.justification.clone(),
                expires_at: ask.expires_at,
                compensating_controls: ask.compensating_controls.clone(),
                follow_up: ask.follow_up.clone(),
                renew_at: None,
            };
            exception
                .check(now, &decision.terms)
                .map_err(|problem| WriteBackError::Invalid {
                    field: problem.field.to_owned(),
                    message: problem.message,
                })?;
            let mut workflow = workflow_of(&view, &recorded);
            let mut case = view.case.clone();
            case.state = CaseState::ExceptionRequested;
            let body = EventBody::ExceptionRequested(ExceptionRequested {
                case: case.clone(),
                exception: exception.clone(),
                was: view.case.state,
                decision: decision.clone(),
                evaluation,
            });
            workflow
                .apply(case_id, &body)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let actor = actor_of(requester);
            let mut group = vec![Draft {
                policy_bundle: Some(decision.bundle_hash),
                expect: vec![case_expectation(&view)],
                ..Draft::new(
                    Some(case_id),
                    actor.clone(),
                    format!("exception:{}:requested", exception.id),
                    body,
                )
            }];
            let granted = workflow.may_grant_exception();
            if granted {
                group.push(grant_exception(&case, &exception, &mut workflow, &actor)?);
            }
            match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) if granted => return Ok(ExceptionOutcome::Granted(exception)),
                Ok(_) => {
                    return Ok(ExceptionOutcome::AwaitingApproval {
                        exception,
                        rule: workflow.rule().map(|r| r.to_string()).unwrap_or_default(),
                        missing: workflow.votes_missing(),
                        reason: decision.reason,
                    });
                }
            }
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing while the exception was recorded; try again"
        )))
    }

    /// Acts once on every deadline that has fallen due (up to a pass's worth): expires
    /// exceptions (the case reopens and is decided again) and asks for renewals. A deadline
    /// whose case is busy waits for a later pass.
    pub async fn run_deadlines(&self) -> Result<DeadlineReport, WriteBackError> {
        let mut report = DeadlineReport::default();
        let now = self.clock.now();
        for due in self.store.due_deadlines(now, DEADLINES_PER_PASS).await? {
            let acted = match due.kind {
                DeadlineKind::ExceptionExpiry => self.expire(&due).await?,
                DeadlineKind::ExceptionRenewal => self.ask_renewal(&due).await?,
                DeadlineKind::BypassReview | DeadlineKind::BypassEscalation => {
                    self.escalate(&due).await?
                }
                DeadlineKind::AccessExpiry => self.end_access(&due).await?,
                DeadlineKind::RotationGrace => self.delete_rotated(&due).await?,
                DeadlineKind::CertificationDue => self.certification_due(&due).await?,
            };
            match (acted, due.kind) {
                (false, _) => report.waiting += 1,
                (true, DeadlineKind::ExceptionExpiry) => report.expired += 1,
                (true, DeadlineKind::ExceptionRenewal) => report.renewals += 1,
                (true, DeadlineKind::AccessExpiry) => report.access_ended += 1,
                (true, DeadlineKind::CertificationDue) => report.certifications += 1,
                (true, _) => {}
            }
        }
        report.access_ended += self.revoke_on_criteria(DEADLINES_PER_PASS).await?;
        Ok(report)
    }

    /// The case's exception in force, if any.
    async fn active_exception(&self, case_id: CaseId) -> Result<Option<Exception>, WriteBackError> {
        Ok(self
            .store
            .exceptions(&ExceptionFilter {
                state: Some(ExceptionState::Active),
                case_id: Some(case_id),
                limit: Some(1),
                ..ExceptionFilter::default()
            })
            .await?
            .pop()
            .map(|view| view.exception))
    }

    /// Ends the case's exception: the case reopens and is decided again, in one group.
    async fn expire(&self, due: &DueDeadline) -> Result<bool, WriteBackError> {
        let view = self.case_view(due.case_id).await?;
        if view.case.state != CaseState::RiskAccepted {
            return Ok(false);
        }
        let Some(exception) = self.active_exception(due.case_id).await? else {
            return Ok(false);
        };
        let mut case = view.case.clone();
        case.state = CaseState::NeedsReview;
        let key = format!("exception:{}:expired", exception.id);
        let mut group = vec![Draft {
            expect: vec![case_expectation(&view)],
            ..Draft::new(
                Some(case.id),
                writ_core::workflow::ENGINE_ACTOR,
                key.clone(),
                EventBody::ExceptionExpired(ExceptionExpired {
                    case: case.clone(),
                    exception: exception.id,
                    expires_at: exception.expires_at,
                }),
            )
        }];
        if let Some(ingestor) = &self.ingestor
            && let Some(drafts) = ingestor
                .redecision(&mut case, &key)
                .await
                .map_err(|err| WriteBackError::Refused(err.to_string()))?
        {
            group.extend(drafts);
        }
        self.record_deadline(group).await
    }

    /// Asks for re-approval of the case's exception before it expires.
    async fn ask_renewal(&self, due: &DueDeadline) -> Result<bool, WriteBackError> {
        let Some(exception) = self.active_exception(due.case_id).await? else {
            return Ok(false);
        };
        let draft = Draft::new(
            Some(due.case_id),
            writ_core::workflow::ENGINE_ACTOR,
            format!("exception:{}:renewal-due", exception.id),
            EventBody::ExceptionRenewalDue(ExceptionRenewalDue {
                exception: exception.id,
                expires_at: exception.expires_at,
            }),
        );
        self.record_deadline(vec![draft]).await
    }

    /// Appends what a deadline calls for; `false` when the case changed meanwhile or the state
    /// machine refuses it now (a later pass tries again).
    pub(crate) async fn record_deadline(&self, group: Vec<Draft>) -> Result<bool, WriteBackError> {
        match self.append_group(group).await {
            Ok(_) => Ok(true),
            Err(WriteBackError::Stale(_) | WriteBackError::Refused(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
