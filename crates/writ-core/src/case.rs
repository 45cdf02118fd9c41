//! Cases and their state machine.
//!
//! A case gathers the findings about one identity and one finding type while it is open. Its
//! operational state (is the risk closed?) and its compliance state (is the finding closed, with
//! evidence?) are tracked apart. States change only through the state machine in
//! [`crate::workflow`].

use serde::{Deserialize, Serialize};

use crate::ids::{CaseId, IdentityId};

/// Where a case stands operationally.
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
pub enum CaseState {
    /// A human must look at it before anything happens (incomplete source of truth, case-only tier).
    NeedsReview,
    /// Waiting for approvals.
    AwaitingApproval,
    /// Frozen: nothing may be approved or applied until someone unfreezes it.
    Frozen,
    /// A write-back is queued or running.
    Remediating,
    /// The change was applied and verified by reading the target back.
    Remediated,
    /// A rollback of the verified change waits for approvals; the change stays in effect.
    RollbackRequested,
    /// The write-back did not verify: a human must look.
    WriteBackFailed,
    /// The change was undone from its pre-image.
    RolledBack,
    /// Policy denied any change; the case stays for the record.
    Denied,
    /// An eligible approver rejected the requested change; nothing was applied.
    Rejected,
    /// An exception (a risk acceptance) waits for the approvals policy asks for.
    ExceptionRequested,
    /// An exception is in force: the risk is accepted until it expires.
    RiskAccepted,
    /// A dismissal as a false positive waits for the second person policy asks for.
    DismissalRequested,
    /// Closed for good.
    Closed,
}

impl CaseState {
    /// Whether new findings about the same identity and type join this case.
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Closed)
    }

    /// Whether the risk is closed operationally.
    pub fn is_operationally_remediated(self) -> bool {
        matches!(self, CaseState::Remediated | CaseState::RollbackRequested)
    }
}

/// A case as projected from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Its id.
    pub id: CaseId,
    /// The identity it is about, if resolved.
    pub identity_id: Option<IdentityId>,
    /// The system and external id of the subject, as the findings named it.
    pub subject: String,
    /// The finding type that groups it.
    pub finding_type: String,
    /// Its operational state.
    pub state: CaseState,
    /// Whether the finding is closed for compliance, with evidence.
    pub compliance_closed: bool,
}
