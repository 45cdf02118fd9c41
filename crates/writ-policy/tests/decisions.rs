//! Decisions through the public API: determinism, replay, tiers and the confidence threshold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;
use writ_core::decision::{Decision, Tier};
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef, Trust};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_policy::{DecisionRequest, Evaluation, NO_PERMIT_MATCHED, PolicyBundle, PolicyError};

static BUNDLE: LazyLock<PolicyBundle> = LazyLock::new(|| {
    PolicyBundle::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo"))
        .unwrap_or_else(|e| panic!("{e}"))
});

fn bundle() -> PolicyBundle {
    BUNDLE.clone()
}

fn identity(kind: IdentityKind, criticality: Criticality) -> Identity {
    Identity {
        id: IdentityId("0190c0de-0000-7000-8000-000000000001".parse().unwrap()),
        system: "github:acme".into(),
        external_id: "ghp_deploy_bot".into(),
        kind,
        owner_team: Some("platform".into()),
        criticality,
        privileged: false,
        tags: vec!["z".into(), "a".into(), "a".into()],
        last_used_at: None,
        reconciled_at: None,
    }
}

fn observation(finding_type: &str, confidence_bp: u16) -> Observation {
    Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        finding_type: finding_type.into(),
        severity: Severity::Critical,
        confidence_bp,
        subject: SubjectRef {
            system: "github:acme".into(),
            external_id: "ghp_deploy_bot".into(),
            kind_hint: Some(IdentityKind::Token),
        },
        observed_at: None,
        title: "token leaked in a public repo".into(),
        source_key: None,
        controls: vec![],
        details: serde_json::Value::Null,
    }
}

fn revoke(
    bundle: &PolicyBundle,
    identity: Option<&Identity>,
    confidence_bp: u16,
    trust: Trust,
) -> (Decision, Evaluation) {
    let obs = observation("token_compromise", confidence_bp);
    let request = DecisionRequest {
        identity,
        reconciled: true,
        observation: &obs,
        signal: "compromise",
        source_name: "gitguardian",
        source_trust: trust,
        action: "revoke",
    };
    bundle.decide(&request).unwrap()
}

#[test]
fn replay_from_serialized_evaluation_gives_the_same_decision() {
    let bundle = bundle();
    let token = identity(IdentityKind::Token, Criticality::Medium);
    for (id, bp, trust) in [
        (Some(&token), 9_500, Trust::High),
        (Some(&token), 9_000, Trust::High),
        (None, 9_999, Trust::High),
    ] {
        let (first, evaluation) = revoke(&bundle, id, bp, trust);
        let (second, evaluation2) = revoke(&bundle, id, bp, trust);
        // Deciding twice: identical decision and identical bytes.
        assert_eq!(first, second);
        assert_eq!(evaluation, evaluation2);
        let json = serde_json::to_vec(&evaluation).unwrap();
        assert_eq!(json, serde_json::to_vec(&evaluation2).unwrap());
        assert_eq!(
            serde_json::to_vec(&first).unwrap(),
            serde_json::to_vec(&second).unwrap()
        );

        // Replaying from the recorded JSON: identical decision, identical bytes.
        let recorded: Evaluation = serde_json::from_slice(&json).unwrap();
        assert_eq!(recorded, evaluation);
        let replayed = bundle.replay(&recorded).unwrap();
        assert_eq!(replayed, first);
        assert_eq!(
            serde_json::to_vec(&replayed).unwrap(),
            serde_json::to_vec(&first).unwrap()
        );
        assert_eq!(serde_json::to_vec(&recorded).unwrap(), json);
    }
}

#[test]
fn evaluation_record_is_the_documented_shape() {
    let bundle = bundle();
    let token = identity(IdentityKind::Token, Criticality::Medium);
    let (decision, evaluation) = revoke(&bundle, Some(&token), 9_500, Trust::High);
    assert_eq!(decision.tier, Tier::Auto);
    assert_eq!(decision.bundle_hash, bundle.hash());
    insta::assert_json_snapshot!("auto_revoke_evaluation", evaluation);
    // The hash changes whenever the example bundle does; keep it out of the snapshot.
    let mut decision = decision;
    decision.bundle_hash = writ_core::Sha256Digest([0; 32]);
    insta::assert_json_snapshot!("auto_revoke_decision", decision);
}

#[test]
fn unknown_identity_is_a_placeholder_never_automated() {
    let bundle = bundle();
    let (decision, evaluation) = revoke(&bundle, None, 9_999, Trust::High);
    assert_eq!(
        decision.tier,
        Tier::Approval {
            count: 1,
            approver_group: "security".into()
        }
    );
    assert_eq!(
        evaluation.resource,
        r#"Writ::Identity::"unknown:github:acme/ghp_deploy_bot""#
    );
    let attrs = &evaluation.entities[1]["attrs"];
    assert_eq!(attrs["has_owner"], false);
    assert_eq!(attrs["reconciled"], false);
    assert_eq!(attrs["kind"], "token");
}

#[test]
fn case_only_wins_over_auto_on_business_critical_systems() {
    let bundle = bundle();
    let token = identity(IdentityKind::Token, Criticality::BusinessCritical);
    let (decision, _) = revoke(&bundle, Some(&token), 9_999, Trust::High);
    assert_eq!(decision.tier, Tier::CaseOnly { freeze: true });
    assert_eq!(
        decision.determining_policies,
        ["business-critical-compromise-case-only"]
    );
}

#[test]
fn default_deny_says_no_permit_matched() {
    let bundle = bundle();
    let token = identity(IdentityKind::Token, Criticality::Medium);
    let obs = observation("token_compromise", 9_999);
    let request = DecisionRequest {
        identity: Some(&token),
        reconciled: true,
        observation: &obs,
        signal: "compromise",
        source_name: "gitguardian",
        source_trust: Trust::High,
        action: "delete",
    };
    let (decision, _) = bundle.decide(&request).unwrap();
    assert_eq!(decision.tier, Tier::Deny);
    assert_eq!(decision.reason, NO_PERMIT_MATCHED);
    assert!(decision.determining_policies.is_empty());
}

#[test]
fn bad_requests_are_errors() {
    let bundle = bundle();
    let token = identity(IdentityKind::Token, Criticality::Medium);
    let obs = observation("token_compromise", 9_999);
    let mut request = DecisionRequest {
        identity: Some(&token),
        reconciled: true,
        observation: &obs,
        signal: "compromise",
        source_name: "gitguardian",
        source_trust: Trust::High,
        action: "nuke",
    };
    assert!(matches!(
        bundle.decide(&request),
        Err(PolicyError::UnknownAction(_))
    ));
    let too_sure = observation("token_compromise", 10_001);
    request.action = "revoke";
    request.observation = &too_sure;
    assert!(matches!(
        bundle.decide(&request),
        Err(PolicyError::Confidence(10_001))
    ));

    // A tampered record that no longer fits the schema is refused, not decided.
    let (_, mut evaluation) = revoke(&bundle, Some(&token), 9_500, Trust::High);
    evaluation.entities[1]["attrs"]["reconciled"] = serde_json::json!("yes");
    assert!(matches!(
        bundle.replay(&evaluation),
        Err(PolicyError::Entities(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Seed 2: a token is revoked automatically iff confidence > 0.90 and the source's trust
    /// is high; otherwise it needs one approval from the owner team.
    #[test]
    fn token_revocation_is_auto_iff_confident_and_trusted(
        confidence_bp in prop_oneof![0u16..=10_000, 8_990u16..=9_010],
        trust in prop_oneof![Just(Trust::Low), Just(Trust::Medium), Just(Trust::High)],
    ) {
        let bundle = &*BUNDLE;
        let token = identity(IdentityKind::Token, Criticality::High);
        let (decision, evaluation) = revoke(bundle, Some(&token), confidence_bp, trust);
        let expect_auto = confidence_bp > 9_000 && trust == Trust::High;
        if expect_auto {
            prop_assert_eq!(&decision.tier, &Tier::Auto);
        } else {
            prop_assert_eq!(
                &decision.tier,
                &Tier::Approval { count: 1, approver_group: "owner_team".into() }
            );
        }
        prop_assert_eq!(bundle.replay(&evaluation).unwrap(), decision);
    }
}
