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
//! change is applied twice and none is lost. A rollback records its intent first too, and the
//! worker finishes it after a crash.
//!
//! Every step is a conditional append: it names the state and version of the job (and case) it
//! read, the state machine in `writ_core::workflow` checks the step, and the store checks in the
//! same transaction that nobody moved them meanwhile. So two approvals at once never queue two
//! jobs, and a case never has two live jobs.
//!
//! Each try of a job counts as an attempt (planning, applying or reading back); a retryable
//! failure puts the job back with exponential backoff until `max_attempts`, after which it fails
//! for a human, every attempt recorded.
//!
//! The read models (the `jobs` table, the case's decision and votes) are for speed, not trust:
//! before touching a target, the worker checks the job, the decision and the approvals it rests
//! on against their ledger entries, and refuses a job that no entry backs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::SignedDuration;
use writ_connectors::{ApplyOutcome, Connector, ConnectorError, Plan, Verification};
use writ_core::approval::{Approval, Verdict, VoteBinding};
use writ_core::approvers::{ApprovalRule, Exclusions, eligibility};
use writ_core::case::CaseState;
use writ_core::decision::{Decision, Tier};
use writ_core::event::{
    ApprovalGranted, ChangeRejected, ChangeRequested, EventBody, ReadBack, RollbackIntent,
    RollbackRequested, RolledBack, WriteBackApplied, WriteBackFailed, WriteBackIntent,
    WriteBackVerified,
};
use writ_core::ids::{ApprovalId, CaseId, ChangeId, JobId};
use writ_core::job::{Job, JobState, action_from_name};
use writ_core::principal::{Principal, canonical_name};
use writ_core::workflow::{CaseWorkflow, ENGINE_ACTOR};
use writ_core::{Clock, IdSource};
use writ_policy::PolicyBundle;
use writ_store::{CaseView, Expectation, JobView, Store};

use crate::entries;
use crate::principals::actor_of;
use crate::sequencer::{AppendError, Appended, Draft, Sequencer};

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
    /// The case or job changed since it was read (another approver or worker got there
    /// first); nothing was recorded.
    #[error("{0}")]
    Stale(String),
    /// No such case.
    #[error("{0}")]
    NotFound(String),
    /// The principal may not do this (not eligible, separation of duties, disabled).
    #[error("{0}")]
    Forbidden(String),
    /// A field of the request is not acceptable (the request's field name, and why).
    #[error("{field}: {message}")]
    Invalid {
        /// The request's field.
        field: String,
        /// Why.
        message: String,
    },
    /// A recorded event could not be read.
    #[error("ledger entry {seq} is unreadable: {detail}")]
    Corrupt {
        /// The entry.
        seq: u64,
        /// Why.
        detail: String,
    },
}

impl From<entries::UnreadableEntry> for WriteBackError {
    fn from(err: entries::UnreadableEntry) -> Self {
        WriteBackError::Corrupt {
            seq: err.seq,
            detail: err.detail,
        }
    }
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
    /// How soon a break-glass change must be reviewed, when the policy that allowed it sets
    /// no `@review_within_hours`.
    pub break_glass_review: SignedDuration,
    /// How long a rotation waits for consumers to use the new credential before a human is
    /// asked (the old one stays active meanwhile).
    pub rotation_cutover: SignedDuration,
    /// How long a rotated-out credential stays (inactive) before it is deleted.
    pub rotation_grace: SignedDuration,
    /// How long a principal must have gone unused before it may be offboarded without a
    /// rotation showing its dependants cut over.
    pub offboard_quiet: SignedDuration,
    /// How long a queued job on a system where automation is paused waits before it looks
    /// again.
    pub pause_recheck: SignedDuration,
}

impl Default for WriteBackSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: SignedDuration::from_secs(5),
            max_changes_per_window: 50,
            window: SignedDuration::from_hours(1),
            lease: SignedDuration::from_secs(60),
            break_glass_review: SignedDuration::from_hours(24),
            rotation_cutover: SignedDuration::from_hours(24),
            rotation_grace: SignedDuration::from_hours(24 * 7),
            offboard_quiet: SignedDuration::from_hours(24),
            pause_recheck: SignedDuration::from_secs(60),
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
    /// Rollbacks finished by the worker (after a crash or a failed first try).
    pub rolled_back: usize,
    /// Jobs refused because no ledger entry backs them (or what backs them does not allow
    /// them); they are never worked, and each is logged as an error.
    pub refused: usize,
}

/// What a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteOutcome {
    /// Approve or reject.
    pub verdict: Verdict,
    /// The groups of the rule the voter counted for.
    pub groups: Vec<String>,
    /// The decision's approval rule.
    pub rule: String,
    /// How many more approvers the rule needs, at least (0 when the job was queued).
    pub missing: u64,
    /// The job, when this approval completed the rule.
    pub job: Option<Job>,
}

/// A case subject `system/external id` split at the system's end (`aws:123/user/x`).
fn split_subject(subject: &str) -> (String, String) {
    match subject.split_once('/') {
        Some((system, external)) => (system.to_owned(), external.to_owned()),
        None => (subject.to_owned(), String::new()),
    }
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
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sequencer: Sequencer,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdSource>,
    connectors: HashMap<String, Arc<dyn Connector>>,
    pub(crate) settings: WriteBackSettings,
    /// This worker's name on its job leases; unique per engine.
    holder: String,
    /// The bundle that decides rollbacks (none: rollbacks are refused).
    pub(crate) policy: Option<Arc<PolicyBundle>>,
    /// The pipeline that decides a case again when an exception expires.
    pub(crate) ingestor: Option<crate::ingest::Ingestor>,
}

/// What a voter may vote on (see [`WriteBack::vote_offer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteOffer {
    /// The approval rule.
    pub rule: String,
    /// Each group's votes so far (`owner_team 0/1, team:security 1/2`).
    pub progress: String,
    /// How many more approvals it needs, at least.
    pub missing: u64,
    /// The groups of the rule the voter would count for.
    pub groups: Vec<String>,
}

/// A vote's checks passed, with what recording it needs.
struct Ballot {
    view: CaseView,
    decision_seq: u64,
    recorded: entries::RecordedDecision,
    workflow: CaseWorkflow,
    identity: Option<writ_core::identity::Identity>,
    rule: writ_core::approvers::ApprovalRule,
    groups: std::collections::BTreeSet<writ_core::approvers::ApproverGroup>,
    owner_team: Option<String>,
    exclusions: writ_core::approvers::Exclusions,
}

/// What a rollback request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// Policy allowed it on the asker's word; the change is undone.
    RolledBack(Job),
    /// Policy asks for approvals first: the case waits in `rollback_requested`.
    AwaitingApproval {
        /// The approval rule.
        rule: String,
        /// Why, as the decision says.
        reason: String,
        /// How many more approvals, at least.
        missing: u64,
    },
}

/// How often a conditional append is tried again after someone else changed the case first.
pub(crate) const STALE_RETRIES: u32 = 8;

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
            policy: None,
            ingestor: None,
            store,
            sequencer,
            clock,
            ids,
            connectors,
            settings,
        }
    }

    /// The same engine as another worker (as on another replica): its own lease holder, with
    /// `settings`.
    pub fn as_new_worker(mut self, settings: WriteBackSettings) -> Self {
        self.holder = format!("worker:{}", self.ids.next_id(self.clock.now()));
        self.settings = settings;
        self
    }

    /// The same engine, with the bundle that decides rollbacks.
    pub fn with_policy(mut self, policy: Option<Arc<PolicyBundle>>) -> Self {
        self.policy = policy;
        self
    }

    /// The same engine, with the pipeline that decides cases again.
    pub fn with_ingestor(mut self, ingestor: Option<crate::ingest::Ingestor>) -> Self {
        self.ingestor = ingestor;
        self
    }

    /// The same engine with other settings.
    pub fn with_settings(mut self, settings: WriteBackSettings) -> Self {
        self.settings = settings;
        self
    }

    /// What `voter` may vote on in `case_id` now, recording nothing: the case awaits
    /// approval, the voter is eligible under the rule (in one of its groups, enabled, not
    /// excluded by separation of duties), an override's named risk owner, and not voted yet.
    /// What the console asks before it offers a vote; the vote itself checks all of it again.
    pub async fn vote_offer(
        &self,
        case_id: CaseId,
        voter: &Principal,
    ) -> Result<VoteOffer, WriteBackError> {
        let ballot = self.ballot(case_id, voter).await?;
        if ballot.workflow.votes.contains_key(&voter.name) {
            return Err(WriteBackError::Refused(format!(
                "{} has already voted on case {case_id}'s decision",
                voter.name
            )));
        }
        Ok(VoteOffer {
            progress: ballot
                .rule
                .progress(&ballot.workflow.votes)
                .iter()
                .map(|(group, have, need)| format!("{group} {have}/{need}"))
                .collect::<Vec<_>>()
                .join(", "),
            rule: ballot.rule.to_string(),
            missing: ballot.workflow.votes_missing(),
            groups: ballot.groups.iter().map(ToString::to_string).collect(),
        })
    }

    /// Every check a vote makes before it is recorded (see [`WriteBack::vote_offer`]), with
    /// what the vote needs next.
    async fn ballot(&self, case_id: CaseId, voter: &Principal) -> Result<Ballot, WriteBackError> {
        let view = self.case_view(case_id).await?;
        if !matches!(
            view.case.state,
            CaseState::AwaitingApproval
                | CaseState::RollbackRequested
                | CaseState::ExceptionRequested
                | CaseState::DismissalRequested
        ) {
            return Err(WriteBackError::Refused(format!(
                "case {case_id} is not awaiting approval (it is {})",
                <&str>::from(view.case.state)
            )));
        }
        let Some(decision_seq) = view.decision_seq else {
            return Err(no_decision(case_id));
        };
        let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
        let workflow = workflow_of(&view, &recorded);
        let Some(rule) = workflow.rule() else {
            return Err(WriteBackError::Refused(format!(
                "case {case_id}'s decision does not call for approvals"
            )));
        };
        let identity = match view.case.identity_id {
            Some(id) => self.store.identity(id).await?,
            None => None,
        };
        // A new account's owner team is the one its request names.
        let owner_team = identity
            .as_ref()
            .and_then(|i| i.owner_team.clone())
            .or_else(|| {
                recorded
                    .request
                    .as_ref()
                    .and_then(|r| r.owner_team().map(str::to_owned))
            });
        let exclusions = self
            .exclusions(&view, identity.as_ref(), recorded.requester())
            .await?;
        let groups = eligibility(&rule, voter, owner_team.as_deref(), &exclusions)
            .map_err(|refusal| WriteBackError::Forbidden(refusal.to_string()))?;
        // An override is accepted by the risk owner it names, and no one else.
        if let Some((_, risk_owner)) = &recorded.overrider
            && *risk_owner != voter.name
        {
            return Err(WriteBackError::Forbidden(format!(
                "the override asks {risk_owner} to accept the residual risk; {} cannot vote on it",
                voter.name
            )));
        }
        Ok(Ballot {
            rule,
            groups,
            owner_team,
            exclusions,
            view,
            decision_seq,
            recorded,
            workflow,
            identity,
        })
    }

    /// Records `voter`'s vote on `case_id`'s pending change.
    ///
    /// The voter must be eligible under the decision's approval rule (in one of its groups,
    /// enabled, and not excluded by separation of duties: the engine, a source of the case's
    /// findings, the requester, the subject identity; admins are not exempt). The vote is
    /// bound to the exact change: the decision entry it answers, its bundle, the action and
    /// the target. An approval that completes the rule queues the write-back job in the same
    /// transaction, after every earlier voter's eligibility is checked again against the
    /// principals as they are now (a voter removed from the team, or disabled, stops counting).
    /// A rejection ends the request: the case becomes `rejected`.
    ///
    /// The vote rests on the case as read: if another vote (or anything else) changed the
    /// case first, it is read again and decided again.
    pub async fn vote(
        &self,
        case_id: CaseId,
        voter: &Principal,
        verdict: Verdict,
        rationale: &str,
        dry_run: bool,
    ) -> Result<VoteOutcome, WriteBackError> {
        if rationale.trim().is_empty() {
            return Err(WriteBackError::Refused("a vote needs a rationale".into()));
        }
        for _ in 0..STALE_RETRIES {
            let Ballot {
                view,
                decision_seq,
                recorded,
                mut workflow,
                identity,
                rule,
                groups,
                owner_team,
                exclusions,
            } = self.ballot(case_id, voter).await?;
            let decision = recorded.decision.clone();
            let rollback = recorded.rollback.clone();
            let exception = recorded.exception.clone();
            // A vote binds to the object the change is made to: a request's own target (an
            // offboarding's is pinned to a key id), else the case's identity.
            let (system, external_id) = match (&recorded.request, &identity) {
                (Some(request), _) => (
                    request.spec.system().to_owned(),
                    request.spec.external_id().to_owned(),
                ),
                (None, Some(identity)) => (identity.system.clone(), identity.external_id.clone()),
                (None, None) => split_subject(&view.case.subject),
            };
            // A rollback's vote binds to the change it would undo.
            let rollback_job = match &rollback {
                Some(request) => Some(
                    view.job
                        .clone()
                        .filter(|j| j.job.id == request.job)
                        .ok_or_else(|| {
                            WriteBackError::Refused(format!(
                                "case {case_id}'s rollback names job {}, which is not its job",
                                request.job
                            ))
                        })?,
                ),
                None => None,
            };
            // An exception's vote binds to the exception, not to a change.
            let governance_request = if exception.is_some() {
                Some(writ_core::workflow::ACCEPT_RISK_ACTION)
            } else if recorded.dismissal.is_some() {
                Some(writ_core::workflow::DISMISS_ACTION)
            } else {
                None
            };
            let action = match (&rollback_job, governance_request, &recorded.request) {
                (Some(job), _, _) => Some(job.job.action.clone()),
                (None, Some(_), _) => None,
                (None, None, Some(request)) => Some(request.change.clone()),
                (None, None, None) => {
                    Some(action_from_name(&decision.action).ok_or_else(|| {
                        WriteBackError::Refused(format!(
                            "action {} needs parameters from a person; it cannot be voted on",
                            decision.action
                        ))
                    })?)
                }
            };
            let now = self.clock.now();
            let approval = Approval {
                id: ApprovalId(self.ids.next_id(now)),
                change_id: ChangeId(case_id.as_uuid()),
                approver: voter.name.clone(),
                verdict,
                rationale: rationale.to_owned(),
                at: now,
                binding: Some(VoteBinding {
                    decision_seq,
                    bundle_hash: decision.bundle_hash,
                    action,
                    system,
                    external_id,
                    groups: groups.iter().map(ToString::to_string).collect(),
                    rollback: rollback.is_some(),
                    request: governance_request.map(str::to_owned),
                }),
            };
            let actor = actor_of(voter);
            let (body, key) = match verdict {
                Verdict::Approve => (
                    EventBody::ApprovalGranted(ApprovalGranted {
                        approval,
                        rationale: rationale.to_owned(),
                    }),
                    format!("approval:{case_id}:{decision_seq}:{}", voter.name),
                ),
                Verdict::Reject => {
                    let mut case = view.case.clone();
                    // A rejected rollback leaves the change in effect; a rejected exception
                    // leaves the case as it was.
                    case.state = match (&rollback, recorded.request_was()) {
                        (Some(_), _) => CaseState::Remediated,
                        (None, Some(was)) => was,
                        (None, None) => CaseState::Rejected,
                    };
                    (
                        EventBody::ChangeRejected(ChangeRejected {
                            approval,
                            rationale: rationale.to_owned(),
                            case,
                        }),
                        format!("rejection:{case_id}:{decision_seq}:{}", voter.name),
                    )
                }
            };
            workflow
                .apply(case_id, &body)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let mut group = vec![Draft {
                policy_bundle: Some(decision.bundle_hash),
                expect: vec![case_expectation(&view)],
                ..Draft::new(Some(case_id), actor.clone(), key, body)
            }];
            let mut job = None;
            if verdict == Verdict::Approve {
                // Eligibility again, now, for every vote that would count.
                let mut refreshed = BTreeMap::new();
                for name in workflow.votes.keys() {
                    let current = if *name == voter.name {
                        Some(voter.clone())
                    } else {
                        self.store.principal(name).await?.map(|v| v.principal)
                    };
                    let groups = current
                        .and_then(|p| {
                            eligibility(&rule, &p, owner_team.as_deref(), &exclusions).ok()
                        })
                        .unwrap_or_default();
                    refreshed.insert(name.clone(), groups);
                }
                workflow.votes = refreshed;
                if let Some((reviewer, reason, _)) = &recorded.dismissal
                    && workflow.may_dismiss()
                {
                    // The second person's approval: the case is dismissed, in the same group.
                    let body =
                        crate::lifecycle::dismissal(&view.case, reviewer, reason, &mut workflow)?;
                    group.push(Draft::new(
                        Some(case_id),
                        actor.clone(),
                        format!("dismissal:{case_id}:{decision_seq}"),
                        body,
                    ));
                } else if let Some((asked, _)) = &exception
                    && workflow.may_grant_exception()
                {
                    // The last approval an exception needed: it is in force, in the same
                    // group.
                    group.push(grant_exception(&view.case, asked, &mut workflow, &actor)?);
                } else if let (Some(job_view), Some(request)) = (&rollback_job, &rollback)
                    && workflow.may_roll_back()
                {
                    // The last approval a rollback needed: its intent, in the same group; the
                    // worker undoes the change.
                    let mut step = Step::new(job_view);
                    group.push(rollback_intent(
                        &mut step,
                        &mut workflow,
                        &actor,
                        &request.rationale,
                    )?);
                    job = Some(step.job);
                } else if workflow.may_queue() {
                    let (draft, queued) = self
                        .queue(
                            &view,
                            &decision,
                            recorded.request.as_ref(),
                            &mut workflow,
                            &actor,
                            dry_run,
                        )
                        .await?;
                    group.push(draft);
                    job = Some(queued);
                }
            }
            match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                Err(err) => return Err(err),
                Ok(_) => {
                    return Ok(VoteOutcome {
                        verdict,
                        groups: groups.iter().map(ToString::to_string).collect(),
                        missing: if job.is_some() {
                            0
                        } else {
                            workflow.votes_missing()
                        },
                        rule: rule.to_string(),
                        job,
                    });
                }
            }
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing while the vote was recorded; try again"
        )))
    }

    /// Who never counts as an approver of this case's change.
    pub(crate) async fn exclusions(
        &self,
        view: &CaseView,
        identity: Option<&writ_core::identity::Identity>,
        requester: Option<&str>,
    ) -> Result<Exclusions, WriteBackError> {
        let sources = self
            .store
            .case_sources(view.case.id)
            .await?
            .into_iter()
            .map(|s| canonical_name(&s).unwrap_or(s))
            .collect();
        let mut subject = BTreeSet::new();
        let external = identity.map_or(view.case.subject.as_str(), |i| i.external_id.as_str());
        for name in std::iter::once(external).chain(external.split(['/', ':'])) {
            if let Ok(name) = canonical_name(name) {
                subject.insert(name);
            }
        }
        Ok(Exclusions {
            sources,
            // Changes are requested by the engine from a decision (which never votes); a
            // rollback names the principal who asked for it.
            requester: requester.map(str::to_owned),
            subject,
        })
    }

    /// The draft that queues the write-back of `view`'s decided action (checked with
    /// `workflow`, which it advances), and the job.
    async fn queue(
        &self,
        view: &CaseView,
        decision: &Decision,
        request: Option<&writ_core::request::Request>,
        workflow: &mut CaseWorkflow,
        actor: &str,
        dry_run: bool,
    ) -> Result<(Draft, Job), WriteBackError> {
        let case_id = view.case.id;
        let now = self.clock.now();
        let job = match request {
            // A requested change: the request names its target and the change.
            Some(request) => request.job(JobId(self.ids.next_id(now)), case_id, now, dry_run),
            None => {
                let action = action_from_name(&decision.action).ok_or_else(|| {
                    WriteBackError::Refused(format!(
                        "action {} needs parameters from a person; not queued",
                        decision.action
                    ))
                })?;
                let identity = match view.case.identity_id {
                    Some(id) => self.store.identity(id).await?,
                    None => None,
                }
                .ok_or_else(|| {
                    WriteBackError::Refused("the case's identity is not in the inventory".into())
                })?;
                Job::queued(
                    JobId(self.ids.next_id(now)),
                    case_id,
                    &identity.system,
                    &identity.external_id,
                    action,
                    dry_run,
                )
            }
        };
        let mut case = view.case.clone();
        case.state = CaseState::Remediating;
        let body = EventBody::ChangeRequested(ChangeRequested {
            job: job.clone(),
            case: Some(case),
        });
        workflow
            .apply(case_id, &body)
            .map_err(|err| WriteBackError::Refused(err.to_string()))?;
        let draft = Draft {
            policy_bundle: Some(decision.bundle_hash),
            ..Draft::new(Some(case_id), actor, format!("job:{}:queued", job.id), body)
        };
        Ok((draft, job))
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
            for view in claimed {
                let id = view.job.id;
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
                let worked = match self.work(view, &mut report).await {
                    // Someone else moved the job or its case first: theirs stands.
                    Err(WriteBackError::Stale(why)) => {
                        tracing::info!(job = %id, %why, "job changed meanwhile; leaving it");
                        Ok(())
                    }
                    other => other,
                };
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
    pub(crate) async fn renew(&self, job: JobId) -> Result<bool, WriteBackError> {
        let held = self
            .store
            .renew_lease(job, &self.holder, self.lease_end())
            .await?;
        if !held {
            tracing::warn!(job = %job, "lease lost to another worker; leaving the job to it");
        }
        Ok(held)
    }

    async fn work(&self, view: JobView, report: &mut PassReport) -> Result<(), WriteBackError> {
        // The case as read now; no step of the job before its verdict changes it, so every
        // step (and the verdict's expectation) uses this one read.
        let case = &self.case_view(view.job.case_id).await?;
        let plan = match self.backing(&view, case).await {
            Ok(plan) => plan,
            Err(why) => {
                tracing::error!(
                    job = %view.job.id,
                    case = %view.job.case_id,
                    %why,
                    "refusing a job that the ledger does not back; nothing was changed"
                );
                report.refused += 1;
                return Ok(());
            }
        };
        let mut step = Step::new(&view);
        let Some(connector) = self.connectors.get(&step.job.system).cloned() else {
            let reason = format!("no connector configured for system {}", step.job.system);
            return self.fail(step, case, &reason, report).await;
        };
        if step.job.state == JobState::RollbackIntent {
            let plan = plan.ok_or_else(|| no_plan(step.job.id))?;
            let rationale = self.rollback_rationale(step.job.id).await?;
            return self
                .finish_rollback(step, case, &plan, rationale, &*connector, report)
                .await
                .map(|_| ());
        }
        // What may already have happened, by the last recorded state.
        let plan = match step.job.state {
            JobState::Queued => {
                if let Some(reason) = self.guard(&step.job).await? {
                    return match reason {
                        Guard::Wait(until, why) => {
                            step.job.next_attempt_at = Some(until);
                            step.job.last_error = Some(why.clone());
                            self.record_job(
                                &mut step,
                                &format!("held:{}", until.as_microsecond()),
                                |job| {
                                    EventBody::WriteBackFailed(WriteBackFailed {
                                        job,
                                        case: None,
                                        retryable: true,
                                        error: why,
                                        held_by_guard: true,
                                        needs_attention: false,
                                    })
                                },
                            )
                            .await?;
                            report.retried += 1;
                            Ok(())
                        }
                        Guard::Refuse(why) => self.fail(step, case, &why, report).await,
                    };
                }
                step.job.attempts += 1;
                let plan = match connector
                    .plan(&step.job.external_id, &step.job.action)
                    .await
                {
                    Ok(plan) => plan,
                    Err(err) => return self.retry_or_fail(step, case, err, report).await,
                };
                // An offboarding checked its dependants when it was asked for; one that used
                // the principal since stops it for a human.
                if let Some(reason) = self.dependants_came_back(case, &plan).await? {
                    return self.fail(step, case, &reason, report).await;
                }
                step.job.state = if step.job.dry_run {
                    JobState::Planned
                } else {
                    JobState::Intent
                };
                // The intent's key names the job and the attempt: if it was already recorded,
                // another worker (another replica) holds this attempt. Leave it.
                let intent_key = format!("intent:{}", step.job.attempts);
                let claimed = self
                    .record_job(&mut step, &intent_key, |job| {
                        EventBody::WriteBackIntent(WriteBackIntent {
                            job,
                            plan: plan.clone(),
                        })
                    })
                    .await?;
                if !claimed {
                    return Ok(());
                }
                if step.job.dry_run {
                    report.planned += 1;
                    return Ok(());
                }
                plan
            }
            JobState::Intent | JobState::Applied => {
                step.job.attempts += 1;
                plan.ok_or_else(|| no_plan(step.job.id))?
            }
            _ => return Ok(()),
        };
        // A rotation with cut-over goes step by step, each recorded before the next.
        if step.job.action == writ_core::change::Action::Rotate
            && let Some(rotation) = connector.key_rotation()
        {
            return self
                .drive_rotation(step, case, &plan, rotation, report)
                .await;
        }

        if step.job.state == JobState::Intent {
            // Fence: only the lease holder touches the target.
            if !self.renew(step.job.id).await? {
                return Ok(());
            }
            // After a crash the change may already be in effect: read before applying again.
            let in_effect = matches!(connector.verify(&plan).await, Ok(Verification::Confirmed));
            let outcome = if in_effect {
                ApplyOutcome::AlreadyInState
            } else {
                match connector.apply(&plan, &step.job.id.to_string()).await {
                    Ok(outcome) => outcome,
                    Err(err) => return self.retry_or_fail(step, case, err, report).await,
                }
            };
            if let ApplyOutcome::Rejected { reason } = &outcome {
                return self
                    .fail(step, case, &format!("the target refused: {reason}"), report)
                    .await;
            }
            step.job.state = JobState::Applied;
            step.job.applied_at = Some(self.clock.now());
            self.record_job(&mut step, "applied", |job| {
                EventBody::WriteBackApplied(WriteBackApplied { job, outcome })
            })
            .await?;
        }

        match connector.verify(&plan).await {
            Ok(Verification::Confirmed) => {
                step.job.state = JobState::Verified;
                // The case as read before the job was worked: intent and apply leave it as it
                // was, and the append expects exactly that version.
                let mut remediated = case.case.clone();
                remediated.state = CaseState::Remediated;
                // A requested account exists now: the inventory records it with its owner,
                // in the same transaction.
                let created = self.created_identity(&step.job).await?;
                if let Some(identity) = &created {
                    remediated.identity_id = Some(identity.id);
                }
                let body = EventBody::WriteBackVerified(WriteBackVerified {
                    job: step.job.clone(),
                    case: remediated,
                    verification: ReadBack::Confirmed,
                });
                let mut extra: Vec<Draft> = created
                    .map(|identity| {
                        Draft::new(
                            None,
                            ENGINE_ACTOR,
                            format!("job:{}:inventory", step.job.id),
                            EventBody::IdentitySynced(writ_core::event::IdentitySynced {
                                identity,
                                object_kind: None,
                                reason: Some(format!(
                                    "created by job {} for case {}",
                                    step.job.id, step.job.case_id
                                )),
                            }),
                        )
                    })
                    .into_iter()
                    .collect();
                // What a request granted has ended by itself, read back: the request has run
                // its course and its case closes, in the same transaction.
                if let Some(reason) = self.request_end_reason(case, &step.job).await? {
                    let mut closed = case.case.clone();
                    if let Some(identity) = &extra.first().and_then(|d| match &d.body {
                        EventBody::IdentitySynced(s) => Some(s.identity.id),
                        _ => None,
                    }) {
                        closed.identity_id = Some(*identity);
                    }
                    closed.state = CaseState::Closed;
                    closed.compliance_closed = true;
                    extra.push(Draft::new(
                        Some(step.job.case_id),
                        ENGINE_ACTOR,
                        format!("job:{}:request-ended", step.job.id),
                        EventBody::CaseClosed(writ_core::event::CaseClosed {
                            case: closed,
                            evidence: writ_core::event::ClosureEvidence::RequestEnded {
                                job: step.job.id,
                                reason,
                            },
                        }),
                    ));
                }
                let expect = vec![step.expectation(), case_expectation(case)];
                self.record_with(&mut step, ENGINE_ACTOR, "verified", body, expect, extra)
                    .await?;
                report.verified += 1;
                Ok(())
            }
            Ok(Verification::NotInEffect { observed }) => {
                self.fail(
                    step,
                    case,
                    &format!(
                        "read-back does not show the change: {}",
                        observed.attributes
                    ),
                    report,
                )
                .await
            }
            Err(err) => self.retry_or_fail(step, case, err, report).await,
        }
    }

    /// Asks to undo `case_id`'s verified change from its recorded pre-image, as `by`, for
    /// `rationale`.
    ///
    /// Policy decides the rollback like any change (Cedar action `rollback`, principal
    /// `Writ::User::"<by>"`, the change's identity, finding and source, and the change's
    /// action as `context.requested_action`); the request and its decision are recorded.
    /// - Automatic (`auto:rollback` permitted): the intent is recorded in the same group and
    ///   the change is undone now; if the target does not take it, the worker tries again
    ///   (retryable errors) and the call says so.
    /// - Approval: the case waits in `rollback_requested` for the votes the decision asks
    ///   for (`by` never counts); the vote that completes them records the intent, and the
    ///   worker undoes the change.
    /// - Anything else: refused ([`WriteBackError::Forbidden`], naming the policy's reason).
    pub async fn rollback(
        &self,
        case_id: CaseId,
        by: &Principal,
        rationale: &str,
    ) -> Result<RollbackOutcome, WriteBackError> {
        if by.disabled {
            return Err(WriteBackError::Forbidden(format!(
                "{} is disabled",
                by.name
            )));
        }
        let actor = actor_of(by);
        if rationale.trim().is_empty() {
            return Err(WriteBackError::Refused(
                "a rollback needs a rationale".into(),
            ));
        }
        let policy = self.policy.clone().ok_or_else(|| {
            WriteBackError::Refused(
                "no policy bundle is configured: a rollback is decided by policy".into(),
            )
        })?;
        for _ in 0..STALE_RETRIES {
            let case = self.case_view(case_id).await?;
            if case.case.state == CaseState::RollbackRequested {
                return Err(WriteBackError::Refused(format!(
                    "a rollback of case {case_id} already waits for approvals; vote on it"
                )));
            }
            let view = case
                .job
                .clone()
                .filter(|j| {
                    j.job.state == JobState::Verified && case.case.state == CaseState::Remediated
                })
                .ok_or_else(|| {
                    WriteBackError::Refused(format!(
                        "case {case_id} has no verified change to undo"
                    ))
                })?;
            let plan = self
                .backing(&view, &case)
                .await
                .map_err(|why| {
                    WriteBackError::Refused(format!("the recorded change cannot be trusted: {why}"))
                })?
                .ok_or_else(|| no_plan(view.job.id))?;
            let connector = self
                .connectors
                .get(&view.job.system)
                .cloned()
                .ok_or_else(|| {
                    WriteBackError::Refused(format!(
                        "no connector configured for system {}",
                        view.job.system
                    ))
                })?;
            let Some(decision_seq) = case.decision_seq else {
                return Err(no_decision(case_id));
            };
            let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
            let evaluation = writ_policy::rollback_evaluation(&recorded.evaluation, &by.name)
                .map_err(|err| {
                    WriteBackError::Refused(format!("the rollback cannot be put to policy: {err}"))
                })?;
            let decision = policy.replay(&evaluation).map_err(|err| {
                WriteBackError::Refused(format!("policy could not decide the rollback: {err}"))
            })?;
            let waits = match &decision.tier {
                Tier::Auto => false,
                Tier::Approval { .. } => true,
                _ => {
                    return Err(WriteBackError::Forbidden(format!(
                        "policy does not allow this rollback: {}",
                        decision.reason
                    )));
                }
            };
            let mut workflow = workflow_of(&case, &recorded);
            let mut requested_case = case.case.clone();
            requested_case.state = if waits {
                CaseState::RollbackRequested
            } else {
                CaseState::Remediated
            };
            let requested = EventBody::RollbackRequested(RollbackRequested {
                case: requested_case,
                job: view.job.id,
                decision: decision.clone(),
                evaluation,
                requester: by.name.clone(),
                rationale: rationale.to_owned(),
            });
            workflow
                .apply(case_id, &requested)
                .map_err(|err| WriteBackError::Refused(err.to_string()))?;
            let mut group = vec![Draft {
                policy_bundle: Some(decision.bundle_hash),
                expect: vec![case_expectation(&case)],
                ..Draft::new(
                    Some(case_id),
                    actor.clone(),
                    format!("rollback:{}:{}", view.job.id, case.updated_seq),
                    requested,
                )
            }];
            let mut step = Step::new(&view);
            if !waits {
                group.push(rollback_intent(
                    &mut step,
                    &mut workflow,
                    &actor,
                    rationale,
                )?);
            }
            let appended = match self.append_group(group).await {
                Err(WriteBackError::Stale(_)) => continue,
                other => other?,
            };
            if waits {
                return Ok(RollbackOutcome::AwaitingApproval {
                    rule: workflow.rule().map(|r| r.to_string()).unwrap_or_default(),
                    reason: decision.reason,
                    missing: workflow.votes_missing(),
                });
            }
            let Some(intent) = appended.get(1) else {
                return Err(WriteBackError::Append(AppendError::Stopped));
            };
            step.version = intent.seq;
            step.recorded = JobState::RollbackIntent;
            step.job.attempts += 1;
            let case = self.case_view(case_id).await?;
            let mut report = PassReport::default();
            let job = self
                .finish_rollback(
                    step,
                    &case,
                    &plan,
                    rationale.to_owned(),
                    &*connector,
                    &mut report,
                )
                .await?;
            return match job.state {
                JobState::RolledBack => Ok(RollbackOutcome::RolledBack(job)),
                JobState::RollbackIntent => Err(WriteBackError::Refused(format!(
                    "the rollback is recorded but the target did not take it yet ({}); the worker will try again",
                    job.last_error.as_deref().unwrap_or("no reason given")
                ))),
                _ => Err(WriteBackError::Refused(format!(
                    "the target refused the rollback ({}); the change stays, and the case needs a human",
                    job.last_error.as_deref().unwrap_or("no reason given")
                ))),
            };
        }
        Err(WriteBackError::Refused(format!(
            "case {case_id} kept changing while the rollback was recorded; try again"
        )))
    }

    /// Restores `plan`'s pre-image for a job whose rollback intent is recorded, and records the
    /// outcome. Returns the job as recorded.
    async fn finish_rollback(
        &self,
        mut step: Step,
        case: &CaseView,
        plan: &Plan,
        rationale: String,
        connector: &dyn Connector,
        report: &mut PassReport,
    ) -> Result<Job, WriteBackError> {
        let outcome = match connector.rollback(plan).await {
            Ok(ApplyOutcome::Rejected { reason }) => {
                self.fail(
                    step.clone(),
                    case,
                    &format!("the target refused the rollback: {reason}"),
                    report,
                )
                .await?;
                step.job.state = JobState::Failed;
                step.job.last_error = Some(reason);
                return Ok(step.job);
            }
            Ok(outcome) => outcome,
            Err(err) => {
                let error = err.to_string();
                self.retry_or_fail(step.clone(), case, err, report).await?;
                step.job.last_error = Some(error);
                return Ok(step.job);
            }
        };
        let mut rolled_back = case.case.clone();
        rolled_back.state = CaseState::RolledBack;
        step.job.state = JobState::RolledBack;
        self.record_case_step(&mut step, ENGINE_ACTOR, case, "rolled-back", |job| {
            EventBody::RolledBack(RolledBack {
                job,
                case: rolled_back,
                outcome,
                rationale,
            })
        })
        .await?;
        report.rolled_back += 1;
        Ok(step.job)
    }

    /// The rationale recorded with a job's rollback intent.
    async fn rollback_rationale(&self, job: JobId) -> Result<String, WriteBackError> {
        let row = self
            .store
            .entry_by_idempotency_key(&format!("job:{job}:rollback-intent"))
            .await?
            .ok_or_else(|| WriteBackError::Refused(format!("job {job} has no rollback intent")))?;
        match entries::decode_body(&row)? {
            EventBody::RollbackIntent(intent) => Ok(intent.rationale),
            other => Err(WriteBackError::Corrupt {
                seq: row.seq,
                detail: format!("a {} entry, not a rollback intent", other.kind()),
            }),
        }
    }

    /// The blast-radius guards: a cap on changes per system per window, and never taking
    /// rights from the last privileged identity of a system.
    async fn guard(&self, job: &Job) -> Result<Option<Guard>, WriteBackError> {
        let now = self.clock.now();
        // Automation paused on the system: the job waits, with the reason, until it resumes.
        if let Some(reason) = self
            .store
            .systems()
            .await?
            .into_iter()
            .find(|s| s.system == job.system)
            .and_then(|s| s.paused_reason)
        {
            let until = now.checked_add(self.settings.pause_recheck).unwrap_or(now);
            return Ok(Some(Guard::Wait(
                until,
                format!(
                    "automation paused on {}: {reason}; waiting until it resumes",
                    job.system
                ),
            )));
        }
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

    /// Puts the job back for another try with backoff, or fails it when the error is not
    /// retryable or this was its last attempt.
    pub(crate) async fn retry_or_fail(
        &self,
        mut step: Step,
        case: &CaseView,
        err: ConnectorError,
        report: &mut PassReport,
    ) -> Result<(), WriteBackError> {
        if !err.is_retryable() || step.job.attempts >= self.settings.max_attempts {
            let reason = if err.is_retryable() {
                format!("gave up after {} attempts: {err}", step.job.attempts)
            } else {
                err.to_string()
            };
            return self.fail(step, case, &reason, report).await;
        }
        let delay =
            self.settings.backoff * i32::try_from(1u32 << step.job.attempts.min(10)).unwrap_or(1);
        step.job.next_attempt_at = self.clock.now().checked_add(delay).ok();
        step.job.last_error = Some(err.to_string());
        // Keep the state: a job whose intent is recorded is read back before any new apply.
        let attempt = step.job.attempts;
        self.record_job(&mut step, &format!("retry:{attempt}"), |job| {
            EventBody::WriteBackFailed(WriteBackFailed {
                job,
                case: None,
                retryable: true,
                error: err.to_string(),
                held_by_guard: false,
                needs_attention: false,
            })
        })
        .await?;
        report.retried += 1;
        Ok(())
    }

    /// Fails the job and its case for good; a human must look.
    pub(crate) async fn fail(
        &self,
        mut step: Step,
        case: &CaseView,
        reason: &str,
        report: &mut PassReport,
    ) -> Result<(), WriteBackError> {
        step.job.state = JobState::Failed;
        step.job.last_error = Some(reason.to_owned());
        step.job.next_attempt_at = None;
        let mut failed = case.case.clone();
        failed.state = CaseState::WriteBackFailed;
        self.record_case_step(&mut step, ENGINE_ACTOR, case, "failed", |job| {
            EventBody::WriteBackFailed(WriteBackFailed {
                job,
                case: Some(failed),
                retryable: false,
                error: reason.to_owned(),
                held_by_guard: false,
                needs_attention: true,
            })
        })
        .await?;
        report.failed += 1;
        Ok(())
    }

    /// Appends a step of the job that leaves its case as it is, expecting the job as `step`
    /// last saw it. Returns false when the same step of the same job was already recorded (by
    /// another worker).
    pub(crate) async fn record_job(
        &self,
        step: &mut Step,
        name: &str,
        body: impl FnOnce(Job) -> EventBody,
    ) -> Result<bool, WriteBackError> {
        let expect = vec![step.expectation()];
        let body = body(step.job.clone());
        self.record(step, ENGINE_ACTOR, name, body, expect).await
    }

    /// Appends a step that moves the job and its case, expecting both as read.
    pub(crate) async fn record_case_step(
        &self,
        step: &mut Step,
        actor: &str,
        case: &CaseView,
        name: &str,
        body: impl FnOnce(Job) -> EventBody,
    ) -> Result<bool, WriteBackError> {
        let expect = vec![step.expectation(), case_expectation(case)];
        let body = body(step.job.clone());
        self.record(step, actor, name, body, expect).await
    }

    async fn record(
        &self,
        step: &mut Step,
        actor: &str,
        name: &str,
        body: EventBody,
        expect: Vec<Expectation>,
    ) -> Result<bool, WriteBackError> {
        self.record_with(step, actor, name, body, expect, Vec::new())
            .await
    }

    /// [`Self::record`], with `extra` drafts appended in the same transaction after the step.
    async fn record_with(
        &self,
        step: &mut Step,
        actor: &str,
        name: &str,
        body: EventBody,
        expect: Vec<Expectation>,
        extra: Vec<Draft>,
    ) -> Result<bool, WriteBackError> {
        let draft = Draft {
            expect,
            ..Draft::new(
                Some(step.job.case_id),
                actor,
                format!("job:{}:{name}", step.job.id),
                body,
            )
        };
        let mut group = vec![draft];
        group.extend(extra);
        let appended = self.append_group(group).await?;
        let Some(appended) = appended.first() else {
            return Err(WriteBackError::Append(AppendError::Stopped));
        };
        if appended.duplicate {
            return Ok(false);
        }
        step.version = appended.seq;
        step.recorded = step.job.state;
        Ok(true)
    }

    /// The identity a verified `create` job made (a requested service account), as the
    /// inventory will record it: its owner team from the change, its id the inventory's if the
    /// account was known before. `None` for any other job.
    async fn created_identity(
        &self,
        job: &Job,
    ) -> Result<Option<writ_core::identity::Identity>, WriteBackError> {
        let writ_core::change::Action::Create { owner_team, .. } = &job.action else {
            return Ok(None);
        };
        let now = self.clock.now();
        let known = self
            .store
            .identity_by_external_id(&job.system, &job.external_id)
            .await?;
        Ok(Some(writ_core::identity::Identity {
            id: known.as_ref().map_or_else(
                || writ_core::ids::IdentityId(self.ids.next_id(now)),
                |i| i.id,
            ),
            system: job.system.clone(),
            external_id: job.external_id.clone(),
            kind: writ_core::identity::IdentityKind::ServiceAccount,
            owner_team: Some(owner_team.clone()),
            criticality: known
                .as_ref()
                .map_or(writ_core::identity::Criticality::Medium, |i| i.criticality),
            privileged: false,
            tags: vec![format!("request_case:{}", job.case_id)],
            last_used_at: None,
            reconciled_at: Some(writ_core::clock::to_micros(now)),
        }))
    }

    /// For an offboarding whose dependants were checked by the principal's quiet period: why
    /// it must stop, when the plan's pre-image shows a use since that check.
    async fn dependants_came_back(
        &self,
        case: &CaseView,
        plan: &Plan,
    ) -> Result<Option<String>, WriteBackError> {
        if case.case.finding_type != "request:offboard" {
            return Ok(None);
        }
        let Some(decision_seq) = case.decision_seq else {
            return Ok(None);
        };
        let recorded = entries::recorded_decision_at(&*self.store, decision_seq).await?;
        let Some(writ_core::request::DependantsCheck::Quiet { last_used_at, .. }) =
            recorded.request.as_ref().and_then(|r| r.dependants.clone())
        else {
            return Ok(None);
        };
        let now_used = crate::requests::last_used(&plan.pre_image.attributes);
        Ok(match (now_used, last_used_at) {
            (Some(now), before) if before.is_none_or(|b| now > b) => Some(format!(
                "a dependant used {} at {now}, after the offboarding was checked: cut them over first (rotate its credential), then ask again",
                plan.external_id
            )),
            _ => None,
        })
    }

    /// When `job` ends what a request granted (queued by `access_expired`), why it ended.
    async fn request_end_reason(
        &self,
        case: &CaseView,
        job: &Job,
    ) -> Result<Option<String>, WriteBackError> {
        if !case.case.finding_type.starts_with("request:") {
            return Ok(None);
        }
        let rows = self.store.case_entries(case.case.id).await?;
        for row in rows.iter().rev() {
            if let EventBody::AccessExpired(expired) = entries::decode_body(row)? {
                return Ok((expired.job.id == job.id).then_some(expired.reason));
            }
        }
        Ok(None)
    }

    /// The connector of `system`, if one is configured.
    pub(crate) fn connector(&self, system: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(system).cloned()
    }

    /// Appends one group, mapping the sequencer's refusals to this engine's errors.
    pub(crate) async fn append_group(
        &self,
        group: Vec<Draft>,
    ) -> Result<Vec<Appended>, WriteBackError> {
        let results = self.sequencer.append_group(group).await;
        results
            .into_iter()
            .map(|result| match result {
                Ok(appended) => Ok(appended),
                Err(AppendError::Stale(why)) => Err(WriteBackError::Stale(why)),
                Err(AppendError::Illegal(err)) => Err(WriteBackError::Refused(err.to_string())),
                Err(AppendError::Conflict(why)) => Err(WriteBackError::Refused(format!(
                    "refused by the store: {why}"
                ))),
                Err(err) => Err(WriteBackError::Append(err)),
            })
            .collect()
    }

    pub(crate) async fn case_view(&self, id: CaseId) -> Result<CaseView, WriteBackError> {
        self.store
            .case_view(id)
            .await?
            .ok_or_else(|| WriteBackError::NotFound(format!("no case {id}")))
    }

    /// Checks `view` (a job from the `jobs` table) against the ledger before anything touches
    /// a target: the entry that queued it names the same change; the decision in force on its
    /// case allowed it (automatically, or with the approvals it asked for, each an entry by a
    /// distinct approver); the entry that last changed it holds exactly this job; and, once
    /// it has an intent, the recorded plan is the one the ledger holds. Returns the plan.
    /// An error says why the job is not backed.
    async fn backing(&self, view: &JobView, case: &CaseView) -> Result<Option<Plan>, String> {
        let job = &view.job;
        // Every entry the job rests on, read in one query and decoded against its leaf.
        let Some(decision_seq) = &case.decision_seq else {
            return Err("its case has no decision".into());
        };
        let mut wanted = vec![view.created_seq, *decision_seq, view.updated_seq];
        wanted.extend(view.intent_seq);
        // Votes answer the decision in force: before the job was queued (a change's), or
        // before its rollback intent (a rollback's).
        let votes_until = view.created_seq.max(view.updated_seq);
        wanted.extend(
            case.votes
                .iter()
                .map(|(_, seq)| *seq)
                .filter(|seq| (*decision_seq..=votes_until).contains(seq)),
        );
        wanted.sort_unstable();
        wanted.dedup();
        let rows = self
            .store
            .entries_at(&wanted)
            .await
            .map_err(|err| err.to_string())?;
        let mut events = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let event = entries::decode(row).map_err(|err| err.to_string())?;
            events.insert(row.seq, event);
        }
        let read = |seq: u64| {
            events
                .get(&seq)
                .ok_or_else(|| format!("entry {seq} does not exist"))
        };
        // The change itself.
        let queued = read(view.created_seq)?;
        let (queued_job, expired) = match &queued.body {
            EventBody::ChangeRequested(requested) => (&requested.job, false),
            EventBody::AccessExpired(expired) => (&expired.job, true),
            _ => {
                return Err(format!(
                    "entry {} (said to queue it) is a {}",
                    view.created_seq, queued.kind
                ));
            }
        };
        let same_change = |recorded: &Job| {
            recorded.id == job.id
                && recorded.case_id == job.case_id
                && recorded.system == job.system
                && recorded.external_id == job.external_id
                && recorded.action == job.action
                && recorded.dry_run == job.dry_run
        };
        if queued.case_id != Some(job.case_id) || !same_change(queued_job) {
            return Err(format!(
                "entry {} queued a different change",
                view.created_seq
            ));
        }
        // What allowed it: the change's decision, or a rollback's.
        let decided = read(*decision_seq)?;
        let (decision, rollback, votes_until) = match &decided.body {
            // A requested change: the job makes exactly the change the request names; the
            // change that ends it at expiry is the engine's, on the request's approved terms.
            EventBody::RequestSubmitted(submitted) => {
                let request = &submitted.request;
                let wanted = if expired {
                    writ_core::request::RequestSpec::at_expiry(&request.change)
                } else {
                    Some(request.change.clone())
                };
                if decided.case_id != Some(job.case_id)
                    || *decision_seq > view.created_seq
                    || wanted.as_ref() != Some(&job.action)
                    || request.spec.system() != job.system
                    || request.spec.external_id() != job.external_id
                {
                    return Err(format!(
                        "entry {decision_seq} is not the request this job fulfils"
                    ));
                }
                if (expired || submitted.decision.tier == Tier::Auto)
                    && queued.actor != ENGINE_ACTOR
                {
                    return Err(format!(
                        "entry {} queued it on nobody's approval",
                        view.created_seq
                    ));
                }
                if expired {
                    (&submitted.decision, None, 0)
                } else {
                    (&submitted.decision, None, view.created_seq)
                }
            }
            _ if expired => {
                return Err(format!(
                    "entry {decision_seq} is not a request: nothing of it can expire"
                ));
            }
            EventBody::DecisionRecorded(decided_body) => {
                if decided.case_id != Some(job.case_id) || *decision_seq > view.created_seq {
                    return Err(format!(
                        "entry {decision_seq} is not the decision of its case before it was queued"
                    ));
                }
                if decided_body.decision.tier == Tier::Auto
                    && (decided_body.routing.is_some() || queued.actor != ENGINE_ACTOR)
                {
                    return Err(format!(
                        "entry {decision_seq} sent the case to a human; nothing is automatic"
                    ));
                }
                (&decided_body.decision, None, view.created_seq)
            }
            EventBody::RollbackRequested(requested) => {
                if decided.case_id != Some(job.case_id)
                    || requested.job != job.id
                    || *decision_seq < view.created_seq
                    || !matches!(
                        job.state,
                        JobState::Verified | JobState::RollbackIntent | JobState::RolledBack
                    )
                    || (job.state != JobState::Verified && *decision_seq > view.updated_seq)
                {
                    return Err(format!(
                        "entry {decision_seq} is not the request to roll this job back"
                    ));
                }
                (
                    &requested.decision,
                    Some(requested.requester.as_str()),
                    view.updated_seq,
                )
            }
            EventBody::OverrideRequested(asked) => {
                // An admin's override, approved by the risk owner: like an approval decision.
                if decided.case_id != Some(job.case_id) || *decision_seq > view.created_seq {
                    return Err(format!(
                        "entry {decision_seq} is not the override of its case before it was queued"
                    ));
                }
                (&asked.decision, None, view.created_seq)
            }
            EventBody::BreakGlassUsed(used) => {
                // An emergency change on its user's word: queued by that user, right after.
                if decided.case_id != Some(job.case_id)
                    || *decision_seq > view.created_seq
                    || queued.actor != decided.actor
                    || used.decision.tier != Tier::Auto
                {
                    return Err(format!(
                        "entry {decision_seq} is not the break-glass that queued this job"
                    ));
                }
                (&used.decision, None, view.created_seq)
            }
            EventBody::BypassReviewed(reviewed) => {
                // A rejecting review's remedy (rotate again): on the reviewer's word, queued by
                // that reviewer right after.
                match &reviewed.remedy {
                    Some(remedy)
                        if decided.case_id == Some(job.case_id)
                            && *decision_seq <= view.created_seq
                            && queued.actor == decided.actor
                            && remedy.decision.tier == Tier::Auto
                            && remedy.decision.action == job.action.name() =>
                    {
                        (&remedy.decision, None, view.created_seq)
                    }
                    _ => {
                        return Err(format!(
                            "entry {decision_seq} is not the review that queued this job"
                        ));
                    }
                }
            }
            _ => return Err(format!("entry {decision_seq} is not a decision")),
        };
        // A verified change under a rollback request that has not gone ahead (waiting, or
        // rejected) is not being changed: its approvals are checked when the rollback starts.
        let rollback_waiting = rollback.is_some() && job.state == JobState::Verified;
        // Who asked for what the decision allows never counts among its approvers: a
        // rollback's requester, an override's admin.
        let requester = match &decided.body {
            EventBody::OverrideRequested(asked) => Some(asked.requester.as_str()),
            EventBody::RequestSubmitted(submitted) => Some(submitted.request.requester.as_str()),
            _ => rollback,
        };
        match &decision.tier {
            _ if rollback_waiting => {}
            // Ending a requested change at its expiry takes away only what was approved.
            _ if expired => {}
            Tier::Auto => {}
            Tier::Approval {
                count,
                approver_group,
            } => {
                let rule = ApprovalRule::from_recorded(*count, approver_group);
                let mut approvers = BTreeMap::new();
                for (approver, seq) in &case.votes {
                    if *seq > votes_until || *seq < *decision_seq {
                        continue;
                    }
                    let vote = read(*seq)?;
                    let EventBody::ApprovalGranted(granted) = &vote.body else {
                        return Err(format!("entry {seq} is not an approval"));
                    };
                    let by_voter = [format!("user:{approver}"), format!("service:{approver}")];
                    if vote.case_id != Some(job.case_id)
                        || granted.approval.approver != *approver
                        || !by_voter.contains(&vote.actor)
                        || approver == ENGINE_ACTOR
                        || requester == Some(approver.as_str())
                    {
                        return Err(format!("entry {seq} is not {approver}'s approval of it"));
                    }
                    let groups = match &granted.approval.binding {
                        Some(binding) => {
                            if binding.decision_seq != *decision_seq
                                || binding.bundle_hash != decision.bundle_hash
                                || binding.action.as_ref() != Some(&job.action)
                                || binding.request.is_some()
                                || binding.rollback != rollback.is_some()
                                || binding.system != job.system
                                || binding.external_id != job.external_id
                            {
                                return Err(format!(
                                    "entry {seq}: {approver}'s vote is bound to another change"
                                ));
                            }
                            rule.quorums
                                .iter()
                                .filter(|q| binding.groups.contains(&q.group.to_string()))
                                .map(|q| q.group.clone())
                                .collect()
                        }
                        // Votes from before votes were bound: single-group rules of a
                        // change only.
                        None if rollback.is_none() => {
                            rule.quorums.iter().map(|q| q.group.clone()).collect()
                        }
                        None => return Err(format!("entry {seq}: an unbound rollback vote")),
                    };
                    approvers.insert(approver.clone(), groups);
                }
                if !rule.is_met(&approvers) {
                    return Err(format!(
                        "the decision needs \"{rule}\"; the ledger's votes do not meet it"
                    ));
                }
            }
            other => {
                return Err(format!("a {other:?} decision allows no change"));
            }
        }
        // The job as last recorded.
        let latest = read(view.updated_seq)?;
        if latest.body.job() != Some(job) {
            return Err(format!(
                "entry {} does not hold the job as the table has it",
                view.updated_seq
            ));
        }
        // The plan: the job's own intent entry, once it has one.
        let Some(intent_seq) = view.intent_seq else {
            return if matches!(
                job.state,
                JobState::Intent | JobState::Applied | JobState::RollbackIntent
            ) {
                Err("the job has an intent but the read model does not say where (a database from before schema 6: run `writ admin rebuild`)".into())
            } else {
                Ok(None)
            };
        };
        let recorded = read(intent_seq)?;
        match &recorded.body {
            EventBody::WriteBackIntent(intent)
                if recorded.case_id == Some(job.case_id) && same_change(&intent.job) =>
            {
                Ok(Some(intent.plan.clone()))
            }
            _ => Err(format!("entry {intent_seq} is not this job's intent")),
        }
    }
}

/// A job being worked: its snapshot as the worker changes it, and the state and version
/// (the seq of the entry) it was last recorded with, which the next step expects.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) job: Job,
    pub(crate) recorded: JobState,
    pub(crate) version: u64,
}

impl Step {
    pub(crate) fn new(view: &JobView) -> Self {
        Step {
            job: view.job.clone(),
            recorded: view.job.state,
            version: view.updated_seq,
        }
    }

    /// The expectation that the job is still as last recorded.
    pub(crate) fn expectation(&self) -> Expectation {
        Expectation::Job {
            id: self.job.id,
            state: self.recorded,
            updated_seq: self.version,
        }
    }
}

/// The draft recording `step`'s rollback intent (checked with `workflow`, which it advances),
/// expecting the job as last recorded; `step` becomes the intent.
pub(crate) fn rollback_intent(
    step: &mut Step,
    workflow: &mut CaseWorkflow,
    actor: &str,
    rationale: &str,
) -> Result<Draft, WriteBackError> {
    step.job.state = JobState::RollbackIntent;
    step.job.next_attempt_at = None;
    step.job.last_error = None;
    let body = EventBody::RollbackIntent(RollbackIntent {
        job: step.job.clone(),
        rationale: rationale.to_owned(),
    });
    workflow
        .apply(step.job.case_id, &body)
        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
    Ok(Draft {
        expect: vec![step.expectation()],
        ..Draft::new(
            Some(step.job.case_id),
            actor,
            format!("job:{}:rollback-intent", step.job.id),
            body,
        )
    })
}

/// The draft that puts `exception` in force on `case` (checked with `workflow`, which it
/// advances), made by the approval that completed it (or with the request, when policy
/// allowed it on the asker's word).
pub(crate) fn grant_exception(
    case: &writ_core::case::Case,
    exception: &writ_core::exception::Exception,
    workflow: &mut CaseWorkflow,
    actor: &str,
) -> Result<Draft, WriteBackError> {
    let mut case = case.clone();
    case.state = CaseState::RiskAccepted;
    let body = EventBody::ExceptionGranted(writ_core::event::ExceptionGranted {
        case,
        exception: exception.clone(),
    });
    workflow
        .apply(exception.case_id, &body)
        .map_err(|err| WriteBackError::Refused(err.to_string()))?;
    Ok(Draft::new(
        Some(exception.case_id),
        actor,
        format!("exception:{}:granted", exception.id),
        body,
    ))
}

/// The expectation that a case is still as `view` read it.
pub(crate) fn case_expectation(view: &CaseView) -> Expectation {
    Expectation::Case {
        id: view.case.id,
        state: view.case.state,
        updated_seq: view.updated_seq,
    }
}

/// What the read models say about a case (and its decision in force, read from the ledger),
/// as the state machine needs it.
pub(crate) fn workflow_of(view: &CaseView, recorded: &entries::RecordedDecision) -> CaseWorkflow {
    CaseWorkflow {
        requester: recorded.requester().map(str::to_owned),
        request_was: recorded.request_was(),
        case: Some(view.case.id),
        state: Some(view.case.state),
        decision: Some(recorded.decision.clone()),
        routed_to_human: false,
        // The groups each voter counts for are filled in from the principals before a job is
        // queued ([`WriteBack::approve`]); until then a vote is only a name.
        votes: view
            .votes
            .iter()
            .map(|(a, _)| (a.clone(), Default::default()))
            .collect(),
        job: view.job.as_ref().map(|j| (j.job.id, j.job.state)),
        rotation: view
            .job
            .as_ref()
            .and_then(|j| j.job.rotation.as_ref())
            .map(|r| r.step),
    }
}

fn no_decision(case_id: CaseId) -> WriteBackError {
    WriteBackError::Refused(format!(
        "case {case_id} has no decision in force (if this database predates the read models, run `writ admin rebuild`)"
    ))
}

fn no_plan(job: JobId) -> WriteBackError {
    WriteBackError::Refused(format!("job {job} has no recorded intent"))
}
