//! Recognising a format from the first bytes of its content.
//!
//! The first complete element is parsed and its fields decide; when the prefix ends inside the
//! first element (large findings), the keys seen in the prefix decide instead.

use serde_json::Value;
use writ_core::finding::SourceFormat;

use crate::ocsf::DETECTION_FINDING_CLASS_UID;
use crate::scan::{ElementScanner, ScanItem};

/// How many bytes [`crate::FindingReader::detect`] reads to recognise a format.
pub const DETECT_BYTES: usize = 64 * 1024;

/// The format of a scanner's output, judged from its first bytes (up to [`DETECT_BYTES`] are
/// useful), or `None` if it is none writ knows.
///
/// - `class_uid` 2004 with `metadata.product.name` "Prowler" → [`SourceFormat::Prowler`];
/// - `class_uid` 2004 → [`SourceFormat::Ocsf`];
/// - an object with `results` and `generated_at` (or `plugins_used`) → [`SourceFormat::DetectSecrets`];
/// - objects with `RuleID` → [`SourceFormat::Gitleaks`];
/// - objects with `finding_type` → [`SourceFormat::Native`].
pub fn detect_format(first_bytes: &[u8]) -> Option<SourceFormat> {
    let mut scanner = ElementScanner::new(first_bytes, usize::MAX);
    match scanner.next_item() {
        Ok(Some(ScanItem::Element(e))) => {
            let value: Value = serde_json::from_slice(&e.bytes).ok()?;
            from_value(&value)
        }
        Ok(_) => None,
        // The prefix ends inside the first element: judge by the keys seen so far.
        Err(_) => from_prefix(first_bytes),
    }
}

fn from_value(v: &Value) -> Option<SourceFormat> {
    let obj = v.as_object()?;
    if obj.get("class_uid").and_then(Value::as_u64) == Some(u64::from(DETECTION_FINDING_CLASS_UID))
    {
        let product = v.pointer("/metadata/product/name").and_then(Value::as_str);
        return Some(
            if product.is_some_and(|p| p.eq_ignore_ascii_case("prowler")) {
                SourceFormat::Prowler
            } else {
                SourceFormat::Ocsf
            },
        );
    }
    if obj.contains_key("results")
        && (obj.contains_key("generated_at") || obj.contains_key("plugins_used"))
    {
        return Some(SourceFormat::DetectSecrets);
    }
    if obj.contains_key("RuleID") {
        return Some(SourceFormat::Gitleaks);
    }
    if obj.contains_key("finding_type") {
        return Some(SourceFormat::Native);
    }
    None
}

/// Judges a prefix that holds no complete element by the keys (and values) it mentions.
fn from_prefix(prefix: &[u8]) -> Option<SourceFormat> {
    let start = prefix
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0xEF | 0xBB | 0xBF))?;
    if !matches!(prefix[start], b'[' | b'{') {
        return None;
    }
    let class = key_value(prefix, "class_uid");
    if class.is_some_and(|v| v.starts_with(b"2004") && !v.get(4).is_some_and(u8::is_ascii_digit)) {
        let prowler = key_value(prefix, "name").is_some_and(|v| v.starts_with(b"\"Prowler\""))
            || key_value(prefix, "vendor_name").is_some_and(|v| v.starts_with(b"\"Prowler\""));
        return Some(if prowler {
            SourceFormat::Prowler
        } else {
            SourceFormat::Ocsf
        });
    }
    if prefix[start] == b'{'
        && key_value(prefix, "plugins_used").is_some()
        && key_value(prefix, "version").is_some()
    {
        return Some(SourceFormat::DetectSecrets);
    }
    if key_value(prefix, "RuleID").is_some() {
        return Some(SourceFormat::Gitleaks);
    }
    if key_value(prefix, "finding_type").is_some() {
        return Some(SourceFormat::Native);
    }
    None
}

/// The bytes after `"key"` and its colon, for the first occurrence of the key in `prefix`.
fn key_value<'a>(prefix: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let needle = format!("\"{key}\"");
    let needle = needle.as_bytes();
    let mut from = 0;
    while let Some(pos) = prefix
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
    {
        let after = from + pos + needle.len();
        let rest = &prefix[after..];
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace());
        if let Some(c) = colon
            && rest[c] == b':'
        {
            let value = &rest[c + 1..];
            let v = value
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(value.len());
            return Some(&value[v..]);
        }
        from = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_whole_elements_and_prefixes() {
        assert_eq!(
            detect_format(
                br#"[{"class_uid": 2004, "metadata": {"product": {"name": "Prowler"}}}]"#
            ),
            Some(SourceFormat::Prowler)
        );
        assert_eq!(
            detect_format(br#"{"class_uid":2004}"#),
            Some(SourceFormat::Ocsf)
        );
        assert_eq!(detect_format(br#"{"class_uid":2003}"#), None);
        assert_eq!(
            detect_format(br#"{"results": {}, "generated_at": "x"}"#),
            Some(SourceFormat::DetectSecrets)
        );
        assert_eq!(
            detect_format(br#"[{"RuleID": "x"}]"#),
            Some(SourceFormat::Gitleaks)
        );
        assert_eq!(
            detect_format(br#"{"finding_type":"x"}"#),
            Some(SourceFormat::Native)
        );
        assert_eq!(detect_format(b"[]"), None);
        assert_eq!(detect_format(b"hello"), None);
        assert_eq!(detect_format(b""), None);
        // truncated prefixes
        assert_eq!(
            detect_format(
                br#"[{"metadata": {"product": {"name": "Prowler"}}, "class_uid": 2004, "x": "#
            ),
            Some(SourceFormat::Prowler)
        );
        assert_eq!(detect_format(br#"[{"class_uid" : 20045, "#), None);
        assert_eq!(
            detect_format(br#"{"version": "1.5.0", "plugins_used": [{"#),
            Some(SourceFormat::DetectSecrets)
        );
        assert_eq!(
            detect_format(br#"[{"RuleID": "aws"#),
            Some(SourceFormat::Gitleaks)
        );
        assert_eq!(
            detect_format(br#"{"finding_type": "a"#),
            Some(SourceFormat::Native)
        );
    }
}
