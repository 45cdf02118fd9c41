//! Typed errors: why a bundle was refused, and why a decision could not be made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem found while loading a bundle, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BundleIssue {
    /// The bundle file the problem is in, relative to the bundle directory (`.` for the
    /// directory itself).
    pub file: String,
    /// 1-based line, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl BundleIssue {
    /// An issue about a whole file (no position).
    pub fn in_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for BundleIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A bundle was refused as a whole. Lists every problem found, sorted by file and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy bundle refused ({} problem(s)):\n{}", .issues.len(), IssueList(.issues))]
pub struct BundleError {
    /// Every problem found; never empty.
    pub issues: Vec<BundleIssue>,
}

struct IssueList<'a>(&'a [BundleIssue]);

impl fmt::Display for IssueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {issue}")?;
        }
        Ok(())
    }
}

/// Why a decision, replay or test run could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The action is not one writ knows (`disable`, `revoke`, ...).
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// The bundle's schema does not declare the Cedar action asked about.
    #[error("the bundle's schema does not declare action {0}")]
    UndeclaredAction(String),
    /// The recorded principal is not a valid Cedar entity uid.
    #[error("invalid principal {principal:?}: {message}")]
    InvalidPrincipal {
        /// The text given.
        principal: String,
        /// Cedar's complaint.
        message: String,
    },
    /// The entities do not parse or do not conform to the bundle's schema.
    #[error("entities rejected: {0}")]
    Entities(String),
    /// The context does not parse or does not conform to the bundle's schema.
    #[error("context rejected: {0}")]
    Context(String),
    /// The request does not conform to the bundle's schema.
    #[error("request rejected: {0}")]
    Request(String),
    /// The confidence is above 10000 ten-thousandths.
    #[error("confidence {0} is out of range (0..=10000 ten-thousandths)")]
    Confidence(u16),
    /// The evaluation record lacks something a replay needs.
    #[error("evaluation record is incomplete: {0}")]
    Evaluation(String),
    /// A file or directory could not be read (only `run_tests`).
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The operating system's complaint.
        message: String,
    },
}
