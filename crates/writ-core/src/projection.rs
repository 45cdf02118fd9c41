//! Projections: the tables that are derived from the ledger.
//!
//! Every event that changes an identity, a case, a job or a finding carries the new state as a
//! snapshot in its typed body. [`project`] turns an event body into the projection rows it
//! implies, with no other input. The live write path and `writ admin rebuild` both use it, so
//! the tables can always be re-derived from the ledger and must come out identical.
//!
//! Besides the snapshots, a few read models spare the engine from re-reading a case's ledger
//! history: where the decision in force is (the `decision_recorded` or `rollback_requested`
//! entry), the votes for it (from
//! `approval_granted`), the principals and their tokens, and where a job's plan and pre-image are (the `write_back_intent` entry).

use crate::case::Case;
use jiff::Timestamp;

use crate::event::{CaseClosed, CaseDismissed, EventBody};
use crate::exception::{DeadlineKind, Exception, ExceptionState};
use crate::finding::Finding;
use crate::identity::Identity;
use crate::ids::{CaseId, ExceptionId, TokenId};
use crate::job::Job;
use crate::principal::{Principal, TokenRecord};

/// One projection row implied by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Insert or replace this identity.
    Identity(Identity),
    /// Insert or replace this case; when `decided`, the event is the case's decision in force
    /// from now on (and the votes for an earlier one stop counting).
    Case {
        /// The case as it now is.
        case: Case,
        /// Whether the event records a new decision.
        decided: bool,
    },
    /// Insert or replace this job; when `intent`, the event records its plan and pre-image.
    Job {
        /// The job as it now is.
        job: Job,
        /// Whether the event is the job's intent.
        intent: bool,
    },
    /// Record this finding, attached to the event's case.
    Finding {
        /// The finding.
        finding: Finding,
        /// The case it belongs to.
        case_id: Option<CaseId>,
    },
    /// Record a vote for the case's decision in force.
    Vote {
        /// The case.
        case_id: CaseId,
        /// Who approved.
        approver: String,
    },
    /// Insert or replace this principal.
    Principal(Principal),
    /// Record this token (live until it expires or is revoked).
    Token(TokenRecord),
    /// Mark this token revoked.
    TokenRevoked(TokenId),
    /// Insert or replace this exception; an active one supersedes the case's earlier active
    /// ones.
    Exception {
        /// The exception.
        exception: Exception,
        /// Where it stands.
        state: ExceptionState,
    },
    /// The case's active exceptions (or only `only`) end in `state`.
    ExceptionsEnded {
        /// The case.
        case_id: CaseId,
        /// Just this one, if given.
        only: Option<ExceptionId>,
        /// How they ended.
        state: ExceptionState,
    },
    /// The case owes `kind` at `due` (replacing an earlier deadline of that kind).
    Deadline {
        /// The case.
        case_id: CaseId,
        /// What is owed.
        kind: DeadlineKind,
        /// When.
        due: Timestamp,
    },
    /// The case's break-glass by `by`, reviewed or still owing its review.
    Bypass {
        /// The case.
        case_id: CaseId,
        /// Who used it.
        by: String,
        /// Whether it has been reviewed.
        reviewed: bool,
    },
    /// These deadlines of the case are met (all of them when `kinds` is empty).
    DeadlinesMet {
        /// The case.
        case_id: CaseId,
        /// Which.
        kinds: Vec<DeadlineKind>,
    },
    /// A system's sync status: its last attempt, and (on success) its last success.
    System(crate::event::SystemSynced),
    /// Automation on a system paused (with why) or resumed (`None`).
    SystemPause {
        /// The system.
        system: String,
        /// Why it is paused; `None`: it is not.
        reason: Option<String>,
    },
}

/// The projection rows `body` (of an event in `case_id`) implies, in a fixed order (identity,
/// case, job, finding, vote).
pub fn project(case_id: Option<CaseId>, body: &EventBody) -> Vec<Projection> {
    let mut rows = Vec::new();
    if let EventBody::IdentitySynced(b) = body {
        rows.push(Projection::Identity(b.identity.clone()));
    }
    match body {
        EventBody::SystemSynced(b) => rows.push(Projection::System(b.clone())),
        EventBody::AutomationPaused(b) => rows.push(Projection::SystemPause {
            system: b.system.clone(),
            reason: Some(b.reason.clone()),
        }),
        EventBody::AutomationResumed(b) => rows.push(Projection::SystemPause {
            system: b.system.clone(),
            reason: None,
        }),
        _ => {}
    }
    if let Some(case) = body.case() {
        rows.push(Projection::Case {
            case: case.clone(),
            decided: matches!(
                body,
                EventBody::DecisionRecorded(_)
                    | EventBody::RollbackRequested(_)
                    | EventBody::ExceptionRequested(_)
                    | EventBody::BreakGlassUsed(_)
                    | EventBody::OverrideRequested(_)
                    | EventBody::DismissalRequested(_)
                    | EventBody::RequestSubmitted(_)
            ) || matches!(body, EventBody::BypassReviewed(b) if b.remedy.is_some()),
        });
    }
    if let Some(job) = body.job() {
        rows.push(Projection::Job {
            job: job.clone(),
            intent: matches!(body, EventBody::WriteBackIntent(_)),
        });
    }
    if let EventBody::FindingReceived(b) = body {
        rows.push(Projection::Finding {
            finding: b.finding.clone(),
            case_id,
        });
    }
    if let Some(principal) = body.principal() {
        rows.push(Projection::Principal(principal.clone()));
    }
    if let EventBody::TokenIssued(b) = body {
        rows.push(Projection::Token(b.token.clone()));
    }
    if let EventBody::TokenRevoked(b) = body {
        rows.push(Projection::TokenRevoked(b.token));
    }
    if let (EventBody::ApprovalGranted(b), Some(case_id)) = (body, case_id) {
        rows.push(Projection::Vote {
            case_id,
            approver: b.approval.approver.clone(),
        });
    }
    rows.extend(lifecycle(case_id, body));
    rows
}

/// The exceptions and deadlines an event implies.
fn lifecycle(case_id: Option<CaseId>, body: &EventBody) -> Vec<Projection> {
    use DeadlineKind as D;
    match body {
        EventBody::ExceptionGranted(b) => {
            let case_id = b.exception.case_id;
            let mut rows = vec![
                Projection::Exception {
                    exception: b.exception.clone(),
                    state: ExceptionState::Active,
                },
                Projection::Deadline {
                    case_id,
                    kind: D::ExceptionExpiry,
                    due: b.exception.expires_at,
                },
            ];
            rows.push(match b.exception.renew_at {
                Some(due) => Projection::Deadline {
                    case_id,
                    kind: D::ExceptionRenewal,
                    due,
                },
                None => Projection::DeadlinesMet {
                    case_id,
                    kinds: vec![D::ExceptionRenewal],
                },
            });
            rows
        }
        EventBody::ExceptionExpired(b) => vec![
            Projection::ExceptionsEnded {
                case_id: b.case.id,
                only: Some(b.exception),
                state: ExceptionState::Expired,
            },
            Projection::DeadlinesMet {
                case_id: b.case.id,
                kinds: vec![D::ExceptionExpiry, D::ExceptionRenewal],
            },
        ],
        EventBody::CaseClosed(CaseClosed { case, .. })
        | EventBody::CaseDismissed(CaseDismissed { case, .. }) => vec![
            Projection::ExceptionsEnded {
                case_id: case.id,
                only: None,
                state: ExceptionState::Ended,
            },
            Projection::DeadlinesMet {
                case_id: case.id,
                kinds: Vec::new(),
            },
        ],
        EventBody::BreakGlassUsed(b) => {
            let window = jiff::SignedDuration::from_secs(
                i64::try_from(b.review_window_seconds).unwrap_or(i64::MAX / 2),
            );
            vec![
                Projection::Deadline {
                    case_id: b.case.id,
                    kind: D::BypassReview,
                    due: b.review_due,
                },
                Projection::Deadline {
                    case_id: b.case.id,
                    kind: D::BypassEscalation,
                    due: b.review_due + window,
                },
                Projection::Bypass {
                    case_id: b.case.id,
                    by: b.by.clone(),
                    reviewed: false,
                },
            ]
        }
        EventBody::BypassReviewed(b) => case_id
            .into_iter()
            .flat_map(|case_id| {
                [
                    Projection::DeadlinesMet {
                        case_id,
                        kinds: vec![D::BypassReview, D::BypassEscalation],
                    },
                    Projection::Bypass {
                        case_id,
                        by: b.by.clone(),
                        reviewed: true,
                    },
                ]
            })
            .collect(),
        // A campaign's question owes its answer by the campaign's deadline (a later campaign
        // asking again moves it).
        EventBody::FindingReceived(b) => case_id
            .zip(crate::campaign::deadline_of(
                &b.finding.finding_type,
                &b.observation.details,
            ))
            .map(|(case_id, due)| Projection::Deadline {
                case_id,
                kind: D::CertificationDue,
                due,
            })
            .into_iter()
            .collect(),
        EventBody::CertificationOverdue(b) => vec![Projection::DeadlinesMet {
            case_id: b.case.id,
            kinds: vec![D::CertificationDue],
        }],
        EventBody::BypassReviewOverdue(b) => case_id
            .map(|case_id| Projection::DeadlinesMet {
                case_id,
                kinds: vec![if b.level >= 2 {
                    D::BypassEscalation
                } else {
                    D::BypassReview
                }],
            })
            .into_iter()
            .collect(),
        // A change that ends by itself (a requested account, an agent's access) owes its end;
        // a rotation owes the old credential's deletion after its grace period.
        EventBody::WriteBackVerified(b) => {
            let mut rows = Vec::new();
            if let (Some(due), Some(case_id)) = (b.job.expires_at, case_id) {
                rows.push(Projection::Deadline {
                    case_id,
                    kind: D::AccessExpiry,
                    due,
                });
            }
            if let (Some(due), Some(case_id)) = (
                b.job.rotation.as_ref().and_then(|r| r.delete_old_at),
                case_id,
            ) {
                rows.push(Projection::Deadline {
                    case_id,
                    kind: D::RotationGrace,
                    due,
                });
            }
            rows
        }
        EventBody::RotationProgressed(b)
            if b.job
                .rotation
                .as_ref()
                .is_some_and(|r| r.step == crate::rotation::RotationStep::OldDeleted) =>
        {
            vec![Projection::DeadlinesMet {
                case_id: b.job.case_id,
                kinds: vec![D::RotationGrace],
            }]
        }
        EventBody::AccessExpired(b) => vec![Projection::DeadlinesMet {
            case_id: b.case.id,
            kinds: vec![D::AccessExpiry],
        }],
        EventBody::ExceptionRenewalDue(_) => case_id
            .map(|case_id| Projection::DeadlinesMet {
                case_id,
                kinds: vec![D::ExceptionRenewal],
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}
