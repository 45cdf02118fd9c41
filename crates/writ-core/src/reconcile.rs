//! Reconciliation: the findings writ raises itself when a sync compares a target with the
//! inventory and with what writ last verified there. Pure: the sync hands in the identities as
//! they were and are, the target's attributes, and the changes writ verified; the findings go
//! through the same ingest and policy path as any source's (source [`RECONCILE_SOURCE`]).
//!
//! | finding type | when |
//! |---|---|
//! | `orphaned_identity` | no owner team after the ownership rules are applied |
//! | `dormant_identity` | the target's own last use is older than the dormancy threshold |
//! | `drift_reverted` | a credential writ disabled (verified) is active again: changed outside writ |
//! | `expired_but_active` | past its expiry (a role's `VALID UNTIL`) and still able to log in |
//! | `unknown_identity` | present in the target, absent from the inventory at the last sync |
//!
//! Each finding's idempotency key names the state it reports (the last use, the job, the
//! expiry), so a later sync reporting the same state records nothing new.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::change::Action;
use crate::finding::{Observation, Severity, SourceFormat, SubjectRef};
use crate::identity::Identity;
use crate::job::{Job, JobState};

/// The source name reconciliation findings are recorded under.
pub const RECONCILE_SOURCE: &str = "writ-reconcile";

/// One identity as a sync found it.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The identity as recorded now.
    pub identity: &'a Identity,
    /// The target's attributes of the object.
    pub attributes: &'a serde_json::Value,
}

/// What one sync saw.
#[derive(Debug, Clone, Copy)]
pub struct SyncView<'a> {
    /// The system.
    pub system: &'a str,
    /// The identities the inventory held before, by external id.
    pub before: &'a HashMap<String, Identity>,
    /// Whether the system had been synced before (else nothing is "unknown": it is all new).
    pub synced_before: bool,
    /// The identities found now.
    pub found: &'a [Found<'a>],
    /// The system's jobs whose change writ verified (or applied), newest last.
    pub verified: &'a [Job],
    /// Now.
    pub now: Timestamp,
    /// Unused for longer than this is dormant.
    pub dormant_after: SignedDuration,
}

/// A reconciliation finding, with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileFinding {
    /// The finding.
    pub observation: Observation,
    /// The key naming the state it reports.
    pub idempotency_key: String,
}

fn finding(
    view: &SyncView<'_>,
    identity: &Identity,
    finding_type: &str,
    severity: Severity,
    title: String,
    state: &str,
    details: serde_json::Value,
) -> ReconcileFinding {
    ReconcileFinding {
        idempotency_key: format!(
            "reconcile:{finding_type}:{}/{}:{state}",
            view.system, identity.external_id
        ),
        observation: Observation {
            format: SourceFormat::Native,
            finding_type: finding_type.to_owned(),
            severity,
            confidence_bp: 10_000,
            subject: SubjectRef {
                system: view.system.to_owned(),
                external_id: identity.external_id.clone(),
                kind_hint: Some(identity.kind),
            },
            observed_at: Some(view.now),
            title,
            source_key: None,
            controls: vec!["NHI-01".to_owned()],
            details,
            status: crate::finding::FindingStatus::Fail,
        },
    }
}

/// Whether a target's attributes say the object is active (can authenticate).
fn active(attributes: &serde_json::Value) -> Option<bool> {
    if let Some(status) = attributes["status"].as_str() {
        return Some(status.eq_ignore_ascii_case("active"));
    }
    attributes["can_login"].as_bool()
}

/// The findings one sync raises (see the module documentation), in identity order.
pub fn reconciliation_findings(view: &SyncView<'_>) -> Vec<ReconcileFinding> {
    let mut out = Vec::new();
    // The newest verified disable of each object.
    let mut disabled: HashMap<&str, &Job> = HashMap::new();
    for job in view.verified {
        if matches!(job.state, JobState::Verified) {
            match job.action {
                Action::Disable => {
                    disabled.insert(job.external_id.as_str(), job);
                }
                Action::Enable => {
                    disabled.remove(job.external_id.as_str());
                }
                _ => {}
            }
        }
    }
    for found in view.found {
        let identity = found.identity;
        let is_active = active(found.attributes);
        if identity.owner_team.as_deref().is_none_or(str::is_empty) {
            out.push(finding(
                view,
                identity,
                "orphaned_identity",
                Severity::Medium,
                format!("{} has no owner team", identity.external_id),
                "no-owner",
                serde_json::json!({"reason": "no ownership rule names an owner"}),
            ));
        }
        if let Some(last) = identity.last_used_at
            && view.now.duration_since(last) > view.dormant_after
            && is_active != Some(false)
        {
            out.push(finding(
                view,
                identity,
                "dormant_identity",
                Severity::Medium,
                format!(
                    "{} last used at {last}, over {:#} ago",
                    identity.external_id, view.dormant_after
                ),
                &format!("last-used-{}", last.as_microsecond()),
                serde_json::json!({"last_used_at": last.to_string()}),
            ));
        }
        if let Some(job) = disabled.get(identity.external_id.as_str())
            && is_active == Some(true)
        {
            out.push(finding(
                view,
                identity,
                "drift_reverted",
                Severity::High,
                format!(
                    "{} is active again after writ disabled it (job {}): changed outside writ",
                    identity.external_id, job.id
                ),
                &format!("job-{}", job.id),
                serde_json::json!({"job": job.id, "case": job.case_id, "verified": "disable"}),
            ));
        }
        if let Some(until) = found.attributes["valid_until"]
            .as_str()
            .and_then(|text| text.parse::<Timestamp>().ok())
            && until < view.now
            && is_active == Some(true)
        {
            out.push(finding(
                view,
                identity,
                "expired_but_active",
                Severity::High,
                format!(
                    "{} expired at {until} and can still log in",
                    identity.external_id
                ),
                &format!("expired-{until}"),
                serde_json::json!({"valid_until": until.to_string()}),
            ));
        }
        if view.synced_before && !view.before.contains_key(&identity.external_id) {
            out.push(finding(
                view,
                identity,
                "unknown_identity",
                Severity::Medium,
                format!(
                    "{} appeared in {} outside writ (absent from the inventory at the last sync)",
                    identity.external_id, view.system
                ),
                "appeared",
                serde_json::json!({"reason": "present in the target, absent from the inventory"}),
            ));
        }
    }
    out
}
