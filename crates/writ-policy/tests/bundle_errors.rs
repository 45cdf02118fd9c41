//! Invalid bundles are refused as a whole, with every problem named (snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use writ_policy::{BundleError, PolicyBundle};

fn refuse(fixture: &str) -> BundleError {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    match PolicyBundle::load_dir(&dir) {
        Ok(_) => panic!("fixture {fixture} was accepted"),
        Err(e) => {
            assert!(!e.issues.is_empty());
            e
        }
    }
}

#[test]
fn type_error_against_schema() {
    let e = refuse("type_error");
    assert!(e.to_string().contains("nonexistent"));
    assert!(
        e.issues
            .iter()
            .all(|i| i.file == "policies.cedar" && i.line.is_some())
    );
    assert_eq!(e.issues.len(), 2, "{e}");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn syntax_error_with_line() {
    let e = refuse("syntax_error");
    assert!(
        e.issues
            .iter()
            .any(|i| i.file == "broken.cedar" && i.line.is_some())
    );
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn missing_id() {
    let e = refuse("missing_id");
    assert_eq!(e.issues.len(), 1, "{e}");
    assert_eq!(e.issues[0].line, Some(6));
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn duplicate_id() {
    let e = refuse("duplicate_id");
    assert_eq!(e.issues.len(), 1, "{e}");
    assert_eq!(e.issues[0].file, "b.cedar");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn bad_remediations_values() {
    let e = refuse("bad_remediations");
    assert_eq!(e.issues.len(), 2, "{e}");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn unknown_key_in_a_finding_type_table() {
    let e = refuse("unknown_finding_type_key");
    assert_eq!(e.issues.len(), 1, "{e}");
    let issue = &e.issues[0];
    assert_eq!(
        (issue.file.as_str(), issue.line),
        ("remediations.toml", Some(4))
    );
    assert!(issue.message.contains("sginal"), "{e}");
}

#[test]
fn bad_signals() {
    let e = refuse("bad_signals");
    let lines: Vec<String> = e.issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "remediations.toml:3:47: finding type \"leaked_secret\" declares signal \"Leak\", which is not a lowercase identifier ([a-z][a-z0-9_]*)",
            "remediations.toml:4:39: finding type \"inactive_service_account\" maps to unknown action \"deactivate\" (known: disable, enable, revoke, delete, rotate, reduce_scope, set_expiry, grant)",
            "remediations.toml:4:62: finding type \"inactive_service_account\" declares signal \"\", which is not a lowercase identifier ([a-z][a-z0-9_]*)",
        ],
        "{e}"
    );
}

#[test]
fn bad_remediations_syntax() {
    let e = refuse("bad_remediations_syntax");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn bad_annotations() {
    let e = refuse("bad_annotations");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn schema_that_does_not_fit_the_entity_model() {
    let e = refuse("schema_mismatch");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn every_problem_is_named_at_once() {
    let e = refuse("everything_wrong");
    insta::assert_json_snapshot!(e.issues);
}

#[test]
fn missing_directory() {
    let e = refuse("no_such_bundle");
    assert_eq!(e.issues.len(), 1, "{e}");
}
