//! The element scanner: finds the byte boundaries of each top-level finding in a stream.
//!
//! It understands three layouts, chosen by the first non-blank byte of the input:
//!
//! - `[` — a JSON array; each element is one finding;
//! - `{` — one object, or a sequence of objects separated by blanks (NDJSON);
//! - anything else is an error.
//!
//! The scanner does not validate JSON inside an element: it tracks only strings, escapes and
//! bracket nesting, which is enough to know where each element starts and ends. The element's
//! bytes are then handed, unchanged, to serde for parsing and kept as evidence. Memory is bounded
//! by the largest element kept (`max_element_bytes`); an element over that size is skipped to
//! its end without being stored and reported as [`ScanItem::TooLarge`].

use std::io::BufRead;

use crate::error::{ErrorKind, FindingError};

/// One element found by the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element's bytes, exactly as in the input.
    pub bytes: Vec<u8>,
    /// The 1-based line on which the element starts.
    pub line: u64,
}

/// What the scanner found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// A whole element.
    Element(Element),
    /// An element larger than the limit; its bytes were skipped, not kept.
    TooLarge {
        /// The 1-based line on which the element starts.
        line: u64,
        /// The element's first bytes (at most 256), to help find it.
        prefix: Vec<u8>,
        /// How many bytes the element has.
        size: u64,
    },
}

/// The layout of the input, known once its first non-blank byte is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Not started yet.
    Start,
    /// Inside a top-level array, before the first element (`[` seen).
    ArrayFirst,
    /// Inside a top-level array, after an element.
    ArrayAfter,
    /// A sequence of top-level values (a single object or NDJSON).
    Sequence,
    /// The input is finished (or a fatal error was reported).
    Done,
}

/// How many bytes of an oversized element are kept for the error report.
const PREFIX_KEPT: usize = 256;

/// Finds top-level elements in a [`BufRead`] one at a time, in constant memory.
#[derive(Debug)]
pub struct ElementScanner<R> {
    reader: R,
    max_element_bytes: usize,
    /// The 1-based line of the next unread byte.
    line: u64,
    layout: Layout,
    /// Whether a byte-order mark may still be skipped.
    at_start: bool,
}

/// The state of a scan through one element.
#[derive(Debug, Default)]
pub(crate) struct ElementState {
    /// Open brackets (`{` or `[`), innermost last.
    stack: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// A top-level scalar (number, literal) is being read.
    scalar: bool,
    size: u64,
    /// Newlines seen in the element so far.
    newlines: u64,
    /// `newlines` when the current string opened.
    string_newlines: u64,
}

impl<R: BufRead> ElementScanner<R> {
    /// A scanner over `reader` that keeps elements of at most `max_element_bytes` bytes.
    pub fn new(reader: R, max_element_bytes: usize) -> Self {
        Self {
            reader,
            max_element_bytes,
            line: 1,
            layout: Layout::Start,
            at_start: true,
        }
    }

    /// The 1-based line of the next unread byte.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next element, `Ok(None)` at the end of the input, or a fatal error after which the
    /// scanner yields nothing more.
    pub fn next_item(&mut self) -> Result<Option<ScanItem>, FindingError> {
        let result = self.step();
        if result.is_err() {
            self.layout = Layout::Done;
        }
        result
    }

    fn step(&mut self) -> Result<Option<ScanItem>, FindingError> {
        loop {
            match self.layout {
                Layout::Done => return Ok(None),
                Layout::Start => match self.peek_non_blank()? {
                    None => {
                        self.layout = Layout::Done;
                        return Ok(None);
                    }
                    Some(b'[') => {
                        self.reader.consume(1);
                        self.layout = Layout::ArrayFirst;
                    }
                    Some(b'{') => self.layout = Layout::Sequence,
                    Some(other) => {
                        return Err(self.malformed(format!(
                            "expected a JSON array `[` or object `{{`, found {}",
                            describe(other)
                        )));
                    }
                },
                Layout::ArrayFirst => match self.peek_non_blank()? {
                    None => return Err(self.malformed("unterminated array: input ended")),
                    Some(b']') => {
                        self.reader.consume(1);
                        self.finish_trailing()?;
                        return Ok(None);
                    }
                    Some(_) => {
                        self.layout = Layout::ArrayAfter;
                        return self.read_element().map(Some);
                    }
                },
                Layout::ArrayAfter => match self.peek_non_blank()? {
                    None => return Err(self.malformed("unterminated array: input ended")),
                    Some(b']') => {
                        self.reader.consume(1);
                        self.finish_trailing()?;
                        return Ok(None);
                    }
                    Some(b',') => {
                        self.reader.consume(1);
                        match self.peek_non_blank()? {
                            None => {
                                return Err(self.malformed("unterminated array: input ended"));
                            }
                            Some(b']') => {
                                return Err(self.malformed("trailing comma before `]`"));
                            }
                            Some(_) => return self.read_element().map(Some),
                        }
                    }
                    Some(other) => {
                        return Err(self.malformed(format!(
                            "expected `,` or `]` after an array element, found {}",
                            describe(other)
                        )));
                    }
                },
                Layout::Sequence => match self.peek_non_blank()? {
                    None => {
                        self.layout = Layout::Done;
                        return Ok(None);
                    }
                    Some(b'{') => return self.read_element().map(Some),
                    Some(other) => {
                        return Err(self.malformed(format!(
                            "expected `{{` to start the next object, found {}",
                            describe(other)
                        )));
                    }
                },
            }
        }
    }

    /// After the closing `]`: only blanks may follow.
    fn finish_trailing(&mut self) -> Result<(), FindingError> {
        self.layout = Layout::Done;
        match self.peek_non_blank()? {
            None => Ok(()),
            Some(other) => Err(self.malformed(format!(
                "unexpected {} after the end of the array",
                describe(other)
            ))),
        }
    }

    fn malformed(&self, message: impl Into<String>) -> FindingError {
        FindingError::new(ErrorKind::Malformed, self.line, message)
    }

    /// Skips blanks (and a leading byte-order mark), counting lines; returns the next byte
    /// without consuming it, or `None` at the end of the input.
    fn peek_non_blank(&mut self) -> Result<Option<u8>, FindingError> {
        loop {
            let buf = fill(&mut self.reader, self.line)?;
            if buf.is_empty() {
                return Ok(None);
            }
            if self.at_start {
                self.at_start = false;
                if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    self.reader.consume(3);
                    continue;
                }
            }
            let mut newlines = 0u64;
            let mut found = None;
            let mut used = 0;
            for &b in buf {
                match b {
                    b'\n' => newlines += 1,
                    b' ' | b'\t' | b'\r' => {}
                    other => {
                        found = Some(other);
                        break;
                    }
                }
                used += 1;
            }
            self.line += newlines;
            self.reader.consume(used);
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// Reads one element starting at the next byte (known not to be blank).
    fn read_element(&mut self) -> Result<ScanItem, FindingError> {
        let start_line = self.line;
        let max = self.max_element_bytes;
        let mut kept: Vec<u8> = Vec::new();
        let mut too_large = false;
        let mut state = ElementState::default();
        loop {
            let buf = fill(&mut self.reader, self.line)?;
            if buf.is_empty() {
                return Err(self.eof_in_element(start_line, &state));
            }
            let (used, done) = scan_chunk(&mut state, buf).map_err(|(offset, message)| {
                let extra = count_newlines(&buf[..offset]);
                FindingError::new(ErrorKind::Malformed, self.line + extra, message)
            })?;
            let chunk = &buf[..used];
            if !too_large {
                if kept.len() + chunk.len() > max {
                    too_large = true;
                    let room = PREFIX_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
                    kept.truncate(PREFIX_KEPT);
                    kept.shrink_to_fit();
                } else {
                    kept.extend_from_slice(chunk);
                }
            }
            self.line = start_line + state.newlines;
            self.reader.consume(used);
            if done {
                return Ok(if too_large {
                    ScanItem::TooLarge {
                        line: start_line,
                        prefix: kept,
                        size: state.size,
                    }
                } else {
                    ScanItem::Element(Element {
                        bytes: kept,
                        line: start_line,
                    })
                });
            }
        }
    }

    fn eof_in_element(&self, start_line: u64, state: &ElementState) -> FindingError {
        if state.scalar {
            // A bare scalar at the very end of a sequence cannot happen (sequences hold objects);
            // inside an array the closing `]` is missing.
            return self.malformed("unterminated array: input ended");
        }
        if state.in_string {
            // An unclosed string flips what is string and what is not for the rest of the input,
            // so the element's start is the reliable place to name.
            return FindingError::new(
                ErrorKind::Malformed,
                start_line,
                format!(
                    "the element starting on line {start_line} never ends: the input ended inside a string opened on line {} (an unterminated string at or after line {start_line})",
                    start_line + state.string_newlines
                ),
            );
        }
        FindingError::new(
            ErrorKind::Malformed,
            start_line,
            format!(
                "unclosed element: it starts on line {start_line} and the input ended at line {}",
                self.line
            ),
        )
    }
}

/// The reader's buffer, retrying interrupted reads; an I/O error names `line`.
fn fill<R: BufRead>(reader: &mut R, line: u64) -> Result<&[u8], FindingError> {
    loop {
        match reader.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(FindingError::new(
                    ErrorKind::Io,
                    line,
                    format!("read failed: {e}"),
                ));
            }
        }
    }
    reader
        .fill_buf()
        .map_err(|e| FindingError::new(ErrorKind::Io, line, format!("read failed: {e}")))
}

/// Scans `buf` as a continuation of the element in `state`. Returns how many bytes belong to the
/// element and whether it ended, or the offset and text of a structural error.
pub(crate) fn scan_chunk(
    state: &mut ElementState,
    buf: &[u8],
) -> Result<(usize, bool), (usize, String)> {
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            state.newlines += 1;
        }
        if state.size == 0 && state.stack.is_empty() {
            // First byte of the element.
            state.size = 1;
            match b {
                b'{' | b'[' => state.stack.push(b),
                b'"' => {
                    state.in_string = true;
                    state.string_newlines = state.newlines;
                }
                _ => state.scalar = true,
            }
            if state.scalar && is_delimiter(b) {
                return Err((i, format!("expected a value, found {}", describe(b))));
            }
            continue;
        }
        if state.scalar {
            if is_delimiter(b) {
                return Ok((i, true));
            }
            state.size += 1;
            continue;
        }
        state.size += 1;
        if state.in_string {
            if state.escaped {
                state.escaped = false;
            } else if b == b'\\' {
                state.escaped = true;
            } else if b == b'"' {
                state.in_string = false;
                if state.stack.is_empty() {
                    return Ok((i + 1, true));
                }
            }
            continue;
        }
        match b {
            b'"' => {
                state.in_string = true;
                state.string_newlines = state.newlines;
            }
            b'{' | b'[' => state.stack.push(b),
            b'}' | b']' => {
                let open = if b == b'}' { b'{' } else { b'[' };
                match state.stack.pop() {
                    Some(o) if o == open => {
                        if state.stack.is_empty() {
                            return Ok((i + 1, true));
                        }
                    }
                    _ => {
                        return Err((
                            i,
                            format!("mismatched `{}`: element boundaries are lost", b as char),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok((buf.len(), false))
}

/// The length of the JSON value at the start of `bytes` (which must not start with a blank),
/// judged by strings and nesting only; `None` if it does not end within `bytes`.
pub(crate) fn value_len(bytes: &[u8]) -> Option<usize> {
    let mut state = ElementState::default();
    match scan_chunk(&mut state, bytes) {
        Ok((used, true)) => Some(used),
        // a scalar that runs to the end of the input ends there
        Ok((used, false)) if state.scalar => Some(used),
        _ => None,
    }
}

/// Bytes that end a bare scalar.
fn is_delimiter(b: u8) -> bool {
    matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A byte, shown for an error message.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Every element of `input` that fits in `max_element_bytes` (oversized ones are left out), or
/// the first fatal error.
pub fn element_spans(input: &[u8], max_element_bytes: usize) -> Result<Vec<Element>, FindingError> {
    let mut scanner = ElementScanner::new(input, max_element_bytes);
    let mut out = Vec::new();
    while let Some(item) = scanner.next_item()? {
        if let ScanItem::Element(e) = item {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(input: &str) -> Vec<(String, u64)> {
        element_spans(input.as_bytes(), 1 << 20)
            .unwrap()
            .into_iter()
            .map(|e| (String::from_utf8(e.bytes).unwrap(), e.line))
            .collect()
    }

    #[test]
    fn splits_an_array() {
        let got = elements("[\n {\"a\": \"x]}\\\"\"},\n  {\"b\": [1, {\"c\": []}]}\n, 3, \"s\"]\n");
        assert_eq!(
            got,
            vec![
                ("{\"a\": \"x]}\\\"\"}".to_owned(), 2),
                ("{\"b\": [1, {\"c\": []}]}".to_owned(), 3),
                ("3".to_owned(), 4),
                ("\"s\"".to_owned(), 4),
            ]
        );
    }

    #[test]
    fn splits_ndjson_and_single_objects() {
        assert_eq!(
            elements("{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}"),
            vec![
                ("{\"a\":1}".to_owned(), 1),
                ("{\"b\":2}".to_owned(), 2),
                ("{\"c\":3}".to_owned(), 4),
            ]
        );
        assert_eq!(
            elements("\u{feff}\n{\n\"a\": 1\n}\n"),
            vec![("{\n\"a\": 1\n}".to_owned(), 2)]
        );
        assert!(elements("").is_empty());
        assert!(elements(" [ ] ").is_empty());
    }

    #[test]
    fn reports_structure_errors_with_lines() {
        let err = element_spans(b"[{\"a\":1}\n{\"b\":2}]", 100).unwrap_err();
        assert_eq!((err.kind, err.line), (ErrorKind::Malformed, 2));
        let err = element_spans(b"[{\"a\":1},\n{\"b\":\"2}]\n", 100).unwrap_err();
        assert_eq!(err.line, 2);
        let err = element_spans(b"[\n{\"a\":[1}]", 100).unwrap_err();
        assert_eq!(err.line, 2);
        let err = element_spans(b"[{\"a\":1},]", 100).unwrap_err();
        assert!(err.message.contains("trailing comma"));
        let err = element_spans(b"[{}] x", 100).unwrap_err();
        assert!(err.message.contains("after the end"));
        let err = element_spans(b"nope", 100).unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn skips_oversized_elements_and_goes_on() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(1000));
        let input = format!("[{{\"a\":1}},\n{big},\n{{\"b\":2}}]");
        let mut s = ElementScanner::new(input.as_bytes(), 100);
        assert!(matches!(s.next_item().unwrap(), Some(ScanItem::Element(_))));
        match s.next_item().unwrap() {
            Some(ScanItem::TooLarge { line, prefix, size }) => {
                assert_eq!(line, 2);
                assert_eq!(size, big.len() as u64);
                assert!(prefix.len() <= PREFIX_KEPT);
            }
            other => panic!("{other:?}"),
        }
        match s.next_item().unwrap() {
            Some(ScanItem::Element(e)) => {
                assert_eq!((e.bytes.as_slice(), e.line), (&b"{\"b\":2}"[..], 3))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.next_item().unwrap(), None);
    }
}
