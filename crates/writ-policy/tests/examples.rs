//! The shipped example bundle and its `policy test` cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use writ_policy::{DEFAULT_SIGNAL, PolicyBundle, run_tests};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn example_bundle() -> PolicyBundle {
    PolicyBundle::load_dir(&root().join("../../policies/demo")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_bundle_loads() {
    let bundle = example_bundle();
    assert_eq!(bundle.remediation_for("token_compromise"), Some("revoke"));
    assert_eq!(
        bundle.remediation_for("iam_user_accesskey_unused"),
        Some("disable")
    );
    assert_eq!(bundle.remediation_for("leaked_secret"), Some("rotate"));
    assert_eq!(
        bundle.remediation_for("agent_overprivileged"),
        Some("reduce_scope")
    );
    assert_eq!(
        bundle.remediation_for("agent_entitlement_request"),
        Some("grant")
    );
    assert_eq!(bundle.remediation_for("no_such_type"), None);
    let ids: Vec<&str> = bundle.policy_ids().collect();
    assert!(ids.contains(&"business-critical-compromise-case-only"));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids are sorted");
    assert_eq!(
        bundle.files(),
        [
            "agents.cedar",
            "certification.cedar",
            "credentials.cedar",
            "exceptions.cedar",
            "guardrails.cedar",
            "remediations.toml",
            "requests.cedar",
            "rollbacks.cedar",
            "tokens.cedar",
            "writ.cedarschema"
        ]
    );
}

#[test]
fn example_bundle_declares_a_signal_for_every_finding_type() {
    let bundle = example_bundle();
    let signals: Vec<(&str, &str)> = bundle
        .remediations()
        .keys()
        .map(|t| (t.as_str(), bundle.signal_for(t)))
        .collect();
    // What the demo policies read in `context.finding.signal`.
    assert_eq!(
        signals,
        [
            ("agent_entitlement_request", "entitlement_request"),
            ("agent_overprivileged", "overprivilege"),
            ("certificate_long_lived", "stale_credential"),
            ("certification_due", "certification"),
            ("certification_overdue", "certification_overdue"),
            ("credential_compromise", "compromise"),
            ("dormant_identity", "inactivity"),
            ("drift_reverted", "drift"),
            ("expired_but_active", "expiry"),
            ("iam_user_accesskey_unused", "inactivity"),
            ("inactive_service_account", "inactivity"),
            ("leaked_secret", "leak"),
            ("token_compromise", "compromise"),
        ]
    );
    // Substrings mean nothing: the signal is what the bundle declares, else "other".
    assert_eq!(bundle.signal_for("no_such_type"), DEFAULT_SIGNAL);
    assert_eq!(bundle.signal_for("token_usage_compromise"), "other");
    assert_eq!(bundle.signal_for("TOKEN_COMPROMISE"), "other");
}

#[test]
fn string_form_entries_signal_other() {
    // The hash variant's remediations.toml uses the string form only.
    let bundle = PolicyBundle::load_dir(&root().join("tests/fixtures/hash_variant")).unwrap();
    assert_eq!(bundle.remediation_for("token_compromise"), Some("revoke"));
    assert_eq!(bundle.signal_for("token_compromise"), "other");
    assert_eq!(bundle.signal_for("no_such_type"), "other");
}

#[test]
fn bundle_hash_is_stable_and_content_addressed() {
    let a = example_bundle();
    let b = example_bundle();
    assert_eq!(a.hash(), b.hash());
    // Same policies, different remediations file: different hash.
    let other = PolicyBundle::load_dir(&root().join("tests/fixtures/hash_variant")).unwrap();
    assert_ne!(a.hash(), other.hash());
}

#[test]
fn example_cases_all_pass() {
    let bundle = example_bundle();
    let report = run_tests(&bundle, &root().join("../../policies/demo-tests")).unwrap();
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.failed, 0);
    assert_eq!(report.passed, report.cases.len());
    assert!(report.passed >= 19, "{report}");
    for case in &report.cases {
        let decision = case.decision.as_ref().unwrap();
        assert_eq!(decision.bundle_hash, bundle.hash());
    }
}

#[test]
fn failing_cases_report_a_clear_diff() {
    let bundle = example_bundle();
    let report = run_tests(&bundle, &root().join("tests/fixtures/failing_cases")).unwrap();
    assert_eq!((report.passed, report.failed), (0, 2));
    assert!(!report.all_passed());
    insta::assert_snapshot!(report.to_string());
}

#[test]
fn missing_cases_dir_is_an_error() {
    let bundle = example_bundle();
    assert!(run_tests(&bundle, &root().join("tests/fixtures/no_such_dir")).is_err());
}
