//! Change requests: an action proposed against a target identity.

use serde::{Deserialize, Serialize};

use crate::ids::{CaseId, ChangeId, IdentityId};

/// What to do to the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Disable the identity (NOLOGIN, deactivate a key, `active=false`).
    Disable,
    /// Re-enable it (the inverse of disable).
    Enable,
    /// Revoke a token or a grant.
    Revoke {
        /// What to revoke, in the target's terms.
        what: String,
    },
    /// Delete the identity or credential.
    Delete,
    /// Rotate its secret; the new one goes where consumers read it, never to writ.
    Rotate,
    /// Remove some entitlements.
    ReduceScope {
        /// The entitlements to remove.
        remove: Vec<String>,
    },
    /// Set or shorten an expiry.
    SetExpiry {
        /// RFC 3339 instant.
        until: String,
    },
}

impl Action {
    /// The action's name as policies see it (`disable`, `revoke`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::Revoke { .. } => "revoke",
            Action::Delete => "delete",
            Action::Rotate => "rotate",
            Action::ReduceScope { .. } => "reduce_scope",
            Action::SetExpiry { .. } => "set_expiry",
        }
    }
}

/// Whether a change can be undone from its pre-image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reversibility {
    /// Rollback restores the pre-image exactly.
    Reversible,
    /// Rollback is possible within a window (for example a secret's recovery window).
    ReversibleWithin {
        /// Seconds the target keeps what is needed to undo.
        seconds: u64,
    },
    /// Cannot be undone.
    Irreversible,
}

/// A change proposed for a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Its id.
    pub id: ChangeId,
    /// The case it belongs to.
    pub case_id: CaseId,
    /// The identity to change.
    pub identity_id: IdentityId,
    /// What to do.
    pub action: Action,
    /// Whether it can be undone.
    pub reversibility: Reversibility,
}
