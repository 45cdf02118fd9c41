//! A case's lifecycle at a glance, folded from its events: the operational side (is the risk
//! closed: a verified change in effect?) and the compliance side (is the finding closed, on
//! what evidence?) apart; every decision, the one in force and those superseded; exceptions
//! with their expiry; break-glass changes with their review; and the closed case it continues.
//! Pure: the server and the CLI show it, the ledger stays the record.

use serde::Serialize;

use crate::decision::Decision;
use crate::event::{ClosureEvidence, Event, EventBody};
use crate::ids::CaseId;

/// A case's lifecycle, as its events tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Is the risk closed: a verified change in effect, not rolled back.
    pub operational: Operational,
    /// Is the finding closed, and on what evidence.
    pub compliance: Compliance,
    /// Every decision recorded for the case, oldest first.
    pub decisions: Vec<DecisionEntry>,
    /// Exceptions asked for, with what became of them.
    pub exceptions: Vec<ExceptionEntry>,
    /// Break-glass changes, with their review.
    pub bypasses: Vec<BypassEntry>,
    /// The closed case this one continues (the same problem found again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reopens: Option<CaseId>,
}

/// The operational side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Operational {
    /// Whether a verified change is in effect.
    pub remediated: bool,
    /// The entry that verified it, if one is in effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_seq: Option<u64>,
    /// The entry that rolled the last change back, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_seq: Option<u64>,
}

/// The compliance side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compliance {
    /// Whether the finding is closed.
    pub closed: bool,
    /// `scan` (a later scan passes), `reviewer` (closed with a rationale) or `dismissed` (a
    /// false positive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Who or what: the scanning source, or the reviewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// The rationale, or what the scan said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The entry that closed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// One decision of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionEntry {
    /// Its entry.
    pub seq: u64,
    /// The event that recorded it (`decision_recorded`, `rollback_requested`,
    /// `exception_requested`, `break_glass_used`, `override_requested`).
    pub kind: String,
    /// The decision.
    pub decision: Decision,
    /// Whether it is the decision in force.
    pub in_force: bool,
    /// Whether a later decision superseded it (its votes stopped counting).
    pub superseded: bool,
}

/// One exception of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionEntry {
    /// Its id.
    pub id: String,
    /// `requested`, `active`, `rejected`, `expired`, `superseded` or `ended`.
    pub state: String,
    /// Who asked.
    pub requester: String,
    /// When it ends (RFC 3339).
    pub expires_at: String,
    /// Why.
    pub justification: String,
    /// What makes up for the risk.
    pub compensating_controls: Vec<String>,
    /// What will be done about it.
    pub follow_up: String,
}

/// One break-glass change of the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BypassEntry {
    /// Its entry.
    pub seq: u64,
    /// Who used it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// The incident.
    pub incident: String,
    /// When its review was due (RFC 3339).
    pub review_due: String,
    /// How many times its overdue review was escalated.
    pub escalations: u8,
    /// `pending`, `upheld` or `rejected`.
    pub review: String,
    /// The reviewer and rationale, once reviewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// The reviewer's rationale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

impl Lifecycle {
    /// Folds a case's events, oldest first.
    pub fn of(events: &[Event]) -> Lifecycle {
        let mut life = Lifecycle::default();
        for event in events {
            let seq = event.seq;
            let mut decided = |kind: &str, decision: &Decision| {
                for earlier in &mut life.decisions {
                    if earlier.in_force {
                        earlier.in_force = false;
                        earlier.superseded = true;
                    }
                }
                life.decisions.push(DecisionEntry {
                    seq,
                    kind: kind.to_owned(),
                    decision: decision.clone(),
                    in_force: true,
                    superseded: false,
                });
            };
            match &event.body {
                EventBody::FindingReceived(b) if b.case.is_some() => life.reopens = b.reopens,
                EventBody::DecisionRecorded(b) => decided("decision_recorded", &b.decision),
                EventBody::RollbackRequested(b) => decided("rollback_requested", &b.decision),
                EventBody::OverrideRequested(b) => decided("override_requested", &b.decision),
                EventBody::DismissalRequested(b) => decided("dismissal_requested", &b.decision),
                EventBody::RequestSubmitted(b) => decided("request_submitted", &b.decision),
                EventBody::BreakGlassUsed(b) => {
                    decided("break_glass_used", &b.decision);
                    life.bypasses.push(BypassEntry {
                        seq,
                        by: b.by.clone(),
                        reason: b.reason.clone(),
                        incident: b.incident.clone(),
                        review_due: b.review_due.to_string(),
                        escalations: 0,
                        review: "pending".into(),
                        reviewer: None,
                        rationale: None,
                    });
                }
                EventBody::BypassReviewOverdue(b) => {
                    if let Some(bypass) = life.bypasses.iter_mut().find(|x| x.seq == b.bypass_seq) {
                        bypass.escalations = bypass.escalations.max(b.level);
                    }
                }
                EventBody::BypassReviewed(b) => {
                    if let Some(remedy) = &b.remedy {
                        decided("bypass_reviewed", &remedy.decision);
                    }
                    if let Some(bypass) = life.bypasses.iter_mut().find(|x| x.seq == b.bypass_seq) {
                        bypass.review = <&str>::from(b.verdict).to_owned();
                        bypass.reviewer = Some(b.reviewer.clone());
                        bypass.rationale = Some(b.rationale.clone());
                    }
                }
                EventBody::ExceptionRequested(b) => {
                    decided("exception_requested", &b.decision);
                    let e = &b.exception;
                    life.exceptions.push(ExceptionEntry {
                        id: e.id.to_string(),
                        state: "requested".into(),
                        requester: e.requester.clone(),
                        expires_at: e.expires_at.to_string(),
                        justification: e.justification.clone(),
                        compensating_controls: e.compensating_controls.clone(),
                        follow_up: e.follow_up.clone(),
                    });
                }
                EventBody::ExceptionGranted(b) => {
                    for other in &mut life.exceptions {
                        if other.state == "active" {
                            other.state = "superseded".into();
                        }
                    }
                    set_exception(&mut life, &b.exception.id.to_string(), "active");
                }
                EventBody::ChangeRejected(_) => {
                    if let Some(last) = life.exceptions.last_mut()
                        && last.state == "requested"
                    {
                        last.state = "rejected".into();
                    }
                }
                EventBody::ExceptionExpired(b) => {
                    set_exception(&mut life, &b.exception.to_string(), "expired");
                }
                EventBody::WriteBackVerified(_) => {
                    life.operational.remediated = true;
                    life.operational.verified_seq = Some(seq);
                }
                EventBody::RolledBack(_) => {
                    life.operational.remediated = false;
                    life.operational.verified_seq = None;
                    life.operational.rolled_back_seq = Some(seq);
                }
                EventBody::CaseClosed(b) => {
                    let (by, who, evidence) = match &b.evidence {
                        ClosureEvidence::Scan { source, title, .. } => {
                            ("scan", source.clone(), title.clone())
                        }
                        ClosureEvidence::Reviewer {
                            reviewer,
                            rationale,
                        } => ("reviewer", reviewer.clone(), rationale.clone()),
                        ClosureEvidence::RequestEnded { job, reason } => (
                            "request_ended",
                            "engine".to_owned(),
                            format!("job {job} ended the request's change: {reason}"),
                        ),
                        ClosureEvidence::Certification {
                            campaign,
                            answer,
                            answered_by,
                            rationale,
                        } => (
                            "certification",
                            answered_by.join(", "),
                            format!(
                                "{} in campaign {campaign}: {rationale}",
                                <&str>::from(*answer)
                            ),
                        ),
                    };
                    life.compliance = Compliance {
                        closed: true,
                        by: Some(by.into()),
                        who: Some(who),
                        evidence: Some(evidence),
                        seq: Some(seq),
                    };
                    end_exceptions(&mut life);
                }
                EventBody::CaseDismissed(b) => {
                    life.compliance = Compliance {
                        closed: true,
                        by: Some("dismissed".into()),
                        who: Some(b.reviewer.clone()),
                        evidence: Some(b.rationale.clone()),
                        seq: Some(seq),
                    };
                    end_exceptions(&mut life);
                }
                _ => {}
            }
        }
        life
    }
}

fn set_exception(life: &mut Lifecycle, id: &str, state: &str) {
    if let Some(e) = life.exceptions.iter_mut().find(|e| e.id == id) {
        e.state = state.into();
    }
}

fn end_exceptions(life: &mut Lifecycle) {
    for e in &mut life.exceptions {
        if e.state == "active" {
            e.state = "ended".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Tier;
    use crate::event::{CaseClosed, EventKind};
    use crate::example;

    fn event(seq: u64, body: EventBody) -> Event {
        Event {
            seq,
            time: example::time(),
            case_id: Some(example::case_id(1)),
            actor: "engine".into(),
            kind: body.kind(),
            idempotency_key: format!("k{seq}"),
            policy_bundle: None,
            evidence: vec![],
            controls: vec![],
            body,
        }
    }

    #[test]
    fn a_later_decision_supersedes_and_closures_are_told_apart() {
        let mut closed = example::case(1);
        closed.compliance_closed = true;
        let events = [
            event(1, example::opened(1, "k", b"raw")),
            event(2, example::decided(1, Tier::Deny)),
            event(3, example::decided(1, Tier::Auto)),
            event(
                4,
                EventBody::CaseClosed(CaseClosed {
                    case: closed,
                    evidence: ClosureEvidence::Scan {
                        finding: crate::ids::FindingId(uuid::Uuid::nil()),
                        source: "prowler".into(),
                        title: "passes".into(),
                    },
                }),
            ),
        ];
        let life = Lifecycle::of(&events);
        assert_eq!(life.decisions.len(), 2);
        assert!(life.decisions[0].superseded && !life.decisions[0].in_force);
        assert!(life.decisions[1].in_force && !life.decisions[1].superseded);
        assert!(!life.operational.remediated, "no verified change");
        assert!(life.compliance.closed);
        assert_eq!(life.compliance.by.as_deref(), Some("scan"));
        assert_eq!(events[3].kind, EventKind::CaseClosed);
    }
}
