//! Projections: the tables that are derived from the ledger.
//!
//! Every event that changes an identity, a case or a finding carries the new state as a snapshot
//! in its body (`identity`, `case`, `finding` fields). [`project`] turns an event into the
//! projection rows it implies, with no other input. The live write path and
//! `writ admin rebuild` both use it, so the tables can always be re-derived from the ledger and
//! must come out identical.

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::event::Event;
use crate::finding::Finding;
use crate::identity::Identity;
use crate::ids::CaseId;
use crate::job::Job;

/// The snapshot fields an event body may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshots {
    /// The identity as it is after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The case as it is after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<Case>,
    /// A finding the event records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
    /// A write-back job as it is after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

/// One projection row implied by an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Insert or replace this identity.
    Identity(Identity),
    /// Insert or replace this case.
    Case(Case),
    /// Insert or replace this job.
    Job(Job),
    /// Record this finding, attached to the event's case.
    Finding {
        /// The finding.
        finding: Finding,
        /// The case it belongs to.
        case_id: Option<CaseId>,
    },
}

/// Why an event's body could not be projected.
#[derive(Debug, thiserror::Error)]
#[error("event {seq}: snapshot fields are malformed: {source}")]
pub struct ProjectionError {
    /// The event.
    pub seq: u64,
    /// The parse error.
    #[source]
    pub source: serde_json::Error,
}

/// The projection rows `event` implies, in a fixed order (identity, case, job, finding).
pub fn project(event: &Event) -> Result<Vec<Projection>, ProjectionError> {
    project_body(event.seq, event.case_id, &event.body)
}

/// [`project`] of the event at `seq` in `case_id` whose body is `body`, for a caller that
/// holds the body apart from the rest of the event.
pub fn project_body(
    seq: u64,
    case_id: Option<CaseId>,
    body: &serde_json::Value,
) -> Result<Vec<Projection>, ProjectionError> {
    let snapshots =
        Snapshots::deserialize(body).map_err(|source| ProjectionError { seq, source })?;
    let mut rows = Vec::new();
    if let Some(identity) = snapshots.identity {
        rows.push(Projection::Identity(identity));
    }
    if let Some(case) = snapshots.case {
        rows.push(Projection::Case(case));
    }
    if let Some(job) = snapshots.job {
        rows.push(Projection::Job(job));
    }
    if let Some(finding) = snapshots.finding {
        rows.push(Projection::Finding { finding, case_id });
    }
    Ok(rows)
}
