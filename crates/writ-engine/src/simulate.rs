//! Simulation before deploy: every finding decision the ledger records (since a time) decided
//! again, from its recorded inputs, under a candidate bundle; what would change, per tier and
//! per policy, with the cases. Read-only: nothing is appended.
//!
//! Only `decision_recorded` entries are simulated (the decisions findings get, first or
//! again); a case decided several times counts each decision, and lists the case once.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;
use writ_core::decision::{Decision, Tier};
use writ_core::event::{EventBody, EventKind};
use writ_core::ids::CaseId;
use writ_policy::PolicyBundle;
use writ_store::Store;

use crate::entries::UnreadableEntry;

/// Entries read per page.
const PAGE: u32 = 2_000;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// An entry cannot be read.
    #[error(transparent)]
    Unreadable(#[from] UnreadableEntry),
    /// A worker thread failed.
    #[error("a simulation worker failed: {0}")]
    Worker(String),
}

/// One decision as recorded and as the candidate decides it.
struct Redecided {
    seq: u64,
    case_id: Option<CaseId>,
    recorded: Decision,
    candidate: Result<Decision, String>,
}

/// Decodes and re-decides the `decision_recorded` rows of one page on every core (decoding the
/// leaf and parsing the recorded inputs into Cedar's form are most of the cost), in order.
fn redecide_page(
    rows: &[writ_store::LedgerRow],
    candidate: &PolicyBundle,
) -> Result<Vec<Redecided>, UnreadableEntry> {
    let one = |row: &writ_store::LedgerRow| -> Result<Option<Redecided>, UnreadableEntry> {
        let EventBody::DecisionRecorded(recorded) = crate::entries::decode_body(row)? else {
            return Ok(None);
        };
        Ok(Some(Redecided {
            seq: row.seq,
            case_id: row.case_id,
            candidate: candidate
                .replay(&recorded.evaluation)
                .map_err(|err| err.to_string()),
            recorded: recorded.decision,
        }))
    };
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = rows.len().div_ceil(workers).max(1);
    let results: Vec<Result<Vec<Redecided>, UnreadableEntry>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for row in part {
                        if let Some(done) = one(row)? {
                            out.push(done);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(UnreadableEntry {
                        seq: 0,
                        detail: "a simulation worker panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut all = Vec::new();
    for part in results {
        all.extend(part?);
    }
    Ok(all)
}

/// One decision the candidate would make otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedDecision {
    /// The entry that recorded it.
    pub seq: u64,
    /// Its case.
    pub case_id: Option<CaseId>,
    /// The action decided.
    pub action: String,
    /// The tier recorded, and its determining policies.
    pub recorded: Decision,
    /// What the candidate decides (`None`: it cannot evaluate the recorded inputs, for
    /// example when its schema no longer accepts them).
    pub candidate: Option<Decision>,
    /// Why the candidate could not evaluate them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a policy's part in the decisions would change.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PolicyDelta {
    /// Decisions it determined as recorded.
    pub recorded: u64,
    /// Decisions it would determine under the candidate.
    pub candidate: u64,
}

/// What a candidate bundle would change.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// The candidate's hash.
    pub candidate_bundle: String,
    /// Decisions simulated.
    pub decisions: u64,
    /// Of those, how many the candidate decides with another tier or other determining
    /// policies (or cannot decide).
    pub changed: u64,
    /// `recorded tier -> candidate tier` counts (the same tier included).
    pub tiers: BTreeMap<String, u64>,
    /// Per policy id: decisions it determined, recorded and under the candidate (only the
    /// policies whose count changes).
    pub policies: BTreeMap<String, PolicyDelta>,
    /// The cases with a changed decision, in ledger order.
    pub cases: Vec<CaseId>,
    /// Every changed decision.
    pub changes: Vec<ChangedDecision>,
}

fn tier_name(tier: &Tier) -> &'static str {
    match tier {
        Tier::Auto => "auto",
        Tier::Approval { .. } => "approval",
        Tier::CaseOnly { .. } => "case_only",
        Tier::Deny => "deny",
    }
}

/// Simulates `candidate` over the finding decisions recorded at or after `since` (all when
/// `None`). `progress` is told how many entries have been read of how many.
pub async fn simulate(
    store: &dyn Store,
    candidate: std::sync::Arc<PolicyBundle>,
    since: Option<Timestamp>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SimulationReport, SimulateError> {
    let size = store.ledger_size().await?;
    let mut report = SimulationReport {
        candidate_bundle: candidate.hash().to_string(),
        decisions: 0,
        changed: 0,
        tiers: BTreeMap::new(),
        policies: BTreeMap::new(),
        cases: Vec::new(),
        changes: Vec::new(),
    };
    let mut counts: BTreeMap<String, PolicyDelta> = BTreeMap::new();
    let mut seen_cases = BTreeSet::new();
    let mut next = 0;
    while next < size {
        let rows = store.entries(next, PAGE).await?;
        let Some(last) = rows.last() else {
            break;
        };
        next = last.seq + 1;
        let decisions: Vec<writ_store::LedgerRow> = rows
            .into_iter()
            .filter(|row| {
                row.kind == EventKind::DecisionRecorded && since.is_none_or(|t| row.time >= t)
            })
            .collect();
        let bundle = candidate.clone();
        let redecided = tokio::task::spawn_blocking(move || redecide_page(&decisions, &bundle))
            .await
            .map_err(|err| SimulateError::Worker(err.to_string()))??;
        for Redecided {
            seq,
            case_id,
            recorded,
            candidate,
        } in redecided
        {
            report.decisions += 1;
            for id in &recorded.determining_policies {
                counts.entry(id.clone()).or_default().recorded += 1;
            }
            let (candidate_decision, error) = match candidate {
                Ok(decision) => (Some(decision), None),
                Err(err) => (None, Some(err)),
            };
            let candidate_tier = candidate_decision
                .as_ref()
                .map_or("error", |d| tier_name(&d.tier));
            *report
                .tiers
                .entry(format!("{} -> {candidate_tier}", tier_name(&recorded.tier)))
                .or_default() += 1;
            if let Some(decision) = &candidate_decision {
                for id in &decision.determining_policies {
                    counts.entry(id.clone()).or_default().candidate += 1;
                }
            }
            let same = candidate_decision.as_ref().is_some_and(|d| {
                d.tier == recorded.tier && d.determining_policies == recorded.determining_policies
            });
            if !same {
                report.changed += 1;
                if let Some(case) = case_id
                    && seen_cases.insert(case)
                {
                    report.cases.push(case);
                }
                report.changes.push(ChangedDecision {
                    seq,
                    case_id,
                    action: recorded.action.clone(),
                    recorded,
                    candidate: candidate_decision,
                    error,
                });
            }
        }
        progress(next.min(size), size);
    }
    report.policies = counts
        .into_iter()
        .filter(|(_, delta)| delta.recorded != delta.candidate)
        .collect();
    Ok(report)
}
