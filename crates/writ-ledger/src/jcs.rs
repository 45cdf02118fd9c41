//! A fast RFC 8785 (JCS) writer for `serde_json` values.
//!
//! It writes exactly what `serde_json_canonicalizer` writes for the same value (a property
//! test holds it to that, and the streaming check in [`crate::canonical`] accepts its output),
//! but walks the value tree once, sorting each object's members by reference instead of
//! buffering and re-encoding every member. Leaves are encoded on the ledger's hot path, so
//! this matters.
//!
//! The rules (RFC 8785 §3.2):
//! - object members sorted by the UTF-16 code units of their names;
//! - strings escape only `"`, `\` and U+0000..U+001F, with `\b \t \n \f \r` where available
//!   and lowercase `\u00xx` otherwise;
//! - numbers printed as ECMAScript prints the IEEE 754 double they denote (`ryu-js`).

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Writes `value` in canonical form.
pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_sorted_members(&sorted_members(map), out),
    }
}

/// A map's members in canonical order (names in a map are distinct).
fn sorted_members(map: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut members: Vec<(&str, &Value)> = map
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    members.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
    members
}

/// Writes an object from its members, already sorted by [`utf16_order`] with distinct names.
pub(crate) fn write_sorted_members(members: &[(&str, &Value)], out: &mut Vec<u8>) {
    out.push(b'{');
    for (index, (name, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

/// Orders names by their UTF-16 code units. UTF-8 byte order is code point order, which
/// agrees with UTF-16 order unless one side has a character at or above U+E000 (UTF-8 lead
/// bytes 0xEE and up): only then are the names compared as UTF-16.
pub(crate) fn utf16_order(a: &str, b: &str) -> Ordering {
    let high = |s: &str| s.bytes().any(|byte| byte >= 0xEE);
    if high(a) || high(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// The largest integer every double below it represents exactly (2^53).
const EXACT_INTEGERS: u64 = 1 << 53;

fn write_number(number: &Number, out: &mut Vec<u8>) {
    if let Some(n) = number.as_u64()
        && n <= EXACT_INTEGERS
    {
        out.extend_from_slice(itoa(n, &mut [0; 20]));
    } else if let Some(n) = number.as_i64()
        && n.unsigned_abs() <= EXACT_INTEGERS
    {
        out.push(b'-');
        out.extend_from_slice(itoa(n.unsigned_abs(), &mut [0; 20]));
    } else if let Some(n) = number.as_f64() {
        // serde_json numbers are always finite.
        let mut buffer = ryu_js::Buffer::new();
        out.extend_from_slice(buffer.format_finite(n).as_bytes());
    }
}

fn itoa(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast is exact.
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\x0c' => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(escape);
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn canonical(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(value, &mut out);
        out
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            "\\PC*".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner.clone()), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
                proptest::collection::vec(("[a-z\u{e000}-\u{e002}\u{10000}]{0,3}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Byte for byte what `serde_json_canonicalizer` writes, and canonical by the streaming
        /// check.
        #[test]
        fn same_bytes_as_the_reference(value in any_json()) {
            let ours = canonical(&value);
            let reference = serde_json_canonicalizer::to_vec(&value).unwrap();
            prop_assert_eq!(&ours, &reference, "{}", String::from_utf8_lossy(&ours));
            prop_assert!(crate::canonical::check(&ours).is_ok());
        }
    }

    #[test]
    fn names_sort_by_utf16_code_units() {
        // U+E000 sorts after U+10000 in UTF-16 (0xE000 > 0xD800), before it in UTF-8.
        let value = serde_json::json!({"\u{e000}": 1, "\u{10000}": 2, "a": 3, "": 4});
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            "{\"\":4,\"a\":3,\"\u{10000}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn escapes_only_what_jcs_escapes() {
        let value = Value::String("\"\\/\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}é😀".into());
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            "\"\\\"\\\\/\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}é😀\""
        );
    }
}
