//! The connector boundary: how writ reads and changes target systems.
//!
//! One capability-based trait, in the spirit of Baton connectors. A connector knows one kind of
//! target (PostgreSQL roles, AWS IAM, Secrets Manager, LDAP, SCIM, ...). The write-back engine,
//! not the connector, owns retries, blast-radius guards and the ledger: a connector only talks
//! to its target and reports typed outcomes.
//!
//! Secrets never cross this boundary towards writ: a rotation delivers the new secret to where
//! its consumers read it, and the connector hands back only a digest or a version id.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use writ_core::change::Action;
pub use writ_core::change::{ApplyOutcome, ObjectState, Plan, Verification};

pub mod observed;

/// What a connector can do; the engine refuses actions a connector does not advertise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The actions (by [`Action::name`]) this connector can apply.
    pub actions: Vec<String>,
    /// Whether [`Connector::discover`] lists the inventory.
    pub discovery: bool,
}

/// One identity, credential or entitlement as the target reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredObject {
    /// Its id in the target.
    pub external_id: String,
    /// The kind of object (`role`, `access_key`, `secret`, `grant`, ...).
    pub object_kind: String,
    /// Target-specific attributes, with secrets removed.
    pub attributes: serde_json::Value,
}

/// Why a connector call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A transient failure (network, throttling): the engine may retry with backoff.
    #[error("retryable: {0}")]
    Retryable(String),
    /// A permanent failure: retrying will not help.
    #[error("failed: {0}")]
    Permanent(String),
    /// The connector does not support this action.
    #[error("action {0} is not supported by this connector")]
    Unsupported(String),
}

impl ConnectorError {
    /// Whether the engine should retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectorError::Retryable(_))
    }
}

/// A target system writ can read and change.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The system's name as identities refer to it (for example `aws:000000000000`).
    fn system(&self) -> &str;

    /// What this connector can do.
    fn capabilities(&self) -> Capabilities;

    /// Lists the inventory: identities, credentials, entitlements, last use.
    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError>;

    /// Reads one object's current state.
    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError>;

    /// Plans `action` on an object, reading its pre-image.
    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError>;

    /// Applies a plan. `idempotency_key` is stable across retries: applying twice must not
    /// change the target twice.
    async fn apply(
        &self,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError>;

    /// Reads the target back and says whether the plan's effect holds.
    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError>;

    /// Restores the plan's pre-image.
    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError>;

    /// Rotation with cut-over, when this connector rotates credentials that way (the engine
    /// then orchestrates `rotate` jobs step by step instead of one `apply`).
    fn key_rotation(&self) -> Option<&dyn KeyRotation> {
        None
    }
}

/// A credential delivered by [`KeyRotation::create_and_deliver`]: its id (never its secret) and
/// where its consumers read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The new credential's id (an access key id).
    pub key_id: String,
    /// The secret its consumers read it from.
    pub secret_name: String,
    /// The version the secret store gave the new value.
    pub secret_version: String,
}

/// Rotation with cut-over, step by step, for a credential that has an id beside its secret (an
/// access key): the engine records each step in the ledger before the next, so a crash resumes
/// where it stopped. The connector never hands the secret to writ: it goes straight to the
/// store its consumers read.
#[async_trait]
pub trait KeyRotation: Send + Sync {
    /// Creates `external_id`'s new credential beside `old_key_id` and delivers it where its
    /// consumers read it. Safe to call again after a crash: a credential already delivered is
    /// adopted; one created but never delivered (its secret is lost) is deleted and made again.
    async fn create_and_deliver(
        &self,
        external_id: &str,
        old_key_id: &str,
    ) -> Result<Delivered, ConnectorError>;
    /// When `key_id` was last used to sign a request, if ever (as the target reports it).
    async fn last_used(
        &self,
        external_id: &str,
        key_id: &str,
    ) -> Result<Option<jiff::Timestamp>, ConnectorError>;
    /// Whether `key_id` is active (`Some(true)`), inactive (`Some(false)`) or gone (`None`).
    async fn key_status(
        &self,
        external_id: &str,
        key_id: &str,
    ) -> Result<Option<bool>, ConnectorError>;
    /// Deactivates `key_id` (nothing to do when it already is).
    async fn deactivate(&self, external_id: &str, key_id: &str) -> Result<(), ConnectorError>;
    /// Deletes `key_id` (nothing to do when it is gone).
    async fn delete_key(&self, external_id: &str, key_id: &str) -> Result<(), ConnectorError>;
}

/// Where a rotated secret goes: the place its consumers read it from (a secrets manager, a
/// vault path, a Kubernetes secret). One connector rotates (a database role's password), another
/// system stores the result; writ itself never keeps the value.
#[async_trait]
pub trait SecretSink: Send + Sync {
    /// Stores `secret` as the new credential of `identity` on `system` and returns the version
    /// id the store gave it. Implementations never log the secret or put it in an error.
    async fn deliver(
        &self,
        system: &str,
        identity: &str,
        secret: &str,
    ) -> Result<String, ConnectorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_with_their_tag() {
        let json = serde_json::to_string(&ApplyOutcome::Rejected {
            reason: "last admin".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"outcome":"rejected","reason":"last admin"}"#);
        assert!(ConnectorError::Retryable("throttled".into()).is_retryable());
        assert!(!ConnectorError::Permanent("gone".into()).is_retryable());
    }
}
