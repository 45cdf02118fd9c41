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
//! | `drift_regranted` | a grant writ revoked or a scope it reduced (verified) is back: read back again, the change no longer holds |
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
    /// Of [`revocations_in_force`], those the target no longer shows in effect (the sync read
    /// each back with the connector's own verification).
    pub regranted: &'a [&'a Job],
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

/// The verified revocations a sync reads back again: per object, each revoke and scope
/// reduction since the last change that granted something there (a grant, a new account;
/// a scope set is both: it replaces the ones before), newest last. One that no longer holds
/// is drift (`drift_regranted`).
pub fn revocations_in_force(verified: &[Job]) -> Vec<&Job> {
    let mut by_object: HashMap<&str, Vec<&Job>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for job in verified.iter().filter(|j| j.state == JobState::Verified) {
        let object = job.external_id.as_str();
        let in_force = by_object.entry(object).or_insert_with(|| {
            order.push(object);
            Vec::new()
        });
        match &job.action {
            Action::Revoke { .. } | Action::ReduceScope { .. } => in_force.push(job),
            Action::SetScopes { .. } => {
                in_force.clear();
                in_force.push(job);
            }
            Action::Grant { .. } | Action::Create { .. } => in_force.clear(),
            _ => {}
        }
    }
    order
        .into_iter()
        .flat_map(|object| by_object.remove(object).unwrap_or_default())
        .collect()
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
        for job in view
            .regranted
            .iter()
            .filter(|j| j.external_id == identity.external_id)
        {
            out.push(finding(
                view,
                identity,
                "drift_regranted",
                Severity::High,
                format!(
                    "{}: what writ's {} took away (job {}) is back: changed outside writ",
                    identity.external_id,
                    job.action.name(),
                    job.id
                ),
                &format!("job-{}", job.id),
                serde_json::json!({
                    "job": job.id,
                    "case": job.case_id,
                    "verified": job.action.name(),
                    "action": job.action,
                }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CaseId, JobId};

    fn verified(n: u128, object: &str, action: Action) -> Job {
        let mut job = Job::queued(
            JobId(uuid::Uuid::from_u128(n)),
            CaseId(uuid::Uuid::from_u128(n)),
            "idp",
            object,
            action,
            false,
        );
        job.state = JobState::Verified;
        job
    }

    #[test]
    fn revocations_in_force_are_those_since_the_last_grant() {
        let reduce = |scope: &str| Action::ReduceScope {
            remove: vec![scope.to_owned()],
        };
        let grant = |scope: &str| Action::Grant {
            scopes: vec![scope.to_owned()],
        };
        let jobs = vec![
            verified(1, "bot", reduce("a")),
            verified(2, "bot", grant("a")),
            verified(3, "bot", reduce("a")),
            verified(4, "app", Action::SetScopes { scopes: vec![] }),
            verified(5, "app", Action::Disable),
            verified(6, "bot", Action::Revoke { what: "b".into() }),
        ];
        let ids: Vec<u128> = revocations_in_force(&jobs)
            .iter()
            .map(|j| j.id.0.as_u128())
            .collect();
        assert_eq!(ids, [3, 6, 4]);
        // A revocation that was rolled back is not in force.
        let mut rolled_back = verified(7, "db", reduce("x"));
        rolled_back.state = JobState::RolledBack;
        assert!(revocations_in_force(&[rolled_back]).is_empty());
    }
}
