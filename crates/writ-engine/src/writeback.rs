//! Write-back: pushing an allowed change into the target system, reading it back, and undoing it.
//!
//! A change becomes a job when policy allows it automatically or its approvals are complete. A
//! worker then, for each pending job: plans it (the connector reads the pre-image), records the
//! **intent** (plan and pre-image) in the ledger before touching the target, applies it with the
//! job's idempotency key, records that, reads the target back and records the verdict. The case
//! becomes `remediated` only on a confirmed read-back; otherwise it is `write_back_failed`, for a
//! human. Retryable failures go back to the queue with backoff.
//!
//! After a crash the job's last recorded state says what may have happened: a job with an
//! intent (or applied) but no verdict is read back first; if the change is already in effect it
//! is recorded, not applied again, and otherwise applied (connectors are idempotent). So no
//! change is applied twice and none is lost.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::json;
use writ_connectors::{ApplyOutcome, Connector, ConnectorError, Plan, Verification};
use writ_core::approval::{Approval, Verdict, approvals_satisfied};
use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Tier};
use writ_core::event::EventKind;
use writ_core::ids::{ApprovalId, CaseId, ChangeId, JobId};
use writ_core::job::{Job, JobState, action_from_name};
use writ_core::{Clock, IdSource};
use writ_store::Store;

use crate::sequencer::{AppendError, Draft, Sequencer};

/// Why a write-back operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    /// The request does not fit the case's state or decision.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// The ledger refused the event; nothing changed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A recorded event could not be read.
    #[error("ledger entry {seq} is unreadable: {detail}")]
    Corrupt {
        /// The entry.
        seq: u64,
        /// Why.
        detail: String,
    },
}

/// Worker settings, including the blast-radius guards.
#[derive(Debug, Clone)]
pub struct WriteBackSettings {
    /// Attempts before a job fails for good.
    pub max_attempts: u32,
    /// First retry delay; doubled each attempt.
    pub backoff: SignedDuration,
    /// At most this many changes applied per system within `window`; further jobs wait.
    pub max_changes_per_window: u32,
    /// The window of the change cap.
    pub window: SignedDuration,
    /// How long a worker holds a job it claimed before another worker may take it over
    /// (renewed at each step). A worker that dies holds its jobs this long.
    pub lease: SignedDuration,
}

impl Default for WriteBackSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: SignedDuration::from_secs(5),
            max_changes_per_window: 50,
            window: SignedDuration::from_hours(1),
            lease: SignedDuration::from_secs(60),
        }
    }
}

/// Jobs a worker claims at a time: few, so that a lease never has to wait behind many other
/// jobs' target calls before its own turn.
const CLAIM_BATCH: u32 = 8;

/// Jobs claimed at most in one pass of a worker.
const PASS_LIMIT: u32 = 100;

/// Whether an action takes rights away (and so could remove the last administrator).
fn removes_access(action: &writ_core::change::Action) -> bool {
    use writ_core::change::Action as A;
    matches!(
        action,
        A::Disable | A::Delete | A::Revoke { .. } | A::ReduceScope { .. }
    )
}

/// What one pass of the worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs confirmed by read-back.
    pub verified: usize,
    /// Jobs failed for good.
    pub failed: usize,
    /// Jobs put back for a retry.
    pub retried: usize,
    /// Jobs planned in dry-run mode.
    pub planned: usize,
}

/// What a guard says about a job.
enum Guard {
    /// Not now: try again at this time.
    Wait(jiff::Timestamp, String),
    /// Never: a human must look.
    Refuse(String),
}

/// The write-back engine.
#[derive(Debug, Clone)]
pub struct WriteBack {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    connectors: HashMap<String, Arc<dyn Connector>>,
    settings: WriteBackSettings,
    /// This worker's name on its job leases; unique per engine.
    holder: String,
}

impl WriteBack {
    /// An engine over these connectors (keyed by their system names).
    pub fn new(
        store: Arc<dyn Store>,
        sequencer: Sequencer,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        connectors: Vec<Arc<dyn Connector>>,
        settings: WriteBackSettings,
    ) -> Self {
        let connectors = connectors
            .into_iter()
            .map(|c| (c.system().to_owned(), c))
            .collect();
        let holder = format!("worker:{}", ids.next_id(clock.now()));
        Self {
            holder,
            store,
            sequencer,
            clock,
            ids,
            connectors,
            settings,
        }
    }

    /// The same engine with other settings.
    pub fn with_settings(mut self, settings: WriteBackSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Records an approval of `case`'s pending change by `approver`. When the approvals the
    /// decision asks for are complete, queues the write-back job. Returns the job if queued.
    pub async fn approve(
        &self,
        case_id: CaseId,
        approver: &str,
        rationale: &str,
        dry_run: bool,
    ) -> Result<Option<Job>, WriteBackError> {
        let case = self.case(case_id).await?;
        if case.state != CaseState::AwaitingApproval {
            return Err(WriteBackError::Refused(format!(
                "case {case_id} is not awaiting approval (it is {:?})",
                case.state
            )));
        }
        if rationale.trim().is_empty() {
            return Err(WriteBackError::Refused(
                "an approval needs a rationale".into(),
            ));
        }
        let (decision, mut approvals) = self.decision_and_approvals(case_id).await?;
        let Tier::Approval { count, .. } = decision.tier else {
            return Err(WriteBackError::Refused(format!(
                "case {case_id}'s decision does not call for approvals"
            )));
        };
        if approvals.iter().any(|a| a.approver == approver) {
            return Err(WriteBackError::Refused(format!(
                "{approver} has already approved case {case_id}"
            )));
        }
        let now = self.clock.now();
        let approval = Approval {
            id: ApprovalId(self.ids.next_id(now)),
            change_id: ChangeId(case_id.as_uuid()),
            approver: approver.to_owned(),
            verdict: Verdict::Approve,
            rationale: rationale.to_owned(),
            at: now,
        };
        self.sequencer
            .append(Draft {
                case_id: Some(case_id),
                actor: format!("user:{approver}"),
                kind: EventKind::ApprovalGranted,
                idempotency_key: format!("approval:{case_id}:{approver}"),
                policy_bundle: Some(decision.bundle_hash),
                controls: vec![],
                body: json!({ "approval": approval, "rationale": rationale }),
                evidence: vec![],
            })
            .await?;
        approvals.push(approval);
        // Separation of duties: the engine and the finding's source requested the change.
        if !approvals_satisfied(&approvals, count, "engine") {
            return Ok(None);
        }
        self.enqueue(&case, &decision, approver, dry_run)
            .await
            .map(Some)
    }

    /// Queues the write-back of `case`'s decided action.
    pub async fn enqueue(
        &self,
        case: &Case,
        decision: &Decision,
        actor: &str,
        dry_run: bool,
    ) -> Result<Job, WriteBackError> {
        let action = action_from_name(&decision.action).ok_or_else(|| {
            WriteBackError::Refused(format!(
                "action {} needs parameters from a person; not queued",
                decision.action
            ))
        })?;
        let identity_id = case.identity_id.ok_or_else(|| {
            WriteBackError::Refused("the case's identity is not in the inventory".into())
        })?;
        let identity = self.store.identity(identity_id).await?.ok_or_else(|| {
            WriteBackError::Refused("the case's identity is not in the inventory".into())
        })?;
        let now = self.clock.now();
        let job = Job {
            id: JobId(self.ids.next_id(now)),
            case_id: case.id,
            system: identity.system.clone(),
            external_id: identity.external_id.clone(),
            action,
            state: JobState::Queued,
            attempts: 0,
            next_attempt_at: None,
            dry_run,
            last_error: None,
            applied_at: None,
        };
        let mut case = case.clone();
        case.state = CaseState::Remediating;
        self.record(
            &job,
            Some(&case),
            EventKind::ChangeRequested,
            actor,
            "queued",
            json!({}),
        )
        .await?;
        Ok(job)
    }

    /// Works every due job once (up to 100 per pass): claims leases on a few due jobs no other
    /// worker holds, works them one by one, giving each lease up when done, and claims again
    /// until nothing is due.
    pub async fn run_once(&self) -> Result<PassReport, WriteBackError> {
        let mut report = PassReport::default();
        let mut worked_this_pass = std::collections::HashSet::new();
        let mut claimed_this_pass = 0;
        while claimed_this_pass < PASS_LIMIT {
            let claimed = self
                .store
                .claim_jobs(
                    &self.holder,
                    self.clock.now(),
                    self.lease_end(),
                    CLAIM_BATCH.min(PASS_LIMIT - claimed_this_pass),
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            claimed_this_pass += u32::try_from(claimed.len()).unwrap_or(PASS_LIMIT);
            let mut progress = false;
            for job in claimed {
                let id = job.id;
                // Once per pass: a job left as it was (another replica holds its attempt)
                // waits for the next pass.
                if !worked_this_pass.insert(id) {
                    self.store.release_lease(id, &self.holder).await?;
                    continue;
                }
                progress = true;
                // The lease was taken for the whole claim; renew it before this job's turn.
                if !self.renew(id).await? {
                    continue;
                }
                let worked = self.work(job, &mut report).await;
                self.store.release_lease(id, &self.holder).await?;
                worked?;
            }
            if !progress {
                break;
            }
        }
        Ok(report)
    }

    /// When a lease taken or renewed now ends.
    fn lease_end(&self) -> jiff::Timestamp {
        let now = self.clock.now();
        now.checked_add(self.settings.lease).unwrap_or(now)
    }

    /// Renews this worker's lease on `job`; false when another worker has taken it over.
    async fn renew(&self, job: JobId) -> Result<bool, WriteBackError> {
        let held = self
            .store
            .renew_lease(job, &self.holder, self.lease_end())
            .await?;
        if !held {
            tracing::warn!(job = %job, "lease lost to another worker; leaving the job to it");
        }
        Ok(held)
    }

    async fn work(&self, mut job: Job, report: &mut PassReport) -> Result<(), WriteBackError> {
        let Some(connector) = self.connectors.get(&job.system).cloned() else {
            let reason = format!("no connector configured for system {}", job.system);
            return self.fail(job, &reason, report).await;
        };
        // What may already have happened, by the last recorded state.
        let plan = match job.state {
            JobState::Queued => {
                if let Some(reason) = self.guard(&job).await? {
                    return match reason {
                        Guard::Wait(until, why) => {
                            job.next_attempt_at = Some(until);
                            job.last_error = Some(why);
                            self.record(
                                &job,
                                None,
                                EventKind::WriteBackFailed,
                                "engine",
                                &format!("held:{}", until.as_microsecond()),
                                json!({ "retryable": true, "held_by_guard": true, "error": job.last_error }),
                            )
                            .await?;
                            report.retried += 1;
                            Ok(())
                        }
                        Guard::Refuse(why) => self.fail(job, &why, report).await,
                    };
                }
                let plan = match connector.plan(&job.external_id, &job.action).await {
                    Ok(plan) => plan,
                    Err(err) => return self.retry_or_fail(job, err, report).await,
                };
                job.state = if job.dry_run {
                    JobState::Planned
                } else {
                    JobState::Intent
                };
                job.attempts += 1;
                let claimed = self
                    .record(
                        &job,
                        None,
                        EventKind::WriteBackIntent,
                        "engine",
                        &format!("intent:{}", job.attempts),
                        json!({ "plan": plan }),
                    )
                    .await?;
                // The intent's idempotency key names the job and the attempt: if it was already
                // recorded, another worker (another replica) holds this attempt. Leave it.
                if !claimed {
                    return Ok(());
                }
                if job.dry_run {
                    report.planned += 1;
                    return Ok(());
                }
                plan
            }
            JobState::Intent | JobState::Applied => self.recorded_plan(&job).await?,
            _ => return Ok(()),
        };

        if job.state == JobState::Intent {
            // Fence: only the lease holder touches the target.
            if !self.renew(job.id).await? {
                return Ok(());
            }
            // After a crash the change may already be in effect: read before applying again.
            let in_effect = matches!(connector.verify(&plan).await, Ok(Verification::Confirmed));
            let outcome = if in_effect {
                ApplyOutcome::AlreadyInState
            } else {
                match connector.apply(&plan, &job.id.to_string()).await {
                    Ok(outcome) => outcome,
                    Err(err) => return self.retry_or_fail(job, err, report).await,
                }
            };
            if let ApplyOutcome::Rejected { reason } = &outcome {
                return self
                    .fail(job, &format!("the target refused: {reason}"), report)
                    .await;
            }
            job.state = JobState::Applied;
            job.applied_at = Some(self.clock.now());
            self.record(
                &job,
                None,
                EventKind::WriteBackApplied,
                "engine",
                "applied",
                json!({ "outcome": outcome }),
            )
            .await?;
        }

        match connector.verify(&plan).await {
            Ok(Verification::Confirmed) => {
                job.state = JobState::Verified;
                let mut case = self.case(job.case_id).await?;
                case.state = CaseState::Remediated;
                self.record(
                    &job,
                    Some(&case),
                    EventKind::WriteBackVerified,
                    "engine",
                    "verified",
                    json!({ "verification": "confirmed" }),
                )
                .await?;
                report.verified += 1;
                Ok(())
            }
            Ok(Verification::NotInEffect { observed }) => {
                self.fail(
                    job,
                    &format!(
                        "read-back does not show the change: {}",
                        observed.attributes
                    ),
                    report,
                )
                .await
            }
            Err(err) => self.retry_or_fail(job, err, report).await,
        }
    }

    /// Undoes `case`'s verified change from its recorded pre-image.
    pub async fn rollback(
        &self,
        case_id: CaseId,
        actor: &str,
        rationale: &str,
    ) -> Result<Job, WriteBackError> {
        let mut job = self
            .store
            .jobs_for_case(case_id)
            .await?
            .into_iter()
            .rev()
            .find(|j| j.state == JobState::Verified)
            .ok_or_else(|| {
                WriteBackError::Refused(format!("case {case_id} has no verified change to undo"))
            })?;
        let connector = self.connectors.get(&job.system).cloned().ok_or_else(|| {
            WriteBackError::Refused(format!("no connector configured for system {}", job.system))
        })?;
        let plan = self.recorded_plan(&job).await?;
        let outcome = connector.rollback(&plan).await.map_err(|err| {
            WriteBackError::Refused(format!("the target did not take the rollback: {err}"))
        })?;
        if let ApplyOutcome::Rejected { reason } = &outcome {
            return Err(WriteBackError::Refused(format!(
                "rollback refused: {reason}"
            )));
        }
        job.state = JobState::RolledBack;
        let mut case = self.case(case_id).await?;
        case.state = CaseState::RolledBack;
        self.record(
            &job,
            Some(&case),
            EventKind::RolledBack,
            &format!("user:{actor}"),
            "rolled-back",
            json!({ "outcome": outcome, "rationale": rationale }),
        )
        .await?;
        Ok(job)
    }

    /// The blast-radius guards: a cap on changes per system per window, and never taking
    /// rights from the last privileged identity of a system.
    async fn guard(&self, job: &Job) -> Result<Option<Guard>, WriteBackError> {
        let now = self.clock.now();
        let since = now.checked_sub(self.settings.window).unwrap_or(now);
        let recent: Vec<Job> = self.store.jobs_applied_since(&job.system, since).await?;
        if recent.len()
            >= usize::try_from(self.settings.max_changes_per_window).unwrap_or(usize::MAX)
        {
            let oldest = recent
                .iter()
                .filter_map(|j| j.applied_at)
                .min()
                .unwrap_or(now);
            let until = oldest.checked_add(self.settings.window).unwrap_or(now);
            return Ok(Some(Guard::Wait(
                until,
                format!(
                    "change cap reached: {} changes on {} within {:#}; waiting until {until}",
                    recent.len(),
                    job.system,
                    self.settings.window
                ),
            )));
        }
        if removes_access(&job.action)
            && let Some(target) = self
                .store
                .identity_by_external_id(&job.system, &job.external_id)
                .await?
            && target.privileged
        {
            let others = self
                .store
                .identities()
                .await?
                .into_iter()
                .filter(|i| {
                    i.system == job.system
                        && i.privileged
                        && i.id != target.id
                        && !i.tags.iter().any(|t| t == "status:inactive")
                })
                .count();
            if others == 0 {
                return Ok(Some(Guard::Refuse(format!(
                    "refused: {} is the last privileged identity of {}; taking its rights would lock the system out",
                    job.external_id, job.system
                ))));
            }
        }
        Ok(None)
    }

    async fn retry_or_fail(
        &self,
        mut job: Job,
        err: ConnectorError,
        report: &mut PassReport,
    ) -> Result<(), WriteBackError> {
        if !err.is_retryable() || job.attempts >= self.settings.max_attempts {
            return self.fail(job, &err.to_string(), report).await;
        }
        let delay =
            self.settings.backoff * i32::try_from(1u32 << job.attempts.min(10)).unwrap_or(1);
        job.next_attempt_at = self.clock.now().checked_add(delay).ok();
        job.last_error = Some(err.to_string());
        // Keep the state: a job whose intent is recorded is read back before any new apply.
        self.record(
            &job,
            None,
            EventKind::WriteBackFailed,
            "engine",
            &format!("retry:{}", job.attempts),
            json!({ "retryable": true, "error": err.to_string() }),
        )
        .await?;
        report.retried += 1;
        Ok(())
    }

    async fn fail(
        &self,
        mut job: Job,
        reason: &str,
        report: &mut PassReport,
    ) -> Result<(), WriteBackError> {
        job.state = JobState::Failed;
        job.last_error = Some(reason.to_owned());
        let mut case = self.case(job.case_id).await?;
        case.state = CaseState::WriteBackFailed;
        self.record(
            &job,
            Some(&case),
            EventKind::WriteBackFailed,
            "engine",
            "failed",
            json!({ "retryable": false, "error": reason, "needs_attention": true }),
        )
        .await?;
        report.failed += 1;
        Ok(())
    }

    /// Appends a job event with the job's (and optionally the case's) new snapshot. Returns
    /// false when the same step of the same job was already recorded (by another worker).
    async fn record(
        &self,
        job: &Job,
        case: Option<&Case>,
        kind: EventKind,
        actor: &str,
        step: &str,
        mut body: serde_json::Value,
    ) -> Result<bool, WriteBackError> {
        body["job"] = json!(job);
        if let Some(case) = case {
            body["case"] = json!(case);
        }
        let appended = self
            .sequencer
            .append(Draft {
                case_id: Some(job.case_id),
                actor: actor.to_owned(),
                kind,
                idempotency_key: format!("job:{}:{step}", job.id),
                policy_bundle: None,
                controls: vec![],
                body,
                evidence: vec![],
            })
            .await?;
        Ok(!appended.duplicate)
    }

    async fn case(&self, id: CaseId) -> Result<Case, WriteBackError> {
        self.store
            .case(id)
            .await?
            .ok_or_else(|| WriteBackError::Refused(format!("no case {id}")))
    }

    /// The plan recorded in the job's latest intent event.
    async fn recorded_plan(&self, job: &Job) -> Result<Plan, WriteBackError> {
        for row in self.store.case_entries(job.case_id).await?.iter().rev() {
            if row.kind != "write_back_intent" {
                continue;
            }
            let event =
                writ_ledger::decode_leaf(&row.leaf).map_err(|err| WriteBackError::Corrupt {
                    seq: row.seq,
                    detail: err.to_string(),
                })?;
            if event["body"]["job"]["id"] != json!(job.id) {
                continue;
            }
            return serde_json::from_value(event["body"]["plan"].clone()).map_err(|err| {
                WriteBackError::Corrupt {
                    seq: row.seq,
                    detail: err.to_string(),
                }
            });
        }
        Err(WriteBackError::Refused(format!(
            "job {} has no recorded intent",
            job.id
        )))
    }

    /// The case's decision and the approvals recorded so far.
    async fn decision_and_approvals(
        &self,
        case_id: CaseId,
    ) -> Result<(Decision, Vec<Approval>), WriteBackError> {
        let mut decision = None;
        let mut approvals = Vec::new();
        for row in self.store.case_entries(case_id).await? {
            let corrupt = |detail: String| WriteBackError::Corrupt {
                seq: row.seq,
                detail,
            };
            match row.kind.as_str() {
                "decision_recorded" => {
                    let event =
                        writ_ledger::decode_leaf(&row.leaf).map_err(|e| corrupt(e.to_string()))?;
                    decision = Some(
                        serde_json::from_value(event["body"]["decision"].clone())
                            .map_err(|e| corrupt(e.to_string()))?,
                    );
                }
                "approval_granted" => {
                    let event =
                        writ_ledger::decode_leaf(&row.leaf).map_err(|e| corrupt(e.to_string()))?;
                    approvals.push(
                        serde_json::from_value(event["body"]["approval"].clone())
                            .map_err(|e| corrupt(e.to_string()))?,
                    );
                }
                _ => {}
            }
        }
        let decision = decision.ok_or_else(|| {
            WriteBackError::Refused(format!("case {case_id} has no recorded decision"))
        })?;
        Ok((decision, approvals))
    }
}
