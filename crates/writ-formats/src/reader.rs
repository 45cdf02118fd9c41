//! The streaming reader: one [`ParsedFinding`] (or one error) at a time from any `BufRead`.

use std::collections::VecDeque;
use std::io::{BufRead, Chain, Cursor, Read};

use serde::Serialize;
use writ_core::finding::SourceFormat;

use crate::common::ParseOptions;
use crate::detect::{DETECT_BYTES, detect_format};
use crate::error::{ElementError, ErrorKind, FindingError};
use crate::scan::{Element, ElementScanner, ScanItem};
use crate::{ParsedFinding, detect_secrets, gitleaks, native, ocsf};

/// Counts of what a reader has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Findings turned into observations (problems and passes).
    pub parsed: u64,
    /// Of those, passing checks (OCSF `PASS`): evidence that closes open cases, never a case
    /// of their own.
    pub passes: u64,
    /// Findings that are neither (Prowler `MANUAL`, audited false positives, passes about no
    /// identity).
    pub skipped: u64,
    /// Errors yielded (bad findings, and a fatal error if there was one).
    pub errors: u64,
}

/// A reader after format detection: the bytes read to detect, then the rest.
pub type Sniffed<R> = Chain<Cursor<Vec<u8>>, R>;

/// Where findings come from.
#[derive(Debug)]
enum Source<R> {
    /// Formats streamed element by element.
    Stream(ElementScanner<R>),
    /// Formats read as one document (detect-secrets), before reading.
    Document(Option<R>),
    /// A document already parsed.
    Parsed(VecDeque<detect_secrets::Item>),
}

/// Reads findings of one format from a [`BufRead`], one at a time.
///
/// Yields `Ok(ParsedFinding)` per finding and `Err(FindingError)` per bad finding; the stream
/// goes on after an error unless [`FindingError::is_fatal`], after which it ends. Memory use is
/// bounded by the largest finding kept ([`ParseOptions::max_finding_bytes`]), whatever the
/// number of findings; detect-secrets baselines are read whole (at most
/// [`ParseOptions::max_document_bytes`]).
#[derive(Debug)]
pub struct FindingReader<R> {
    format: SourceFormat,
    options: ParseOptions,
    source: Source<R>,
    report: Report,
}

impl<R: BufRead> FindingReader<R> {
    /// A reader of `format` over `reader`.
    pub fn new(reader: R, format: SourceFormat, options: ParseOptions) -> Self {
        let source = match format {
            SourceFormat::DetectSecrets => Source::Document(Some(reader)),
            _ => Source::Stream(ElementScanner::new(reader, options.max_finding_bytes)),
        };
        Self {
            format,
            options,
            source,
            report: Report::default(),
        }
    }

    /// The format being read.
    pub fn format(&self) -> SourceFormat {
        self.format
    }

    /// What has been read so far.
    pub fn report(&self) -> Report {
        self.report
    }

    fn next_item(&mut self) -> Option<Result<ParsedFinding, FindingError>> {
        loop {
            match &mut self.source {
                Source::Stream(scanner) => {
                    let item = match scanner.next_item() {
                        Ok(None) => return None,
                        Ok(Some(item)) => item,
                        Err(e) => return Some(Err(e)),
                    };
                    match item {
                        ScanItem::TooLarge { line, prefix, size } => {
                            let raw = if self.format == SourceFormat::Gitleaks {
                                Vec::new()
                            } else {
                                prefix
                            };
                            return Some(Err(FindingError {
                                kind: ErrorKind::TooLarge,
                                line,
                                field: None,
                                message: format!(
                                    "finding of {size} bytes is over the limit of {} bytes",
                                    self.options.max_finding_bytes
                                ),
                                raw,
                            }));
                        }
                        ScanItem::Element(element) => {
                            match parse_element(self.format, element, &self.options) {
                                Some(result) => return Some(result),
                                None => self.report.skipped += 1,
                            }
                        }
                    }
                }
                Source::Document(reader) => {
                    let reader = reader.take()?;
                    self.source = Source::Parsed(read_document(reader, &self.options).into());
                }
                Source::Parsed(items) => match items.pop_front()? {
                    Ok(None) => self.report.skipped += 1,
                    Ok(Some(finding)) => return Some(Ok(finding)),
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}

impl<R: BufRead> FindingReader<Sniffed<R>> {
    /// A reader over `reader` whose format is recognised from its first [`DETECT_BYTES`] bytes
    /// (see [`detect_format`]). Fails with [`ErrorKind::UnknownFormat`] (or [`ErrorKind::Io`]).
    pub fn detect(mut reader: R, options: ParseOptions) -> Result<Self, FindingError> {
        let mut prefix = Vec::with_capacity(DETECT_BYTES.min(8192));
        (&mut reader)
            .take(DETECT_BYTES as u64)
            .read_to_end(&mut prefix)
            .map_err(|e| FindingError::new(ErrorKind::Io, 1, format!("read failed: {e}")))?;
        let format = detect_format(&prefix).ok_or_else(|| {
            FindingError::new(
                ErrorKind::UnknownFormat,
                1,
                "not a format writ knows (native, OCSF, Prowler, detect-secrets, gitleaks); name the format explicitly",
            )
        })?;
        Ok(Self::new(
            Cursor::new(prefix).chain(reader),
            format,
            options,
        ))
    }
}

impl<R: BufRead> Iterator for FindingReader<R> {
    type Item = Result<ParsedFinding, FindingError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_item()?.map(|mut finding| {
            without_nul(&mut finding.observation);
            finding
        });
        match &item {
            Ok(finding) => {
                self.report.parsed += 1;
                if finding.observation.status == writ_core::finding::FindingStatus::Pass {
                    self.report.passes += 1;
                }
            }
            Err(_) => self.report.errors += 1,
        }
        Some(item)
    }
}

/// Replaces U+0000 in every text of a finding with U+FFFD. JSON allows NUL in strings; the
/// stores' text columns do not (PostgreSQL refuses it), and no scanner means anything by it.
/// The evidence keeps the bytes as received.
fn without_nul(observation: &mut writ_core::finding::Observation) {
    fn clean(text: &mut String) {
        if text.contains('\0') {
            *text = text.replace('\0', "\u{fffd}");
        }
    }
    fn clean_value(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => clean(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean_value),
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{fffd}"), v))
                        .collect();
                }
                map.values_mut().for_each(clean_value);
            }
            _ => {}
        }
    }
    clean(&mut observation.finding_type);
    clean(&mut observation.title);
    clean(&mut observation.subject.system);
    clean(&mut observation.subject.external_id);
    if let Some(key) = observation.source_key.as_mut() {
        clean(key);
    }
    observation.controls.iter_mut().for_each(clean);
    clean_value(&mut observation.details);
}

/// Parses one streamed element; `None` when the finding is skipped.
fn parse_element(
    format: SourceFormat,
    element: Element,
    options: &ParseOptions,
) -> Option<Result<ParsedFinding, FindingError>> {
    let Element { bytes, line } = element;
    let outcome: Result<Option<ParsedFinding>, ElementError> = match format {
        SourceFormat::Native => native::parse(&bytes).map(|observation| {
            Some(ParsedFinding {
                observation,
                evidence: Vec::new(),
                line,
                redacted_from: None,
            })
        }),
        SourceFormat::Ocsf | SourceFormat::Prowler => {
            let flavor = if format == SourceFormat::Prowler {
                ocsf::Flavor::Prowler
            } else {
                ocsf::Flavor::Generic
            };
            ocsf::parse(&bytes, flavor).map(|o| match o {
                ocsf::Outcome::Observation(observation) => Some(ParsedFinding {
                    observation: *observation,
                    evidence: Vec::new(),
                    line,
                    redacted_from: None,
                }),
                ocsf::Outcome::Skipped => None,
            })
        }
        SourceFormat::Gitleaks => gitleaks::parse(&bytes, options).map(|p| {
            let (evidence, redacted_from) = match p.redacted {
                Some((safe, digest)) => (safe, Some(digest)),
                None => (Vec::new(), None),
            };
            Some(ParsedFinding {
                observation: p.observation,
                evidence,
                line,
                redacted_from,
            })
        }),
        SourceFormat::DetectSecrets => {
            // A baseline is one document; streamed, each element is a whole baseline.
            return Some(Err(FindingError::new(
                ErrorKind::Invalid,
                line,
                "detect-secrets baselines are read as one document",
            )));
        }
    };
    match outcome {
        Ok(None) => None,
        Ok(Some(mut finding)) => {
            if finding.redacted_from.is_none() {
                finding.evidence = bytes;
            }
            Some(Ok(finding))
        }
        Err(e) => {
            if format == SourceFormat::Gitleaks {
                let (message, raw) = gitleaks::scrub_error(&bytes, e.message.clone());
                let e = ElementError { message, ..e };
                Some(Err(e.at(line, raw)))
            } else {
                Some(Err(e.at(line, bytes)))
            }
        }
    }
}

/// Reads a whole detect-secrets baseline (bounded) and parses it.
fn read_document<R: BufRead>(reader: R, options: &ParseOptions) -> Vec<detect_secrets::Item> {
    let limit = options.max_document_bytes;
    let mut doc = Vec::new();
    if let Err(e) = reader.take(limit as u64 + 1).read_to_end(&mut doc) {
        return vec![Err(FindingError::new(
            ErrorKind::Io,
            1,
            format!("read failed: {e}"),
        ))];
    }
    if doc.len() > limit {
        return vec![Err(FindingError::new(
            ErrorKind::TooLarge,
            1,
            format!("document is over the limit of {limit} bytes"),
        ))];
    }
    let body = doc.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&doc);
    detect_secrets::parse_document(body, options)
}
