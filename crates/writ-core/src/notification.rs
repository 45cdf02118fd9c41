//! Notifications: which ledger events people must hear about, by webhook.
//!
//! A notification is derived from an event as it is appended (never decided elsewhere), so
//! the outbox row that carries it is written in the same transaction as the event.

use serde::{Deserialize, Serialize};

use crate::decision::Tier;
use crate::event::EventBody;

/// What a notification is about; `[[webhooks]] events` names the kinds an endpoint receives.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NotificationKind {
    /// A decision waits for approvals (a change, a rollback, an exception, an override).
    ApprovalDue,
    /// A break-glass change's review is overdue.
    Escalation,
    /// Someone used break-glass.
    BreakGlassUsed,
    /// An exception expires soon: re-approval is asked for.
    ExceptionExpiring,
    /// A case was closed (by a passing scan, a reviewer, or as a false positive).
    CaseClosed,
}

impl NotificationKind {
    /// The kind's name, as the payload's `type` says it (`writ.approval_due`).
    pub fn type_name(self) -> String {
        format!("writ.{}", <&str>::from(self))
    }
}

/// The notification `body` calls for, if any.
pub fn notification_of(body: &EventBody) -> Option<NotificationKind> {
    use NotificationKind as N;
    let waits = |tier: &Tier| matches!(tier, Tier::Approval { .. });
    match body {
        EventBody::DecisionRecorded(b) if waits(&b.decision.tier) && b.routing.is_none() => {
            Some(N::ApprovalDue)
        }
        EventBody::RollbackRequested(b) if waits(&b.decision.tier) => Some(N::ApprovalDue),
        EventBody::ExceptionRequested(b) if waits(&b.decision.tier) => Some(N::ApprovalDue),
        EventBody::OverrideRequested(_) => Some(N::ApprovalDue),
        EventBody::RequestSubmitted(b) if waits(&b.decision.tier) => Some(N::ApprovalDue),
        EventBody::DismissalRequested(b) if waits(&b.decision.tier) => Some(N::ApprovalDue),
        EventBody::BypassReviewOverdue(_) => Some(N::Escalation),
        // A certification nobody answered by the deadline: whom the policy names next acts.
        EventBody::CertificationOverdue(_) => Some(N::Escalation),
        // A rotation whose consumers never cut over: a human decides.
        EventBody::WriteBackFailed(b)
            if b.job
                .rotation
                .as_ref()
                .is_some_and(|r| r.step == crate::rotation::RotationStep::Escalated) =>
        {
            Some(N::Escalation)
        }
        EventBody::BreakGlassUsed(_) => Some(N::BreakGlassUsed),
        EventBody::ExceptionRenewalDue(_) => Some(N::ExceptionExpiring),
        EventBody::CaseClosed(_) | EventBody::CaseDismissed(_) => Some(N::CaseClosed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BypassReviewOverdue, ExceptionRenewalDue};
    use crate::example;

    #[test]
    fn events_call_for_the_notifications_people_act_on() {
        let approval = Tier::Approval {
            count: 1,
            approver_group: "owner_team".into(),
        };
        assert_eq!(
            notification_of(&example::decided(1, approval)),
            Some(NotificationKind::ApprovalDue)
        );
        assert_eq!(notification_of(&example::decided(1, Tier::Auto)), None);
        assert_eq!(
            notification_of(&EventBody::BypassReviewOverdue(BypassReviewOverdue {
                by: "eve".into(),
                level: 1,
                review_due: example::time(),
                bypass_seq: 3,
            })),
            Some(NotificationKind::Escalation)
        );
        assert_eq!(
            notification_of(&EventBody::ExceptionRenewalDue(ExceptionRenewalDue {
                exception: crate::ids::ExceptionId(uuid::Uuid::nil()),
                expires_at: example::time(),
            })),
            Some(NotificationKind::ExceptionExpiring)
        );
        assert_eq!(notification_of(&example::opened(1, "k", b"raw")), None);
        assert_eq!(
            NotificationKind::ApprovalDue.type_name(),
            "writ.approval_due"
        );
    }
}
