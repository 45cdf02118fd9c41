//! Requested changes: a principal asks for a new service account, an OAuth client's scopes,
//! or an agent's time-boxed tool access ([`WriteBack::submit_request`]), and the time-driven
//! end of what a request granted ([`WriteBack::end_access`]).
//!
//! A request is checked field by field, then the target is read (the object must exist, or for
//! a new account must not) so that policy sees which scopes are added and removed. Cedar decides
//! the request's change (`create`, `set_scopes`, `grant`) with the requester as principal; the
//! case opens with that decision (`request_submitted`) and, when policy allows it outright, the
//! job in the same transaction. Otherwise the case waits for the approvals the decision names,
//! voted through [`WriteBack::vote`] like any change; the requester never counts. Nothing
//! touches the target before that.
//!
//! A change that holds for a while carries its end on the job (`expires_at`); once verified,
//! the `deadlines` projection owes its end, and the scheduler records `access_expired` with the
//! job that ends it (disable the account, take the added scopes away), which the worker
//! applies and reads back like every job.

use std::collections::BTreeSet;

use writ_core::case::{Case, CaseState};
use writ_core::change::Action;
use writ_core::decision::{Decision, Tier};
use writ_core::event::{AccessExpired, ChangeRequested, EventBody, RequestSubmitted};
use writ_core::ids::{CaseId, JobId};
use writ_core::job::{Job, JobState};
use writ_core::principal::Principal;
use writ_core::request::{DependantsCheck, Request, RequestSpec};
use writ_core::rotation::RotationStep;
use writ_core::workflow::{CaseWorkflow, ENGINE_ACTOR, decided_state};
use writ_store::DueDeadline;

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::Draft;
use crate::writeback::{WriteBack, WriteBackError, case_expectation, workflow_of};

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The case it opened.
    pub case: Case,
    /// Policy's decision on it.
    pub decision: Decision,
    /// The approval rule, when it waits for approvals.
    pub rule: Option<String>,
    /// The job, when policy allowed the change outright.
    pub job: Option<Job>,
    /// The request as recorded (with the change worked out from the target).
    pub request: Request,
}

/// The scopes an object's read-back attributes list (`scopes`, or an OAuth `scope` string).
pub fn scopes_of(attributes: &serde_json::Value) -> BTreeSet<String> {
    if let Some(list) = attributes["scopes"].as_array() {
        return list
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
    }
    attributes["scope"]
        .as_str()
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// When an object was last used, from its read-back attributes (`last_used` as a time, or as
/// `{"date": ...}`, or `last_used_at`), if the target says.
pub fn last_used(attributes: &serde_json::Value) -> Option<jiff::Timestamp> {
    attributes["last_used"]
        .as_str()
        .or_else(|| attributes["last_used"]["date"].as_str())
        .or_else(|| attributes["last_used_at"].as_str())
        .and_then(|text| text.parse().ok())
}

fn invalid(field: &str, message: impl Into<String>) -> WriteBackError {
    WriteBackError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl WriteBack {
    /// Records `spec`, asked for by `requester`: checks it, reads the target, decides it, and
    /// opens its case (with the job when policy allows the change outright). A refused request
    /// records nothing: [`WriteBackError::Invalid`] names the field; a request policy denies is
    /// recorded (the case is `denied`) and answered as such.
    pub async fn submit_request(
        &self,
        requester: &Principal,
        spec: RequestSpec,
    ) -> Result<RequestOutcome, WriteBackError> {
        let now = self.clock.now();
        let system = spec.system().to_owned();
        let external_id = spec.external_id().to_owned();
        let action = spec.action_name();
        // The target first: a request for a system writ does not manage is not found.
        let connector = self.connector(&system).ok_or_else(|| {
            WriteBackError::NotFound(format!("system: no [[targets]] entry is named {system:?}"))
        })?;
        spec.check(now)
            .map_err(|problem| invalid(&problem.field, problem.message))?;
        let policy = self.policy.clone().ok_or_else(|| {
            WriteBackError::Refused("no policy bundle is loaded to decide requests".into())
        })?;
        let can = |a: &str| connector.capabilities().actions.iter().any(|x| x == a);
        // An offboarding deletes where the target can, else disables.
        let offboard_by = match &spec {
            RequestSpec::Offboard(_) if can("delete") => Some(Action::Delete),
            RequestSpec::Offboard(_) if can("disable") => Some(Action::Disable),
            _ => None,
        };
        if offboard_by.is_none() && !can(action) {
            return Err(invalid(
                "system",
                format!(
                    "target {system} cannot {action} (it can: {})",
                    connector.capabilities().actions.join(", ")
                ),
            ));
        }
        let id_field = match &spec {
            RequestSpec::NewServiceAccount(_) => "name",
            RequestSpec::OauthScopeChange(_) => "client_id",
            RequestSpec::AgentToolAccess(_) => "agent",
            RequestSpec::Offboard(_) => "principal",
        };
        let state = connector.read(&external_id).await.map_err(|err| {
            WriteBackError::Refused(format!("target {system} could not be read: {err}"))
        })?;
        let current = match (&spec, state.exists) {
            (RequestSpec::NewServiceAccount(_), true) => {
                return Err(WriteBackError::Refused(format!(
                    "name: {external_id} already exists in {system}"
                )));
            }
            (RequestSpec::NewServiceAccount(_), false) => BTreeSet::new(),
            (_, false) => {
                return Err(WriteBackError::NotFound(format!(
                    "{id_field}: {system} has no {external_id}"
                )));
            }
            (_, true) => scopes_of(&state.attributes),
        };
        let dependants = match &spec {
            RequestSpec::Offboard(offboard) => {
                Some(self.dependants_check(offboard, &state, now).await?)
            }
            _ => None,
        };
        let change = offboard_by.unwrap_or_else(|| spec.change(&current));
        match &change {
            writ_core::change::Action::Grant { scopes } if scopes.is_empty() => {
                return Err(invalid(
                    "scopes",
                    format!("{external_id} already has every scope asked for"),
                ));
            }
            writ_core::change::Action::SetScopes { scopes }
                if scopes.iter().cloned().collect::<BTreeSet<_>>() == current =>
            {
                return Err(invalid(
                    "scopes",
                    format!("{external_id} already has exactly these scopes"),
                ));
            }
            _ => {}
        }
        // The target plans the change now (read-only), so a change it cannot make on this
        // object (a key slot named as a new account's name) is refused before anything is
        // recorded, naming the field.
        match connector.plan(&external_id, &change).await {
            Ok(_) => {}
            Err(writ_connectors::ConnectorError::Retryable(err)) => {
                return Err(WriteBackError::Refused(format!(
                    "target {system} could not be read: {err}"
                )));
            }
            Err(err) => {
                return Err(invalid(
                    id_field,
                    format!("{system} cannot {} {external_id}: {err}", change.name()),
                ));
            }
        }
        let identity = self
            .store
            .identity_by_external_id(&system, &external_id)
            .await?;
        let subject = format!("{system}/{external_id}");
        let case_type = spec.case_type();
        if let Some(open) = self
            .store
            .open_cases_for(&[(subject.clone(), case_type.clone())])
            .await?
            .first()
        {
            return Err(WriteBackError::Refused(format!(
                "case {} already handles a {} request for {subject}; it must end first",
                open.id,
                spec.kind()
            )));
        }
        // An offboarding names what it removes for good: a slot (`user/AccessKey1`) is pinned
        // to the object it names now (the key id), so a later rotation cannot move it.
        let mut spec = spec;
        if let RequestSpec::Offboard(offboard) = &mut spec
            && !state.external_id.is_empty()
        {
            offboard.principal.clone_from(&state.external_id);
        }
        let request = Request {
            change,
            requester: requester.name.clone(),
            current_scopes: current.into_iter().collect(),
            dependants,
            spec,
        };
        let evaluation = writ_policy::request_evaluation(&writ_policy::RequestFacts {
            request: &request,
            identity: identity.as_ref(),
            reconciled: identity.as_ref().is_some_and(|i| i.reconciled_at.is_some()),
            duration_hours: request.spec.duration_hours(now),
        })
        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
        let decision = policy.replay(&evaluation).map_err(|err| {
            WriteBackError::Refused(format!("policy cannot decide this request: {err}"))
        })?;
        request
            .spec
            .check_terms(now, decision.terms.max_hours)
            .map_err(|problem| invalid(&problem.field, problem.message))?;
        let case_id = CaseId(self.ids.next_id(now));
        let case = Case {
            id: case_id,
            identity_id: identity.as_ref().map(|i| i.id),
            subject,
            finding_type: case_type,
            state: decided_state(&decision.tier, true, true),
            compliance_closed: false,
        };
        let body = EventBody::RequestSubmitted(RequestSubmitted {
            case: case.clone(),
            request: request.clone(),
            decision: decision.clone(),
            evaluation,
        });
        let mut workflow = CaseWorkflow::default();
        workflow
            .apply(case_id, &body)
            .map_err(|err| WriteBackError::Refused(err.to_string()))?;
        let mut group = vec![Draft {
            policy_bundle: Some(decision.bundle_hash),
            ..Draft::new(
                Some(case_id),
                actor_of(requester),
                format!("request:{case_id}"),
                body,
            )
        }];
        let mut job = None;
        if decision.tier == Tier::Auto {
            let queued = request.job(JobId(self.ids.next_id(now)), case_id, now, false);
            let body = EventBody::ChangeRequested(ChangeRequested {
                job: queued.clone(),
                case: None,
            });
            workflow
                .apply(case_id, &body)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            group.push(Draft::new(
                Some(case_id),
                ENGINE_ACTOR,
                format!("job:{}:queued", queued.id),
                body,
            ));
            job = Some(queued);
        }
        self.append_group(group).await?;
        Ok(RequestOutcome {
            case,
            rule: workflow.rule().map(|r| r.to_string()),
            decision,
            job,
            request,
        })
    }

    /// Whether an offboarded principal's dependants no longer need it: the rotation case named
    /// saw its consumers use the new credential, or else the target reports no use of the
    /// principal within `writeback.offboard_quiet`. Refused (nothing recorded) otherwise.
    async fn dependants_check(
        &self,
        offboard: &writ_core::request::Offboard,
        state: &writ_connectors::ObjectState,
        now: jiff::Timestamp,
    ) -> Result<DependantsCheck, WriteBackError> {
        if let Some(case_id) = offboard.cutover_case {
            let view = match self.case_view(case_id).await {
                Err(WriteBackError::NotFound(_)) => {
                    return Err(invalid("cutover_case", format!("no case {case_id}")));
                }
                other => other?,
            };
            let rotation = view.job.as_ref().and_then(|j| j.job.rotation.as_deref());
            return match rotation {
                Some(record)
                    if matches!(
                        record.step,
                        RotationStep::CutOver
                            | RotationStep::OldDeactivated
                            | RotationStep::OldDeleted
                    ) =>
                {
                    Ok(DependantsCheck::Rotation {
                        case: case_id,
                        old_key_id: record.old_key_id.clone(),
                        new_key_id: record.new_key_id.clone().unwrap_or_default(),
                        used_at: record.new_key_used_at,
                    })
                }
                Some(record) => Err(invalid(
                    "cutover_case",
                    format!(
                        "case {case_id}'s rotation has not seen its consumers cut over (it is at {})",
                        <&str>::from(record.step)
                    ),
                )),
                None => Err(invalid(
                    "cutover_case",
                    format!("case {case_id} is not a rotation with cut-over"),
                )),
            };
        }
        let quiet = self.settings.offboard_quiet;
        let last_used_at = last_used(&state.attributes);
        if let Some(at) = last_used_at
            && now.duration_since(at) < quiet
        {
            return Err(WriteBackError::Refused(format!(
                "principal: dependants still use {}: last used at {at}, within the quiet period of {} s; cut them over first (rotate its credential and name that case as cutover_case), or ask again later",
                offboard.principal,
                quiet.as_secs()
            )));
        }
        Ok(DependantsCheck::Quiet {
            last_used_at,
            quiet_seconds: u64::try_from(quiet.as_secs()).unwrap_or_default(),
        })
    }

    /// Ends what a request granted, once its time is up: `access_expired` and the job that
    /// ends it (disable the account, take the added scopes away), against the case as read.
    /// `false` when the case is busy or no longer holds the change (a later pass looks again).
    pub(crate) async fn end_access(&self, due: &DueDeadline) -> Result<bool, WriteBackError> {
        let view = self.case_view(due.case_id).await?;
        let Some(decision_seq) = view.decision_seq else {
            return Ok(false);
        };
        let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
        self.end_access_of(&view, &recorded, "expired").await
    }

    /// Ends access whose revocation criteria are met: a finding of a type its request names in
    /// `revoke_on`, raised about the agent since the access was granted. Returns how many
    /// accesses were ended.
    pub(crate) async fn revoke_on_criteria(&self, limit: u32) -> Result<usize, WriteBackError> {
        let mut ended = 0;
        for (case_id, subject, granted_seq) in self.store.live_grants(limit).await? {
            let Some((system, external_id)) = subject.split_once('/') else {
                continue;
            };
            let seen = self
                .store
                .finding_types_about(system, external_id, granted_seq)
                .await?;
            if seen.is_empty() {
                continue;
            }
            let view = self.case_view(case_id).await?;
            let Some(decision_seq) = view.decision_seq else {
                continue;
            };
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let Some(RequestSpec::AgentToolAccess(access)) =
                recorded.request.as_ref().map(|r| &r.spec)
            else {
                continue;
            };
            let Some(met) = seen.iter().find(|t| access.revoke_on.contains(t)) else {
                continue;
            };
            let reason = format!("revoke_on:{met}");
            if self.end_access_of(&view, &recorded, &reason).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Records `access_expired` (why: `reason`) and the job that ends the change in force.
    async fn end_access_of(
        &self,
        view: &writ_store::CaseView,
        recorded: &entries::RecordedDecision,
        reason: &str,
    ) -> Result<bool, WriteBackError> {
        let Some(live) = view.job.as_ref().map(|j| &j.job) else {
            return Ok(false);
        };
        if view.case.state != CaseState::Remediated || live.state != JobState::Verified {
            return Ok(false);
        }
        let Some(request) = &recorded.request else {
            return Ok(false);
        };
        let Some(action) = RequestSpec::at_expiry(&live.action) else {
            return Ok(false);
        };
        let now = self.clock.now();
        let job = Job::queued(
            JobId(self.ids.next_id(now)),
            view.case.id,
            request.spec.system(),
            request.spec.external_id(),
            action,
            live.dry_run,
        );
        let mut case = view.case.clone();
        case.state = CaseState::Remediating;
        let body = EventBody::AccessExpired(AccessExpired {
            case,
            ended: live.id,
            job,
            reason: reason.to_owned(),
        });
        let mut workflow = workflow_of(view, recorded);
        if workflow.apply(view.case.id, &body).is_err() {
            return Ok(false);
        }
        let draft = Draft {
            expect: vec![case_expectation(view)],
            ..Draft::new(
                Some(view.case.id),
                ENGINE_ACTOR,
                format!("access:{}:expired", live.id),
                body,
            )
        };
        self.record_deadline(vec![draft]).await
    }
}
