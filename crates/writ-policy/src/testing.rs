//! `policy test`: runs a folder of TOML case files against a bundle, like `opa test`.
//!
//! Each `*.toml` file in the folder is one case (see the crate README for the format). Cases
//! run in file-name order. A case that cannot be read or parsed fails with the reason; only an
//! unreadable folder is an error.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use writ_core::Sha256Digest;
use writ_core::decision::{Decision, Tier};
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef, Trust};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;

use crate::bundle::PolicyBundle;
use crate::error::PolicyError;
use crate::model::DecisionRequest;
use crate::model::{ACCEPT_RISK, BREAK_GLASS, DISMISS, ROLLBACK};

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case file's name.
    pub name: String,
    /// The case's description, if it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the decision matched every expectation.
    pub passed: bool,
    /// One line per mismatch (`tier: expected auto, got approval`), or why the case could not
    /// run; empty when it passed.
    pub failures: Vec<String>,
    /// The decision made, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// The outcome of a test run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Every case, in file-name order.
    pub cases: Vec<CaseResult>,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
}

impl TestReport {
    /// True when there was at least one case and every case passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            if case.passed {
                writeln!(f, "PASS {}", case.name)?;
            } else {
                writeln!(f, "FAIL {}", case.name)?;
                for failure in &case.failures {
                    writeln!(f, "  {failure}")?;
                }
            }
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    action: Option<String>,
    /// A requested change (`POST /v1/requests`) instead of a finding: the request's fields,
    /// `kind` first. Then `[finding]` and `[source]` are not given, and `[identity]` is the
    /// object the request is about (none for a new account).
    #[serde(default)]
    request: Option<writ_core::request::RequestSpec>,
    /// Who asks (a request case only; `tester` by default).
    #[serde(default)]
    requester: Option<String>,
    /// The time the request is decided at (a request case only; durations count from it).
    #[serde(default)]
    now: Option<jiff::Timestamp>,
    #[serde(default)]
    identity: Option<IdentitySpec>,
    #[serde(default)]
    subject: Option<SubjectSpec>,
    #[serde(default)]
    finding: Option<FindingSpec>,
    #[serde(default)]
    source: Option<SourceSpec>,
    expect: ExpectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdentitySpec {
    Unknown(String),
    Known(KnownIdentity),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownIdentity {
    kind: IdentityKind,
    system: String,
    #[serde(default = "default_external_id")]
    external_id: String,
    #[serde(default)]
    owner_team: Option<String>,
    criticality: Criticality,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "default_true")]
    reconciled: bool,
    /// The object's scopes today (an OAuth client's, an agent's), for request cases.
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectSpec {
    system: String,
    external_id: String,
    #[serde(default)]
    kind_hint: Option<IdentityKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingSpec {
    #[serde(rename = "type")]
    finding_type: String,
    severity: Severity,
    confidence: f64,
    signal: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    name: String,
    trust: Trust,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    tier: TierName,
    #[serde(default)]
    approvals: Option<u32>,
    #[serde(default)]
    approver_group: Option<String>,
    #[serde(default)]
    freeze: Option<bool>,
    #[serde(default)]
    determining_policies: Option<Vec<String>>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    max_days: Option<u32>,
    #[serde(default)]
    renew_before_days: Option<u32>,
    #[serde(default)]
    review_within_hours: Option<u32>,
    #[serde(default)]
    max_hours: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TierName {
    Auto,
    Approval,
    CaseOnly,
    Deny,
}

impl TierName {
    fn of(tier: &Tier) -> Self {
        match tier {
            Tier::Auto => Self::Auto,
            Tier::Approval { .. } => Self::Approval,
            Tier::CaseOnly { .. } => Self::CaseOnly,
            Tier::Deny => Self::Deny,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Approval => "approval",
            Self::CaseOnly => "case_only",
            Self::Deny => "deny",
        }
    }
}

fn default_external_id() -> String {
    "case-subject".to_owned()
}

fn default_true() -> bool {
    true
}

/// Runs every `*.toml` case in `cases_dir` against `bundle`.
pub fn run_tests(bundle: &PolicyBundle, cases_dir: &Path) -> Result<TestReport, PolicyError> {
    let io = |e: std::io::Error| PolicyError::Io {
        path: cases_dir.display().to_string(),
        message: e.to_string(),
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(cases_dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = match fs::read_to_string(&path) {
            Ok(text) => run_case(bundle, name, &text),
            Err(e) => failed(name, None, vec![format!("cannot read case: {e}")]),
        };
        cases.push(result);
    }
    let passed = cases.iter().filter(|c| c.passed).count();
    let failed = cases.len() - passed;
    Ok(TestReport {
        cases,
        passed,
        failed,
    })
}

fn failed(name: String, description: Option<String>, failures: Vec<String>) -> CaseResult {
    CaseResult {
        name,
        description,
        passed: false,
        failures,
        decision: None,
    }
}

/// Runs one case given as TOML text.
fn run_case(bundle: &PolicyBundle, name: String, text: &str) -> CaseResult {
    let case: CaseFile = match toml::from_str(text) {
        Ok(case) => case,
        Err(e) => {
            return failed(
                name,
                None,
                vec![format!("invalid case file: {}", e.message().trim())],
            );
        }
    };
    let description = case.description.clone();
    match decide_case(bundle, &case) {
        Ok(decision) => {
            let failures = compare(&case.expect, &decision);
            CaseResult {
                name,
                description,
                passed: failures.is_empty(),
                failures,
                decision: Some(decision),
            }
        }
        Err(message) => failed(name, description, vec![message]),
    }
}

/// Builds the identity a case file describes.
fn known_identity(known: &KnownIdentity) -> Identity {
    let key = format!("{}\u{0}{}", known.system, known.external_id);
    let digest = Sha256Digest::of(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.0[..16]);
    Identity {
        id: IdentityId(uuid::Uuid::from_bytes(bytes)),
        system: known.system.clone(),
        external_id: known.external_id.clone(),
        kind: known.kind,
        owner_team: known.owner_team.clone(),
        criticality: known.criticality,
        privileged: known.privileged,
        tags: known.tags.clone(),
        last_used_at: None,
        reconciled_at: None,
    }
}

/// Decides a request case as `POST /v1/requests` does.
fn decide_request(
    bundle: &PolicyBundle,
    case: &CaseFile,
    spec: &writ_core::request::RequestSpec,
) -> Result<Decision, String> {
    if case.finding.is_some() || case.source.is_some() || case.action.is_some() {
        return Err(
            "invalid case file: a [request] case gives no [finding], [source] or action".into(),
        );
    }
    let now = case
        .now
        .unwrap_or_else(|| jiff::Timestamp::from_second(1_767_225_600).unwrap_or_default());
    let (identity, reconciled, current) = match &case.identity {
        None => (None, false, Vec::new()),
        Some(IdentitySpec::Known(known)) => (
            Some(known_identity(known)),
            known.reconciled,
            known.scopes.clone(),
        ),
        Some(IdentitySpec::Unknown(_)) => {
            return Err(
                "invalid case file: a [request] case's identity is a table or left out".into(),
            );
        }
    };
    let current_set = current.iter().cloned().collect();
    let request = writ_core::request::Request {
        change: spec.change(&current_set),
        spec: spec.clone(),
        requester: case.requester.clone().unwrap_or_else(|| "tester".into()),
        current_scopes: current,
        dependants: None,
    };
    let evaluation = crate::model::request_evaluation(&crate::model::RequestFacts {
        request: &request,
        identity: identity.as_ref(),
        reconciled,
        duration_hours: spec.duration_hours(now),
    })
    .map_err(|e| format!("decision failed: {e}"))?;
    bundle
        .replay(&evaluation)
        .map_err(|e| format!("decision failed: {e}"))
}

fn decide_case(bundle: &PolicyBundle, case: &CaseFile) -> Result<Decision, String> {
    if let Some(spec) = &case.request {
        return decide_request(bundle, case, spec);
    }
    let (Some(finding), Some(source), Some(identity_spec)) =
        (&case.finding, &case.source, &case.identity)
    else {
        return Err(
            "invalid case file: [identity], [finding] and [source] are required (or [request])"
                .into(),
        );
    };
    if !(0.0..=1.0).contains(&finding.confidence) {
        return Err(format!(
            "invalid case file: confidence {} is not between 0 and 1",
            finding.confidence
        ));
    }
    // In range by the check above, so the cast cannot truncate.
    let confidence_bp = (finding.confidence * 10_000.0).round() as u16;
    let (identity, reconciled, subject) = match identity_spec {
        IdentitySpec::Unknown(word) if word == "unknown" => {
            let subject = case.subject.as_ref().map_or_else(
                || SubjectRef {
                    system: "unknown".to_owned(),
                    external_id: "unknown".to_owned(),
                    kind_hint: None,
                },
                |s| SubjectRef {
                    system: s.system.clone(),
                    external_id: s.external_id.clone(),
                    kind_hint: s.kind_hint,
                },
            );
            (None, false, subject)
        }
        IdentitySpec::Unknown(word) => {
            return Err(format!(
                "invalid case file: identity must be a table or \"unknown\", not {word:?}"
            ));
        }
        IdentitySpec::Known(known) => {
            if case.subject.is_some() {
                return Err(
                    "invalid case file: [subject] is only for identity = \"unknown\"".to_owned(),
                );
            }
            let identity = known_identity(known);
            let subject = SubjectRef {
                system: known.system.clone(),
                external_id: known.external_id.clone(),
                kind_hint: Some(known.kind),
            };
            (Some(identity), known.reconciled, subject)
        }
    };
    // A principal's question about a case (a rollback, an exception, an emergency change) is
    // asked about the case's remediation, as writ asks it: by `Writ::User::"tester"`, with
    // `context.requested_action` naming the remediation.
    let asked = case
        .action
        .as_deref()
        .filter(|a| [ROLLBACK, ACCEPT_RISK, BREAK_GLASS, DISMISS].contains(a));
    let action = match (&case.action, bundle.remediation_for(&finding.finding_type)) {
        (_, Some(remediation)) if asked.is_some() => remediation.to_owned(),
        (Some(action), _) if asked.is_none() => action.clone(),
        (None, Some(action)) => action.to_owned(),
        _ => {
            return Err(format!(
                "no action given and remediations.toml maps no action to finding type {:?}",
                finding.finding_type
            ));
        }
    };
    let observation = Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        finding_type: finding.finding_type.clone(),
        severity: finding.severity,
        confidence_bp,
        subject,
        observed_at: None,
        title: case.description.clone().unwrap_or_default(),
        source_key: None,
        controls: vec![],
        details: serde_json::Value::Null,
    };
    let request = DecisionRequest {
        identity: identity.as_ref(),
        reconciled,
        observation: &observation,
        signal: &finding.signal,
        source_name: &source.name,
        source_trust: source.trust,
        action: &action,
    };
    let (decision, evaluation) = bundle
        .decide(&request)
        .map_err(|e| format!("decision failed: {e}"))?;
    match asked {
        None => Ok(decision),
        Some(asked) => {
            let evaluation = crate::model::asked_evaluation(&evaluation, asked, "tester")
                .map_err(|e| format!("decision failed: {e}"))?;
            bundle
                .replay(&evaluation)
                .map_err(|e| format!("decision failed: {e}"))
        }
    }
}

fn compare(expect: &ExpectSpec, decision: &Decision) -> Vec<String> {
    let mut failures = Vec::new();
    let got = TierName::of(&decision.tier);
    if expect.tier != got {
        failures.push(format!(
            "tier: expected {}, got {} ({})",
            expect.tier.name(),
            got.name(),
            decision.reason
        ));
    }
    let (count, group, freeze) = match &decision.tier {
        Tier::Approval {
            count,
            approver_group,
        } => (Some(*count), Some(approver_group.as_str()), None),
        Tier::CaseOnly { freeze } => (None, None, Some(*freeze)),
        Tier::Auto | Tier::Deny => (None, None, None),
    };
    if let Some(want) = expect.approvals
        && count != Some(want)
    {
        failures.push(format!("approvals: expected {want}, got {}", show(count)));
    }
    if let Some(want) = &expect.approver_group
        && group != Some(want.as_str())
    {
        failures.push(format!(
            "approver_group: expected {want:?}, got {}",
            show(group.map(|g| format!("{g:?}")))
        ));
    }
    if let Some(want) = expect.freeze
        && freeze != Some(want)
    {
        failures.push(format!("freeze: expected {want}, got {}", show(freeze)));
    }
    if let Some(want) = &expect.determining_policies {
        let mut want = want.clone();
        want.sort();
        if want != decision.determining_policies {
            failures.push(format!(
                "determining_policies: expected {want:?}, got {:?}",
                decision.determining_policies
            ));
        }
    }
    for (name, want, got) in [
        ("max_days", expect.max_days, decision.terms.max_days),
        (
            "renew_before_days",
            expect.renew_before_days,
            decision.terms.renew_before_days,
        ),
        (
            "review_within_hours",
            expect.review_within_hours,
            decision.terms.review_within_hours,
        ),
        ("max_hours", expect.max_hours, decision.terms.max_hours),
    ] {
        if let Some(want) = want
            && got != Some(want)
        {
            failures.push(format!("{name}: expected {want}, got {}", show(got)));
        }
    }
    if let Some(want) = &expect.reason
        && *want != decision.reason
    {
        failures.push(format!(
            "reason: expected {want:?}, got {:?}",
            decision.reason
        ));
    }
    failures
}

fn show<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names_parse() {
        let spec: ExpectSpec = toml::from_str("tier = \"case_only\"\nfreeze = true").unwrap();
        assert_eq!(spec.tier, TierName::CaseOnly);
        assert_eq!(spec.freeze, Some(true));
    }
}
