//! detect-secrets baselines: one JSON object whose `results` map files to lists of secrets.
//!
//! A baseline is read whole (they are small and not streamable: `generated_at` comes last), then
//! each result's bytes are located so that every result has its own evidence and line, and one
//! bad result does not lose the others. Baselines hold only SHA-1 hashes of secrets, never the
//! secrets themselves, so evidence is kept byte for byte.

use serde::Deserialize;
use serde_json::json;
use writ_core::finding::{Observation, Severity, SourceFormat, SubjectRef};
use writ_core::identity::IdentityKind;

use crate::common::{NonEmpty, ParseOptions, parse_timestamp};
use crate::error::{ElementError, ErrorKind, FindingError, from_element};
use crate::skim;
use crate::{ParsedFinding, controls};

/// One entry of `results`.
#[derive(Deserialize)]
struct SecretResult {
    #[serde(rename = "type")]
    kind: NonEmpty,
    filename: NonEmpty,
    hashed_secret: HashedSecret,
    #[serde(default)]
    is_verified: bool,
    #[serde(default)]
    line_number: Option<u64>,
    /// Set by `detect-secrets audit`: `false` marks a false positive.
    #[serde(default)]
    is_secret: Option<bool>,
}

/// A lowercase hex SHA-1.
struct HashedSecret(String);

impl<'de> Deserialize<'de> for HashedSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(serde::de::Error::custom(
                "hashed_secret must be a SHA-1 (40 hex characters)",
            ))
        }
    }
}

/// The top level of a baseline, without its results.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    generated_at: Option<String>,
    results: serde::de::IgnoredAny,
}

/// What reading one result gave.
pub(crate) type Item = Result<Option<ParsedFinding>, FindingError>;

/// Parses a whole baseline into one item per result (`Ok(None)` for an audited false positive),
/// or a single error if the document itself is unusable.
pub(crate) fn parse_document(doc: &[u8], options: &ParseOptions) -> Vec<Item> {
    let doc_error = |e: ElementError| vec![Err(e.at(1, Vec::new()))];
    let header: Header = match from_element(doc) {
        Ok(h) => h,
        Err(e) => return doc_error(e),
    };
    let observed_at = match header.generated_at.as_deref().map(parse_timestamp) {
        None => None,
        Some(Ok(ts)) => Some(ts),
        Some(Err(message)) => {
            let line = skim::object_members(doc, 0)
                .and_then(|m| m.into_iter().find(|m| m.key == "generated_at"))
                .map_or(1, |m| line_of(doc, m.start));
            return vec![Err(FindingError {
                kind: ErrorKind::Invalid,
                line,
                field: Some("generated_at".into()),
                message,
                raw: Vec::new(),
            })];
        }
    };
    let _ = header.results;
    let files = skim::object_members(doc, 0)
        .and_then(|m| m.into_iter().find(|m| m.key == "results"))
        .and_then(|r| skim::object_members(doc, r.start));
    let Some(files) = files else {
        return vec![Err(FindingError::new(
            ErrorKind::Invalid,
            1,
            "`results` must be an object of file names to lists of secrets",
        ))];
    };
    let system = options.git_system();
    let mut lines = LineCounter::default();
    let mut out = Vec::new();
    for file in files {
        let Some(items) = skim::array_items(doc, file.start) else {
            out.push(Err(FindingError {
                kind: ErrorKind::Invalid,
                line: lines.line_at(doc, file.start),
                field: Some(format!("results.{}", file.key)),
                message: "expected a list of secrets".into(),
                raw: doc[file.start..file.end].to_vec(),
            }));
            continue;
        };
        for (index, (start, end)) in items.into_iter().enumerate() {
            let line = lines.line_at(doc, start);
            let raw = &doc[start..end];
            let prefix = format!("results.{}[{index}]", file.key);
            out.push(
                parse_result(raw, &system, observed_at, header.version.as_deref())
                    .map(|o| {
                        o.map(|observation| ParsedFinding {
                            observation,
                            evidence: raw.to_vec(),
                            line,
                            redacted_from: None,
                        })
                    })
                    .map_err(|mut e| {
                        e.field = Some(match e.field.take() {
                            Some(f) => format!("{prefix}.{f}"),
                            None => prefix.clone(),
                        });
                        e.at(line, raw.to_vec())
                    }),
            );
        }
    }
    out
}

fn parse_result(
    raw: &[u8],
    system: &str,
    observed_at: Option<jiff::Timestamp>,
    version: Option<&str>,
) -> Result<Option<Observation>, ElementError> {
    let r: SecretResult = from_element(raw)?;
    if r.is_secret == Some(false) {
        return Ok(None);
    }
    let kind = r.kind.0;
    let filename = r.filename.0;
    let confidence_bp = if r.is_verified || r.is_secret == Some(true) {
        10_000
    } else {
        match kind.as_str() {
            "Base64 High Entropy String" | "Hex High Entropy String" | "Secret Keyword" => 5_000,
            _ => 9_000,
        }
    };
    let location = match r.line_number {
        Some(n) => format!("{filename}:{n}"),
        None => filename.clone(),
    };
    Ok(Some(Observation {
        status: writ_core::finding::FindingStatus::Fail,
        format: SourceFormat::DetectSecrets,
        finding_type: "leaked_secret".into(),
        severity: if r.is_verified {
            Severity::Critical
        } else {
            Severity::High
        },
        confidence_bp,
        subject: SubjectRef {
            system: system.to_owned(),
            external_id: format!("sha1:{}", r.hashed_secret.0),
            kind_hint: Some(IdentityKind::Secret),
        },
        observed_at,
        title: format!("{kind} in {location}"),
        source_key: Some(format!("{filename}:{kind}:{}", r.hashed_secret.0)),
        controls: controls::controls_for("leaked_secret"),
        details: json!({
            "detector": kind,
            "file": filename,
            "line_number": r.line_number,
            "is_verified": r.is_verified,
            "detect_secrets_version": version,
        }),
    }))
}

/// Counts lines up to increasing offsets without rescanning.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: u64,
}

impl LineCounter {
    fn line_at(&mut self, doc: &[u8], offset: usize) -> u64 {
        if offset < self.offset {
            return line_of(doc, offset);
        }
        self.line += doc[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.offset = offset;
        self.line + 1
    }
}

fn line_of(doc: &[u8], offset: usize) -> u64 {
    doc[..offset.min(doc.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}
