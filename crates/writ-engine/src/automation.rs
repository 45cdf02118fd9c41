//! Automation pauses where the source of truth cannot be trusted, and resumes when it is
//! repaired, as recorded states: `automation_paused` (with why) and `automation_resumed` on
//! the system, projected onto its `systems` row. While a system is paused, findings about its
//! identities go to a person whatever the tier (the decision's routing names the pause) and
//! queued jobs there wait, each hold recorded in its case with the reason.
//!
//! A system pauses when its inventory is stale (its last successful sync older than
//! `max_staleness`) or when its last successful sync found fewer than `min_ownership` of its
//! identities owned. [`review_pauses`] runs in `writ serve`'s worker loop on every replica; a
//! transition's idempotency key names the row version it saw, so replicas record it once.

use jiff::SignedDuration;
use writ_core::Clock;
use writ_core::event::{AutomationPaused, AutomationResumed, EventBody};
use writ_core::workflow::ENGINE_ACTOR;
use writ_store::{Store, SystemStatus};

use crate::sequencer::{AppendError, Draft, Sequencer};

/// When automation pauses.
#[derive(Debug, Clone, Copy)]
pub struct AutomationRules {
    /// A system whose last successful sync is older than this pauses.
    pub max_staleness: SignedDuration,
    /// A system whose last successful sync found fewer than this share of its identities
    /// owned pauses (0 never does).
    pub min_ownership: f64,
}

/// Why automation should be paused on `system` now, if it should.
pub fn pause_reason(
    system: &SystemStatus,
    now: jiff::Timestamp,
    rules: &AutomationRules,
) -> Option<String> {
    if let Some(last) = system.last_success_at
        && now.duration_since(last) > rules.max_staleness
    {
        return Some(format!(
            "inventory stale: last synced at {last}, longer ago than {:#}",
            rules.max_staleness
        ));
    }
    match (system.identities, system.owned) {
        (Some(identities), Some(owned)) if identities > 0 && rules.min_ownership > 0.0 => {
            #[expect(
                clippy::cast_precision_loss,
                reason = "a share of identities; counts are far below 2^52"
            )]
            let share = owned as f64 / identities as f64;
            (share < rules.min_ownership).then(|| {
                format!(
                    "ownership coverage {:.0}% ({owned} of {identities} identities owned) is below {:.0}%",
                    share * 100.0,
                    rules.min_ownership * 100.0
                )
            })
        }
        _ => None,
    }
}

/// A pause or resumption recorded by [`review_pauses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseChange {
    /// The system.
    pub system: String,
    /// Why it is paused now; `None`: it resumed.
    pub paused: Option<String>,
}

/// Records a pause on every system that should be paused and is not, and a resumption on
/// every paused system that is repaired.
pub async fn review_pauses(
    store: &dyn Store,
    sequencer: &Sequencer,
    clock: &dyn Clock,
    rules: &AutomationRules,
) -> Result<Vec<PauseChange>, ReviewError> {
    let now = clock.now();
    let mut changes = Vec::new();
    for system in store.systems().await? {
        let should = pause_reason(&system, now, rules);
        let body = match (&system.paused_reason, &should) {
            (None, Some(reason)) => EventBody::AutomationPaused(AutomationPaused {
                system: system.system.clone(),
                reason: reason.clone(),
            }),
            (Some(was), None) => EventBody::AutomationResumed(AutomationResumed {
                system: system.system.clone(),
                was: was.clone(),
                reason: match (system.identities, system.owned) {
                    (Some(identities), Some(owned)) => format!(
                        "inventory fresh (last synced at {}), {owned} of {identities} identities owned",
                        system
                            .last_success_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_string())
                    ),
                    _ => "the source of truth is repaired".to_owned(),
                },
            }),
            _ => continue,
        };
        let key = format!(
            "automation:{}:{}:{}",
            system.system,
            if should.is_some() {
                "paused"
            } else {
                "resumed"
            },
            system.updated_seq
        );
        let appended = sequencer
            .append(Draft::new(None, ENGINE_ACTOR, key, body))
            .await?;
        if !appended.duplicate {
            tracing::warn!(system = %system.system, paused = ?should, "automation pause changed");
            changes.push(PauseChange {
                system: system.system,
                paused: should,
            });
        }
    }
    Ok(changes)
}

/// Why reviewing pauses failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// The ledger refused the event.
    #[error(transparent)]
    Append(#[from] AppendError),
}
