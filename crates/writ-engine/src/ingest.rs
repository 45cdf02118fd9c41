//! Ingest: from an authenticated finding to a case with a recorded decision.
//!
//! For each finding: skip it if its idempotency key was seen (returning the original outcome);
//! resolve its subject in the inventory; judge whether the source of truth is complete (owner
//! known, system reconciled recently); join the open case for the same subject and finding type
//! or open a new one; for a new case, ask the policy bundle what may happen and set the case's
//! state from the tier. Identities with an incomplete source of truth always go to human review,
//! whatever policy says, so automation never acts on them.
//!
//! Two ledger events per new case, appended together (one transaction when they share a batch):
//! `finding_received` (the finding, the evidence digest, the opening case snapshot) and
//! `decision_recorded` (the decision, the exact policy inputs, the resulting case snapshot). A
//! finding that joins an open case adds one `finding_received` event.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::json;
use tokio::sync::Mutex;
use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Tier};
use writ_core::event::{ControlTag, EventKind};
use writ_core::finding::{Finding, Observation};
use writ_core::identity::{Identity, SourceOfTruth};
use writ_core::ids::{CaseId, FindingId, JobId};
use writ_core::job::{Job, JobState, action_from_name};
use writ_core::{Clock, IdSource, Sha256Digest};
use writ_policy::{DecisionRequest, PolicyBundle};
use writ_store::{LedgerRow, Store, StoreError};

use crate::sequencer::{AppendError, Draft, EvidenceBlob, Sequencer};
use crate::sources::Source;

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
    /// True when this idempotency key was already ingested (nothing new was recorded).
    pub duplicate: bool,
    /// The decision made when the case opened (none when it joined an open case).
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
    /// A recorded event could not be read back.
    #[error("ledger entry {seq} is unreadable: {detail}")]
    Corrupt {
        /// The entry.
        seq: u64,
        /// Why.
        detail: String,
    },
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
    /// One batch at a time per process, so that deduplication sees every case opened before
    /// it. Across replicas, the one-open-case index catches a race and the loser retries.
    lane: Arc<Mutex<()>>,
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
    /// Same key as an earlier submission of this batch.
    SameAs(usize),
    /// New events: the indexes of its drafts in the batch, and the outcome they will give.
    Append {
        drafts: Vec<usize>,
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
            lane: Arc::new(Mutex::new(())),
        }
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
        let (mut results, retry) = {
            let _lane = self.lane.lock().await;
            match self.run_batch(source, &submissions).await {
                Ok(done) => done,
                Err(err) => {
                    let message = err.to_string();
                    return submissions
                        .iter()
                        .map(|_| Err(IngestError::Batch(message.clone())))
                        .collect();
                }
            }
        };
        // Another replica opened one of our cases first (or recorded the same finding): those
        // findings go again, alone, and now join what the other replica recorded.
        for index in retry {
            let again = {
                let _lane = self.lane.lock().await;
                self.run_batch(source, std::slice::from_ref(&submissions[index]))
                    .await
            };
            results[index] = match again {
                Ok((mut single, _)) => single
                    .pop()
                    .unwrap_or(Err(IngestError::Append(AppendError::Stopped))),
                Err(err) => Err(err),
            };
        }
        results
    }

    /// Plans and commits one batch. Returns the results and the indexes to retry alone.
    async fn run_batch(
        &self,
        source: &Source,
        submissions: &[Submission],
    ) -> Result<(Vec<Result<IngestOutcome, IngestError>>, Vec<usize>), IngestError> {
        let now = self.clock.now();
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
        let mut recorded: HashMap<String, LedgerRow> = self
            .store
            .entries_by_idempotency_keys(&all_keys)
            .await?
            .into_iter()
            .map(|row| (row.idempotency_key.clone(), row))
            .collect();
        let pairs: Vec<(String, String)> = submissions
            .iter()
            .map(|s| {
                (
                    s.observation.subject.system.clone(),
                    s.observation.subject.external_id.clone(),
                )
            })
            .collect();
        let identities: HashMap<(String, String), Identity> = self
            .store
            .identities_by_external_ids(&pairs)
            .await?
            .into_iter()
            .map(|i| ((i.system.clone(), i.external_id.clone()), i))
            .collect();
        let subjects: Vec<String> = pairs.iter().map(|(s, e)| format!("{s}/{e}")).collect();
        let mut open: HashMap<(String, String), Case> = self
            .store
            .open_cases_for(&subjects)
            .await?
            .into_iter()
            .map(|c| ((c.subject.clone(), c.finding_type.clone()), c))
            .collect();

        let mut drafts: Vec<Draft> = Vec::new();
        let mut plans: Vec<Result<Plan, IngestError>> = Vec::with_capacity(submissions.len());
        let mut first_with_key: HashMap<&str, usize> = HashMap::new();
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
            let plan = self.plan(
                source,
                submission,
                key,
                &subjects[index],
                identities.get(&pairs[index]),
                &mut open,
                &mut drafts,
                now,
            );
            plans.push(plan);
        }

        let appended = self.sequencer.append_all(drafts).await;
        let mut results: Vec<Result<IngestOutcome, IngestError>> = Vec::with_capacity(plans.len());
        let mut retry = Vec::new();
        for (index, plan) in plans.into_iter().enumerate() {
            let result = match plan {
                Err(err) => Err(err),
                Ok(Plan::Recorded(row)) => self.replayed_outcome(&row).await,
                Ok(Plan::SameAs(earlier)) => match &results[earlier] {
                    Ok(outcome) => Ok(IngestOutcome {
                        duplicate: true,
                        ..outcome.clone()
                    }),
                    Err(_) => Err(IngestError::Batch(
                        "an earlier finding with the same key failed".into(),
                    )),
                },
                Ok(Plan::Append { drafts, outcome }) => {
                    let mut seq = None;
                    let mut failure = None;
                    let mut duplicate = false;
                    for draft in drafts {
                        match &appended[draft] {
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
                        (Some(AppendError::Conflict(_)), _) => {
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
        Ok((results, retry))
    }

    /// Plans the events for one new finding, updating `open` with any case it opens.
    #[expect(
        clippy::too_many_arguments,
        reason = "the batch's shared lookups, passed in"
    )]
    fn plan(
        &self,
        source: &Source,
        submission: &Submission,
        key: &Keys,
        subject: &str,
        identity: Option<&Identity>,
        open: &mut HashMap<(String, String), Case>,
        drafts: &mut Vec<Draft>,
        now: jiff::Timestamp,
    ) -> Result<Plan, IngestError> {
        let obs = &submission.observation;
        let review_reason = match identity {
            None => {
                Some("source of truth incomplete: identity unknown to the inventory".to_owned())
            }
            Some(identity) => {
                match identity.source_of_truth(now, self.settings.max_reconcile_age) {
                    SourceOfTruth::Reconciled => None,
                    SourceOfTruth::Incomplete { reason } => {
                        Some(format!("source of truth incomplete: {reason}"))
                    }
                }
            }
        };
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
        let mut finding_body = json!({
            "finding": finding,
            "observation": {
                "format": obs.format,
                "title": obs.title,
                "subject_kind": obs.subject.kind_hint,
                "details": obs.details,
            },
            "source": {"name": source.name, "trust": source.trust},
        });
        if let Some(original) = submission.redacted_from {
            finding_body["redacted_from"] = json!(original);
        }
        let received = |case_id: CaseId, body: serde_json::Value| Draft {
            case_id: Some(case_id),
            actor: format!("source:{}", source.name),
            kind: EventKind::FindingReceived,
            idempotency_key: key.finding.clone(),
            policy_bundle: None,
            controls: controls.clone(),
            body,
            evidence: vec![EvidenceBlob {
                media_type: "application/json".into(),
                bytes: submission.evidence.clone(),
            }],
        };
        let open_key = (subject.to_owned(), obs.finding_type.clone());

        if let Some(case) = open.get(&open_key) {
            drafts.push(received(case.id, finding_body));
            return Ok(Plan::Append {
                drafts: vec![drafts.len() - 1],
                outcome: IngestOutcome {
                    finding_id: finding.id,
                    case_id: case.id,
                    case_state: case.state,
                    joined_open_case: true,
                    duplicate: false,
                    decision: None,
                    review_reason: None,
                    seq: 0,
                },
            });
        }

        let mut case = Case {
            id: CaseId(self.ids.next_id(now)),
            identity_id: identity.map(|i| i.id),
            subject: subject.to_owned(),
            finding_type: obs.finding_type.clone(),
            state: CaseState::NeedsReview,
            compliance_closed: false,
        };
        finding_body["case"] = json!(case);
        let opened = received(case.id, finding_body);

        let Some(action) = self
            .policy
            .remediation_for(&obs.finding_type)
            .map(str::to_owned)
        else {
            let reason = format!(
                "no remediation is defined for finding type {:?} in the policy bundle",
                obs.finding_type
            );
            drafts.push(opened);
            open.insert(open_key, case.clone());
            return Ok(Plan::Append {
                drafts: vec![drafts.len() - 1],
                outcome: IngestOutcome {
                    finding_id: finding.id,
                    case_id: case.id,
                    case_state: case.state,
                    joined_open_case: false,
                    duplicate: false,
                    decision: None,
                    review_reason: Some(reason),
                    seq: 0,
                },
            });
        };
        let signal = signal_for(&obs.finding_type);
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
        case.state = match (&decision.tier, reconciled) {
            (_, false) => CaseState::NeedsReview,
            (Tier::Auto, true) => CaseState::Remediating,
            (Tier::Approval { .. }, true) => CaseState::AwaitingApproval,
            (Tier::CaseOnly { freeze: true }, true) => CaseState::Frozen,
            (Tier::CaseOnly { freeze: false }, true) => CaseState::NeedsReview,
            (Tier::Deny, true) => CaseState::Denied,
        };
        let mut decided_body = json!({
            "case": case,
            "decision": decision,
            "evaluation": evaluation,
            "signal": signal,
        });
        if let Some(reason) = &review_reason {
            decided_body["routing"] = json!({"to": "human_review", "reason": reason});
        }
        // Automation allowed: queue the write-back in the same batch as the decision.
        let job = match (case.state, identity, action_from_name(&action)) {
            (CaseState::Remediating, Some(identity), Some(job_action)) => Some(Job {
                id: JobId(self.ids.next_id(now)),
                case_id: case.id,
                system: identity.system.clone(),
                external_id: identity.external_id.clone(),
                action: job_action,
                state: JobState::Queued,
                attempts: 0,
                next_attempt_at: None,
                dry_run: false,
                last_error: None,
                applied_at: None,
            }),
            _ => None,
        };
        let first = drafts.len();
        drafts.push(opened);
        drafts.push(Draft {
            case_id: Some(case.id),
            actor: "engine".into(),
            kind: EventKind::DecisionRecorded,
            idempotency_key: format!("decision:{}:{}", source.name, key.base),
            policy_bundle: Some(decision.bundle_hash),
            controls: controls.clone(),
            body: decided_body,
            evidence: vec![],
        });
        if let Some(job) = &job {
            drafts.push(Draft {
                case_id: Some(case.id),
                actor: "engine".into(),
                kind: EventKind::ChangeRequested,
                idempotency_key: format!("job:{}:queued", job.id),
                policy_bundle: Some(decision.bundle_hash),
                controls,
                body: json!({ "job": job }),
                evidence: vec![],
            });
        }
        open.insert(open_key, case.clone());
        Ok(Plan::Append {
            drafts: (first..drafts.len()).collect(),
            outcome: IngestOutcome {
                finding_id: finding.id,
                case_id: case.id,
                case_state: case.state,
                joined_open_case: false,
                duplicate: false,
                decision: Some(decision),
                review_reason,
                seq: 0,
            },
        })
    }

    /// The outcome of a finding that was already ingested, read back from the ledger.
    async fn replayed_outcome(&self, row: &LedgerRow) -> Result<IngestOutcome, IngestError> {
        let corrupt = |detail: String| IngestError::Corrupt {
            seq: row.seq,
            detail,
        };
        let event = writ_ledger::decode_leaf(&row.leaf).map_err(|err| corrupt(err.to_string()))?;
        let finding: Finding = serde_json::from_value(event["body"]["finding"].clone())
            .map_err(|err| corrupt(err.to_string()))?;
        let case_id = row
            .case_id
            .ok_or_else(|| corrupt("finding event without a case".into()))?;
        let case = self.store.case(case_id).await?;
        let decision_key = row.idempotency_key.replacen("finding:", "decision:", 1);
        let decision = match self.store.entry_by_idempotency_key(&decision_key).await? {
            Some(decided) => {
                let event = writ_ledger::decode_leaf(&decided.leaf)
                    .map_err(|err| corrupt(err.to_string()))?;
                serde_json::from_value(event["body"]["decision"].clone()).ok()
            }
            None => None,
        };
        Ok(IngestOutcome {
            finding_id: finding.id,
            case_id,
            case_state: case.map_or(CaseState::NeedsReview, |c| c.state),
            joined_open_case: event["body"]["case"].is_null(),
            duplicate: true,
            decision,
            review_reason: None,
            seq: row.seq,
        })
    }
}

/// What a finding type signals, as policies see it in `context.finding.signal`.
pub fn signal_for(finding_type: &str) -> &'static str {
    let t = finding_type.to_ascii_lowercase();
    if t.contains("compromise") || t.contains("anomal") || t.contains("suspicious") {
        "compromise"
    } else if t.contains("leak") || t.contains("exposed") || t.contains("secret_found") {
        "leak"
    } else if t.contains("unused")
        || t.contains("inactive")
        || t.contains("dormant")
        || t.contains("no_setup")
    {
        "inactivity"
    } else if t.contains("privilege") || t.contains("admin") || t.contains("entitlement") {
        "overprivilege"
    } else if t.contains("rotate") || t.contains("age") || t.contains("expir") {
        "stale_credential"
    } else {
        "other"
    }
}
