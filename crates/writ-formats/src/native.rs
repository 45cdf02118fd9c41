//! writ's own finding format (see the crate README for the specification).
//!
//! Strict: unknown fields are errors, so a misspelt field is named rather than ignored.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, de::Error as _};
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef};
use writ_core::identity::IdentityKind;

use crate::common::{NonEmpty, confidence_bp};
use crate::controls;
use crate::error::{ElementError, from_element};

/// One native finding, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFinding {
    finding_type: NonEmpty,
    severity: Severity,
    #[serde(deserialize_with = "confidence_bp")]
    confidence: u16,
    subject: NativeSubject,
    #[serde(default)]
    observed_at: Option<Timestamp>,
    title: NonEmpty,
    #[serde(default)]
    idempotency_key: Option<NonEmpty>,
    #[serde(default)]
    controls: Vec<Control>,
    #[serde(default)]
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeSubject {
    system: NonEmpty,
    external_id: NonEmpty,
    #[serde(default)]
    kind: Option<IdentityKind>,
}

/// An OWASP NHI Top 10 tag, checked.
struct Control(String);

impl<'de> Deserialize<'de> for Control {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if controls::is_control(&s) {
            Ok(Self(s))
        } else {
            Err(D::Error::custom(format!(
                "`{s}` is not an OWASP NHI Top 10 tag (NHI-01 .. NHI-10)"
            )))
        }
    }
}

/// Parses one native finding.
pub(crate) fn parse(bytes: &[u8]) -> Result<Observation, ElementError> {
    let f: NativeFinding = from_element(bytes)?;
    let finding_type = f.finding_type.0;
    let controls = controls::merge(
        controls::controls_for(&finding_type),
        f.controls.into_iter().map(|c| c.0),
    );
    Ok(Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::Native,
        severity: f.severity,
        confidence_bp: f.confidence,
        subject: SubjectRef {
            system: f.subject.system.0,
            external_id: f.subject.external_id.0,
            kind_hint: f.subject.kind,
        },
        observed_at: f.observed_at,
        title: f.title.0,
        source_key: f.idempotency_key.map(|k| k.0),
        controls,
        details: f
            .details
            .map_or(serde_json::Value::Null, serde_json::Value::Object),
        finding_type,
    })
}
