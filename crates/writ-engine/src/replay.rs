//! Replaying a case's decisions: each policy decision the case records is evaluated again from
//! its recorded inputs under the bundle that made it (kept in the ledger by hash, as the
//! evidence of a `policy_bundle_loaded` event) and must come out byte for byte the same; then
//! under today's bundle, to show what it would decide now.
//!
//! Bundles are kept by [`keep_bundle`], which `writ serve` calls when it puts a bundle in force:
//! one `policy_bundle_loaded` event per hash (its idempotency key is the hash), its files the
//! event's evidence. A decision made under a bundle that was never kept (an older writ, or an
//! engine built without `writ serve`) is reported as such, not as a mismatch.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use writ_core::Sha256Digest;
use writ_core::decision::Decision;
use writ_core::event::{EventBody, PolicyBundleLoaded};
use writ_core::ids::CaseId;
use writ_policy::PolicyBundle;
use writ_store::Store;

use crate::sequencer::{AppendError, Draft, EvidenceBlob, Sequencer};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(CaseId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// An entry of the case cannot be read.
    #[error(transparent)]
    Unreadable(#[from] crate::entries::UnreadableEntry),
}

/// The idempotency key of the event that keeps bundle `hash`.
pub fn bundle_key(hash: &Sha256Digest) -> String {
    format!("policy-bundle:{hash}")
}

/// Records `bundle` in the ledger (once per hash), its files as evidence, so that decisions it
/// makes can be replayed after it is replaced. Returns whether it was new.
pub async fn keep_bundle(
    sequencer: &Sequencer,
    bundle: &PolicyBundle,
    actor: &str,
) -> Result<bool, AppendError> {
    let hash = bundle.hash();
    let appended = sequencer
        .append(Draft {
            evidence: vec![EvidenceBlob {
                media_type: "application/json".into(),
                bytes: bundle.archive(),
            }],
            ..Draft::new(
                None,
                actor,
                bundle_key(&hash),
                EventBody::PolicyBundleLoaded(PolicyBundleLoaded {
                    hash,
                    files: bundle.files().to_vec(),
                }),
            )
        })
        .await?;
    Ok(!appended.duplicate)
}

/// Loads the bundle kept under `hash`, if it was kept. `Err` names why a kept one cannot be
/// loaded (its evidence missing or altered).
pub async fn kept_bundle(
    store: &dyn Store,
    hash: &Sha256Digest,
) -> Result<Option<PolicyBundle>, String> {
    let Some(row) = store
        .entry_by_idempotency_key(&bundle_key(hash))
        .await
        .map_err(|err| err.to_string())?
    else {
        return Ok(None);
    };
    let event = crate::entries::decode(&row).map_err(|err| err.to_string())?;
    let Some(digest) = event.evidence.first() else {
        return Err(format!(
            "entry {} keeps no files for bundle {hash}",
            row.seq
        ));
    };
    let evidence = store
        .evidence(digest)
        .await
        .map_err(|err| err.to_string())?
        .ok_or_else(|| format!("the files of bundle {hash} (evidence {digest}) are missing"))?;
    PolicyBundle::from_archive(&evidence.bytes, hash)
        .map(Some)
        .map_err(|err| format!("the kept bundle {hash} does not load: {err}"))
}

/// One recorded decision, replayed.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayedDecision {
    /// The entry that recorded it.
    pub seq: u64,
    /// Its event kind (`decision_recorded`, `rollback_requested`, ...).
    pub kind: String,
    /// The action decided.
    pub action: String,
    /// The bundle that decided.
    pub bundle_hash: Sha256Digest,
    /// The decision as recorded.
    pub recorded: Decision,
    /// `identical`: the kept bundle gives the same decision byte for byte; `different`: it
    /// does not (the record or the bundle was altered, or evaluation changed); `not_kept`: the
    /// bundle was never kept; `error`: it could not be evaluated.
    pub replay: String,
    /// The decision the kept bundle gives, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Decision>,
    /// Why the replay could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What today's bundle decides from the same inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today: Option<Decision>,
    /// Whether today's bundle decides the same tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub today_same_tier: Option<bool>,
}

/// A case's decisions, replayed.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The case.
    pub case_id: CaseId,
    /// Today's bundle, if one is loaded.
    pub today_bundle: Option<Sha256Digest>,
    /// Every recorded decision, in ledger order.
    pub decisions: Vec<ReplayedDecision>,
    /// Whether every decision replays identically under its kept bundle (false when one
    /// differs, errs, or was made under a bundle that was never kept).
    pub all_identical: bool,
}

/// The canonical bytes of a decision, for comparing byte for byte.
fn bytes_of(decision: &Decision) -> Vec<u8> {
    serde_json::to_vec(decision).unwrap_or_default()
}

/// Replays every decision case `case_id` records (see the module documentation).
pub async fn replay_case(
    store: &dyn Store,
    case_id: CaseId,
    today: Option<&PolicyBundle>,
) -> Result<ReplayReport, ReplayError> {
    if store.case(case_id).await?.is_none() {
        return Err(ReplayError::NotFound(case_id));
    }
    let mut bundles: HashMap<Sha256Digest, Result<Option<Arc<PolicyBundle>>, String>> =
        HashMap::new();
    let mut decisions = Vec::new();
    for row in store.case_entries(case_id).await? {
        let event = crate::entries::decode(&row)?;
        let Some((recorded, evaluation)) = event.body.recorded_decision() else {
            continue;
        };
        let hash = recorded.bundle_hash;
        if let std::collections::hash_map::Entry::Vacant(slot) = bundles.entry(hash) {
            // The kept copy first (it is what an auditor would load); today's bundle stands in
            // only for one with the same hash that was never kept.
            let kept = kept_bundle(store, &hash).await.map(|b| b.map(Arc::new));
            slot.insert(match (kept, today.filter(|b| b.hash() == hash)) {
                (Ok(None), Some(bundle)) => Ok(Some(Arc::new(bundle.clone()))),
                (kept, _) => kept,
            });
        }
        let (replay, replayed, error) = match &bundles[&hash] {
            Ok(Some(bundle)) => match bundle.replay(evaluation) {
                Ok(again) if bytes_of(&again) == bytes_of(recorded) => ("identical", None, None),
                Ok(again) => ("different", Some(again), None),
                Err(err) => ("error", None, Some(err.to_string())),
            },
            Ok(None) => ("not_kept", None, None),
            Err(err) => ("error", None, Some(err.clone())),
        };
        let today_decision = today.and_then(|bundle| bundle.replay(evaluation).ok());
        decisions.push(ReplayedDecision {
            seq: row.seq,
            kind: event.kind.name().to_owned(),
            action: recorded.action.clone(),
            bundle_hash: hash,
            recorded: recorded.clone(),
            replay: replay.to_owned(),
            replayed,
            error,
            today_same_tier: today_decision.as_ref().map(|d| d.tier == recorded.tier),
            today: today_decision,
        });
    }
    let all_identical = decisions.iter().all(|d| d.replay == "identical");
    Ok(ReplayReport {
        case_id,
        today_bundle: today.map(PolicyBundle::hash),
        decisions,
        all_identical,
    })
}
