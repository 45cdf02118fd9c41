//! Break-glass: an emergency change applied at once by a principal with the `break_glass`
//! role, where policy allows it (`auto:break_glass`, with the case's remediation as
//! `context.requested_action`), and its review after the fact.
//!
//! The event is an override (`break_glass_used`), not an approval: it names who, why and the
//! incident, and becomes the case's decision in force; the job follows in the same
//! transaction and the worker applies and verifies it like any other. The case then owes a
//! review by a deadline (the policy's `@review_within_hours`, else the configured default):
//! overdue, the scheduler escalates it (`bypass_review_overdue`, level 1), and again at twice
//! the time (level 2). A principal whose break-glass still owes its review cannot use
//! break-glass again. A review that rejects the change rolls it back through the engine (a
//! rollback decided by the review, then the intent the worker carries out). A change that
//! cannot be undone from its pre-image is not rolled back: a rotation is rotated again (the
//! review decides it, and the job follows in the same transaction), so the secret the
//! emergency produced is replaced; anything else irreversible is recorded as such.

use writ_core::case::CaseState;
use writ_core::change::{Action, Reversibility};
use writ_core::decision::{Decision, Terms, Tier};
use writ_core::event::{
    BreakGlassUsed, BypassReviewOverdue, BypassReviewed, ChangeRequested, EventBody, ReviewRemedy,
    ReviewVerdict, RollbackRequested,
};
use writ_core::ids::{CaseId, JobId};
use writ_core::job::{Job, JobState, action_from_name};
use writ_core::principal::Principal;
use writ_core::workflow::{ENGINE_ACTOR, ROLLBACK_ACTION};
use writ_store::DueDeadline;

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::Draft;
use crate::writeback::{
    STALE_RETRIES, Step, WriteBack, WriteBackError, case_expectation, rollback_intent, workflow_of,
};

/// What a review did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewOutcome {
    /// The verdict recorded.
    pub verdict: ReviewVerdict,
    /// The job being rolled back, when the review rejected a verified change.
    pub rollback: Option<JobId>,
    /// The new job that rotates again, when the review rejected a rotation (which cannot be
    /// rolled back).
    pub rotation: Option<JobId>,
    /// Whether the review rejected a change in effect that can be neither rolled back nor
    /// redone (a deletion): recorded, nothing changed.
    pub irreversible: bool,
}

impl WriteBack {
    /// Applies `case_id`'s remediation at once as `by` (who must hold the `break_glass` role:
    /// the server checks it), with a reason and an incident reference, where policy allows it.
    /// Returns the queued job; the worker applies and verifies it.
    pub async fn break_glass(
        &self,
        case_id: CaseId,
        by: &Principal,
        reason: &str,
        incident: &str,
    ) -> Result<Job, WriteBackError> {
        if reason.trim().is_empty() || incident.trim().is_empty() {
            return Err(WriteBackError::Invalid {
                field: if reason.trim().is_empty() {
                    "reason"
                } else {
                    "incident"
                }
                .to_owned(),
                message: "must not be blank".into(),
            });
        }
        let owing = self.store.unreviewed_bypasses_of(&by.name).await?;
        if let Some(case) = owing.first() {
            return Err(WriteBackError::Forbidden(format!(
                "{} used break-glass on case {case}, which still owes its review; no more until it is reviewed",
                by.name
            )));
        }
        let policy = self.policy.clone().ok_or_else(|| {
            WriteBackError::Refused("no policy bundle is loaded to decide break-glass".into())
        })?;
        for _ in 0..STALE_RETRIES {
            let view = self.case_view(case_id).await?;
            let Some(decision_seq) = view.decision_seq else {
                return Err(WriteBackError::Refused(format!(
                    "case {case_id} has no decision: nothing to apply"
                )));
            };
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let remediation = recorded
                .evaluation
                .context
                .pointer("/requested_action")
                .and_then(|a| a.as_str())
                .unwrap_or(&recorded.evaluation.action)
                .to_owned();
            let action = action_from_name(&remediation).ok_or_else(|| {
                WriteBackError::Refused(format!(
                    "action {remediation} needs parameters from a person; break-glass cannot apply it"
                ))
            })?;
            let identity = match view.case.identity_id {
                Some(id) => self.store.identity(id).await?,
                None => None,
            }
            .ok_or_else(|| {
                WriteBackError::Refused("the case's identity is not in the inventory".into())
            })?;
            let evaluation = writ_policy::asked_evaluation(
                &recorded.evaluation,
                writ_policy::BREAK_GLASS,
                &by.name,
            )
            .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let decision = policy.replay(&evaluation).map_err(|err| {
                WriteBackError::Forbidden(format!("policy cannot decide a break-glass: {err}"))
            })?;
            if decision.tier != Tier::Auto {
                return Err(WriteBackError::Forbidden(format!(
                    "policy does not allow break-glass here: {}",
                    decision.reason
                )));
            }
            let now = self.clock.now();
            let window = decision
                .terms
                .review_within_hours
                .map_or(self.settings.break_glass_review, |hours| {
                    jiff::SignedDuration::from_hours(i64::from(hours))
                });
            let review_due = now + window;
            let mut workflow = workflow_of(&view, &recorded);
            let mut case = view.case.clone();
            case.state = CaseState::Remediating;
            let used = EventBody::BreakGlassUsed(BreakGlassUsed {
                case,
                by: by.name.clone(),
                reason: reason.to_owned(),
                incident: incident.to_owned(),
                was: view.case.state,
                decision: decision.clone(),
                evaluation,
                review_due,
                review_window_seconds: u64::try_from(window.as_secs()).unwrap_or(0),
            });
            workflow
                .apply(case_id, &used)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let actor = actor_of(by);
            let (job, queued) = queue_job(
                Job::queued(
                    JobId(self.ids.next_id(now)),
                    case_id,
                    &identity.system,
                    &identity.external_id,
                    action,
                    false,
                ),
                &mut workflow,
                &actor,
                decision.bundle_hash,
            )?;
            let group = vec![
                Draft {
                    policy_bundle: Some(decision.bundle_hash),
                    expect: vec![case_expectation(&view)],
                    ..Draft::new(
                        Some(case_id),
                        actor.clone(),
                        format!("break-glass:{case_id}:{}", view.updated_seq),
                        used,
                    )
                },
                queued,
            ];
            match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) => return Ok(job),
            }
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing while the break-glass was recorded; try again"
        )))
    }

    /// Records `reviewer`'s review of the break-glass change on `case_id` (never by who used
    /// it). A rejection of a verified change rolls it back: the rollback is decided by the
    /// review and its intent recorded in the same transaction; the worker undoes the change.
    pub async fn review_bypass(
        &self,
        case_id: CaseId,
        reviewer: &Principal,
        verdict: ReviewVerdict,
        rationale: &str,
    ) -> Result<ReviewOutcome, WriteBackError> {
        if rationale.trim().is_empty() {
            return Err(WriteBackError::Invalid {
                field: "rationale".into(),
                message: "must not be blank".into(),
            });
        }
        for _ in 0..STALE_RETRIES {
            let view = self.case_view(case_id).await?;
            let (bypass_seq, used, reviewed) =
                self.last_bypass(case_id).await?.ok_or_else(|| {
                    WriteBackError::Refused(format!("case {case_id} has no break-glass change"))
                })?;
            if reviewed {
                return Err(WriteBackError::Refused(format!(
                    "the break-glass change on case {case_id} was already reviewed"
                )));
            }
            if used.by == reviewer.name {
                return Err(WriteBackError::Forbidden(
                    "who used the break-glass cannot review it".into(),
                ));
            }
            let job_view = view
                .job
                .clone()
                .ok_or_else(|| WriteBackError::Refused(format!("case {case_id} has no job")))?;
            if job_view.job.state.is_pending() {
                return Err(WriteBackError::Refused(format!(
                    "the break-glass change on case {case_id} is still being applied; review it once it is verified or failed"
                )));
            }
            let actor = actor_of(reviewer);
            let rejected_in_effect = verdict == ReviewVerdict::Rejected
                && view.case.state == CaseState::Remediated
                && job_view.job.state == JobState::Verified;
            let reversibility = if rejected_in_effect {
                self.reversibility_of(&job_view).await?
            } else {
                Reversibility::Reversible
            };
            let mut outcome = ReviewOutcome {
                verdict,
                rollback: None,
                rotation: None,
                irreversible: false,
            };
            let mut review = BypassReviewed {
                reviewer: reviewer.name.clone(),
                by: used.by.clone(),
                verdict,
                rationale: rationale.to_owned(),
                bypass_seq,
                remedy: None,
            };
            let key = format!("bypass:{case_id}:{bypass_seq}:reviewed");
            let review_draft =
                |review: BypassReviewed, bundle: Option<writ_core::Sha256Digest>| Draft {
                    policy_bundle: bundle,
                    expect: vec![case_expectation(&view)],
                    ..Draft::new(
                        Some(case_id),
                        actor.clone(),
                        key.clone(),
                        EventBody::BypassReviewed(review),
                    )
                };
            let irreversible = reversibility == Reversibility::Irreversible;
            if !rejected_in_effect || (irreversible && job_view.job.action != Action::Rotate) {
                // Upheld, nothing in effect, or a change nothing can undo or redo: the review
                // is the record.
                outcome.irreversible = rejected_in_effect;
                let group = vec![review_draft(review, None)];
                match self.append_group(group).await {
                    Err(WriteBackError::Stale(_)) => continue,
                    Err(err) => return Err(err),
                    Ok(_) => return Ok(outcome),
                }
            }
            // The review decides what follows, on its word: the review is the control.
            let Some(decision_seq) = view.decision_seq else {
                return Err(WriteBackError::Refused(format!(
                    "case {case_id} has no decision in force"
                )));
            };
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let mut workflow = workflow_of(&view, &recorded);
            let mut group = Vec::new();
            if irreversible {
                // A rotation: rotate again.
                let mut case = view.case.clone();
                case.state = CaseState::Remediating;
                review.remedy = Some(ReviewRemedy {
                    case,
                    decision: review_decision(
                        Action::Rotate.name(),
                        &used,
                        &reviewer.name,
                        "rotates the credential again, as a rotation cannot be rolled back",
                    ),
                    evaluation: used.evaluation.clone(),
                });
                let draft = review_draft(review, Some(used.decision.bundle_hash));
                workflow
                    .apply(case_id, &draft.body)
                    .map_err(|err| WriteBackError::Refused(err.to_string()))?;
                let (job, queued) = queue_job(
                    Job::queued(
                        JobId(self.ids.next_id(self.clock.now())),
                        case_id,
                        &job_view.job.system,
                        &job_view.job.external_id,
                        Action::Rotate,
                        false,
                    ),
                    &mut workflow,
                    &actor,
                    used.decision.bundle_hash,
                )?;
                group.extend([draft, queued]);
                outcome.rotation = Some(job.id);
            } else {
                group.push(review_draft(review, None));
                let request = EventBody::RollbackRequested(RollbackRequested {
                    case: view.case.clone(),
                    job: job_view.job.id,
                    decision: review_decision(
                        ROLLBACK_ACTION,
                        &used,
                        &reviewer.name,
                        "rolls it back",
                    ),
                    evaluation: used.evaluation.clone(),
                    requester: reviewer.name.clone(),
                    rationale: rationale.to_owned(),
                });
                workflow
                    .apply(case_id, &request)
                    .map_err(|err| WriteBackError::Refused(err.to_string()))?;
                group.push(Draft::new(
                    Some(case_id),
                    actor.clone(),
                    format!("bypass:{case_id}:{bypass_seq}:rollback"),
                    request,
                ));
                let mut step = Step::new(&job_view);
                group.push(rollback_intent(
                    &mut step,
                    &mut workflow,
                    &actor,
                    rationale,
                )?);
                outcome.rollback = Some(job_view.job.id);
            }
            match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) => return Ok(outcome),
            }
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing while the review was recorded; try again"
        )))
    }

    /// Escalates an overdue break-glass review (level 1 at the deadline, level 2 at twice it).
    pub(crate) async fn escalate(&self, due: &DueDeadline) -> Result<bool, WriteBackError> {
        let Some((bypass_seq, used, _)) = self.last_bypass(due.case_id).await? else {
            return Ok(false);
        };
        let level = if due.kind == writ_core::exception::DeadlineKind::BypassEscalation {
            2
        } else {
            1
        };
        let draft = Draft::new(
            Some(due.case_id),
            ENGINE_ACTOR,
            format!("bypass:{}:{bypass_seq}:overdue:{level}", due.case_id),
            EventBody::BypassReviewOverdue(BypassReviewOverdue {
                by: used.by,
                level,
                review_due: used.review_due,
                bypass_seq,
            }),
        );
        self.record_deadline(vec![draft]).await
    }

    /// Whether `job`'s verified change can be undone, as its intent's plan says.
    async fn reversibility_of(
        &self,
        job: &writ_store::JobView,
    ) -> Result<Reversibility, WriteBackError> {
        let Some(seq) = job.intent_seq else {
            return Err(WriteBackError::Refused(format!(
                "job {} has no recorded plan",
                job.job.id
            )));
        };
        let row = self
            .store
            .entries_at(&[seq])
            .await?
            .pop()
            .ok_or_else(|| WriteBackError::Refused(format!("entry {seq} is missing")))?;
        match entries::decode_body(&row)? {
            EventBody::WriteBackIntent(intent) => Ok(intent.plan.reversibility),
            other => Err(WriteBackError::Refused(format!(
                "entry {seq} is a {}, not job {}'s intent",
                other.kind(),
                job.job.id
            ))),
        }
    }

    /// The case's latest break-glass, with its entry and whether it has been reviewed, from
    /// one read of the case's entries.
    async fn last_bypass(
        &self,
        case_id: CaseId,
    ) -> Result<Option<(u64, BreakGlassUsed, bool)>, WriteBackError> {
        let rows = self.store.case_entries(case_id).await?;
        let mut reviewed = std::collections::HashSet::new();
        for row in rows.iter().rev() {
            match entries::decode_body(row)? {
                EventBody::BypassReviewed(review) => {
                    reviewed.insert(review.bypass_seq);
                }
                EventBody::BreakGlassUsed(used) => {
                    return Ok(Some((row.seq, used, reviewed.contains(&row.seq))));
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// The draft that queues `job` (checked with `workflow`, which it advances), under the bundle
/// that decided it.
fn queue_job(
    job: Job,
    workflow: &mut writ_core::workflow::CaseWorkflow,
    actor: &str,
    bundle: writ_core::Sha256Digest,
) -> Result<(Job, Draft), WriteBackError> {
    let queued = EventBody::ChangeRequested(ChangeRequested {
        job: job.clone(),
        case: None,
    });
    workflow
        .apply(job.case_id, &queued)
        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
    let draft = Draft {
        policy_bundle: Some(bundle),
        ..Draft::new(
            Some(job.case_id),
            actor,
            format!("job:{}:queued", job.id),
            queued,
        )
    };
    Ok((job, draft))
}

/// The decision a rejecting review makes (`action`: a rollback, or the change again), on its
/// own word under the break-glass's bundle.
fn review_decision(action: &str, used: &BreakGlassUsed, reviewer: &str, what: &str) -> Decision {
    Decision {
        tier: Tier::Auto,
        action: action.to_owned(),
        bundle_hash: used.decision.bundle_hash,
        determining_policies: vec!["break-glass-review".to_owned()],
        reason: format!(
            "the review of the break-glass change by {reviewer} rejected it and {what}"
        ),
        terms: Terms::default(),
    }
}
