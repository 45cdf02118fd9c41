//! Exceptions: a risk accepted for a while, with justification and compensating controls.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{CaseId, ExceptionId};

/// A time-boxed acceptance of risk on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// Its id.
    pub id: ExceptionId,
    /// The case whose risk is accepted.
    pub case_id: CaseId,
    /// Why the risk is acceptable.
    pub justification: String,
    /// What limits the risk meanwhile.
    pub compensating_controls: Vec<String>,
    /// Who granted it.
    pub granted_by: String,
    /// When it stops covering the case; re-approval is needed after that.
    pub expires_at: Timestamp,
}

impl Exception {
    /// Whether it still covers the case at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}
