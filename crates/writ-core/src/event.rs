//! Ledger events: the one record of everything writ decides and does.
//!
//! An [`Event`] is what gets appended to the ledger. Its `body` holds the kind-specific payload
//! as JSON; large or raw material (a finding as received, a pre-image) is referenced by digest
//! and stored beside the ledger. No secret may ever be put into an event: connectors hand back
//! digests or redacted forms only.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Sha256Digest;
use crate::ids::CaseId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A finding was accepted from a source.
    FindingReceived,
    /// An identity was recorded or updated from a target's inventory.
    IdentitySynced,
    /// Ownership and criticality rules were imported.
    OwnershipImported,
    /// A case was opened.
    CaseOpened,
    /// Policy decided.
    DecisionRecorded,
    /// A change was requested (a write-back job queued).
    ChangeRequested,
    /// An approver approved.
    ApprovalGranted,
    /// An approver rejected.
    ApprovalRejected,
    /// An exception was granted.
    ExceptionGranted,
    /// An exception expired.
    ExceptionExpired,
    /// An emergency bypass was used; review is due.
    BypassUsed,
    /// The write-back intent was recorded (before apply).
    WriteBackIntent,
    /// The target accepted the change.
    WriteBackApplied,
    /// Reading the target back confirmed the change.
    WriteBackVerified,
    /// The write-back failed or did not verify.
    WriteBackFailed,
    /// The change was rolled back from its pre-image.
    RolledBack,
    /// The case was frozen or unfrozen.
    CaseFrozen,
    /// The case was closed (operationally or for compliance).
    CaseClosed,
}

impl EventKind {
    /// The NIST CSF 2.0 outcomes this kind of event is evidence for. The sequencer adds them to
    /// every event, beside any tags the caller gives (OWASP NHI Top 10 tags depend on the
    /// finding, so the ingest path adds those).
    pub fn nist_csf_controls(self) -> &'static [&'static str] {
        use EventKind as K;
        match self {
            K::FindingReceived => &["DE.CM", "DE.AE-02"],
            K::IdentitySynced => &["ID.AM-01", "PR.AA-01"],
            K::OwnershipImported => &["ID.AM-01", "GV.RR-02"],
            K::CaseOpened | K::CaseFrozen | K::CaseClosed => &["RS.MA-01", "GV.OC-03"],
            K::DecisionRecorded => &["GV.RM-03", "GV.PO-01"],
            K::ChangeRequested | K::ApprovalGranted | K::ApprovalRejected => {
                &["PR.AA-05", "GV.RR-02"]
            }
            K::ExceptionGranted | K::ExceptionExpired => &["ID.RA-07", "GV.RM-03"],
            K::BypassUsed => &["RS.MA-01", "GV.OV-03"],
            K::WriteBackIntent
            | K::WriteBackApplied
            | K::WriteBackVerified
            | K::WriteBackFailed => &["RS.MI-02", "PR.AA-05"],
            K::RolledBack => &["RC.RP-01", "RS.MI-02"],
        }
    }
}

/// A control framework reference, for grouping evidence by control.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ControlTag(pub String);

/// An event as appended to the ledger. `seq` and `time` are assigned by the sequencer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// When it was appended, from the injected clock.
    pub time: Timestamp,
    /// The case it belongs to, if any.
    pub case_id: Option<CaseId>,
    /// Who or what caused it (`source:prowler`, `user:alice`, `engine`).
    pub actor: String,
    /// What happened.
    pub kind: EventKind,
    /// Unique per logical event: a retry with the same key returns the first entry.
    pub idempotency_key: String,
    /// The policy bundle that decided, where a decision was made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_bundle: Option<Sha256Digest>,
    /// Digests of evidence stored beside the ledger.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evidence: Vec<Sha256Digest>,
    /// OWASP NHI Top 10 and NIST CSF 2.0 references.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub controls: Vec<ControlTag>,
    /// The kind-specific payload.
    pub body: serde_json::Value,
}

/// Field names that must never appear in an event body: they name secret material.
const SECRET_FIELD_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "secret_value",
    "secret_string",
    "secret_access_key",
    "private_key",
    "client_secret",
    "api_key_value",
    "token_value",
    "plaintext",
];

/// JSON pointers to every field in `body` whose name marks it as secret material. An event with
/// any such field is refused: connectors must hand back digests or redacted forms instead.
pub fn secret_fields(body: &serde_json::Value) -> Vec<String> {
    /// The common answer, without allocating: no secret-named field anywhere.
    fn any_secret(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().any(|(key, child)| {
                (!child.is_null()
                    && SECRET_FIELD_NAMES
                        .iter()
                        .any(|name| key.eq_ignore_ascii_case(name)))
                    || any_secret(child)
            }),
            serde_json::Value::Array(items) => items.iter().any(any_secret),
            _ => false,
        }
    }
    fn walk(value: &serde_json::Value, pointer: &mut String, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    let lower = key.to_ascii_lowercase();
                    if SECRET_FIELD_NAMES.contains(&lower.as_str()) && !child.is_null() {
                        found.push(pointer.clone());
                    }
                    walk(child, pointer, found);
                    pointer.truncate(len);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    walk(child, pointer, found);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    if !any_secret(body) {
        return found;
    }
    walk(body, &mut String::new(), &mut found);
    // Map order depends on serde_json features chosen elsewhere in the build; sort so the
    // answer does not.
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_found_anywhere() {
        let body = serde_json::json!({
            "finding": {"type": "leaked_secret", "hashed_secret": "abc"},
            "target": {"items": [{"Password": "x"}], "a/b": {"private_key": "k"}},
            "secret": null
        });
        assert_eq!(
            secret_fields(&body),
            vec![
                "/target/a~1b/private_key".to_owned(),
                "/target/items/0/Password".to_owned()
            ]
        );
        assert!(secret_fields(&serde_json::json!({"digest": "sha256:00"})).is_empty());
    }
}
