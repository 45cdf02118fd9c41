//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use writ_formats::{FindingError, FindingReader, ParseOptions, ParsedFinding, Report};

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture files (not directories, not the README), sorted.
pub fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "ndjson"))
        .collect();
    files.sort();
    files
}

/// Reads everything from `bytes`, detecting the format.
pub fn read_all(
    bytes: &[u8],
    options: ParseOptions,
) -> (Vec<Result<ParsedFinding, FindingError>>, Report) {
    let mut reader = FindingReader::detect(bytes, options).unwrap();
    let items: Vec<_> = reader.by_ref().collect();
    (items, reader.report())
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
