//! Re-deriving the projection tables from the ledger.
//!
//! The ledger is the source of truth; identities, cases and findings are projections of it.
//! [`derive`] replays every entry through the workflow state machine and
//! [`writ_core::projection::project`] (the same functions the live write path uses); [`rebuild`] replaces the tables with the result in one
//! transaction; [`check`] compares the result with the live tables without writing.

use std::collections::{BTreeMap, HashMap};

use writ_core::case::Case;
use writ_core::ids::CaseId;
use writ_core::projection::project;
use writ_core::workflow::CaseWorkflow;
use writ_store::{Effect, ProjectionDump, Store, StoreError};

use crate::entries;
use crate::sequencer::effect_of;

/// Why a rebuild could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry could not be decoded (run `writ audit verify`).
    #[error("entry {seq}: {detail}")]
    BadEntry {
        /// The entry.
        seq: u64,
        /// What was wrong.
        detail: String,
    },
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Entries replayed.
    pub entries: u64,
    /// Projection rows written.
    pub rows: usize,
}

/// Replays the whole ledger into the projection effects it implies, in ledger order. Every
/// event goes through the workflow state machine of its case, as it did when it was appended:
/// an illegal step (say, a frozen case becoming remediated) is refused and named.
pub async fn derive(store: &dyn Store) -> Result<(u64, Vec<Effect>), RebuildError> {
    let mut effects = Vec::new();
    let mut workflows: HashMap<CaseId, CaseWorkflow> = HashMap::new();
    let mut next = 0u64;
    loop {
        let page = store.entries(next, 10_000).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let event = entries::decode(&row).map_err(|err| RebuildError::BadEntry {
                seq: err.seq,
                detail: err.detail,
            })?;
            if let Some(case_id) = event.case_id {
                workflows
                    .entry(case_id)
                    .or_default()
                    .apply(case_id, &event.body)
                    .map_err(|err| RebuildError::BadEntry {
                        seq: event.seq,
                        detail: err.to_string(),
                    })?;
            }
            for projection in project(event.case_id, &event.body) {
                effects.push(effect_of(projection, event.seq));
            }
            next = row.seq + 1;
        }
    }
    Ok((next, effects))
}

/// Replaces the projection tables with what the ledger implies.
pub async fn rebuild(store: &dyn Store) -> Result<RebuildReport, RebuildError> {
    let (entries, effects) = derive(store).await?;
    let rows = effects.len();
    store.replace_projections(effects).await?;
    Ok(RebuildReport { entries, rows })
}

/// Compares the live tables with what the ledger implies; returns the differences, one line
/// each (empty when they agree).
pub async fn check(store: &dyn Store) -> Result<Vec<String>, RebuildError> {
    let (_, effects) = derive(store).await?;
    let expected = dump_of(effects);
    let live = store.projection_dump().await?;
    Ok(differences(&expected, &live))
}

/// The tables that applying `effects` to empty projections would produce (what the store's
/// `apply_effects` does, row by row).
pub fn dump_of(effects: Vec<Effect>) -> ProjectionDump {
    type CaseRow = (Case, u64, u64, Option<u64>);
    let mut identities = BTreeMap::new();
    let mut cases: BTreeMap<CaseId, CaseRow> = BTreeMap::new();
    let mut findings = BTreeMap::new();
    let mut jobs = BTreeMap::new();
    let mut votes = BTreeMap::new();
    let mut principals = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    let mut exceptions: BTreeMap<writ_core::ids::ExceptionId, writ_store::ExceptionView> =
        BTreeMap::new();
    // Keyed as the table orders them: by case, then the kind's name.
    type DeadlineRow = (
        CaseId,
        writ_core::exception::DeadlineKind,
        jiff::Timestamp,
        bool,
        u64,
        u64,
    );
    let mut deadlines: BTreeMap<(CaseId, &'static str), DeadlineRow> = BTreeMap::new();
    let mut bypasses: BTreeMap<CaseId, (CaseId, String, bool, u64)> = BTreeMap::new();
    let mut systems: BTreeMap<String, writ_store::SystemStatus> = BTreeMap::new();
    for effect in effects {
        match effect {
            Effect::PutEvidence(_) => {}
            Effect::UpsertIdentity { identity, seq } => {
                identities.insert(identity.id, (identity, seq));
            }
            Effect::UpsertCase { case, decided, seq } => {
                let (opened, earlier) = cases
                    .get(&case.id)
                    .map_or((seq, None), |(_, opened, _, at)| (*opened, *at));
                let decision_seq = if decided { Some(seq) } else { earlier };
                cases.insert(case.id, (case, opened, seq, decision_seq));
            }
            Effect::UpsertJob { job, intent, seq } => {
                let (created, earlier) = jobs.get(&job.id).map_or(
                    (seq, None),
                    |(_, created, _, at): &(_, u64, u64, Option<u64>)| (*created, *at),
                );
                let intent_seq = if intent { Some(seq) } else { earlier };
                jobs.insert(job.id, (job, created, seq, intent_seq));
            }
            Effect::InsertFinding {
                finding,
                case_id,
                seq,
            } => {
                findings
                    .entry(finding.id)
                    .or_insert((finding, case_id, seq));
            }
            Effect::InsertVote {
                case_id,
                approver,
                seq,
            } => {
                if let Some((_, _, updated, Some(decision_seq))) = cases.get_mut(&case_id) {
                    *updated = (*updated).max(seq);
                    votes.insert(
                        (case_id, *decision_seq, approver.clone()),
                        (case_id, *decision_seq, approver, seq),
                    );
                }
            }
            Effect::UpsertPrincipal { principal, seq } => {
                principals.insert(principal.name.clone(), (principal, seq));
            }
            Effect::InsertToken { token, seq } => {
                tokens.insert(token.id, (token, false, seq, seq));
            }
            Effect::RevokeToken { id, seq } => {
                if let Some(token) = tokens.get_mut(&id) {
                    token.1 = true;
                    token.3 = seq;
                }
            }
            Effect::UpsertException {
                exception,
                state,
                seq,
            } => {
                use writ_core::exception::ExceptionState;
                if state == ExceptionState::Active {
                    for other in exceptions.values_mut() {
                        if other.exception.case_id == exception.case_id
                            && other.exception.id != exception.id
                            && other.state == ExceptionState::Active
                        {
                            other.state = ExceptionState::Superseded;
                            other.updated_seq = seq;
                        }
                    }
                }
                let granted_seq = exceptions.get(&exception.id).map_or(seq, |e| e.granted_seq);
                exceptions.insert(
                    exception.id,
                    writ_store::ExceptionView {
                        exception,
                        state,
                        granted_seq,
                        updated_seq: seq,
                    },
                );
            }
            Effect::EndExceptions {
                case_id,
                only,
                state,
                seq,
            } => {
                for view in exceptions.values_mut() {
                    if view.exception.case_id == case_id
                        && view.state == writ_core::exception::ExceptionState::Active
                        && only.is_none_or(|id| id == view.exception.id)
                    {
                        view.state = state;
                        view.updated_seq = seq;
                    }
                }
            }
            Effect::SetDeadline {
                case_id,
                kind,
                due,
                seq,
            } => {
                deadlines.insert(
                    (case_id, kind.into()),
                    (case_id, kind, due, false, seq, seq),
                );
            }
            Effect::UpsertBypass {
                case_id,
                by,
                reviewed,
                seq,
            } => {
                bypasses.insert(case_id, (case_id, by, reviewed, seq));
            }
            Effect::MeetDeadlines {
                case_id,
                kinds,
                seq,
            } => {
                for (key, row) in deadlines.iter_mut() {
                    if key.0 == case_id && !row.3 && (kinds.is_empty() || kinds.contains(&row.1)) {
                        row.3 = true;
                        row.5 = seq;
                    }
                }
            }
            Effect::SetSystemPause {
                system,
                reason,
                seq,
            } => {
                if let Some(row) = systems.get_mut(&system) {
                    row.paused_reason = reason;
                    row.updated_seq = seq;
                }
            }
            Effect::UpsertSystem { status, seq } => {
                let succeeded = matches!(
                    status.outcome,
                    writ_core::event::SyncOutcome::Succeeded { .. }
                );
                let earlier = systems.get(&status.system);
                let (identities, owned) = match status.outcome {
                    writ_core::event::SyncOutcome::Succeeded {
                        identities, owned, ..
                    } => (Some(identities), Some(owned)),
                    writ_core::event::SyncOutcome::Failed { .. } => (
                        earlier.and_then(|row| row.identities),
                        earlier.and_then(|row| row.owned),
                    ),
                };
                let paused_reason = earlier.and_then(|row| row.paused_reason.clone());
                let earlier_success = earlier.and_then(|row| row.last_success_at);
                systems.insert(
                    status.system.clone(),
                    writ_store::SystemStatus {
                        identities,
                        owned,
                        paused_reason,
                        last_success_at: if succeeded {
                            Some(status.finished_at)
                        } else {
                            earlier_success
                        },
                        system: status.system,
                        target: status.target,
                        last_attempt_at: status.finished_at,
                        scheduled: status.scheduled,
                        outcome: status.outcome,
                        updated_seq: seq,
                    },
                );
            }
        }
    }
    ProjectionDump {
        identities: identities.into_values().collect(),
        cases: cases.into_values().collect(),
        votes: votes.into_values().collect(),
        findings: findings.into_values().collect(),
        jobs: jobs.into_values().collect(),
        principals: principals.into_values().collect(),
        tokens: tokens.into_values().collect(),
        exceptions: exceptions.into_values().collect(),
        deadlines: deadlines.into_values().collect(),
        bypasses: bypasses.into_values().collect(),
        systems: systems.into_values().collect(),
    }
}

fn differences(expected: &ProjectionDump, live: &ProjectionDump) -> Vec<String> {
    fn compare<T: PartialEq + std::fmt::Debug>(
        table: &str,
        expected: &[T],
        live: &[T],
        out: &mut Vec<String>,
    ) {
        if expected.len() != live.len() {
            out.push(format!(
                "{table}: the ledger implies {} rows, the table has {}",
                expected.len(),
                live.len()
            ));
        }
        for (want, have) in expected.iter().zip(live) {
            if want != have {
                out.push(format!("{table}: expected {want:?}, found {have:?}"));
            }
        }
    }
    let mut out = Vec::new();
    compare(
        "identities",
        &expected.identities,
        &live.identities,
        &mut out,
    );
    compare("cases", &expected.cases, &live.cases, &mut out);
    compare("votes", &expected.votes, &live.votes, &mut out);
    compare("findings", &expected.findings, &live.findings, &mut out);
    compare("jobs", &expected.jobs, &live.jobs, &mut out);
    compare(
        "principals",
        &expected.principals,
        &live.principals,
        &mut out,
    );
    compare("tokens", &expected.tokens, &live.tokens, &mut out);
    compare(
        "exceptions",
        &expected.exceptions,
        &live.exceptions,
        &mut out,
    );
    compare("deadlines", &expected.deadlines, &live.deadlines, &mut out);
    compare("bypasses", &expected.bypasses, &live.bypasses, &mut out);
    compare("systems", &expected.systems, &live.systems, &mut out);
    out
}
