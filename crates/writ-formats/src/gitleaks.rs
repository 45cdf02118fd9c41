//! gitleaks JSON reports, with the plaintext secret removed before anything leaves this module.
//!
//! A report not made with `--redact` holds each secret in `Secret` and `Match`. writ must never
//! store or log it, so for such a record the evidence is the record with those two values
//! replaced by `"REDACTED"` (everything else byte for byte), the observation says
//! `details.redacted = true`, and the SHA-256 of the original bytes is kept. If the secret also
//! appears elsewhere in the record, every string holding it is scrubbed and the record is
//! re-serialised. Error messages and error bytes are scrubbed the same way.

use serde::Deserialize;
use serde_json::{Value, json};
use writ_core::Sha256Digest;
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef};
use writ_core::identity::IdentityKind;

use crate::common::{ParseOptions, parse_timestamp};
use crate::controls;
use crate::error::{ElementError, from_element};
use crate::skim;

/// What gitleaks writes in place of a secret with `--redact`.
pub const REDACTED: &str = "REDACTED";

/// One gitleaks finding. Deliberately not `Debug`: it holds the secret.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    #[serde(rename = "RuleID")]
    rule_id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    start_line: u64,
    #[serde(default)]
    end_line: u64,
    #[serde(default)]
    start_column: u64,
    #[serde(default)]
    end_column: u64,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    symlink_file: String,
    #[serde(default)]
    commit: String,
    #[serde(default)]
    entropy: f64,
    #[serde(default)]
    author: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    fingerprint: String,
}

/// A parsed gitleaks finding with its safe evidence.
pub(crate) struct Parsed {
    pub observation: Observation,
    /// The redacted record, when the input was not already redacted.
    pub redacted: Option<(Vec<u8>, Sha256Digest)>,
}

/// Parses one gitleaks record.
pub(crate) fn parse(bytes: &[u8], options: &ParseOptions) -> Result<Parsed, ElementError> {
    let r: Record = from_element(bytes)?;
    if r.rule_id.trim().is_empty() {
        return Err(ElementError::invalid("RuleID", "must not be empty"));
    }
    let already_redacted = r.secret == REDACTED;
    let redacted = if already_redacted {
        None
    } else {
        let digest = Sha256Digest::of(bytes);
        let safe = redact(bytes, &r.secret).ok_or_else(|| {
            ElementError::invalid(
                "Secret",
                "the record could not be redacted, so it is refused",
            )
        })?;
        Some((safe, digest))
    };
    let fingerprint = if r.fingerprint.trim().is_empty() {
        if r.commit.is_empty() {
            format!("{}:{}:{}", r.file, r.rule_id, r.start_line)
        } else {
            format!("{}:{}:{}:{}", r.commit, r.file, r.rule_id, r.start_line)
        }
    } else {
        r.fingerprint.clone()
    };
    let observed_at = match r.date.trim() {
        "" => None,
        date => Some(parse_timestamp(date).map_err(|m| ElementError::invalid("Date", m))?),
    };
    let description = if r.description.trim().is_empty() {
        r.rule_id.clone()
    } else {
        r.description.clone()
    };
    let confidence_bp = match r.rule_id.as_str() {
        "generic-api-key" => 6_000,
        _ => 9_000,
    };
    let mut details = json!({
        "rule_id": r.rule_id,
        "file": r.file,
        "start_line": r.start_line,
        "end_line": r.end_line,
        "start_column": r.start_column,
        "end_column": r.end_column,
        "commit": non_empty(&r.commit),
        "symlink_file": non_empty(&r.symlink_file),
        "author": non_empty(&r.author),
        "entropy": r.entropy,
        "tags": r.tags,
        "redacted": redacted.is_some(),
    });
    if let (Value::Object(map), Some((_, digest))) = (&mut details, &redacted) {
        map.insert("redacted_from".into(), Value::String(digest.to_string()));
    }
    if let Value::Object(map) = &mut details {
        map.retain(|_, v| !v.is_null());
        if already_redacted {
            map.insert("source_redacted".into(), Value::Bool(true));
        }
    }
    let observation = Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Gitleaks,
        finding_type: "leaked_secret".into(),
        severity: Severity::High,
        confidence_bp,
        subject: SubjectRef {
            system: options.git_system(),
            external_id: format!("fingerprint:{fingerprint}"),
            kind_hint: Some(IdentityKind::Secret),
        },
        observed_at,
        title: format!("{description} ({}:{})", r.file, r.start_line),
        source_key: Some(fingerprint),
        controls: controls::controls_for("leaked_secret"),
        details,
    };
    Ok(Parsed {
        observation,
        redacted,
    })
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.trim().is_empty())
}

/// The record with `Secret` and `Match` set to `"REDACTED"` and no other trace of `secret`.
/// `None` if that cannot be done (the record is then refused).
pub(crate) fn redact(bytes: &[u8], secret: &str) -> Option<Vec<u8>> {
    let members = skim::object_members(bytes, 0)?;
    let mut spans: Vec<(usize, usize)> = members
        .iter()
        .filter(|m| m.key == "Secret" || m.key == "Match")
        .map(|m| (m.start, m.end))
        .collect();
    spans.sort_unstable();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for (start, end) in spans {
        out.extend_from_slice(&bytes[at..start]);
        out.extend_from_slice(b"\"REDACTED\"");
        at = end;
    }
    out.extend_from_slice(&bytes[at..]);
    if !contains_secret(&out, secret) {
        return Some(out);
    }
    // The secret is somewhere else too (a `Line` or `Message` field): scrub every string.
    let mut value: Value = serde_json::from_slice(&out).ok()?;
    scrub(&mut value, secret);
    let out = serde_json::to_vec(&value).ok()?;
    (!contains_secret(&out, secret)).then_some(out)
}

/// Whether `bytes` hold `secret`, raw or as JSON string content.
pub(crate) fn contains_secret(bytes: &[u8], secret: &str) -> bool {
    if secret.is_empty() || secret == REDACTED {
        return false;
    }
    if find(bytes, secret.as_bytes()) {
        return true;
    }
    let escaped = serde_json::to_string(secret).unwrap_or_default();
    let inner = escaped
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default();
    !inner.is_empty() && find(bytes, inner.as_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Replaces `secret` in every string of `value`.
fn scrub(value: &mut Value, secret: &str) {
    match value {
        Value::String(s) if s.contains(secret) => *s = s.replace(secret, REDACTED),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, secret)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub(v, secret)),
        _ => {}
    }
}

/// Makes an error about a gitleaks record safe to show: the raw bytes are redacted (or dropped
/// when that is impossible) and any secret in the message is replaced.
pub(crate) fn scrub_error(bytes: &[u8], mut message: String) -> (String, Vec<u8>) {
    let value: Option<Value> = serde_json::from_slice(bytes).ok();
    let secrets: Vec<String> = value
        .as_ref()
        .and_then(Value::as_object)
        .map(|m| {
            ["Secret", "Match"]
                .iter()
                .filter_map(|k| m.get(*k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .filter(|s| !s.is_empty() && s != REDACTED)
                .collect()
        })
        .unwrap_or_default();
    for s in &secrets {
        message = message.replace(s.as_str(), REDACTED);
    }
    let raw = match value {
        None => Vec::new(),
        Some(_) if secrets.is_empty() => bytes.to_vec(),
        Some(_) => {
            let mut raw = bytes.to_vec();
            for s in &secrets {
                match redact(&raw, s) {
                    Some(r) => raw = r,
                    None => return (message, Vec::new()),
                }
            }
            raw
        }
    };
    (message, raw)
}
