//! Re-deriving the projection tables from the ledger.
//!
//! The ledger is the source of truth; identities, cases and findings are projections of it.
//! [`derive`] replays every entry through [`writ_core::projection::project`] (the same function
//! the live write path uses); [`rebuild`] replaces the tables with the result in one
//! transaction; [`check`] compares the result with the live tables without writing.

use std::collections::BTreeMap;

use serde::Deserialize as _;
use writ_core::event::Event;
use writ_core::projection::project;
use writ_store::{Effect, ProjectionDump, Store, StoreError};

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

/// Replays the whole ledger into the projection effects it implies, in ledger order.
pub async fn derive(store: &dyn Store) -> Result<(u64, Vec<Effect>), RebuildError> {
    let mut effects = Vec::new();
    let mut next = 0u64;
    loop {
        let page = store.entries(next, 10_000).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let bad = |detail: String| RebuildError::BadEntry {
                seq: row.seq,
                detail,
            };
            let value = writ_ledger::decode_leaf(&row.leaf).map_err(|err| bad(err.to_string()))?;
            let event = Event::deserialize(&value).map_err(|err| bad(err.to_string()))?;
            for projection in project(&event).map_err(|err| bad(err.to_string()))? {
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

/// The tables that applying `effects` to empty projections would produce.
pub fn dump_of(effects: Vec<Effect>) -> ProjectionDump {
    let mut identities = BTreeMap::new();
    let mut cases = BTreeMap::new();
    let mut findings = BTreeMap::new();
    let mut jobs = BTreeMap::new();
    for effect in effects {
        match effect {
            Effect::PutEvidence(_) => {}
            Effect::UpsertIdentity { identity, seq } => {
                identities.insert(identity.id, (identity, seq));
            }
            Effect::UpsertCase { case, seq } => {
                let opened = cases.get(&case.id).map_or(seq, |(_, opened, _)| *opened);
                cases.insert(case.id, (case, opened, seq));
            }
            Effect::UpsertJob { job, seq } => {
                let created = jobs.get(&job.id).map_or(seq, |(_, created, _)| *created);
                jobs.insert(job.id, (job, created, seq));
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
        }
    }
    ProjectionDump {
        identities: identities.into_values().collect(),
        cases: cases.into_values().collect(),
        findings: findings.into_values().collect(),
        jobs: jobs.into_values().collect(),
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
    compare("findings", &expected.findings, &live.findings, &mut out);
    compare("jobs", &expected.jobs, &live.jobs, &mut out);
    out
}
