//! gitleaks reports: plaintext secrets never leave the parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;
use writ_core::Sha256Digest;
use writ_core::finding::SourceFormat;
use writ_formats::{ErrorKind, FindingReader, ParseOptions};

/// The secrets in the unredacted fixture, read straight from it.
fn secrets(input: &[u8]) -> Vec<String> {
    let records: Vec<Value> = serde_json::from_slice(input).unwrap();
    records
        .iter()
        .flat_map(|r| {
            [
                r["Secret"].as_str().unwrap().to_owned(),
                r["Match"].as_str().unwrap().to_owned(),
            ]
        })
        .collect()
}

#[test]
fn unredacted_report_yields_no_secret() {
    let input = std::fs::read(common::fixtures().join("gitleaks-unredacted.json")).unwrap();
    let secrets = secrets(&input);
    assert!(secrets.iter().any(|s| s.starts_with("AKIA")));
    assert!(secrets.iter().any(|s| s.contains("PRIVATE KEY")));
    let records: Vec<Value> = serde_json::from_slice(&input).unwrap();
    let (items, report) = common::read_all(&input, ParseOptions::default());
    assert_eq!(report.parsed, 3);
    for (item, record) in items.into_iter().zip(&records) {
        let f = item.unwrap();
        let observation = serde_json::to_string(&f.observation).unwrap();
        let debug = format!("{f:?}");
        for s in &secrets {
            // the JSON-escaped form too (the private key has newlines)
            let escaped = serde_json::to_string(s).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            for needle in [s.as_str(), escaped] {
                assert!(
                    !common::contains(&f.evidence, needle.as_bytes()),
                    "evidence leaks"
                );
                assert!(!observation.contains(needle), "observation leaks");
                assert!(!debug.contains(needle), "debug leaks");
            }
        }
        // The evidence is the record with Secret and Match redacted, all else kept.
        let mut expected = record.clone();
        expected["Secret"] = "REDACTED".into();
        expected["Match"] = "REDACTED".into();
        assert_eq!(
            serde_json::from_slice::<Value>(&f.evidence).unwrap(),
            expected
        );
        // The digest is of the original record's bytes, as they are in the input.
        let digest = f.redacted_from.expect("redacted_from");
        assert_eq!(f.observation.details["redacted"], true);
        assert_eq!(f.observation.details["redacted_from"], digest.to_string());
        assert!(element_digests(&input).contains(&digest));
    }
}

/// The SHA-256 of each top-level element's bytes in `input`.
fn element_digests(input: &[u8]) -> Vec<Sha256Digest> {
    writ_formats::scan::element_spans(input, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| Sha256Digest::of(&e.bytes))
        .collect()
}

#[test]
fn redacted_report_is_kept_byte_for_byte() {
    let input = std::fs::read(common::fixtures().join("gitleaks-redacted.json")).unwrap();
    let (items, _) = common::read_all(&input, ParseOptions::default());
    assert_eq!(items.len(), 3);
    for item in items {
        let f = item.unwrap();
        assert_eq!(f.redacted_from, None);
        assert!(common::contains(&input, &f.evidence));
        assert_eq!(f.observation.details["redacted"], false);
        assert_eq!(f.observation.details["source_redacted"], true);
    }
}

#[test]
fn secret_elsewhere_in_the_record_is_scrubbed_too() {
    let input = br#"[{"RuleID":"generic-api-key","Description":"key","StartLine":3,"Match":"key = s3cr3t-VALUE-9","Secret":"s3cr3t-VALUE-9","File":"a.env","Line":"  key = s3cr3t-VALUE-9 # prod","Message":"add s3cr3t-VALUE-9","Fingerprint":"a.env:generic-api-key:3"}]"#;
    let mut reader =
        FindingReader::new(&input[..], SourceFormat::Gitleaks, ParseOptions::default());
    let f = reader.next().unwrap().unwrap();
    assert!(!common::contains(&f.evidence, b"s3cr3t-VALUE-9"));
    let v: Value = serde_json::from_slice(&f.evidence).unwrap();
    assert_eq!(v["Line"], "  key = REDACTED # prod");
    assert!(f.redacted_from.is_some());
}

#[test]
fn errors_about_gitleaks_records_hide_the_secret() {
    // StartLine has the wrong type: the error's raw bytes must be redacted.
    let input = br#"[{"RuleID":"aws","StartLine":"three","Match":"AKIAQWERTYUIOPASDFGH","Secret":"AKIAQWERTYUIOPASDFGH","File":"x"},
{"RuleID":"aws","Secret":42,"Match":"AKIAZXCVBNMLKJHGFDSA","File":"y"}]"#;
    let mut reader =
        FindingReader::new(&input[..], SourceFormat::Gitleaks, ParseOptions::default());
    let items: Vec<_> = reader.by_ref().collect();
    assert_eq!(items.len(), 2);
    for item in &items {
        let e = item.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        let shown = format!("{e} {}", String::from_utf8_lossy(&e.raw));
        assert!(!shown.contains("AKIAQWERTYUIOPASDFGH"), "{shown}");
        assert!(!shown.contains("AKIAZXCVBNMLKJHGFDSA"), "{shown}");
        assert!(!shown.contains("42"), "{shown}");
        assert!(!e.raw.is_empty());
    }
    assert_eq!(
        items[0].as_ref().unwrap_err().field.as_deref(),
        Some("StartLine")
    );
    assert_eq!(items[1].as_ref().unwrap_err().line, 2);
}
