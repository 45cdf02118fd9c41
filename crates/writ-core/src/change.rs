//! Changes: the actions writ can take on a target, the plan a connector makes for one (with
//! the pre-image it read), and what applying and reading back showed. These are pure data: the
//! connectors produce them and the ledger records them.

use serde::{Deserialize, Serialize};

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
    /// Create the object (a requested service account), owned by `owner_team`. No credential
    /// is issued to writ.
    Create {
        /// The team that owns it.
        owner_team: String,
        /// What it is for.
        purpose: String,
    },
    /// Set the object's scopes to exactly these (an OAuth client's scope change).
    SetScopes {
        /// Every scope it has afterwards.
        scopes: Vec<String>,
    },
    /// Add these scopes (an agent's time-boxed access); the others stay.
    Grant {
        /// The scopes added.
        scopes: Vec<String>,
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
            Action::Create { .. } => "create",
            Action::SetScopes { .. } => "set_scopes",
            Action::Grant { .. } => "grant",
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

/// The state of one object, read from the target. Used as a pre-image and for verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    /// Its id in the target.
    pub external_id: String,
    /// Whether it exists at all.
    pub exists: bool,
    /// Target-specific attributes, with secrets removed.
    pub attributes: serde_json::Value,
}

/// A planned change: what will be done, what the target looks like before it, and whether it
/// can be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The object to change.
    pub external_id: String,
    /// The action.
    pub action: Action,
    /// The state read before the change; rollback restores it.
    pub pre_image: ObjectState,
    /// Whether it can be undone.
    pub reversibility: Reversibility,
}

/// What happened when a change was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The target changed.
    Applied,
    /// The target was already in the desired state (a replay after a crash, say).
    AlreadyInState,
    /// The target refused the change; retrying will not help.
    Rejected {
        /// The target's reason.
        reason: String,
    },
}

/// What reading the target back showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verification", rename_all = "snake_case")]
pub enum Verification {
    /// The change is in effect.
    Confirmed,
    /// The change is not (or not fully) in effect.
    NotInEffect {
        /// What was seen instead.
        observed: ObjectState,
    },
}
