//! Ingest: from an authenticated finding to a case with a recorded decision.
//!
//! For each finding: skip it if its idempotency key was seen (returning the original outcome);
//! resolve its subject in the inventory; judge whether the source of truth is complete (owner
//! known, system reconciled recently); join the open case for the same subject and finding type
//! or open a new one; for a new case, ask the policy bundle what may happen and set the case's
//! state from the tier. Identities with an incomplete source of truth always go to human review,
//! whatever policy says, so automation never acts on them.
//!
//! Two ledger events per new case (three when automation queues the change), recorded as one
//! group, in one transaction, all or nothing:
//! `finding_received` (the finding, the evidence digest, the opening case snapshot) and
//! `decision_recorded` (the decision, the exact policy inputs, the resulting case snapshot). A
//! finding that joins an open case adds one `finding_received` event.
//!
//! Batches are pipelined: while one batch's events are being committed, the next batch is read
//! and planned against the store *and* the cases and keys of the batch in flight, so the
//! database and the policy engine work at the same time. A batch is submitted only after the
//! one before it has settled; if that one did not commit whole and the new batch relied on it
//! (it joined a case the other was opening), the new batch is planned again from the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::SignedDuration;
use tokio::sync::Mutex;
use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Strength, Tier};
use writ_core::event::{
    CaseClosed, CaseFrozen, ChangeRequested, ClosureEvidence, ControlTag, DecisionRecorded,
    EventBody, FindingReceived, ObservationSummary, Routing, SourceRef,
};
use writ_core::finding::{Finding, FindingStatus, Observation};
use writ_core::identity::{Identity, SourceOfTruth};
use writ_core::ids::{CaseId, FindingId, JobId};
use writ_core::job::{Job, action_from_name};
use writ_core::workflow::{CLOSABLE, ENGINE_ACTOR, decided_state};
use writ_core::{Clock, IdSource, Sha256Digest};
use writ_policy::{DecisionRequest, PolicyBundle};
use writ_store::{Expectation, LedgerRow, Store, StoreError};

use crate::entries::{self, UnreadableEntry};
use crate::sequencer::{AppendError, Draft, EvidenceBlob, Sequencer};
use crate::sources::Source;

/// Batches worth keeping in [`Ingestor::ingest_batch`] at once: one being planned while the
/// one before it commits. More only wait.
pub const PIPELINE_DEPTH: usize = 2;

/// One finding as submitted: what the parser made of it and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The normalised finding.
    pub observation: Observation,
    /// The bytes stored as evidence (exactly as received, or redacted).
    pub evidence: Vec<u8>,
    /// When the evidence is a redacted form, the digest of the original.
    pub redacted_from: Option<Sha256Digest>,
    /// An idempotency key given by the caller, if any.
    pub idempotency_key: Option<String>,
}

/// What happened to a finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    /// The finding's id (the original one, for a duplicate).
    pub finding_id: FindingId,
    /// The case it belongs to.
    pub case_id: CaseId,
    /// The case's state after this finding.
    pub case_state: CaseState,
    /// True when it joined a case that was already open.
    pub joined_open_case: bool,
    /// True when it decided the open case it joined again (it was stronger than the finding
    /// the decision in force was made from); the new decision supersedes the old.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redecided: bool,
    /// True when it closed the case's compliance side (a passing check).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub closed_case: bool,
    /// The closed case this finding's new case continues (the same problem, found again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reopens: Option<CaseId>,
    /// True when this idempotency key was already ingested (nothing new was recorded).
    pub duplicate: bool,
    /// The decision made when the case opened or was decided again (none when it only joined
    /// an open case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why the case went to human review regardless of policy, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// The ledger position of the finding's event.
    pub seq: u64,
}

/// Why a finding could not be ingested. Nothing was recorded for it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger refused the events.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The policy could not be evaluated.
    #[error("policy evaluation failed: {0}")]
    Policy(String),
    /// The batch could not be prepared (a lookup failed) or this finding could not be settled.
    #[error("{0}")]
    Batch(String),
    /// A passing check with no open case to close: nothing was recorded.
    #[error("the check passes and no open case is about it: nothing to record")]
    NothingToClose,
    /// A recorded event could not be read back.
    #[error("ledger entry {seq} is unreadable: {detail}")]
    Corrupt {
        /// The entry.
        seq: u64,
        /// Why.
        detail: String,
    },
}

impl From<UnreadableEntry> for IngestError {
    fn from(err: UnreadableEntry) -> Self {
        IngestError::Corrupt {
            seq: err.seq,
            detail: err.detail,
        }
    }
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// How old a system's last reconciliation may be before its identities count as stale.
    pub max_reconcile_age: SignedDuration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_reconcile_age: SignedDuration::from_hours(24),
        }
    }
}

/// The ingest pipeline. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    policy: Arc<PolicyBundle>,
    settings: IngestSettings,
    /// The pipeline's turns and what the batch in flight is opening. Within a process,
    /// deduplication sees every case opened before (committed or in flight); across replicas,
    /// the one-open-case index catches a race and the loser retries.
    lanes: Arc<Lanes>,
    /// The actor findings are recorded by: `None` for the source itself (`source:NAME`, a
    /// request authenticated as that source), or the operator's local import.
    actor: Option<String>,
}

/// The actor of findings the operator imports locally (`writ ingest FILE`) for a named
/// source: the findings carry the source, the entries say who put them there.
pub const OPERATOR_IMPORT_ACTOR: &str = "operator:import";

/// Turns of the ingest pipeline: one batch plans at a time, and hands itself to the
/// sequencer without waiting for the batches before it to commit (the sequencer keeps their
/// order, and may commit several in one transaction).
#[derive(Debug, Default)]
struct Lanes {
    /// Held while a batch reads and plans, until it is handed to the sequencer: hand-overs
    /// happen in planning order.
    plan: Mutex<()>,
    /// The batches handed over whose results are not in yet, oldest first.
    handed_over: std::sync::Mutex<Vec<Arc<HandedOver>>>,
}

/// A batch handed to the sequencer: what planning must see of it until its results are in.
#[derive(Debug)]
struct HandedOver {
    view: InFlight,
    /// `Some(committed whole)` once its results are in.
    settled: tokio::sync::watch::Sender<Option<bool>>,
}

impl HandedOver {
    /// Whether every one of its events was committed, once its results are in.
    async fn committed_whole(&self) -> bool {
        let mut settled = self.settled.subscribe();
        match settled.wait_for(Option::is_some).await {
            Ok(state) => state.unwrap_or(false),
            // The sender lives as long as `self`: unreachable, and "not whole" is the safe answer.
            Err(_) => false,
        }
    }
}

/// Takes a handed-over batch off the list and announces it settled when dropped: when its
/// results are in, or when the caller gave up waiting for them (then as not committed whole,
/// the safe answer: a batch that relied on it plans again from the store).
struct Settling<'a> {
    lanes: &'a Lanes,
    batch: Arc<HandedOver>,
    committed_whole: bool,
}

impl Lanes {
    fn lock_handed_over(&self) -> std::sync::MutexGuard<'_, Vec<Arc<HandedOver>>> {
        self.handed_over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        self.lanes
            .lock_handed_over()
            .retain(|batch| !Arc::ptr_eq(batch, &self.batch));
        self.batch.settled.send_replace(Some(self.committed_whole));
    }
}

/// What planning sees of `batches` together.
fn merged(batches: &[Arc<HandedOver>]) -> InFlight {
    let mut seen = InFlight::default();
    for batch in batches {
        seen.cases.extend(
            batch
                .view
                .cases
                .iter()
                .map(|(key, case)| (key.clone(), case.clone())),
        );
        seen.keys.extend(batch.view.keys.iter().cloned());
    }
    seen
}

/// The cases and finding keys of the batches handed over to the sequencer and not committed
/// yet, as planning sees them.
#[derive(Debug, Default)]
struct InFlight {
    /// Cases they open, by subject and finding type.
    cases: HashMap<(String, String), OpenCase>,
    /// Their findings' idempotency keys.
    keys: HashSet<String>,
}

/// A planned batch, ready to hand over.
struct Planned {
    plans: Vec<Result<Plan, IngestError>>,
    /// Each finding's events: recorded all together or not at all.
    groups: Vec<Vec<Draft>>,
    /// Cases this batch opens.
    opened: HashMap<(String, String), OpenCase>,
    /// Finding keys this batch records.
    keys: HashSet<String>,
    /// Whether a finding joined a case that only the batch in flight knows of.
    relies_on_in_flight: bool,
}

/// What planning needs to know across the findings of a batch.
struct BatchContext<'a> {
    identities: &'a HashMap<(String, String), Identity>,
    /// The last closed case of each subject and finding type a finding may open.
    last_closed: HashMap<(String, String), CaseId>,
    /// For a passing check about a subject with no open case of its own: the open cases of
    /// that check about what lies under it (a user's keys), which the pass closes.
    under: HashMap<(String, String), Vec<OpenCase>>,
    freezes: Vec<Freeze>,
    /// The systems where automation is paused, and why.
    paused: HashMap<String, String>,
}

/// An open case as planning sees it: the case, its version and decision entry when the store
/// holds it (not for a case this batch or the one in flight opens), and the strength of the
/// evidence its decision in force was made from, when known.
#[derive(Debug, Clone)]
struct OpenCase {
    case: Case,
    head: Option<Head>,
    strength: Option<Strength>,
}

/// A stored case's version and decision entry.
#[derive(Debug, Clone, Copy)]
struct Head {
    updated_seq: u64,
    decision_seq: Option<u64>,
}

impl OpenCase {
    fn expectation(&self) -> Option<Expectation> {
        self.head.map(|head| Expectation::Case {
            id: self.case.id,
            state: self.case.state,
            updated_seq: head.updated_seq,
        })
    }
}

/// The states in which a case is decided again when a stronger finding joins it: decided, and
/// nothing under way (no job, no change in effect, not frozen by another case).
const REDECIDABLE: &[CaseState] = &[
    CaseState::NeedsReview,
    CaseState::AwaitingApproval,
    CaseState::Denied,
    CaseState::Rejected,
];

/// What [`Ingestor::decide`] made of a case: its drafts (decision, and the job when automation
/// queues one) and what the outcome reports.
struct Decided {
    drafts: Vec<Draft>,
    decision: Decision,
    review_reason: Option<String>,
    /// Set when the decision freezes the identity's other pending work: why, and how far it
    /// reaches beyond the identity (`@freeze_scope`).
    freeze: Option<(String, Option<writ_core::decision::FreezeScope>)>,
}

/// A freeze to spread once the batch is planned: the group of the freezing decision, the
/// identity, the case that froze, and why.
struct Freeze {
    group: usize,
    identity: writ_core::ids::IdentityId,
    case_id: CaseId,
    reason: String,
    /// How far it reaches, with the identity's system or owner team.
    reach: Option<(bool, String)>,
}

/// How far a freeze of `identity` reaches beyond it: its system's or its owner team's pending
/// work (`None`: the identity alone, or an owner team it does not have).
fn reach_of(
    scope: Option<writ_core::decision::FreezeScope>,
    identity: &Identity,
) -> Option<(bool, String)> {
    use writ_core::decision::FreezeScope as F;
    match scope? {
        F::Identity => None,
        F::System => Some((true, identity.system.clone())),
        F::OwnerTeam => identity.owner_team.clone().map(|team| (false, team)),
    }
}

/// A finding's keys: the ledger idempotency key of its `finding_received` event, and the base
/// shared with its `decision_recorded` event.
struct Keys {
    finding: String,
    base: String,
}

/// What the batch planned for one submission.
enum Plan {
    /// Already in the ledger before this batch.
    Recorded(LedgerRow),
    /// Same key as a finding of the batch in flight: settled alone afterwards.
    InFlight,
    /// Same key as an earlier submission of this batch.
    SameAs(usize),
    /// New events: the index of its group of drafts in the batch, and the outcome they give.
    Append {
        group: usize,
        outcome: IngestOutcome,
    },
}

impl Ingestor {
    /// A pipeline over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        sequencer: Sequencer,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        policy: Arc<PolicyBundle>,
        settings: IngestSettings,
    ) -> Self {
        Self {
            store,
            sequencer,
            clock,
            ids,
            policy,
            settings,
            lanes: Arc::new(Lanes::default()),
            actor: None,
        }
    }

    /// The same pipeline, recording findings as the operator's local import
    /// ([`OPERATOR_IMPORT_ACTOR`]) for the source each batch names, rather than as sent by
    /// that source over the API.
    pub fn as_operator_import(mut self) -> Self {
        self.actor = Some(OPERATOR_IMPORT_ACTOR.to_owned());
        self
    }

    /// The policy bundle in force.
    pub fn policy(&self) -> &PolicyBundle {
        &self.policy
    }

    /// Ingests one finding from `source`.
    pub async fn ingest(
        &self,
        source: &Source,
        submission: Submission,
    ) -> Result<IngestOutcome, IngestError> {
        self.ingest_batch(source, vec![submission])
            .await
            .pop()
            .unwrap_or(Err(IngestError::Append(AppendError::Stopped)))
    }

    /// Ingests findings from `source`, in order, with a handful of reads for the whole batch and
    /// its events committed together. Returns one result per submission, in order; one failing
    /// finding does not fail the others.
    pub async fn ingest_batch(
        &self,
        source: &Source,
        submissions: Vec<Submission>,
    ) -> Vec<Result<IngestOutcome, IngestError>> {
        let (mut results, retry) = match self.run_batch(source, &submissions).await {
            Ok(done) => done,
            Err(err) => {
                let message = err.to_string();
                return submissions
                    .iter()
                    .map(|_| Err(IngestError::Batch(message.clone())))
                    .collect();
            }
        };
        // Another replica opened one of our cases first (or recorded the same finding), or the
        // batch in flight held the same finding: those findings go again, alone, and now join
        // what was recorded, once the batches that held them have their results in.
        if !retry.is_empty() {
            self.settle_handed_over().await;
        }
        for index in retry {
            let again = self
                .run_batch(source, std::slice::from_ref(&submissions[index]))
                .await;
            results[index] = match again {
                Ok((mut single, _)) => single
                    .pop()
                    .unwrap_or(Err(IngestError::Append(AppendError::Stopped))),
                Err(err) => Err(err),
            };
        }
        results
    }

    /// Plans and commits one batch through the pipeline. Returns the results and the indexes
    /// to retry alone.
    async fn run_batch(
        &self,
        source: &Source,
        submissions: &[Submission],
    ) -> Result<(Vec<Result<IngestOutcome, IngestError>>, Vec<usize>), IngestError> {
        let plan_turn = self.lanes.plan.lock().await;
        // A batch whose results are in is in the store as far as it committed; the ones still
        // committing are seen from here.
        let before = self.handed_over();
        let planning = std::time::Instant::now();
        let mut planned = self
            .plan_batch(source, submissions, &merged(&before))
            .await?;
        tracing::debug!(
            findings = submissions.len(),
            plan_ms = planning.elapsed().as_secs_f64() * 1e3,
            "ingest batch planned"
        );
        // A batch that joined a case only a batch before it is opening waits for those to
        // settle; if one did not commit whole, it plans again from what the store now holds
        // (no batch was handed over meanwhile: this one holds the planning turn).
        if planned.relies_on_in_flight {
            let mut whole = true;
            for batch in &before {
                whole &= batch.committed_whole().await;
            }
            if !whole {
                planned = self
                    .plan_batch(source, submissions, &merged(&self.handed_over()))
                    .await?;
            }
        }
        let Planned {
            plans,
            groups,
            opened,
            keys,
            ..
        } = planned;
        let (settled, _) = tokio::sync::watch::channel(None);
        let mut handed_over = Settling {
            lanes: &self.lanes,
            batch: Arc::new(HandedOver {
                view: InFlight {
                    cases: opened,
                    keys,
                },
                settled,
            }),
            committed_whole: false,
        };
        self.lanes
            .lock_handed_over()
            .push(handed_over.batch.clone());
        let submitted = self.sequencer.submit_groups(groups).await;
        drop(plan_turn);
        let appended = submitted.results().await;
        handed_over.committed_whole = appended.iter().flatten().all(Result::is_ok);
        drop(handed_over);
        Ok(self.settle(plans, appended).await)
    }

    fn handed_over(&self) -> Vec<Arc<HandedOver>> {
        self.lanes.lock_handed_over().clone()
    }

    /// Waits until every batch handed over so far has its results in.
    async fn settle_handed_over(&self) {
        for batch in self.handed_over() {
            batch.committed_whole().await;
        }
    }

    /// Reads what the batch needs (five look-ups at once, a sixth for passes and a seventh for
    /// redecisions when there are any) and plans every finding's events, seeing the
    /// cases and keys of the unsettled batches (`in_flight`) as well as the store.
    async fn plan_batch(
        &self,
        source: &Source,
        submissions: &[Submission],
        in_flight: &InFlight,
    ) -> Result<Planned, IngestError> {
        let now = self.clock.now();
        let looking_up = std::time::Instant::now();
        // The caller's key, else the evidence digest: a retry of the same bytes is a
        // duplicate. The tool's own finding id is not enough (Prowler reuses one for distinct
        // findings), and a later scan of the same problem is not a retry: it joins the case.
        let keys: Vec<Keys> = submissions
            .iter()
            .map(|s| {
                let base = s
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| Sha256Digest::of(&s.evidence).hex());
                Keys {
                    finding: format!("finding:{}:{base}", source.name),
                    base,
                }
            })
            .collect();
        let all_keys: Vec<String> = keys.iter().map(|k| k.finding.clone()).collect();
        let pairs: Vec<(String, String)> = submissions
            .iter()
            .map(|s| {
                (
                    s.observation.subject.system.clone(),
                    s.observation.subject.external_id.clone(),
                )
            })
            .collect();
        let subjects: Vec<String> = pairs.iter().map(|(s, e)| format!("{s}/{e}")).collect();
        let case_keys: Vec<(String, String)> = subjects
            .iter()
            .zip(submissions)
            .map(|(subject, s)| (subject.clone(), s.observation.finding_type.clone()))
            .collect();
        // The look-ups go out together, each on a reader of its own: one after the other they
        // were most of a small batch's planning time, waiting on hand-offs to the driver. So
        // they ask for a little more than planning may use (the identity of every subject,
        // the last closed case of every failing finding's key), not for what the answer to
        // the one before would have narrowed it to. Each reads committed data, as before.
        let failing_keys: Vec<(String, String)> = case_keys
            .iter()
            .zip(submissions)
            .filter(|(_, s)| s.observation.status == FindingStatus::Fail)
            .map(|(key, _)| key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let distinct_pairs: Vec<(String, String)> = pairs
            .iter()
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let (recorded, open_heads, identities, last_closed, paused) = tokio::try_join!(
            async {
                Ok::<_, IngestError>(self.store.entries_by_idempotency_keys(&all_keys).await?)
            },
            async { Ok(self.store.open_case_heads(&case_keys).await?) },
            async {
                Ok(self
                    .store
                    .identities_by_external_ids(&distinct_pairs)
                    .await?)
            },
            async {
                if failing_keys.is_empty() {
                    Ok(Vec::new())
                } else {
                    Ok(self.store.last_closed_cases_for(&failing_keys).await?)
                }
            },
            self.paused_systems(),
        )?;
        let mut recorded: HashMap<String, LedgerRow> = recorded
            .into_iter()
            .map(|row| (row.idempotency_key.clone(), row))
            .collect();
        let mut open: HashMap<(String, String), OpenCase> = open_heads
            .into_iter()
            .map(|head| {
                (
                    (head.case.subject.clone(), head.case.finding_type.clone()),
                    OpenCase {
                        case: head.case,
                        head: Some(Head {
                            updated_seq: head.updated_seq,
                            decision_seq: head.decision_seq,
                        }),
                        strength: None,
                    },
                )
            })
            .collect();
        // Cases the batch in flight is opening and the store does not show yet.
        let mut only_in_flight: HashSet<CaseId> = HashSet::new();
        for (key, case) in &in_flight.cases {
            if !open.contains_key(key) {
                only_in_flight.insert(case.case.id);
                open.insert(key.clone(), case.clone());
            }
        }
        // The strength behind each decision a failing finding may supersede, read from the
        // decision entries (one look-up for the batch).
        let mut redecidable: HashMap<u64, (String, String)> = HashMap::new();
        for (submission, case_key) in submissions.iter().zip(&case_keys) {
            if submission.observation.status != FindingStatus::Fail {
                continue;
            }
            if let Some(OpenCase {
                case,
                head:
                    Some(Head {
                        decision_seq: Some(seq),
                        ..
                    }),
                ..
            }) = open.get(case_key)
                && REDECIDABLE.contains(&case.state)
            {
                redecidable.insert(*seq, case_key.clone());
            }
        }
        if !redecidable.is_empty() {
            let seqs: Vec<u64> = redecidable.keys().copied().collect();
            for row in self.store.entries_at(&seqs).await? {
                if let Ok(EventBody::DecisionRecorded(decided)) = entries::decode_body(&row)
                    && let Some(case_key) = redecidable.get(&row.seq)
                    && let Some(open_case) = open.get_mut(case_key)
                {
                    open_case.strength = Strength::of_evaluation(&decided.evaluation);
                }
            }
        }
        // A finding that may open or decide a case needs its identity: one that only joins an
        // open case records the finding and nothing else. Planning sees exactly what it saw
        // when these look-ups were narrowed first.
        let mut may_open: HashSet<(String, String)> = HashSet::new();
        let mut opening_keys: HashSet<(String, String)> = HashSet::new();
        for ((pair, case_key), submission) in pairs.iter().zip(&case_keys).zip(submissions) {
            match open.get(case_key) {
                None if submission.observation.status == FindingStatus::Fail => {
                    may_open.insert(pair.clone());
                    opening_keys.insert(case_key.clone());
                }
                Some(open_case) if open_case.strength.is_some() => {
                    may_open.insert(pair.clone());
                }
                _ => {}
            }
        }
        let identities: HashMap<(String, String), Identity> = identities
            .into_iter()
            .map(|i| ((i.system.clone(), i.external_id.clone()), i))
            .filter(|(pair, _)| may_open.contains(pair))
            .collect();
        // Passes about a subject with no open case of their own may close the cases of what
        // lies under it (a user's keys, when the check passes for the user).
        let parent_keys: Vec<(String, String)> = submissions
            .iter()
            .zip(&case_keys)
            .filter(|(s, key)| {
                s.observation.status == FindingStatus::Pass && !open.contains_key(*key)
            })
            .map(|(_, key)| key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut under: HashMap<(String, String), Vec<OpenCase>> = HashMap::new();
        if !parent_keys.is_empty() {
            for head in self.store.open_case_heads_under(&parent_keys).await? {
                let parent = parent_keys.iter().find(|(subject, finding_type)| {
                    *finding_type == head.case.finding_type
                        && head
                            .case
                            .subject
                            .strip_prefix(subject.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                });
                if let Some(parent) = parent {
                    under.entry(parent.clone()).or_default().push(OpenCase {
                        case: head.case,
                        head: Some(Head {
                            updated_seq: head.updated_seq,
                            decision_seq: head.decision_seq,
                        }),
                        strength: None,
                    });
                }
            }
        }
        let last_closed = last_closed
            .into_iter()
            .map(|head| {
                (
                    (head.case.subject.clone(), head.case.finding_type.clone()),
                    head.case.id,
                )
            })
            .filter(|(key, _)| opening_keys.contains(key))
            .collect();
        tracing::debug!(
            findings = submissions.len(),
            lookups_ms = looking_up.elapsed().as_secs_f64() * 1e3,
            "ingest batch looked up"
        );

        let mut context = BatchContext {
            identities: &identities,
            last_closed,
            under,
            freezes: Vec::new(),
            paused,
        };
        let mut groups: Vec<Vec<Draft>> = Vec::new();
        let mut plans: Vec<Result<Plan, IngestError>> = Vec::with_capacity(submissions.len());
        let mut first_with_key: HashMap<&str, usize> = HashMap::new();
        let mut opened = HashMap::new();
        let mut relies_on_in_flight = false;
        for (index, (submission, key)) in submissions.iter().zip(&keys).enumerate() {
            if let Some(&earlier) = first_with_key.get(key.finding.as_str()) {
                plans.push(Ok(Plan::SameAs(earlier)));
                continue;
            }
            first_with_key.insert(&key.finding, index);
            if let Some(row) = recorded.remove(&key.finding) {
                plans.push(Ok(Plan::Recorded(row)));
                continue;
            }
            if in_flight.keys.contains(&key.finding) {
                plans.push(Ok(Plan::InFlight));
                continue;
            }
            let plan = self.plan(
                source,
                submission,
                key,
                (&subjects[index], &pairs[index]),
                &mut open,
                &mut groups,
                &mut context,
                now,
            );
            if let Ok(Plan::Append { outcome, .. }) = &plan {
                if outcome.joined_open_case {
                    relies_on_in_flight |= only_in_flight.contains(&outcome.case_id);
                } else {
                    let open_key = (
                        subjects[index].clone(),
                        submission.observation.finding_type.clone(),
                    );
                    if let Some(case) = open.get(&open_key) {
                        opened.insert(open_key, case.clone());
                    }
                }
            }
            plans.push(plan);
        }
        self.spread_freezes(context.freezes, &mut groups).await?;
        Ok(Planned {
            plans,
            groups,
            opened,
            keys: keys.into_iter().map(|k| k.finding).collect(),
            relies_on_in_flight,
        })
    }

    /// Adds to each freezing decision's group the freeze of the same identity's other pending
    /// work: cases awaiting approval, and cases whose job is queued but not started. Work
    /// already being applied goes on (a target half-changed is worse).
    async fn spread_freezes(
        &self,
        freezes: Vec<Freeze>,
        groups: &mut [Vec<Draft>],
    ) -> Result<(), IngestError> {
        let mut frozen_here: HashSet<CaseId> = HashSet::new();
        for freeze in freezes {
            let mut heads = self.store.open_cases_of_identity(freeze.identity).await?;
            if let Some((by_system, value)) = &freeze.reach {
                heads.extend(self.store.pending_cases_where(*by_system, value).await?);
            }
            for head in heads {
                if head.case.id == freeze.case_id || frozen_here.contains(&head.case.id) {
                    continue;
                }
                let was = head.case.state;
                match was {
                    CaseState::AwaitingApproval => {}
                    CaseState::Remediating => {
                        let queued = self
                            .store
                            .case_view(head.case.id)
                            .await?
                            .and_then(|view| view.job)
                            .is_some_and(|job| job.job.state == writ_core::job::JobState::Queued);
                        if !queued {
                            continue;
                        }
                    }
                    _ => continue,
                }
                let mut case = head.case.clone();
                case.state = CaseState::Frozen;
                let Some(group) = groups.get_mut(freeze.group) else {
                    continue;
                };
                frozen_here.insert(case.id);
                group.push(Draft {
                    expect: vec![Expectation::Case {
                        id: case.id,
                        state: was,
                        updated_seq: head.updated_seq,
                    }],
                    ..Draft::new(
                        Some(case.id),
                        ENGINE_ACTOR,
                        format!("freeze:{}:by:{}", case.id, freeze.case_id),
                        EventBody::CaseFrozen(CaseFrozen {
                            case,
                            was,
                            by_case: freeze.case_id,
                            reason: freeze.reason.clone(),
                        }),
                    )
                });
            }
        }
        Ok(())
    }

    /// Turns the plans and the sequencer's answers into one result per submission, and the
    /// indexes to retry alone.
    async fn settle(
        &self,
        plans: Vec<Result<Plan, IngestError>>,
        appended: Vec<Vec<Result<crate::sequencer::Appended, AppendError>>>,
    ) -> (Vec<Result<IngestOutcome, IngestError>>, Vec<usize>) {
        let mut results: Vec<Result<IngestOutcome, IngestError>> = Vec::with_capacity(plans.len());
        let mut retry = Vec::new();
        for (index, plan) in plans.into_iter().enumerate() {
            let result = match plan {
                Err(err) => Err(err),
                Ok(Plan::Recorded(row)) => self.replayed_outcome(&row).await,
                Ok(Plan::InFlight) => {
                    retry.push(index);
                    Err(IngestError::Batch("retrying alone".into()))
                }
                Ok(Plan::SameAs(earlier)) => match &results[earlier] {
                    Ok(outcome) => Ok(IngestOutcome {
                        duplicate: true,
                        ..outcome.clone()
                    }),
                    Err(_) => Err(IngestError::Batch(
                        "an earlier finding with the same key failed".into(),
                    )),
                },
                Ok(Plan::Append { group, outcome }) => {
                    let mut seq = None;
                    let mut failure = None;
                    let mut duplicate = false;
                    for appended in appended.get(group).into_iter().flatten() {
                        match appended {
                            Ok(done) => {
                                seq.get_or_insert(done.seq);
                                duplicate |= done.duplicate;
                            }
                            Err(err) => {
                                failure.get_or_insert_with(|| err.clone());
                            }
                        }
                    }
                    match (failure, seq) {
                        (Some(AppendError::Conflict(_) | AppendError::Stale(_)), _) => {
                            retry.push(index);
                            Err(IngestError::Batch("retrying alone".into()))
                        }
                        (Some(err), _) => Err(IngestError::Append(err)),
                        (None, Some(seq)) => Ok(IngestOutcome {
                            seq,
                            duplicate,
                            ..outcome
                        }),
                        (None, None) => Err(IngestError::Append(AppendError::Stopped)),
                    }
                }
            };
            results.push(result);
        }
        (results, retry)
    }

    /// Plans the events for one new finding, updating `open` with any case it opens, decides
    /// again or closes.
    #[expect(
        clippy::too_many_arguments,
        reason = "the batch's shared lookups, passed in"
    )]
    fn plan(
        &self,
        source: &Source,
        submission: &Submission,
        key: &Keys,
        (subject, pair): (&str, &(String, String)),
        open: &mut HashMap<(String, String), OpenCase>,
        groups: &mut Vec<Vec<Draft>>,
        context: &mut BatchContext<'_>,
        now: jiff::Timestamp,
    ) -> Result<Plan, IngestError> {
        let obs = &submission.observation;
        let finding = Finding {
            id: FindingId(self.ids.next_id(now)),
            source: source.name.clone(),
            finding_type: obs.finding_type.clone(),
            severity: obs.severity,
            confidence_bp: obs.confidence_bp,
            subject_system: obs.subject.system.clone(),
            subject_external_id: obs.subject.external_id.clone(),
            observed_at: writ_core::clock::to_micros(obs.observed_at.unwrap_or(now)),
            evidence: Sha256Digest::of(&submission.evidence),
            idempotency_key: key.finding.clone(),
        };
        let controls: Vec<ControlTag> = obs.controls.iter().cloned().map(ControlTag).collect();
        let mut received_body = FindingReceived {
            finding,
            observation: ObservationSummary {
                status: obs.status,
                format: obs.format,
                title: obs.title.clone(),
                subject_kind: obs.subject.kind_hint,
                details: obs.details.clone(),
            },
            source: SourceRef {
                name: source.name.clone(),
                trust: source.trust,
            },
            redacted_from: submission.redacted_from,
            case: None,
            reopens: None,
        };
        let finding_id = received_body.finding.id;
        let actor = self
            .actor
            .clone()
            .unwrap_or_else(|| format!("source:{}", source.name));
        let received = |case_id: CaseId, body: FindingReceived| Draft {
            controls: controls.clone(),
            evidence: vec![EvidenceBlob {
                media_type: "application/json".into(),
                bytes: submission.evidence.clone(),
            }],
            ..Draft::new(
                Some(case_id),
                actor.clone(),
                key.finding.clone(),
                EventBody::FindingReceived(body),
            )
        };
        let open_key = (subject.to_owned(), obs.finding_type.clone());
        let joined = |case: &Case| IngestOutcome {
            finding_id,
            case_id: case.id,
            case_state: case.state,
            joined_open_case: true,
            redecided: false,
            closed_case: false,
            reopens: None,
            duplicate: false,
            decision: None,
            review_reason: None,
            seq: 0,
        };
        let identity = context.identities.get(pair);
        let review_reason = self.review_reason(identity, now, &context.paused);

        if obs.status == FindingStatus::Pass {
            // A passing check closes the compliance side of the open case about it, if nothing
            // is under way there; it never opens a case.
            let Some(open_case) = open.get(&open_key).cloned() else {
                let plan = self.close_under(
                    received_body,
                    &received,
                    &open_key,
                    &controls,
                    key,
                    groups,
                    context,
                );
                // The cases it closed take no more findings in this batch: a failure about
                // one of them opens a new case.
                for closed in context.last_closed.keys() {
                    open.remove(closed);
                }
                return plan;
            };
            let Some(expect) = open_case.expectation() else {
                // Opened by this batch or the one in flight: settle it after that commits.
                return Ok(Plan::InFlight);
            };
            let mut group = vec![received(open_case.case.id, received_body)];
            let mut outcome = joined(&open_case.case);
            if CLOSABLE.contains(&open_case.case.state) {
                let mut case = open_case.case.clone();
                case.state = CaseState::Closed;
                case.compliance_closed = true;
                group.push(Draft {
                    expect: vec![expect],
                    controls: controls.clone(),
                    ..Draft::new(
                        Some(case.id),
                        ENGINE_ACTOR,
                        format!("closed:{}", key.finding),
                        EventBody::CaseClosed(CaseClosed {
                            case: case.clone(),
                            evidence: ClosureEvidence::Scan {
                                finding: finding_id,
                                source: source.name.clone(),
                                title: obs.title.clone(),
                            },
                        }),
                    )
                });
                outcome.case_state = CaseState::Closed;
                outcome.closed_case = true;
                open.remove(&open_key);
                context.last_closed.insert(open_key, case.id);
            }
            groups.push(group);
            return Ok(Plan::Append {
                group: groups.len() - 1,
                outcome,
            });
        }

        let strength = Strength {
            trust: source.trust,
            confidence_bp: obs.confidence_bp,
            reconciled: review_reason.is_none(),
        };
        if let Some(open_case) = open.get(&open_key).cloned() {
            let stronger = open_case
                .strength
                .is_some_and(|earlier| strength.exceeds(&earlier));
            let expect = open_case.expectation();
            if !stronger || !REDECIDABLE.contains(&open_case.case.state) {
                groups.push(vec![received(open_case.case.id, received_body)]);
                return Ok(Plan::Append {
                    group: groups.len() - 1,
                    outcome: joined(&open_case.case),
                });
            }
            let Some(expect) = expect else {
                return Ok(Plan::InFlight);
            };
            // Stronger evidence: decide the case again. The new decision supersedes the old
            // one (its votes stop counting); both stay in the case.
            let mut case = open_case.case.clone();
            case.identity_id = identity.map(|i| i.id).or(case.identity_id);
            let group_index = groups.len();
            let Some(mut decided) = self.decide(
                &mut case,
                identity,
                obs,
                source,
                key,
                review_reason,
                None,
                &controls,
                now,
            )?
            else {
                groups.push(vec![received(open_case.case.id, received_body)]);
                return Ok(Plan::Append {
                    group: groups.len() - 1,
                    outcome: joined(&open_case.case),
                });
            };
            if let Some(first) = decided.drafts.first_mut() {
                first.expect = vec![expect];
            }
            let mut group = vec![received(case.id, received_body)];
            group.append(&mut decided.drafts);
            groups.push(group);
            if let (Some((reason, scope)), Some(identity)) = (decided.freeze.take(), identity) {
                context.freezes.push(Freeze {
                    group: group_index,
                    identity: identity.id,
                    case_id: case.id,
                    reason,
                    reach: reach_of(scope, identity),
                });
            }
            open.insert(
                open_key,
                OpenCase {
                    case: case.clone(),
                    head: None,
                    strength: Some(strength),
                },
            );
            return Ok(Plan::Append {
                group: group_index,
                outcome: IngestOutcome {
                    case_state: case.state,
                    redecided: true,
                    decision: Some(decided.decision),
                    review_reason: decided.review_reason,
                    ..joined(&case)
                },
            });
        }

        // A new case, continuing the last closed one about the same problem, if any.
        let mut case = Case {
            id: CaseId(self.ids.next_id(now)),
            identity_id: identity.map(|i| i.id),
            subject: subject.to_owned(),
            finding_type: obs.finding_type.clone(),
            state: CaseState::NeedsReview,
            compliance_closed: false,
        };
        received_body.case = Some(case.clone());
        received_body.reopens = context.last_closed.get(&open_key).copied();
        let reopens = received_body.reopens;
        let opened = received(case.id, received_body);
        let group_index = groups.len();
        let decided = self.decide(
            &mut case,
            identity,
            obs,
            source,
            key,
            review_reason,
            None,
            &controls,
            now,
        )?;
        let mut outcome = IngestOutcome {
            finding_id,
            case_id: case.id,
            case_state: case.state,
            joined_open_case: false,
            redecided: false,
            closed_case: false,
            reopens,
            duplicate: false,
            decision: None,
            review_reason: None,
            seq: 0,
        };
        let mut group = vec![opened];
        match decided {
            None => {
                outcome.review_reason = Some(format!(
                    "no remediation is defined for finding type {:?} in the policy bundle",
                    obs.finding_type
                ));
            }
            Some(mut decided) => {
                group.append(&mut decided.drafts);
                if let (Some((reason, scope)), Some(identity)) = (decided.freeze.take(), identity) {
                    context.freezes.push(Freeze {
                        group: group_index,
                        identity: identity.id,
                        case_id: case.id,
                        reason,
                        reach: reach_of(scope, identity),
                    });
                }
                outcome.case_state = case.state;
                outcome.decision = Some(decided.decision);
                outcome.review_reason = decided.review_reason;
            }
        }
        groups.push(group);
        open.insert(
            open_key,
            OpenCase {
                case,
                head: None,
                strength: Some(strength),
            },
        );
        Ok(Plan::Append {
            group: group_index,
            outcome,
        })
    }

    /// A pass about a subject with no open case of its own (a user, when a key check passes
    /// for every key of it): the finding is recorded once, outside any case, and closes the
    /// check's closable open cases about what lies under the subject, naming it as evidence.
    #[expect(
        clippy::too_many_arguments,
        reason = "the finding's parts, as planning holds them"
    )]
    fn close_under(
        &self,
        received_body: FindingReceived,
        received: &dyn Fn(CaseId, FindingReceived) -> Draft,
        open_key: &(String, String),
        controls: &[ControlTag],
        key: &Keys,
        groups: &mut Vec<Vec<Draft>>,
        context: &mut BatchContext<'_>,
    ) -> Result<Plan, IngestError> {
        let children: Vec<OpenCase> = context
            .under
            .remove(open_key)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| CLOSABLE.contains(&c.case.state))
            .collect();
        let Some(first) = children.first() else {
            return Err(IngestError::NothingToClose);
        };
        let finding_id = received_body.finding.id;
        let source = received_body.source.name.clone();
        let title = received_body.observation.title.clone();
        let mut outside = received(first.case.id, received_body);
        outside.case_id = None;
        let mut group = vec![outside];
        for child in &children {
            let Some(expect) = child.expectation() else {
                continue;
            };
            let mut case = child.case.clone();
            case.state = CaseState::Closed;
            case.compliance_closed = true;
            group.push(Draft {
                expect: vec![expect],
                controls: controls.to_vec(),
                ..Draft::new(
                    Some(case.id),
                    ENGINE_ACTOR,
                    format!("closed:{}:{}", key.finding, case.id),
                    EventBody::CaseClosed(CaseClosed {
                        case: case.clone(),
                        evidence: ClosureEvidence::Scan {
                            finding: finding_id,
                            source: source.clone(),
                            title: title.clone(),
                        },
                    }),
                )
            });
            context
                .last_closed
                .insert((case.subject.clone(), case.finding_type.clone()), case.id);
        }
        groups.push(group);
        Ok(Plan::Append {
            group: groups.len() - 1,
            outcome: IngestOutcome {
                finding_id,
                case_id: first.case.id,
                case_state: CaseState::Closed,
                joined_open_case: true,
                redecided: false,
                closed_case: true,
                reopens: None,
                duplicate: false,
                decision: None,
                review_reason: None,
                seq: 0,
            },
        })
    }

    /// The systems where automation is paused (`automation_paused`), and why.
    async fn paused_systems(&self) -> Result<HashMap<String, String>, IngestError> {
        Ok(self
            .store
            .systems()
            .await?
            .into_iter()
            .filter_map(|s| s.paused_reason.map(|reason| (s.system, reason)))
            .collect())
    }

    /// Why automation must stay away from `identity`, if it must: unknown to the inventory,
    /// its system paused, or its source of truth incomplete or stale.
    fn review_reason(
        &self,
        identity: Option<&Identity>,
        now: jiff::Timestamp,
        paused: &HashMap<String, String>,
    ) -> Option<String> {
        match identity {
            None => {
                Some("source of truth incomplete: identity unknown to the inventory".to_owned())
            }
            Some(identity) if paused.contains_key(&identity.system) => Some(format!(
                "automation paused on {}: {}",
                identity.system, paused[&identity.system]
            )),
            Some(identity) => {
                match identity.source_of_truth(now, self.settings.max_reconcile_age) {
                    SourceOfTruth::Reconciled => None,
                    SourceOfTruth::Incomplete { reason } => {
                        Some(format!("source of truth incomplete: {reason}"))
                    }
                }
            }
        }
    }

    /// Asks the policy bundle about `case` (which takes the decided state) and drafts the
    /// decision, and the job when automation may queue one. `None` when the bundle defines no
    /// remediation for the finding type (the case waits for a human, undecided).
    #[expect(
        clippy::too_many_arguments,
        reason = "the finding's parts, as planning holds them"
    )]
    fn decide(
        &self,
        case: &mut Case,
        identity: Option<&Identity>,
        obs: &Observation,
        source: &Source,
        key: &Keys,
        review_reason: Option<String>,
        auto_refused: Option<&str>,
        controls: &[ControlTag],
        now: jiff::Timestamp,
    ) -> Result<Option<Decided>, IngestError> {
        let Some(action) = self
            .policy
            .remediation_for(&obs.finding_type)
            .map(str::to_owned)
        else {
            return Ok(None);
        };
        let signal = self.policy.signal_for(&obs.finding_type);
        let reconciled = review_reason.is_none();
        let (decision, evaluation) = self
            .policy
            .decide(&DecisionRequest {
                identity,
                reconciled,
                observation: obs,
                signal,
                source_name: &source.name,
                source_trust: source.trust,
                action: &action,
            })
            .map_err(|err| IngestError::Policy(err.to_string()))?;
        // Where automation is refused whatever the policy says (a certification nobody
        // answered), an automatic decision goes to a person, saying why.
        let review_reason = match (&decision.tier, auto_refused) {
            (Tier::Auto, Some(why)) => Some(review_reason.unwrap_or_else(|| why.to_owned())),
            _ => review_reason,
        };
        // Automation allowed: the job is queued in the same group as the decision.
        let job_action = identity.zip(action_from_name(&action));
        case.state = decided_state(
            &decision.tier,
            reconciled && review_reason.is_none(),
            job_action.is_some(),
        );
        let job = match (case.state, job_action) {
            (CaseState::Remediating, Some((identity, job_action))) => Some(Job::queued(
                JobId(self.ids.next_id(now)),
                case.id,
                &identity.system,
                &identity.external_id,
                job_action,
                false,
            )),
            _ => None,
        };
        // Policy allows automation but nothing can be queued (the action needs parameters from
        // a person): a human takes it, and the decision says why.
        let review_reason = match (&decision.tier, &review_reason, &job) {
            (Tier::Auto, None, None) => Some(format!(
                "automation allowed, but action {action} needs parameters from a person"
            )),
            _ => review_reason,
        };
        let routing = review_reason.as_ref().map(|reason| Routing {
            to: "human_review".into(),
            reason: reason.clone(),
        });
        let freeze = match (&decision.tier, case.state) {
            (Tier::CaseOnly { freeze: true }, CaseState::Frozen) => Some((
                format!(
                    "{} ({})",
                    decision.reason,
                    decision.determining_policies.join(", ")
                ),
                decision.terms.freeze_scope,
            )),
            _ => None,
        };
        let mut drafts = vec![Draft {
            policy_bundle: Some(decision.bundle_hash),
            controls: controls.to_vec(),
            ..Draft::new(
                Some(case.id),
                ENGINE_ACTOR,
                // Keyed by the case first: case ids grow with time, so a commit's decisions
                // land together at the end of the ledger's key index rather than on a random
                // page each (the finding's own key is a digest and cannot).
                format!("decision:{}:{}:{}", case.id, source.name, key.base),
                EventBody::DecisionRecorded(DecisionRecorded {
                    case: case.clone(),
                    decision: decision.clone(),
                    evaluation,
                    signal: signal.to_owned(),
                    routing,
                }),
            )
        }];
        if let Some(job) = job {
            drafts.push(Draft {
                policy_bundle: Some(decision.bundle_hash),
                controls: controls.to_vec(),
                ..Draft::new(
                    Some(case.id),
                    ENGINE_ACTOR,
                    format!("job:{}:queued", job.id),
                    EventBody::ChangeRequested(ChangeRequested { job, case: None }),
                )
            });
        }
        Ok(Some(Decided {
            drafts,
            decision,
            review_reason,
            freeze,
        }))
    }
    /// Decides the open cases about `subjects` (`system/external id`) that were opened before
    /// their identity was known, now that a sync brought it: each takes its identity and a
    /// decision on its latest finding, as the policy says. Returns how many were decided.
    pub async fn resolve_cases(&self, subjects: &[String]) -> Result<usize, IngestError> {
        let mut decided = 0;
        for head in self.store.unresolved_cases_for(subjects).await? {
            if !REDECIDABLE.contains(&head.case.state) {
                continue;
            }
            let mut case = head.case.clone();
            let key = format!("resolve:{}:{}", case.id, head.updated_seq);
            let Some(mut drafts) = self.redecision(&mut case, &key).await? else {
                continue;
            };
            if case.identity_id.is_none() {
                continue;
            }
            if let Some(first) = drafts.first_mut() {
                first.expect = vec![Expectation::Case {
                    id: head.case.id,
                    state: head.case.state,
                    updated_seq: head.updated_seq,
                }];
            }
            let appended = self.sequencer.append_group(drafts).await;
            match appended.into_iter().find_map(Result::err) {
                None => decided += 1,
                // Someone changed the case meanwhile: it is decided by what changed it.
                Some(AppendError::Stale(_) | AppendError::Illegal(_)) => {}
                Some(err) => return Err(IngestError::Append(err)),
            }
        }
        Ok(decided)
    }

    /// The drafts that decide `case` again from its latest failing finding, as it stands now
    /// (the identity as the inventory now knows it, the policy in force), for a case that is
    /// reopened (an exception expired) or whose identity became known. `case` takes the
    /// decided state (its state before must be one a decision may follow, `needs_review`).
    /// `None` when the case has no finding the bundle defines a remediation for.
    pub async fn redecision(
        &self,
        case: &mut Case,
        key: &str,
    ) -> Result<Option<Vec<Draft>>, IngestError> {
        self.redecision_as(case, key, None).await
    }

    /// [`Ingestor::redecision`] of an unanswered certification at its campaign's deadline:
    /// the latest finding decided as [`writ_core::campaign::CERTIFICATION_OVERDUE`] (what the
    /// policy says happens then), never automatically
    /// ([`writ_core::campaign::OVERDUE_NEVER_AUTOMATIC`]).
    pub async fn overdue_redecision(
        &self,
        case: &mut Case,
        key: &str,
    ) -> Result<Option<Vec<Draft>>, IngestError> {
        self.redecision_as(case, key, Some(writ_core::campaign::CERTIFICATION_OVERDUE))
            .await
    }

    async fn redecision_as(
        &self,
        case: &mut Case,
        key: &str,
        overdue_as: Option<&str>,
    ) -> Result<Option<Vec<Draft>>, IngestError> {
        let rows = self.store.case_entries(case.id).await?;
        let mut latest = None;
        for row in rows.iter().rev() {
            if let EventBody::FindingReceived(received) = entries::decode_body(row)?
                && received.observation.status == FindingStatus::Fail
            {
                latest = Some(received);
                break;
            }
        }
        let Some(received) = latest else {
            return Ok(None);
        };
        let finding = &received.finding;
        let observation = Observation {
            status: FindingStatus::Fail,
            format: received.observation.format,
            finding_type: overdue_as.map_or_else(|| finding.finding_type.clone(), str::to_owned),
            severity: finding.severity,
            confidence_bp: finding.confidence_bp,
            subject: writ_core::finding::SubjectRef {
                system: finding.subject_system.clone(),
                external_id: finding.subject_external_id.clone(),
                kind_hint: received.observation.subject_kind,
            },
            observed_at: Some(finding.observed_at),
            title: received.observation.title.clone(),
            source_key: None,
            controls: Vec::new(),
            details: received.observation.details.clone(),
        };
        let source = Source {
            name: received.source.name.clone(),
            trust: received.source.trust,
        };
        let identity = self
            .store
            .identity_by_external_id(&finding.subject_system, &finding.subject_external_id)
            .await?;
        let now = self.clock.now();
        let paused = self.paused_systems().await?;
        let review_reason = self.review_reason(identity.as_ref(), now, &paused);
        case.identity_id = identity.as_ref().map(|i| i.id).or(case.identity_id);
        let keys = Keys {
            finding: finding.idempotency_key.clone(),
            base: key.to_owned(),
        };
        Ok(self
            .decide(
                case,
                identity.as_ref(),
                &observation,
                &source,
                &keys,
                review_reason,
                overdue_as.map(|_| writ_core::campaign::OVERDUE_NEVER_AUTOMATIC),
                &[],
                now,
            )?
            .map(|decided| decided.drafts))
    }

    /// The outcome of a finding that was already ingested, read back from the ledger: the
    /// finding's own entry, and the decision its case was opened with (if it opened one).
    async fn replayed_outcome(&self, row: &LedgerRow) -> Result<IngestOutcome, IngestError> {
        let corrupt = |detail: String| IngestError::Corrupt {
            seq: row.seq,
            detail,
        };
        let EventBody::FindingReceived(received) = entries::decode_body(row)? else {
            return Err(corrupt(format!("a {} entry, not a finding", row.kind)));
        };
        let Some(case_id) = row.case_id else {
            // A pass recorded outside any case (it closed the cases under its subject):
            // nothing more to record, as the first time.
            return match received.observation.status {
                FindingStatus::Pass => Err(IngestError::NothingToClose),
                FindingStatus::Fail => Err(corrupt("finding event without a case".into())),
            };
        };
        let view = self.store.case_view(case_id).await?;
        let opened_here = received.case.is_some();
        let decision = match view.as_ref().and_then(|v| v.decision_seq) {
            Some(seq) if opened_here => Some(entries::decision_at(&*self.store, seq).await?),
            _ => None,
        };
        Ok(IngestOutcome {
            finding_id: received.finding.id,
            case_id,
            case_state: view.map_or(CaseState::NeedsReview, |v| v.case.state),
            joined_open_case: !opened_here,
            redecided: false,
            closed_case: false,
            reopens: received.reopens,
            duplicate: true,
            decision,
            review_reason: None,
            seq: row.seq,
        })
    }
}
