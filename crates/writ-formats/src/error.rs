//! Errors: every problem names where in the input it is.

use std::fmt;

/// What kind of problem a [`FindingError`] is, and whether the stream goes on after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The element is not valid JSON (its boundaries were still known); the stream goes on.
    Syntax,
    /// The element is valid JSON but not a valid finding of its format (wrong type, missing or
    /// unknown field, value out of range); the stream goes on.
    Invalid,
    /// The element is larger than the configured limit; the stream goes on.
    TooLarge,
    /// The input's structure is broken so that element boundaries are lost; the stream stops.
    Malformed,
    /// Reading the input failed; the stream stops.
    Io,
    /// The input's format could not be recognised; nothing is read.
    UnknownFormat,
}

impl ErrorKind {
    /// Whether the stream stops after an error of this kind.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorKind::Malformed | ErrorKind::Io | ErrorKind::UnknownFormat
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::Invalid => "invalid finding",
            ErrorKind::TooLarge => "finding too large",
            ErrorKind::Malformed => "malformed input",
            ErrorKind::Io => "read error",
            ErrorKind::UnknownFormat => "unknown format",
        })
    }
}

/// A problem with one finding, or with the input as a whole (see [`ErrorKind::is_fatal`]).
///
/// Displays as `line N, field a.b[0]: <kind>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {kind}: {message}", field.as_deref().map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct FindingError {
    /// What kind of problem.
    pub kind: ErrorKind,
    /// The 1-based line of the problem (where serde names it), else of the element's start.
    pub line: u64,
    /// The path of the offending field inside the finding (`subject.external_id`,
    /// `resources[0].uid`), when known.
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
    /// The element's bytes (for a gitleaks record, with secrets removed; for an oversized
    /// element, only its first bytes; empty for errors about the input as a whole).
    pub raw: Vec<u8>,
}

impl FindingError {
    /// An error with no field and no raw bytes.
    pub fn new(kind: ErrorKind, line: u64, message: impl Into<String>) -> Self {
        Self {
            kind,
            line,
            field: None,
            message: message.into(),
            raw: Vec::new(),
        }
    }

    /// Whether the stream stops after this error.
    pub fn is_fatal(&self) -> bool {
        self.kind.is_fatal()
    }
}

/// A problem inside one element, with its position relative to the element's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElementError {
    pub kind: ErrorKind,
    /// 1-based line within the element, when known.
    pub line_in_element: Option<u64>,
    pub field: Option<String>,
    pub message: String,
}

impl ElementError {
    /// A validation error about `field`, found after parsing.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            line_in_element: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// Places the error in the input, given the element's start line and bytes.
    pub fn at(self, element_line: u64, raw: Vec<u8>) -> FindingError {
        FindingError {
            kind: self.kind,
            line: element_line + self.line_in_element.map_or(0, |l| l.saturating_sub(1)),
            field: self.field,
            message: self.message,
            raw,
        }
    }
}

/// Deserialises `T` from one element's bytes, naming the field path and line of any problem.
pub(crate) fn from_element<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<T, ElementError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&inner, path)
    })?;
    de.end().map_err(|e| json_error(&e, ".".to_owned()))?;
    Ok(value)
}

fn json_error(e: &serde_json::Error, path: String) -> ElementError {
    let kind = match e.classify() {
        serde_json::error::Category::Data => ErrorKind::Invalid,
        _ => ErrorKind::Syntax,
    };
    let field = if path == "." || path == "?" || kind == ErrorKind::Syntax {
        None
    } else {
        Some(path)
    };
    let mut message = e.to_string();
    // serde_json appends " at line L column C"; the line is reported separately.
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    ElementError {
        kind,
        line_in_element: (e.line() > 0).then_some(e.line() as u64),
        field,
        message,
    }
}
