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
