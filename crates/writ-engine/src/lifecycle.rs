//! The case lifecycle people drive: closing a case's compliance side with a rationale,
//! dismissing it as a false positive, and unfreezing work a `@freeze` decision held.
//!
//! Each is one ledger event by an authenticated principal, checked by the core state machine
//! ([`writ_core::workflow::CaseWorkflow::apply`]) from the case as read, and appended only if
//! the case has not changed since (a conditional append; a lost race is read and tried again).
//! Closures by a passing scan are recorded by the ingest pipeline, not here.
//!
//! An admin may also override an automated deny or case-only decision: never on the admin's
//! word alone, but with a rationale and the approval of a named principal holding the role
//! `risk_owner`, who accepts the residual risk; that approval queues the change like any other.

use writ_core::case::{Case, CaseState};
use writ_core::decision::Tier;
use writ_core::event::{CaseClosed, CaseDismissed, CaseUnfrozen, ClosureEvidence, EventBody};
use writ_core::ids::CaseId;
use writ_core::principal::Principal;
use writ_core::workflow::CaseWorkflow;
use writ_store::CaseView;

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::Draft;
use crate::writeback::{STALE_RETRIES, WriteBack, WriteBackError, case_expectation, workflow_of};

impl WriteBack {
    /// Closes `case_id`'s compliance side on `reviewer`'s word: the finding is closed, with
    /// the rationale as its evidence, and the case closes. Nothing may be under way (a queued
    /// or running job, a pending rollback, a freeze).
    pub async fn close(
        &self,
        case_id: CaseId,
        reviewer: &Principal,
        rationale: &str,
    ) -> Result<Case, WriteBackError> {
        self.case_step(case_id, reviewer, rationale, "close", |view, _, _| {
            let mut case = view.case.clone();
            case.state = CaseState::Closed;
            case.compliance_closed = true;
            Ok(EventBody::CaseClosed(CaseClosed {
                case,
                evidence: ClosureEvidence::Reviewer {
                    reviewer: reviewer.name.clone(),
                    rationale: rationale.to_owned(),
                },
            }))
        })
        .await
    }

    /// Dismisses `case_id` as a false positive, as `reviewer`: closed, nothing changed in the
    /// target. A case whose change is in effect must be rolled back first. Policy decides it
    /// (Cedar `dismiss`, when the bundle declares it): on the reviewer's word the case closes
    /// now; when it asks for a second person the case waits in `dismissal_requested` for that
    /// approval (the reviewer never counts); any other tier refuses. A bundle that does not
    /// declare `dismiss` leaves it to the reviewer.
    pub async fn dismiss(
        &self,
        case_id: CaseId,
        reviewer: &Principal,
        rationale: &str,
    ) -> Result<Case, WriteBackError> {
        let policy = self.policy.clone();
        self.case_steps(
            case_id,
            reviewer,
            rationale,
            "dismiss",
            |view, workflow, recorded| {
                let decided = match (&policy, recorded) {
                    (Some(policy), Some(recorded)) => {
                        let evaluation = writ_policy::asked_evaluation(
                            &recorded.evaluation,
                            writ_policy::DISMISS,
                            &reviewer.name,
                        )
                        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
                        match policy.replay(&evaluation) {
                            Ok(decision) => Some((decision, evaluation)),
                            Err(writ_policy::PolicyError::UndeclaredAction(_)) => None,
                            Err(err) => {
                                return Err(WriteBackError::Forbidden(format!(
                                    "policy cannot decide a dismissal: {err}"
                                )));
                            }
                        }
                    }
                    _ => None,
                };
                let Some((decision, evaluation)) = decided else {
                    // Nothing in the policy about dismissals: the reviewer's word.
                    return Ok(vec![dismissal(
                        &view.case,
                        &reviewer.name,
                        rationale,
                        workflow,
                    )?]);
                };
                if !matches!(decision.tier, Tier::Auto | Tier::Approval { .. }) {
                    return Err(WriteBackError::Forbidden(format!(
                        "policy does not allow this dismissal: {}",
                        decision.reason
                    )));
                }
                let mut case = view.case.clone();
                case.state = CaseState::DismissalRequested;
                let asked = EventBody::DismissalRequested(writ_core::event::DismissalRequested {
                    case: case.clone(),
                    reviewer: reviewer.name.clone(),
                    rationale: rationale.to_owned(),
                    was: view.case.state,
                    decision,
                    evaluation,
                });
                workflow
                    .apply(case_id, &asked)
                    .map_err(|err| WriteBackError::Refused(err.to_string()))?;
                let mut steps = vec![asked];
                if workflow.may_dismiss() {
                    steps.push(dismissal(&case, &reviewer.name, rationale, workflow)?);
                }
                Ok(steps)
            },
        )
        .await
    }

    /// Lets a frozen case go on where it stopped: its approvals wait again, its queued job is
    /// worked. A case its own decision froze goes to review.
    pub async fn unfreeze(
        &self,
        case_id: CaseId,
        by: &Principal,
        rationale: &str,
    ) -> Result<Case, WriteBackError> {
        let was = self.frozen_from(case_id).await?;
        self.case_step(case_id, by, rationale, "unfreeze", |view, _, _| {
            let mut case = view.case.clone();
            case.state = was;
            Ok(EventBody::CaseUnfrozen(CaseUnfrozen {
                case,
                by: by.name.clone(),
                rationale: rationale.to_owned(),
            }))
        })
        .await
    }

    /// Overrides `case_id`'s automated deny or case-only decision as `admin`, with a
    /// rationale, asking `risk_owner` (a principal with the role `risk_owner`, not `admin`) to
    /// accept the residual risk. The case waits for that approval; nothing changes before it.
    pub async fn request_override(
        &self,
        case_id: CaseId,
        admin: &Principal,
        rationale: &str,
        risk_owner: &str,
    ) -> Result<Case, WriteBackError> {
        // The case first: a missing case is a 404 whatever the body names.
        self.case_view(case_id).await?;
        let owner = writ_core::principal::canonical_name(risk_owner)
            .map_err(|err| WriteBackError::Refused(format!("risk_owner: {err}")))?;
        let holder = self.store.principal(&owner).await?.map(|v| v.principal);
        if !holder.is_some_and(|p| p.has_role(writ_core::principal::Role::RiskOwner)) {
            return Err(WriteBackError::Refused(format!(
                "risk_owner: {owner} is not an enabled principal holding the role risk_owner"
            )));
        }
        if owner == admin.name {
            return Err(WriteBackError::Forbidden(
                "who overrides cannot also accept the residual risk".into(),
            ));
        }
        let rationale_owned = rationale.to_owned();
        self.case_step(
            case_id,
            admin,
            rationale,
            "override",
            |view, _, recorded| {
                let Some(recorded) = recorded else {
                    return Err(WriteBackError::Refused(format!(
                        "case {case_id} has no decision to override"
                    )));
                };
                let overridden = recorded.decision.clone();
                let evaluation = recorded.evaluation.clone();
                let mut case = view.case.clone();
                case.state = CaseState::AwaitingApproval;
                let remediation = evaluation
                    .context
                    .pointer("/requested_action")
                    .and_then(|a| a.as_str())
                    .unwrap_or(&overridden.action)
                    .to_owned();
                let decision = writ_core::decision::Decision {
                    tier: writ_core::decision::Tier::Approval {
                        count: 1,
                        approver_group: "role:risk_owner".into(),
                    },
                    action: remediation,
                    bundle_hash: overridden.bundle_hash,
                    determining_policies: vec!["override".to_owned()],
                    reason: format!(
                        "{} overrode \"{}\": {}; {owner} must accept the residual risk",
                        admin.name, overridden.reason, rationale_owned
                    ),
                    terms: Default::default(),
                };
                Ok(EventBody::OverrideRequested(
                    writ_core::event::OverrideRequested {
                        case,
                        requester: admin.name.clone(),
                        rationale: rationale_owned.clone(),
                        risk_owner: owner.clone(),
                        overridden,
                        decision,
                        evaluation,
                    },
                ))
            },
        )
        .await
    }

    /// The state a frozen case returns to: the one its last `case_frozen` event recorded, or
    /// review when its own decision froze it.
    async fn frozen_from(&self, case_id: CaseId) -> Result<CaseState, WriteBackError> {
        let rows = self.store.case_entries(case_id).await?;
        for row in rows.iter().rev() {
            match entries::decode_body(row)? {
                EventBody::CaseFrozen(frozen) => return Ok(frozen.was),
                EventBody::DecisionRecorded(decided) if decided.case.state == CaseState::Frozen => {
                    return Ok(CaseState::NeedsReview);
                }
                _ => {}
            }
        }
        Ok(CaseState::NeedsReview)
    }

    /// Records the events `steps` makes of the case as read (each already applied to the
    /// workflow it is given, in order), by `principal`, as one group; reads again and retries
    /// when the case changed meanwhile. Returns the case as the last event leaves it.
    async fn case_steps(
        &self,
        case_id: CaseId,
        principal: &Principal,
        rationale: &str,
        name: &str,
        steps: impl Fn(
            &CaseView,
            &mut CaseWorkflow,
            Option<&entries::RecordedDecision>,
        ) -> Result<Vec<EventBody>, WriteBackError>,
    ) -> Result<Case, WriteBackError> {
        if rationale.trim().is_empty() {
            return Err(WriteBackError::Refused(format!(
                "to {name} a case needs a rationale"
            )));
        }
        for _ in 0..STALE_RETRIES {
            let view = self.case_view(case_id).await?;
            let recorded = match view.decision_seq {
                Some(seq) => Some(entries::recorded_decision_at(&*self.store, seq).await?),
                None => None,
            };
            let mut workflow = match &recorded {
                Some(recorded) => workflow_of(&view, recorded),
                None => CaseWorkflow {
                    case: Some(view.case.id),
                    state: Some(view.case.state),
                    job: view.job.as_ref().map(|j| (j.job.id, j.job.state)),
                    ..CaseWorkflow::default()
                },
            };
            let bodies = steps(&view, &mut workflow, recorded.as_ref())?;
            let case = bodies
                .iter()
                .rev()
                .find_map(|b| b.case().cloned())
                .ok_or_else(|| WriteBackError::Refused(format!("{name} records no case")))?;
            let actor = actor_of(principal);
            let group: Vec<Draft> = bodies
                .into_iter()
                .enumerate()
                .map(|(n, body)| Draft {
                    expect: if n == 0 {
                        vec![case_expectation(&view)]
                    } else {
                        Vec::new()
                    },
                    ..Draft::new(
                        Some(case_id),
                        actor.clone(),
                        match n {
                            0 => format!("{name}:{case_id}:{}", view.updated_seq),
                            n => format!("{name}:{case_id}:{}:{n}", view.updated_seq),
                        },
                        body,
                    )
                })
                .collect();
            match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) => return Ok(case),
            }
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing; try again"
        )))
    }

    /// Records the one event `step` makes of the case as read (given the decision in force as
    /// recorded, when there is one), by `principal`, after the state machine accepts it; reads
    /// again and retries when the case changed meanwhile.
    async fn case_step(
        &self,
        case_id: CaseId,
        principal: &Principal,
        rationale: &str,
        name: &str,
        step: impl Fn(
            &CaseView,
            &CaseWorkflow,
            Option<&entries::RecordedDecision>,
        ) -> Result<EventBody, WriteBackError>,
    ) -> Result<Case, WriteBackError> {
        self.case_steps(
            case_id,
            principal,
            rationale,
            name,
            |view, workflow, recorded| {
                let body = step(view, workflow, recorded)?;
                workflow
                    .apply(case_id, &body)
                    .map_err(|err| WriteBackError::Refused(err.to_string()))?;
                Ok(vec![body])
            },
        )
        .await
    }
}

/// The event that dismisses `case` as a false positive on `reviewer`'s rationale (checked with
/// `workflow`, which it advances): on the reviewer's word, or with the second person's
/// approval.
pub(crate) fn dismissal(
    case: &Case,
    reviewer: &str,
    rationale: &str,
    workflow: &mut CaseWorkflow,
) -> Result<EventBody, WriteBackError> {
    let mut closed = case.clone();
    closed.state = CaseState::Closed;
    closed.compliance_closed = true;
    let body = EventBody::CaseDismissed(CaseDismissed {
        case: closed,
        reviewer: reviewer.to_owned(),
        rationale: rationale.to_owned(),
    });
    workflow
        .apply(case.id, &body)
        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
    Ok(body)
}
