//! Exceptions: a risk accepted for a while, instead of a change.
//!
//! An exception names why (`justification`), until when (`expires_at`, required, at most the
//! policy's `@max_days`), what makes up for the risk meanwhile (`compensating_controls`) and
//! what will be done about it (`follow_up`). Policy decides it as the action `accept_risk`
//! (approvals as for a change; the requester never counts). Once granted the case is
//! `risk_accepted`; at `expires_at` the scheduler reopens it and it is decided again, and at
//! `renew_at` (when the policy sets `@renew_before_days`) re-approval is asked for.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::decision::Terms;
use crate::ids::{CaseId, ExceptionId};

/// A risk accepted for a while, with its conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Its id.
    pub id: ExceptionId,
    /// The case whose risk it accepts.
    pub case_id: CaseId,
    /// Who asked (a principal's canonical name); never counted as an approver of it.
    pub requester: String,
    /// Why the risk is accepted.
    pub justification: String,
    /// When it ends: the case reopens and is decided again.
    pub expires_at: Timestamp,
    /// What makes up for the risk meanwhile.
    pub compensating_controls: Vec<String>,
    /// What will be done about it (a ticket, a task).
    pub follow_up: String,
    /// When re-approval is asked for, if the policy says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<Timestamp>,
}

/// Where an exception stands, in the exceptions table.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ExceptionState {
    /// In force until it expires.
    Active,
    /// It expired: the case was reopened and decided again.
    Expired,
    /// A later exception on the same case replaced it.
    Superseded,
    /// Its case was closed while it was in force.
    Ended,
}

/// What a case owes by a time, for the scheduler: each is acted on once when it falls due
/// (the event it causes marks it met), by whichever replica gets there first.
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
pub enum DeadlineKind {
    /// The exception in force expires: reopen the case and decide it again.
    ExceptionExpiry,
    /// The exception in force expires soon: ask for re-approval.
    ExceptionRenewal,
    /// A break-glass change's review is due: escalate when it is overdue.
    BypassReview,
    /// The review is overdue twice over: escalate again.
    BypassEscalation,
    /// A requested change's time is up (an account's expiry, an agent's access): end it.
    AccessExpiry,
    /// A rotation's grace period is over: delete the old credential.
    RotationGrace,
    /// A certification campaign's deadline: an unanswered case is decided again (escalated),
    /// an answered one closes on its answer.
    CertificationDue,
}

/// What is wrong with an exception as asked: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExceptionProblem {
    /// The request's field (`expires_at`, `justification`, ...).
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// The longest an exception may last when the policy sets no `@max_days`.
pub const DEFAULT_MAX_DAYS: u32 = 365;

impl Exception {
    /// Checks the exception as asked at `now` against the policy's `terms`, and sets its
    /// renewal time from them.
    pub fn check(&mut self, now: Timestamp, terms: &Terms) -> Result<(), ExceptionProblem> {
        let problem = |field, message: String| ExceptionProblem { field, message };
        if self.justification.trim().is_empty() {
            return Err(problem("justification", "must not be blank".into()));
        }
        if self.follow_up.trim().is_empty() {
            return Err(problem("follow_up", "must not be blank".into()));
        }
        if self.compensating_controls.is_empty() {
            return Err(problem(
                "compensating_controls",
                "name at least one control that makes up for the risk".into(),
            ));
        }
        if self
            .compensating_controls
            .iter()
            .any(|c| c.trim().is_empty())
        {
            return Err(problem(
                "compensating_controls",
                "a control must not be blank".into(),
            ));
        }
        if self.expires_at <= now {
            return Err(problem(
                "expires_at",
                format!("{} is not in the future", self.expires_at),
            ));
        }
        let max_days = terms.max_days.unwrap_or(DEFAULT_MAX_DAYS);
        let latest = now + days(max_days);
        if self.expires_at > latest {
            return Err(problem(
                "expires_at",
                format!("at most {max_days} day(s) from now (policy), so no later than {latest}"),
            ));
        }
        self.renew_at = terms
            .renew_before_days
            .map(|before| self.expires_at - days(before))
            .filter(|at| *at > now);
        Ok(())
    }
}

fn days(n: u32) -> SignedDuration {
    SignedDuration::from_hours(i64::from(n) * 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exception(expires_in_days: i64) -> (Exception, Timestamp) {
        let now = crate::example::time();
        (
            Exception {
                id: ExceptionId(uuid::Uuid::nil()),
                case_id: crate::example::case_id(1),
                requester: "alice".into(),
                justification: "batch job runs quarterly".into(),
                expires_at: now + SignedDuration::from_hours(expires_in_days * 24),
                compensating_controls: vec!["key scoped to one bucket".into()],
                follow_up: "JIRA-12: move to a role".into(),
                renew_at: None,
            },
            now,
        )
    }

    #[test]
    fn expiry_is_required_in_the_future_and_within_the_policy() {
        let terms = Terms {
            max_days: Some(90),
            renew_before_days: Some(7),
            review_within_hours: None,
            max_hours: None,
            freeze_scope: None,
        };
        let (mut ok, now) = exception(30);
        ok.check(now, &terms).unwrap();
        assert_eq!(ok.renew_at, Some(ok.expires_at - days(7)));
        let (mut past, now) = exception(-1);
        assert_eq!(past.check(now, &terms).unwrap_err().field, "expires_at");
        let (mut long, now) = exception(91);
        let err = long.check(now, &terms).unwrap_err();
        assert_eq!(err.field, "expires_at");
        assert!(err.message.contains("90 day(s)"), "{err}");
        let (mut bare, now) = exception(30);
        bare.compensating_controls.clear();
        assert_eq!(
            bare.check(now, &terms).unwrap_err().field,
            "compensating_controls"
        );
        // Without a policy limit, a year at most.
        let (mut year, now) = exception(366);
        assert!(year.check(now, &Terms::default()).is_err());
    }
}
