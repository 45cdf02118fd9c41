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

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::json;
use tokio::sync::Mutex;
use writ_core::case::{Case, CaseState};
use writ_core::decision::{Decision, Tier};
use writ_core::event::{ControlTag, EventKind};
use writ_core::finding::{Finding, Observation};
use writ_core::identity::SourceOfTruth;
use writ_core::ids::{CaseId, FindingId};
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

const SUBJECT_LOCKS: usize = 256;

/// The ingest pipeline. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    policy: Arc<PolicyBundle>,
    settings: IngestSettings,
    /// Findings about the same subject and type are handled one at a time in this process, so
    /// deduplication cannot race; across replicas the one-open-case index catches the race.
    locks: Arc<Vec<Mutex<()>>>,
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
            locks: Arc::new((0..SUBJECT_LOCKS).map(|_| Mutex::new(())).collect()),
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
        // The caller's key, else the evidence digest: a retry of the same bytes is a duplicate.
        // The tool's own finding id is not enough (Prowler reuses one for distinct findings),
        // and a later scan of the same problem is not a retry: it joins the open case instead.
        let key_base = submission
            .idempotency_key
            .clone()
            .unwrap_or_else(|| Sha256Digest::of(&submission.evidence).hex());
        let finding_key = format!("finding:{}:{key_base}", source.name);
        if let Some(row) = self.store.entry_by_idempotency_key(&finding_key).await? {
            return self.replayed_outcome(&row).await;
        }
        let obs = &submission.observation;
        let subject = format!("{}/{}", obs.subject.system, obs.subject.external_id);
        let _guard = self.lock_for(&subject, &obs.finding_type).lock().await;
        // A retry of the same finding may have finished while we waited for the lock.
        if let Some(row) = self.store.entry_by_idempotency_key(&finding_key).await? {
            return self.replayed_outcome(&row).await;
        }
        // Another replica may open the same case at the same moment; the second loses on the
        // one-open-case index and then joins the first.
        match self
            .record(source, &submission, &subject, &finding_key, &key_base)
            .await
        {
            Err(IngestError::Append(AppendError::Conflict(_))) => {
                self.record(source, &submission, &subject, &finding_key, &key_base)
                    .await
            }
            other => other,
        }
    }

    async fn record(
        &self,
        source: &Source,
        submission: &Submission,
        subject: &str,
        finding_key: &str,
        key_base: &str,
    ) -> Result<IngestOutcome, IngestError> {
        let obs = &submission.observation;
        let now = self.clock.now();
        let identity = self
            .store
            .identity_by_external_id(&obs.subject.system, &obs.subject.external_id)
            .await?;
        let review_reason = match &identity {
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
            observed_at: obs.observed_at.unwrap_or(now),
            evidence: Sha256Digest::of(&submission.evidence),
            idempotency_key: finding_key.to_owned(),
        };
        let controls: Vec<ControlTag> = obs.controls.iter().cloned().map(ControlTag).collect();
        let received = |case_id: CaseId, body: serde_json::Value| Draft {
            case_id: Some(case_id),
            actor: format!("source:{}", source.name),
            kind: EventKind::FindingReceived,
            idempotency_key: finding_key.to_owned(),
            policy_bundle: None,
            controls: controls.clone(),
            body,
            evidence: vec![EvidenceBlob {
                media_type: "application/json".into(),
                bytes: submission.evidence.clone(),
            }],
        };
        let finding_body = |case: Option<&Case>| {
            let mut body = json!({
                "finding": finding,
                "observation": {
                    "format": obs.format,
                    "title": obs.title,
                    "subject_kind": obs.subject.kind_hint,
                    "details": obs.details,
                },
                "source": {"name": source.name, "trust": source.trust},
            });
            if let Some(case) = case {
                body["case"] = json!(case);
            }
            if let Some(original) = submission.redacted_from {
                body["redacted_from"] = json!(original);
            }
            body
        };

        if let Some(open) = self.store.open_case(subject, &obs.finding_type).await? {
            let appended = self
                .sequencer
                .append(received(open.id, finding_body(None)))
                .await?;
            return Ok(IngestOutcome {
                finding_id: finding.id,
                case_id: open.id,
                case_state: open.state,
                joined_open_case: true,
                duplicate: appended.duplicate,
                decision: None,
                review_reason: None,
                seq: appended.seq,
            });
        }

        let mut case = Case {
            id: CaseId(self.ids.next_id(now)),
            identity_id: identity.as_ref().map(|i| i.id),
            subject: subject.to_owned(),
            finding_type: obs.finding_type.clone(),
            state: CaseState::NeedsReview,
            compliance_closed: false,
        };
        let opened = received(case.id, finding_body(Some(&case)));

        let Some(action) = self
            .policy
            .remediation_for(&obs.finding_type)
            .map(str::to_owned)
        else {
            let reason = format!(
                "no remediation is defined for finding type {:?} in the policy bundle",
                obs.finding_type
            );
            let appended = self.sequencer.append(opened).await?;
            return Ok(IngestOutcome {
                finding_id: finding.id,
                case_id: case.id,
                case_state: case.state,
                joined_open_case: false,
                duplicate: appended.duplicate,
                decision: None,
                review_reason: Some(reason),
                seq: appended.seq,
            });
        };
        let signal = signal_for(&obs.finding_type);
        let reconciled = review_reason.is_none();
        let (decision, evaluation) = self
            .policy
            .decide(&DecisionRequest {
                identity: identity.as_ref(),
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
        let decided = Draft {
            case_id: Some(case.id),
            actor: "engine".into(),
            kind: EventKind::DecisionRecorded,
            idempotency_key: format!("decision:{}:{key_base}", source.name),
            policy_bundle: Some(decision.bundle_hash),
            controls,
            body: decided_body,
            evidence: vec![],
        };
        let mut results = self
            .sequencer
            .append_all(vec![opened, decided])
            .await
            .into_iter();
        let first = results.next().unwrap_or(Err(AppendError::Stopped))?;
        results.next().unwrap_or(Err(AppendError::Stopped))?;
        Ok(IngestOutcome {
            finding_id: finding.id,
            case_id: case.id,
            case_state: case.state,
            joined_open_case: false,
            duplicate: first.duplicate,
            decision: Some(decision),
            review_reason,
            seq: first.seq,
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

    fn lock_for(&self, subject: &str, finding_type: &str) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        subject.hash(&mut hasher);
        finding_type.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % SUBJECT_LOCKS as u64).unwrap_or(0);
        &self.locks[index]
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
