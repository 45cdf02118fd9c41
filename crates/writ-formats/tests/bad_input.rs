//! Bad input: every problem names its line (and field), and one bad finding loses no other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use writ_core::finding::SourceFormat;
use writ_formats::{
    ErrorKind, FindingError, FindingReader, ParseOptions, ParsedFinding, Report, detect_format,
};

fn native(i: u32, external_id: &str) -> String {
    format!(
        r#"{{"finding_type": "iam_user_accesskey_unused", "severity": "high", "confidence": 0.9,
  "subject": {{"system": "aws:123456789012", "external_id": "{external_id}"}},
  "title": "finding {i}"}}"#
    )
}

fn read(
    input: &str,
    format: SourceFormat,
    options: ParseOptions,
) -> (Vec<Result<ParsedFinding, FindingError>>, Report) {
    let mut reader = FindingReader::new(input.as_bytes(), format, options);
    let items = reader.by_ref().collect();
    (items, reader.report())
}

fn titles(items: &[Result<ParsedFinding, FindingError>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(|f| f.observation.title.clone())
        .collect()
}

fn errors(items: &[Result<ParsedFinding, FindingError>]) -> Vec<&FindingError> {
    items.iter().filter_map(|i| i.as_ref().err()).collect()
}

#[test]
fn malformed_json_inside_one_element_names_its_line_and_loses_nothing_else() {
    // element 2 (lines 5-7) lacks a colon on line 6, but its brackets balance
    let input = format!(
        "[\n{},\n{{\"finding_type\": \"x\",\n  \"severity\" \"high\",\n  \"title\": \"broken\"}},\n{}\n]\n",
        native(1, "a"),
        native(3, "c")
    );
    let (items, report) = read(&input, SourceFormat::Native, ParseOptions::default());
    assert_eq!(titles(&items), ["finding 1", "finding 3"]);
    let errs = errors(&items);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, ErrorKind::Syntax);
    assert_eq!(errs[0].line, 6, "{}", errs[0]);
    assert!(
        errs[0].to_string().starts_with("line 6: syntax error"),
        "{}",
        errs[0]
    );
    assert!(!errs[0].raw.is_empty());
    assert_eq!((report.parsed, report.skipped, report.errors), (2, 0, 1));
}

#[test]
fn broken_structure_stops_the_stream_naming_the_line() {
    // an unterminated string on line 6 (in the element from line 5) swallows the rest
    let input = format!(
        "[\n{},\n{{\"finding_type\": \"x\",\n \"title\": \"no end}},\n{}\n]\n",
        native(1, "a"),
        native(3, "c")
    );
    let (items, report) = read(&input, SourceFormat::Native, ParseOptions::default());
    assert_eq!(titles(&items), ["finding 1"]);
    let errs = errors(&items);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, ErrorKind::Malformed);
    assert!(errs[0].is_fatal());
    assert_eq!(errs[0].line, 5, "{}", errs[0]);
    assert!(errs[0].message.contains("never ends"), "{}", errs[0]);
    assert_eq!(report.errors, 1);

    // a missing comma between elements
    let input = format!("[\n{}\n{}]", native(1, "a"), native(2, "b"));
    let (items, _) = read(&input, SourceFormat::Native, ParseOptions::default());
    assert_eq!(titles(&items), ["finding 1"]);
    let e = errors(&items)[0];
    assert_eq!((e.kind, e.line), (ErrorKind::Malformed, 5), "{e}");

    // mismatched brackets
    let input = "[\n{\"a\": [1, 2}\n]";
    let (items, _) = read(input, SourceFormat::Native, ParseOptions::default());
    let e = errors(&items)[0];
    assert_eq!((e.kind, e.line), (ErrorKind::Malformed, 2), "{e}");
}

#[test]
fn wrong_field_type_names_line_and_path() {
    let bad = r#"{"finding_type": "iam_user_accesskey_unused", "severity": "high", "confidence": 0.9,
  "subject": {"system": "aws:123456789012",
              "external_id": 12345},
  "title": "bad"}"#;
    let input = format!("[{},\n{bad},\n{}]", native(1, "a"), native(3, "c"));
    let (items, _) = read(&input, SourceFormat::Native, ParseOptions::default());
    assert_eq!(titles(&items), ["finding 1", "finding 3"]);
    let e = errors(&items)[0];
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.field.as_deref(), Some("subject.external_id"));
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
    assert_eq!(
        e.to_string(),
        "line 6, field subject.external_id: invalid finding: invalid type: integer `12345`, expected a string"
    );
    assert_eq!(e.raw, bad.as_bytes());
}

#[test]
fn unknown_and_invalid_native_fields_are_named() {
    let cases = [
        (r#""severty": "high""#, "severty", "unknown field"),
        (r#""controls": ["NHI-11"]"#, "controls[0]", "OWASP"),
        (r#""observed_at": "last tuesday""#, "observed_at", ""),
        (r#""details": [1]"#, "details", "invalid type"),
    ];
    for (extra, field, words) in cases {
        let input = format!(
            r#"{{"finding_type": "x", "severity": "low", "confidence": 0.5,
"subject": {{"system": "s", "external_id": "e"}}, "title": "t",
{extra}}}"#
        );
        let (items, _) = read(&input, SourceFormat::Native, ParseOptions::default());
        let e = errors(&items)[0];
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains(words), "{e}");
    }
    let input = r#"{"finding_type": "x", "severity": "urgent", "confidence": 0.5, "subject": {"system": "s", "external_id": "e", "kin": "api_key"}, "title": "t"}"#;
    let (items, _) = read(input, SourceFormat::Native, ParseOptions::default());
    assert_eq!(errors(&items)[0].field.as_deref(), Some("severity"));
    let input = r#"{"finding_type": "x", "severity": "low", "confidence": 0.12345, "subject": {"system": "s", "external_id": "e"}, "title": "t"}"#;
    let (items, _) = read(input, SourceFormat::Native, ParseOptions::default());
    let e = errors(&items)[0];
    assert_eq!(e.field.as_deref(), Some("confidence"));
    assert!(e.message.contains("4 decimal places"), "{e}");
    let input = r#"{"finding_type": "x", "severity": "low", "confidence": 0.5, "subject": {"system": "s", "external_id": "e", "kin": "api_key"}, "title": "t"}"#;
    let (items, _) = read(input, SourceFormat::Native, ParseOptions::default());
    let e = errors(&items)[0];
    assert_eq!(e.field.as_deref(), Some("subject.kin"), "{e}");
    assert!(e.message.contains("unknown field `kin`"), "{e}");
}

#[test]
fn oversized_finding_is_an_error_naming_its_line_and_the_stream_goes_on() {
    let big = native(2, &"x".repeat(5000));
    let input = format!("[\n{},\n{big},\n{}\n]", native(1, "a"), native(3, "c"));
    let options = ParseOptions {
        max_finding_bytes: 1024,
        ..ParseOptions::default()
    };
    let (items, report) = read(&input, SourceFormat::Native, options);
    assert_eq!(titles(&items), ["finding 1", "finding 3"]);
    let e = errors(&items)[0];
    assert_eq!((e.kind, e.line), (ErrorKind::TooLarge, 5), "{e}");
    assert!(!e.is_fatal());
    assert!(e.message.contains("over the limit of 1024 bytes"), "{e}");
    assert!(e.raw.len() <= 256);
    assert_eq!((report.parsed, report.errors), (2, 1));
}

#[test]
fn unknown_formats_are_not_guessed() {
    assert_eq!(detect_format(b"id,severity\n1,high\n"), None);
    assert_eq!(detect_format(br#"[{"id": 1, "severity": "high"}]"#), None);
    assert_eq!(
        detect_format(br#"{"class_uid": 3001, "finding_info": {}}"#),
        None
    );
    assert_eq!(detect_format(b""), None);
    let e = FindingReader::detect(&b"<xml/>"[..], ParseOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnknownFormat);
    assert_eq!(e.line, 1);
}

#[test]
fn ndjson_and_single_objects_are_read() {
    let input = format!(
        "{}\n{}\n",
        native(1, "a").replace('\n', " "),
        native(2, "b").replace('\n', " ")
    );
    let (items, _) = read(&input, SourceFormat::Native, ParseOptions::default());
    let lines: Vec<u64> = items.iter().map(|i| i.as_ref().unwrap().line).collect();
    assert_eq!(lines, [1, 2]);
    let (items, _) = read(
        &native(7, "z"),
        SourceFormat::Native,
        ParseOptions::default(),
    );
    assert_eq!(titles(&items), ["finding 7"]);
}

#[test]
fn bad_ocsf_and_prowler_findings_name_their_fields() {
    let input = r#"[
{"class_uid": 2004, "finding_info": {"uid": "a"}, "severity_id": "high", "resources": [{"uid": "r"}], "cloud": {"provider": "aws", "account": {"uid": "1"}}},
{"class_uid": 2004, "finding_info": {"uid": "b"}, "severity_id": 3, "resources": [], "cloud": {"provider": "aws", "account": {"uid": "1"}}},
{"class_uid": 2004, "finding_info": {"uid": "c"}, "severity_id": 3, "resources": [{"uid": 7}], "cloud": {"provider": "aws"}},
{"class_uid": 2003, "finding_info": {"uid": "d"}},
{"class_uid": 2004, "finding_info": {"uid": "e", "title": "ok"}, "severity_id": 2, "resources": [{"uid": "r"}], "cloud": {"provider": "aws", "account": {"uid": "1"}}}
]"#;
    let (items, _) = read(input, SourceFormat::Ocsf, ParseOptions::default());
    let got: Vec<(u64, Option<&str>)> = errors(&items)
        .iter()
        .map(|e| (e.line, e.field.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (2, Some("severity_id")),
            (3, Some("resources")),
            (4, Some("resources[0].uid")),
            (5, Some("class_uid")),
        ]
    );
    assert_eq!(titles(&items), ["ok"]);

    // Prowler: a key-slot check whose resource is not a slot
    let input = r#"[{"class_uid": 2004, "metadata": {"event_code": "iam_user_accesskey_unused", "product": {"name": "Prowler"}}, "finding_info": {"uid": "x"}, "severity_id": 3, "status_code": "FAIL", "resources": [{"name": "svc-etl", "uid": "arn:aws:iam::1:user/svc-etl"}], "cloud": {"provider": "aws", "account": {"uid": "1"}}}]"#;
    let (items, _) = read(input, SourceFormat::Prowler, ParseOptions::default());
    assert_eq!(
        errors(&items)[0].field.as_deref(),
        Some("resources[0].name")
    );
}

#[test]
fn bad_detect_secrets_entries_name_their_line_and_path() {
    let input = r#"{
  "version": "1.5.0",
  "results": {
    "a.env": [
      {"type": "Secret Keyword", "filename": "a.env", "hashed_secret": "not-a-sha1", "is_verified": false, "line_number": 2},
      {"type": "Secret Keyword", "filename": "a.env", "hashed_secret": "bc19169decde7044020c657f889552b749fc8bf3", "is_verified": false, "line_number": 3},
      {"type": "Secret Keyword", "filename": "a.env", "hashed_secret": "bc19169decde7044020c657f889552b749fc8bf4", "is_secret": false}
    ],
    "b.txt": [
      {"type": "Private Key", "filename": "b.txt",
       "hashed_secret": "1348b145fa1a555461c1b790a2f66614781091e9", "is_verified": "no"}
    ]
  },
  "generated_at": "2026-11-23T15:43:21Z"
}"#;
    let (items, report) = read(input, SourceFormat::DetectSecrets, ParseOptions::default());
    assert_eq!((report.parsed, report.skipped, report.errors), (1, 1, 2));
    let errs = errors(&items);
    assert_eq!(errs[0].line, 5);
    assert_eq!(
        errs[0].field.as_deref(),
        Some("results.a.env[0].hashed_secret")
    );
    assert_eq!(errs[1].line, 11, "{}", errs[1]);
    assert_eq!(
        errs[1].field.as_deref(),
        Some("results.b.txt[0].is_verified")
    );
    let ok = items.iter().find_map(|i| i.as_ref().ok()).unwrap();
    assert_eq!(ok.line, 6);
    assert_eq!(ok.observation.subject.system, "git:workspace");

    // not JSON at all: one error naming the line, nothing else
    let (items, _) = read(
        "{\n\"results\": {\n}}}",
        SourceFormat::DetectSecrets,
        ParseOptions::default(),
    );
    assert_eq!(items.len(), 1);
    assert_eq!(errors(&items)[0].line, 3);
}

/// JSON allows U+0000 in strings; PostgreSQL's text does not. A finding carrying one is kept,
/// with U+FFFD in its place everywhere (details' keys and values too); its evidence keeps the
/// bytes as received.
#[test]
fn nul_characters_become_replacement_characters() {
    let input = r#"{"finding_type": "x\u0000y", "severity": "low", "confidence": 0.5,
  "subject": {"system": "s\u0000", "external_id": "e\u0000"}, "title": "t\u0000",
  "idempotency_key": "k\u0000", "details": {"a\u0000": ["b\u0000"]}}"#;
    let (items, _) = read(input, SourceFormat::Native, ParseOptions::default());
    let finding = items.into_iter().next().unwrap().unwrap();
    let o = &finding.observation;
    assert_eq!(o.finding_type, "x\u{fffd}y");
    assert_eq!(o.subject.system, "s\u{fffd}");
    assert_eq!(o.subject.external_id, "e\u{fffd}");
    assert_eq!(o.title, "t\u{fffd}");
    assert_eq!(o.source_key.as_deref(), Some("k\u{fffd}"));
    assert_eq!(o.details, serde_json::json!({"a\u{fffd}": ["b\u{fffd}"]}));
    assert!(!serde_json::to_string(o).unwrap().contains("\\u0000"));
    assert_eq!(finding.evidence, input.as_bytes());
}
