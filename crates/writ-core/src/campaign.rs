//! Certification campaigns: every identity of a system is put to its owner team, which
//! certifies it (keeps it) or revokes it by a deadline. Pure: what a campaign is, the finding
//! that asks about each identity, how an answer maps onto a vote, and where each item stands.
//!
//! A campaign asks through the same path as any finding: one `certification_due` finding per
//! identity (source [`CAMPAIGN_SOURCE`]), decided by policy like any other, so the approval
//! rule (owner team, N of M, separation of duties) is the policy's. An answer is a vote on that
//! decision: **revoke** approves its change (the remediation the policy names, a disable in the
//! demo bundle), written back by the engine when the rule is met; **certify** rejects it, and
//! the case closes with the answer as evidence ([`crate::event::ClosureEvidence::Certification`]).
//! At the deadline an unanswered case is decided again as [`CERTIFICATION_OVERDUE`]: the policy
//! says what follows (escalate to another group, leave it to a person), and never an automatic
//! change: an `auto` decision there goes to a person instead ([`OVERDUE_NEVER_AUTOMATIC`]).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::approval::Verdict;
use crate::case::CaseState;
use crate::finding::{FindingStatus, Observation, Severity, SourceFormat, SubjectRef};
use crate::identity::Identity;
use crate::ids::CaseId;

/// The source campaign findings are recorded under.
pub const CAMPAIGN_SOURCE: &str = "writ-campaign";
/// The finding type that asks an owner team to certify or revoke an identity.
pub const CERTIFICATION_DUE: &str = "certification_due";
/// The finding type an unanswered certification is decided again as, at its deadline.
pub const CERTIFICATION_OVERDUE: &str = "certification_overdue";
/// Why an `auto` decision at a deadline goes to a person.
pub const OVERDUE_NEVER_AUTOMATIC: &str =
    "a certification nobody answered is never changed automatically: a person decides";
/// The longest a campaign may run.
pub const MAX_CAMPAIGN_DAYS: i64 = 366;
/// The most identities one campaign asks about.
pub const MAX_ITEMS: usize = 100_000;

/// A campaign as `campaign_started` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Its id (a UUID, also in every item's finding key).
    pub id: String,
    /// The system whose identities it asks about.
    pub system: String,
    /// Answers are due by then.
    pub deadline: Timestamp,
    /// Who started it (the principal's canonical name).
    pub started_by: String,
    /// When.
    pub started_at: Timestamp,
    /// The identity kinds it covers (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// The identities asked about (external ids), in order.
    pub items: Vec<String>,
}

/// What is wrong with a campaign as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CampaignProblem {
    /// The field (`deadline`, `system`, `kinds`).
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// Checks a deadline: in the future, and at most [`MAX_CAMPAIGN_DAYS`] away.
pub fn check_deadline(deadline: Timestamp, now: Timestamp) -> Result<(), CampaignProblem> {
    if deadline <= now {
        return Err(CampaignProblem {
            field: "deadline",
            message: format!("{deadline} is not in the future"),
        });
    }
    if deadline.duration_since(now) > SignedDuration::from_hours(24 * MAX_CAMPAIGN_DAYS) {
        return Err(CampaignProblem {
            field: "deadline",
            message: format!("a campaign runs at most {MAX_CAMPAIGN_DAYS} days"),
        });
    }
    Ok(())
}

/// Whether a campaign of `kinds` covers `identity` (every identity when `kinds` is empty).
pub fn covers(kinds: &[String], identity: &Identity) -> bool {
    let kind: &str = identity.kind.into();
    kinds.is_empty() || kinds.iter().any(|k| k == kind)
}

/// The idempotency key of the finding that asks about `external_id` in `campaign`.
pub fn item_key(campaign: &str, system: &str, external_id: &str) -> String {
    format!("campaign:{campaign}:{system}/{external_id}")
}

/// The finding that asks `identity`'s owner team to certify or revoke it.
pub fn certification_finding(campaign: &Campaign, identity: &Identity) -> Observation {
    let owner = identity.owner_team.as_deref().unwrap_or("no owner team");
    Observation {
        format: SourceFormat::Native,
        finding_type: CERTIFICATION_DUE.to_owned(),
        severity: Severity::Low,
        confidence_bp: 10_000,
        subject: SubjectRef {
            system: campaign.system.clone(),
            external_id: identity.external_id.clone(),
            kind_hint: Some(identity.kind),
        },
        observed_at: Some(campaign.started_at),
        title: format!(
            "Certify or revoke {} ({owner}) by {}",
            identity.external_id, campaign.deadline
        ),
        source_key: None,
        controls: Vec::new(),
        details: serde_json::json!({
            "campaign": campaign.id,
            "deadline": campaign.deadline.to_string(),
            "started_by": campaign.started_by,
        }),
        status: FindingStatus::Fail,
    }
}

/// The deadline a `certification_due` finding carries (`details.deadline`).
pub fn deadline_of(finding_type: &str, details: &serde_json::Value) -> Option<Timestamp> {
    if finding_type != CERTIFICATION_DUE {
        return None;
    }
    details["deadline"].as_str()?.parse().ok()
}

/// The campaign a `certification_due` finding belongs to (`details.campaign`).
pub fn campaign_of(details: &serde_json::Value) -> Option<&str> {
    details["campaign"].as_str()
}

/// An owner team's answer about one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Answer {
    /// Keep it: the identity is still needed, as it is.
    Certify,
    /// Take it away: the change the policy names is written back once the rule is met.
    Revoke,
}

impl Answer {
    /// The vote it is: revoking approves the decision's change, certifying rejects it.
    pub fn verdict(self) -> Verdict {
        match self {
            Answer::Certify => Verdict::Reject,
            Answer::Revoke => Verdict::Approve,
        }
    }
}

/// Where one item of a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ItemStatus {
    /// Nothing recorded for it yet (the campaign is still opening its cases).
    NotAsked,
    /// Waiting for the owner team's answer.
    Pending,
    /// Past the deadline with no answer: decided again, waiting for whom the policy named.
    Escalated,
    /// Certified: kept.
    Certified,
    /// Revocation approved: the change is being written back.
    Revoking,
    /// Revoked: the change is verified in the target.
    Revoked,
    /// Something else holds it (a failed write-back, an exception, a freeze): see the case.
    Other,
}

/// Where an item stands, from its case's state and whether its deadline passed unanswered
/// (`overdue`) and how it closed (`certified`, when it closed on a certification).
pub fn item_status(
    state: Option<CaseState>,
    overdue: bool,
    certified: Option<Answer>,
) -> ItemStatus {
    let Some(state) = state else {
        return ItemStatus::NotAsked;
    };
    match (state, certified) {
        (CaseState::Closed, Some(Answer::Certify)) | (CaseState::Rejected, _) => {
            ItemStatus::Certified
        }
        (CaseState::Closed, Some(Answer::Revoke)) | (CaseState::Remediated, _) => {
            ItemStatus::Revoked
        }
        (CaseState::Remediating, _) => ItemStatus::Revoking,
        (CaseState::AwaitingApproval | CaseState::NeedsReview, _) if overdue => {
            ItemStatus::Escalated
        }
        (CaseState::AwaitingApproval, _) => ItemStatus::Pending,
        _ => ItemStatus::Other,
    }
}

/// The item of a case, as a campaign's status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// The identity (external id).
    pub external_id: String,
    /// Its case, once opened.
    pub case_id: Option<CaseId>,
    /// Its owner team when asked.
    pub owner_team: Option<String>,
    /// Where it stands.
    pub status: ItemStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Criticality, IdentityKind};
    use crate::ids::IdentityId;

    fn identity(kind: IdentityKind) -> Identity {
        Identity {
            id: IdentityId(uuid::Uuid::nil()),
            system: "pg".into(),
            external_id: "svc_app".into(),
            kind,
            owner_team: Some("payments".into()),
            criticality: Criticality::Medium,
            privileged: false,
            tags: Vec::new(),
            last_used_at: None,
            reconciled_at: None,
        }
    }

    fn campaign() -> Campaign {
        Campaign {
            id: "c1".into(),
            system: "pg".into(),
            deadline: "2026-12-20T00:00:00Z".parse().unwrap(),
            started_by: "sec-lead".into(),
            started_at: "2026-12-06T00:00:00Z".parse().unwrap(),
            kinds: Vec::new(),
            items: vec!["svc_app".into()],
        }
    }

    #[test]
    fn a_deadline_is_in_the_future_and_within_a_year() {
        let now: Timestamp = "2026-12-06T00:00:00Z".parse().unwrap();
        assert_eq!(check_deadline(now, now).unwrap_err().field, "deadline");
        assert!(check_deadline(now + SignedDuration::from_hours(1), now).is_ok());
        let far = now + SignedDuration::from_hours(24 * (MAX_CAMPAIGN_DAYS + 1));
        assert!(check_deadline(far, now).is_err());
    }

    #[test]
    fn the_finding_carries_the_campaign_and_its_deadline() {
        let observation =
            certification_finding(&campaign(), &identity(IdentityKind::ServiceAccount));
        assert_eq!(observation.finding_type, CERTIFICATION_DUE);
        assert_eq!(
            deadline_of(&observation.finding_type, &observation.details),
            Some(campaign().deadline)
        );
        assert_eq!(campaign_of(&observation.details), Some("c1"));
        assert_eq!(deadline_of("leaked_secret", &observation.details), None);
        assert_eq!(item_key("c1", "pg", "svc_app"), "campaign:c1:pg/svc_app");
    }

    #[test]
    fn kinds_filter_what_a_campaign_covers() {
        let account = identity(IdentityKind::ServiceAccount);
        assert!(covers(&[], &account));
        assert!(covers(&["service_account".into()], &account));
        assert!(!covers(&["api_key".into()], &account));
    }

    #[test]
    fn answers_are_votes_and_items_read_from_their_case() {
        assert_eq!(Answer::Certify.verdict(), Verdict::Reject);
        assert_eq!(Answer::Revoke.verdict(), Verdict::Approve);
        assert_eq!(item_status(None, false, None), ItemStatus::NotAsked);
        assert_eq!(
            item_status(Some(CaseState::AwaitingApproval), false, None),
            ItemStatus::Pending
        );
        assert_eq!(
            item_status(Some(CaseState::AwaitingApproval), true, None),
            ItemStatus::Escalated
        );
        assert_eq!(
            item_status(Some(CaseState::Closed), false, Some(Answer::Certify)),
            ItemStatus::Certified
        );
        assert_eq!(
            item_status(Some(CaseState::Remediated), false, None),
            ItemStatus::Revoked
        );
        assert_eq!(
            item_status(Some(CaseState::Closed), false, None),
            ItemStatus::Other
        );
    }
}
