//! Reading ledger entries back as typed events.
//!
//! A stored entry's leaf is authoritative; its other columns are copies for indexing. Reading an
//! entry back decodes the leaf into a [`writ_core::event::Event`] (its body into the
//! [`EventBody`] variant its kind names) and checks that the copied columns agree with it, so
//! nothing downstream trusts a column the leaf does not back.

use writ_core::event::{Event, EventBody};
use writ_store::LedgerRow;

/// An entry that cannot be read back as the event it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq} is unreadable: {detail}")]
pub struct UnreadableEntry {
    /// The entry.
    pub seq: u64,
    /// What is wrong.
    pub detail: String,
}

/// The event stored in `row`, after checking that the row's columns match its leaf.
pub fn decode(row: &LedgerRow) -> Result<Event, UnreadableEntry> {
    let bad = |detail: String| UnreadableEntry {
        seq: row.seq,
        detail,
    };
    let value = writ_ledger::decode_leaf(&row.leaf).map_err(|err| bad(err.to_string()))?;
    let event: Event = serde_json::from_value(value).map_err(|err| bad(err.to_string()))?;
    if event.seq != row.seq
        || event.kind != row.kind
        || event.case_id != row.case_id
        || event.actor != row.actor
        || event.idempotency_key != row.idempotency_key
        || event.time != row.time
    {
        return Err(bad(
            "the entry's columns do not match its leaf (seq, kind, case, actor, key or time)"
                .into(),
        ));
    }
    Ok(event)
}

/// A case's decision in force, as recorded: the decision, the inputs it was evaluated from,
/// and, for a rollback's decision, the job to undo and who asked.
#[derive(Debug, Clone)]
pub struct RecordedDecision {
    /// The decision.
    pub decision: writ_core::decision::Decision,
    /// Its inputs (replayable).
    pub evaluation: writ_core::decision::Evaluation,
    /// For a rollback's decision: the request.
    pub rollback: Option<RollbackRequest>,
    /// For an exception's decision: the exception asked for, and the state a rejection
    /// returns the case to.
    pub exception: Option<(writ_core::exception::Exception, writ_core::case::CaseState)>,
    /// For an override: the admin who asked, and the risk owner whose approval it needs.
    pub overrider: Option<(String, String)>,
    /// For a dismissal: the reviewer who asked, the rationale, and the state a rejection
    /// returns the case to.
    pub dismissal: Option<(String, String, writ_core::case::CaseState)>,
    /// For a requested change: the request (its requester never votes on it).
    pub request: Option<writ_core::request::Request>,
}

impl RecordedDecision {
    /// Who asked for the rollback or exception in force, if it is one; never an approver of it.
    pub fn requester(&self) -> Option<&str> {
        self.rollback
            .as_ref()
            .map(|r| r.requester.as_str())
            .or(self.exception.as_ref().map(|(e, _)| e.requester.as_str()))
            .or(self.overrider.as_ref().map(|(admin, _)| admin.as_str()))
            .or(self
                .dismissal
                .as_ref()
                .map(|(reviewer, _, _)| reviewer.as_str()))
            .or(self.request.as_ref().map(|r| r.requester.as_str()))
    }

    /// The state a rejection of the request in force returns the case to (an exception's, a
    /// dismissal's).
    pub fn request_was(&self) -> Option<writ_core::case::CaseState> {
        self.exception
            .as_ref()
            .map(|(_, was)| *was)
            .or(self.dismissal.as_ref().map(|(_, _, was)| *was))
    }
}

/// A recorded request to roll a job's change back.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The job whose change would be undone.
    pub job: writ_core::ids::JobId,
    /// Who asked (a principal's name).
    pub requester: String,
    /// Why, in the requester's words.
    pub rationale: String,
}

/// The decision recorded by entry `seq` (a case's decision in force, as its read model points
/// to it: a `decision_recorded` or a `rollback_requested` entry), read from the ledger.
pub async fn decision_at(
    store: &dyn writ_store::Store,
    seq: u64,
) -> Result<writ_core::decision::Decision, UnreadableEntry> {
    recorded_decision_at(store, seq).await.map(|r| r.decision)
}

/// [`decision_at`], with the evaluation and the rollback's request.
pub async fn recorded_decision_at(
    store: &dyn writ_store::Store,
    seq: u64,
) -> Result<RecordedDecision, UnreadableEntry> {
    let bad = |detail: String| UnreadableEntry { seq, detail };
    let row = store
        .entries_at(&[seq])
        .await
        .map_err(|err| bad(err.to_string()))?
        .pop()
        .ok_or_else(|| bad("no such entry".into()))?;
    match decode_body(&row)? {
        EventBody::DecisionRecorded(decided) => Ok(RecordedDecision {
            decision: decided.decision,
            evaluation: decided.evaluation,
            rollback: None,
            exception: None,
            overrider: None,
            dismissal: None,
            request: None,
        }),
        EventBody::DismissalRequested(asked) => Ok(RecordedDecision {
            decision: asked.decision,
            evaluation: asked.evaluation,
            rollback: None,
            exception: None,
            overrider: None,
            dismissal: Some((asked.reviewer, asked.rationale, asked.was)),
            request: None,
        }),
        EventBody::OverrideRequested(asked) => Ok(RecordedDecision {
            decision: asked.decision,
            evaluation: asked.evaluation,
            rollback: None,
            exception: None,
            overrider: Some((asked.requester, asked.risk_owner)),
            dismissal: None,
            request: None,
        }),
        EventBody::BreakGlassUsed(used) => Ok(RecordedDecision {
            decision: used.decision,
            evaluation: used.evaluation,
            rollback: None,
            exception: None,
            overrider: None,
            dismissal: None,
            request: None,
        }),
        EventBody::ExceptionRequested(requested) => Ok(RecordedDecision {
            decision: requested.decision,
            evaluation: requested.evaluation,
            rollback: None,
            exception: Some((requested.exception, requested.was)),
            overrider: None,
            dismissal: None,
            request: None,
        }),
        EventBody::BypassReviewed(writ_core::event::BypassReviewed {
            remedy: Some(remedy),
            ..
        }) => Ok(RecordedDecision {
            decision: remedy.decision,
            evaluation: remedy.evaluation,
            rollback: None,
            exception: None,
            overrider: None,
            dismissal: None,
            request: None,
        }),
        EventBody::RollbackRequested(requested) => Ok(RecordedDecision {
            decision: requested.decision,
            evaluation: requested.evaluation,
            rollback: Some(RollbackRequest {
                job: requested.job,
                requester: requested.requester,
                rationale: requested.rationale,
            }),
            exception: None,
            overrider: None,
            dismissal: None,
            request: None,
        }),
        EventBody::RequestSubmitted(submitted) => Ok(RecordedDecision {
            decision: submitted.decision,
            evaluation: submitted.evaluation,
            rollback: None,
            exception: None,
            overrider: None,
            dismissal: None,
            request: Some(submitted.request),
        }),
        other => Err(bad(format!("a {} entry, not a decision", other.kind()))),
    }
}

/// The body of the event stored in `row` (see [`decode`]).
pub fn decode_body(row: &LedgerRow) -> Result<EventBody, UnreadableEntry> {
    decode(row).map(|event| event.body)
}
