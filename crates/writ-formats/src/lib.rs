//! Scanner output → writ observations.
//!
//! `writ-formats` reads the findings of secrets and posture scanners — writ's own native JSON,
//! OCSF Detection Findings, Prowler's OCSF output, detect-secrets baselines and gitleaks reports —
//! and turns each into a [`writ_core::finding::Observation`], together with the exact bytes of
//! that finding (the evidence writ stores; for gitleaks, a redacted form) and the line it starts
//! on. Anything malformed is reported with its line and, where known, its field path.
//!
//! Reading streams: [`FindingReader`] takes any [`std::io::BufRead`] and yields one finding at a
//! time, keeping in memory only the finding at hand (at most
//! [`ParseOptions::max_finding_bytes`]). One bad finding yields an error and the stream goes on.
//!
//! ```
//! use writ_formats::{FindingReader, ParseOptions};
//! use writ_core::finding::SourceFormat;
//!
//! let input = br#"[{"finding_type": "iam_user_accesskey_unused", "severity": "high",
//!   "confidence": 0.9, "subject": {"system": "aws:123456789012",
//!   "external_id": "svc-etl/AccessKey1", "kind": "api_key"}, "title": "unused key"}]"#;
//! let mut reader = FindingReader::new(&input[..], SourceFormat::Native, ParseOptions::default());
//! let finding = reader.next().unwrap().unwrap();
//! assert_eq!(finding.observation.confidence_bp, 9000);
//! assert_eq!(finding.observation.controls, ["NHI-01", "NHI-07"]);
//! assert!(reader.next().is_none());
//! assert_eq!(reader.report().parsed, 1);
//! ```

#![forbid(unsafe_code)]

mod common;
pub mod controls;
mod detect;
mod detect_secrets;
mod error;
mod gitleaks;
mod native;
mod ocsf;
mod reader;
pub mod scan;
mod skim;

pub use common::{
    DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_FINDING_BYTES, DEFAULT_SECRETS_SYSTEM, ParseOptions,
};
pub use detect::{DETECT_BYTES, detect_format};
pub use error::{ErrorKind, FindingError};
pub use gitleaks::REDACTED;
pub use ocsf::DETECTION_FINDING_CLASS_UID;
pub use reader::{FindingReader, Report, Sniffed};

use writ_core::Sha256Digest;
use writ_core::finding::Observation;

/// One finding read from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFinding {
    /// What the finding says, normalised.
    pub observation: Observation,
    /// The finding's bytes exactly as in the input — or, for a gitleaks record that held a
    /// plaintext secret, the record with the secret replaced by `"REDACTED"`.
    pub evidence: Vec<u8>,
    /// The 1-based line of the input on which the finding starts.
    pub line: u64,
    /// When the evidence is a redacted form: the SHA-256 of the original bytes.
    pub redacted_from: Option<Sha256Digest>,
}
