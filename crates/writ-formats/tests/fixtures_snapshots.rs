//! Data-driven over `tests/fixtures`: every fixture's observations are snapshotted, and every
//! evidence is checked against the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{Value, json};
use writ_core::Sha256Digest;
use writ_core::finding::SourceFormat;
use writ_formats::{FindingReader, ParseOptions, detect_format};

/// The findings (as JSON values) an input holds, wherever they sit.
fn input_elements(format: SourceFormat, input: &[u8]) -> Vec<Value> {
    if format == SourceFormat::DetectSecrets {
        let doc: Value = serde_json::from_slice(input).unwrap();
        return doc["results"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|v| v.as_array().unwrap().clone())
            .collect();
    }
    match serde_json::from_slice::<Value>(input) {
        Ok(Value::Array(items)) => items,
        Ok(single) => vec![single],
        Err(_) => serde_json::Deserializer::from_slice(input)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect(),
    }
}

#[test]
fn fixtures_parse_to_their_snapshots() {
    let files = common::fixture_files();
    assert!(files.len() >= 7, "fixtures missing: {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read(&path).unwrap();
        let format = detect_format(&input[..input.len().min(writ_formats::DETECT_BYTES)])
            .unwrap_or_else(|| panic!("{name}: format not detected"));
        let options = ParseOptions {
            secrets_system: "acme/payments".into(),
            ..ParseOptions::default()
        };
        let (items, report) = common::read_all(&input, options);
        let elements = input_elements(format, &input);
        let mut out = Vec::new();
        for item in &items {
            let f = item.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
            if f.redacted_from.is_none() {
                // Evidence is the element's bytes, byte for byte.
                assert!(
                    common::contains(&input, &f.evidence),
                    "{name} line {}",
                    f.line
                );
                let value: Value = serde_json::from_slice(&f.evidence).unwrap();
                assert!(elements.contains(&value), "{name} line {}", f.line);
            } else {
                assert_eq!(format, SourceFormat::Gitleaks);
                let value: Value = serde_json::from_slice(&f.evidence).unwrap();
                assert_eq!(value["Secret"], "REDACTED");
            }
            out.push(json!({
                "line": f.line,
                "evidence_len": f.evidence.len(),
                "evidence_sha256": Sha256Digest::of(&f.evidence),
                "redacted_from": f.redacted_from,
                "observation": f.observation,
            }));
        }
        // Maps are sorted so the snapshot does not depend on serde_json's preserve_order
        // feature, which other crates in the workspace switch on.
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!(
                name.replace('.', "_"),
                json!({ "format": format, "report": report, "findings": out })
            );
        });
    }
}

#[test]
fn prowler_output_read_as_generic_ocsf() {
    let input = std::fs::read(common::fixtures().join("prowler-iam.ocsf.json")).unwrap();
    let mut reader = FindingReader::new(&input[..], SourceFormat::Ocsf, ParseOptions::default());
    let findings: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
    let report = reader.report();
    // Ten failures and fourteen passes: read as generic OCSF, every pass names a resource.
    assert_eq!(
        (report.parsed, report.passes, report.skipped, report.errors),
        (24, 14, 0, 0)
    );
    let first = &findings[0].observation;
    assert_eq!(first.format, SourceFormat::Ocsf);
    assert_eq!(first.subject.system, "aws:123456789012");
    assert_eq!(
        first.subject.external_id,
        "arn:aws:iam::123456789012:policy/AdminAll"
    );
    assert_eq!(
        first.finding_type,
        "iam_customer_attached_policy_no_administrative_privileges"
    );
}

#[test]
fn prowler_key_slots_and_users() {
    let input = std::fs::read(common::fixtures().join("prowler-iam.ocsf.json")).unwrap();
    let (items, report) = common::read_all(&input, ParseOptions::default());
    // Ten failures and fourteen passes; a key check's pass names the user (it closes the
    // check's cases about any of the user's keys).
    assert_eq!(
        (report.parsed, report.passes, report.skipped, report.errors),
        (24, 14, 0, 0)
    );
    let subjects: Vec<(String, String, Option<String>)> = items
        .into_iter()
        .map(Result::unwrap)
        .filter(|f| f.observation.status == writ_core::finding::FindingStatus::Fail)
        .map(|f| {
            let o = f.observation;
            let kind = o.subject.kind_hint.map(|k| {
                serde_json::to_value(k)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
            (o.finding_type, o.subject.external_id, kind)
        })
        .collect();
    let has = |t: &str, id: &str, kind: Option<&str>| {
        subjects.contains(&(t.to_owned(), id.to_owned(), kind.map(str::to_owned)))
    };
    assert!(has(
        "iam_user_accesskey_unused",
        "svc-etl/AccessKey1",
        Some("api_key")
    ));
    assert!(has(
        "iam_rotate_access_key_90_days",
        "ci-deployer/AccessKey2",
        Some("api_key")
    ));
    assert!(has(
        "iam_user_two_active_access_key",
        "ci-deployer",
        Some("service_account")
    ));
    assert!(has(
        "iam_inline_policy_no_administrative_privileges",
        "svc-backup",
        Some("service_account")
    ));
}
