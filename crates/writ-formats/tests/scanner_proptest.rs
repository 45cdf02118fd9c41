//! The element scanner finds exactly the elements of random arrays of random objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use writ_formats::scan::element_spans;

/// Strings with the characters that trouble scanners: quotes, backslashes, brackets.
fn tricky_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("\\\"".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just(",".to_owned()),
            Just("\n".to_owned()),
            Just("é✓".to_owned()),
            "[a-z0-9 ]{0,6}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((tricky_string(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((tricky_string(), json_value()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// Blank runs to put between tokens.
fn blanks() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just(" "), Just("\n"), Just("\t"), Just("\r\n")],
        0..3,
    )
    .prop_map(|b| b.concat())
}

/// Serialises `v` compactly or pretty, at random.
fn render(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap()
    } else {
        serde_json::to_string(v).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn finds_exactly_the_elements(
        objects in proptest::collection::vec((json_object(), any::<bool>(), blanks(), blanks()), 0..12),
        lead in blanks(),
        tail in blanks(),
    ) {
        let mut text = format!("{lead}[");
        let mut expected_lines = Vec::new();
        for (i, (obj, pretty, before, after)) in objects.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(before);
            expected_lines.push(text.matches('\n').count() as u64 + 1);
            text.push_str(&render(obj, *pretty));
            text.push_str(after);
        }
        text.push(']');
        text.push_str(&tail);

        let elements = element_spans(text.as_bytes(), usize::MAX).unwrap();
        prop_assert_eq!(elements.len(), objects.len());
        for ((element, (obj, pretty, _, _)), line) in elements.iter().zip(&objects).zip(&expected_lines) {
            // exactly the bytes serialised, and so the same value
            prop_assert_eq!(std::str::from_utf8(&element.bytes).unwrap(), render(obj, *pretty));
            let parsed: Value = serde_json::from_slice(&element.bytes).unwrap();
            let reparsed: Value = serde_json::from_str(&render(obj, *pretty)).unwrap();
            prop_assert_eq!(parsed, reparsed);
            prop_assert_eq!(element.line, *line);
        }
    }

    #[test]
    fn ndjson_lines_are_elements(objects in proptest::collection::vec(json_object(), 0..10)) {
        let text: String = objects.iter().map(|o| format!("{}\n", render(o, false))).collect();
        let elements = element_spans(text.as_bytes(), usize::MAX).unwrap();
        prop_assert_eq!(elements.len(), objects.len());
        for (i, (element, obj)) in elements.iter().zip(&objects).enumerate() {
            prop_assert_eq!(std::str::from_utf8(&element.bytes).unwrap(), render(obj, false));
            prop_assert_eq!(element.line, i as u64 + 1);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = element_spans(&bytes, 64);
        let _ = writ_formats::detect_format(&bytes);
    }
}
