//! Non-human identities: what writ governs.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ids::IdentityId;

/// What kind of non-human identity this is.
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
pub enum IdentityKind {
    /// A service account or database role.
    ServiceAccount,
    /// A long-lived API or access key.
    ApiKey,
    /// An OAuth client or app registration.
    OauthApp,
    /// A bearer or session token.
    Token,
    /// An X.509 certificate.
    Certificate,
    /// A stored secret (password, connection string).
    Secret,
    /// An AI agent with delegated permissions.
    AiAgent,
}

/// How much damage a wrong change to this identity's system would do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Criticality {
    /// Sandboxes and experiments.
    Low,
    /// Ordinary production.
    Medium,
    /// Important production.
    High,
    /// The business stops without it.
    BusinessCritical,
}

/// An identity as the inventory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// writ's id for it.
    pub id: IdentityId,
    /// The system that holds it (for example `aws:123456789012` or `postgres:billing`).
    pub system: String,
    /// Its id in that system (user name, key id, role name).
    pub external_id: String,
    /// What it is.
    pub kind: IdentityKind,
    /// The team that owns it, if anyone does.
    pub owner_team: Option<String>,
    /// How critical its system is.
    pub criticality: Criticality,
    /// Whether it holds administrative rights.
    pub privileged: bool,
    /// Free-form labels.
    pub tags: Vec<String>,
    /// When it was last used, if the system reports it.
    pub last_used_at: Option<Timestamp>,
    /// When its system was last reconciled into the inventory.
    pub reconciled_at: Option<Timestamp>,
}

/// Whether automation may act on an identity, given what the inventory knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SourceOfTruth {
    /// Owner known and the system reconciled within the allowed age.
    Reconciled,
    /// Something is missing: only a human may decide.
    Incomplete {
        /// Why, in words a reviewer understands.
        reason: String,
    },
}

impl Identity {
    /// Judges whether the inventory record is complete and fresh enough for automation.
    pub fn source_of_truth(&self, now: Timestamp, max_age: SignedDuration) -> SourceOfTruth {
        if self.owner_team.as_deref().is_none_or(str::is_empty) {
            return SourceOfTruth::Incomplete {
                reason: "identity has no owner".into(),
            };
        }
        match self.reconciled_at {
            None => SourceOfTruth::Incomplete {
                reason: "system never reconciled".into(),
            },
            Some(at) if now.duration_since(at) > max_age => SourceOfTruth::Incomplete {
                reason: format!("system last reconciled at {at}, older than {max_age:#}"),
            },
            Some(_) => SourceOfTruth::Reconciled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn identity(owner: Option<&str>, reconciled_at: Option<Timestamp>) -> Identity {
        Identity {
            id: IdentityId(Uuid::nil()),
            system: "aws:000000000000".into(),
            external_id: "ci-deployer".into(),
            kind: IdentityKind::ServiceAccount,
            owner_team: owner.map(str::to_owned),
            criticality: Criticality::Medium,
            privileged: false,
            tags: vec![],
            last_used_at: None,
            reconciled_at,
        }
    }

    #[test]
    fn automation_needs_an_owner_and_a_fresh_reconcile() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let day = SignedDuration::from_hours(24);
        let fresh = Some(now - SignedDuration::from_hours(1));
        let stale = Some(now - SignedDuration::from_hours(48));
        assert_eq!(
            identity(Some("payments"), fresh).source_of_truth(now, day),
            SourceOfTruth::Reconciled
        );
        assert!(matches!(
            identity(None, fresh).source_of_truth(now, day),
            SourceOfTruth::Incomplete { .. }
        ));
        assert!(matches!(
            identity(Some("payments"), stale).source_of_truth(now, day),
            SourceOfTruth::Incomplete { .. }
        ));
        assert!(matches!(
            identity(Some("payments"), None).source_of_truth(now, day),
            SourceOfTruth::Incomplete { .. }
        ));
    }
}
