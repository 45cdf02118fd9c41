//! Example domain values and event bodies, for tests, benchmarks and documentation.
//!
//! Pure and deterministic: every value derives from a number `n`, so two calls with the same
//! `n` give the same value and different `n` give distinct ids. Nothing here is used by writ's
//! own logic; it exists so that the store, engine and end-to-end tests (and the benches) build
//! the same realistic stories instead of each hand-writing its own.

use jiff::Timestamp;
use uuid::Uuid;

use crate::Sha256Digest;
use crate::case::{Case, CaseState};
use crate::decision::{Decision, Evaluation, Tier};
use crate::event::{
    DecisionRecorded, EventBody, FindingReceived, IdentitySynced, ObservationSummary, SourceRef,
};
use crate::finding::{Finding, Severity, SourceFormat, Trust};
use crate::identity::{Criticality, Identity, IdentityKind};
use crate::ids::{CaseId, FindingId, IdentityId};
use crate::workflow::decided_state;

/// The system every example identity lives in.
pub const SYSTEM: &str = "aws:000000000000";

/// The finding type of every example case.
pub const FINDING_TYPE: &str = "iam_user_accesskey_unused";

/// A fixed instant the examples are set at.
pub fn time() -> Timestamp {
    Timestamp::constant(1_800_000_000, 0)
}

/// Identity `svc-n` of [`SYSTEM`], owned by `payments`, reconciled shortly before [`time`].
pub fn identity(n: u128) -> Identity {
    Identity {
        id: IdentityId(Uuid::from_u128(n)),
        system: SYSTEM.into(),
        external_id: format!("svc-{n}"),
        kind: IdentityKind::ServiceAccount,
        owner_team: Some("payments".into()),
        criticality: Criticality::High,
        privileged: false,
        tags: vec!["prod".into()],
        last_used_at: None,
        reconciled_at: Some(Timestamp::constant(1_799_999_000, 0)),
    }
}

/// The body that records [`identity`]`(n)` from a sync.
pub fn synced(n: u128) -> EventBody {
    EventBody::IdentitySynced(IdentitySynced {
        identity: identity(n),
        object_kind: Some("user".into()),
        reason: None,
    })
}

/// The id of example case `n`.
pub fn case_id(n: u128) -> CaseId {
    CaseId(Uuid::from_u128(n))
}

/// Example case `n`, just opened, about identity `n`.
pub fn case(n: u128) -> Case {
    Case {
        id: case_id(n),
        identity_id: Some(IdentityId(Uuid::from_u128(n))),
        subject: format!("{SYSTEM}/svc-{n}"),
        finding_type: FINDING_TYPE.into(),
        state: CaseState::NeedsReview,
        compliance_closed: false,
    }
}

/// The finding that opens case `n`, recorded under `key` with `evidence` as its raw bytes.
pub fn finding(n: u128, key: &str, evidence: &[u8]) -> Finding {
    Finding {
        id: FindingId(Uuid::from_u128(2_000 + n)),
        source: "prowler".into(),
        finding_type: FINDING_TYPE.into(),
        severity: Severity::Medium,
        confidence_bp: 9_000,
        subject_system: SYSTEM.into(),
        subject_external_id: format!("svc-{n}"),
        observed_at: Timestamp::constant(1_799_999_500, 0),
        evidence: Sha256Digest::of(evidence),
        idempotency_key: key.into(),
    }
}

/// The body of the finding (under `key`, raw bytes `evidence`) that opens case `n`.
pub fn opened(n: u128, key: &str, evidence: &[u8]) -> EventBody {
    EventBody::FindingReceived(FindingReceived {
        finding: finding(n, key, evidence),
        observation: ObservationSummary {
            status: Default::default(),
            format: SourceFormat::Prowler,
            title: format!("Access key of svc-{n} unused for 90 days"),
            subject_kind: Some(IdentityKind::ApiKey),
            details: serde_json::Value::Null,
        },
        source: SourceRef {
            name: "prowler".into(),
            trust: Trust::High,
        },
        redacted_from: None,
        case: Some(case(n)),
        reopens: None,
    })
}

/// A decision of `tier` to disable, from a bundle whose hash is that of `b"bundle"`.
pub fn decision(tier: Tier) -> Decision {
    Decision {
        tier,
        action: "disable".into(),
        bundle_hash: Sha256Digest::of(b"bundle"),
        determining_policies: vec!["inactive-credential-disable-owner-approval".into()],
        terms: Default::default(),
        reason: "permit matched".into(),
    }
}

/// The body that decides case `n` with `tier` (the case reconciled, no job queued with it).
pub fn decided(n: u128, tier: Tier) -> EventBody {
    let mut case = case(n);
    case.state = decided_state(&tier, true, false);
    EventBody::DecisionRecorded(DecisionRecorded {
        case,
        decision: decision(tier),
        evaluation: Evaluation {
            action: "disable".into(),
            principal: "Writ::Engine::\"automation\"".into(),
            resource: format!("Writ::Identity::\"{}\"", Uuid::from_u128(n)),
            entities: serde_json::json!([]),
            context: serde_json::json!({}),
        },
        signal: "inactivity".into(),
        routing: None,
    })
}

/// The tier most examples use: one approval from the owner team.
pub fn one_owner_approval() -> Tier {
    Tier::Approval {
        count: 1,
        approver_group: "owner_team".into(),
    }
}
