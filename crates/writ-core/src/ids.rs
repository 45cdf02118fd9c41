//! Typed identifiers.
//!
//! Every entity has its own id type so that a case id can never be passed where an identity id
//! is expected. All are UUIDv7, produced by an injected [`crate::IdSource`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

typed_id!(
    /// Identifies a non-human identity in the inventory.
    IdentityId
);
typed_id!(
    /// Identifies a finding as received.
    FindingId
);
typed_id!(
    /// Identifies a case: the unit of governance around one identity and one finding type.
    CaseId
);
typed_id!(
    /// Identifies a change request (an action proposed against a target).
    ChangeId
);
typed_id!(
    /// Identifies a write-back job.
    JobId
);
typed_id!(
    /// Identifies a principal (a person or a service that acts on writ).
    PrincipalId
);
typed_id!(
    /// Identifies an API token issued to a principal.
    TokenId
);
typed_id!(
    /// Identifies an approval or rejection.
    ApprovalId
);
typed_id!(
    /// Identifies an exception (a risk accepted for a while).
    ExceptionId
);
