//! Ledger leaves: the byte strings that are hashed into the Merkle tree.
//!
//! A leaf is the 14-byte format tag `writ.event.v1\n` followed by the event
//! serialized as RFC 8785 (JCS) canonical JSON, with no trailing newline. Its
//! Merkle leaf hash is `SHA-256(0x00 || leaf)` (RFC 6962 §2.1).

use crate::canonical;
use crate::error::LedgerError;
use crate::tree::Hash;
use crate::verify::CanonicalCheck;
use serde::Serialize;

/// The format tag every leaf starts with.
pub const LEAF_TAG: &[u8] = b"writ.event.v1\n";

/// Encodes an event as a leaf: [`LEAF_TAG`] followed by its RFC 8785
/// canonical JSON.
///
/// # Errors
///
/// [`LedgerError::Serialize`] if the event cannot be serialized (non-string
/// map keys, NaN or infinite floats, duplicate keys, ...).
pub fn encode_leaf<T: Serialize>(event: &T) -> Result<Vec<u8>, LedgerError> {
    let mut out = Vec::with_capacity(LEAF_TAG.len() + 256);
    out.extend_from_slice(LEAF_TAG);
    serde_json_canonicalizer::to_writer(event, &mut out)
        .map_err(|e| LedgerError::Serialize(e.to_string()))?;
    Ok(out)
}

/// Encodes the leaf of a JSON object given as its members, in any order: the same bytes as
/// [`encode_leaf`] of that object, several times faster, and without copying a member the
/// caller holds by reference (see [`crate::jcs`]).
///
/// # Errors
///
/// [`LedgerError::Serialize`] if two members have the same name.
pub fn encode_members_leaf(
    mut members: Vec<(&str, &serde_json::Value)>,
) -> Result<Vec<u8>, LedgerError> {
    members.sort_unstable_by(|a, b| crate::jcs::utf16_order(a.0, b.0));
    if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(LedgerError::Serialize(format!(
            "duplicate member `{}`",
            pair[0].0
        )));
    }
    let mut out = Vec::with_capacity(LEAF_TAG.len() + 2048);
    out.extend_from_slice(LEAF_TAG);
    crate::jcs::write_sorted_members(&members, &mut out);
    Ok(out)
}

/// Decodes a leaf: checks the format tag, parses the JSON and checks it is
/// canonical (re-canonicalising it gives the same bytes).
///
/// # Errors
///
/// [`LedgerError::BadLeafTag`] or [`LedgerError::NotCanonical`].
pub fn decode_leaf(leaf: &[u8]) -> Result<serde_json::Value, LedgerError> {
    let body = leaf.strip_prefix(LEAF_TAG).ok_or(LedgerError::BadLeafTag)?;
    recanonicalize_check(body)
}

/// Checks a leaf's tag and canonical form without building a JSON value, and
/// returns its top-level `"seq"` member if that is a non-negative integer.
///
/// `mode` selects the canonical check (see [`CanonicalCheck`]); both modes
/// accept exactly the same leaves.
///
/// # Errors
///
/// [`LedgerError::BadLeafTag`] or [`LedgerError::NotCanonical`].
pub fn validate_leaf(leaf: &[u8], mode: CanonicalCheck) -> Result<Option<u64>, LedgerError> {
    let body = leaf.strip_prefix(LEAF_TAG).ok_or(LedgerError::BadLeafTag)?;
    match mode {
        CanonicalCheck::Streaming => canonical::check(body)
            .map(canonical::SeqField::as_option)
            .map_err(|e| LedgerError::NotCanonical(e.0.to_owned())),
        CanonicalCheck::Recanonicalize => {
            let v = recanonicalize_check(body)?;
            Ok(seq_of(&v))
        }
    }
}

/// The RFC 6962 leaf hash of a leaf: `SHA-256(0x00 || leaf)`.
#[inline]
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Hash(tlog_tiles::record_hash(leaf).0)
}

/// Internal fast path used by chain verification: no allocation in
/// streaming mode.
pub(crate) fn check_body(leaf: &[u8], mode: CanonicalCheck) -> Result<Option<u64>, LeafProblem> {
    check_body_members(leaf, mode).map(|(seq, _)| seq)
}

/// [`check_body`], also returning the spans of the top-level members of the leaf's JSON (which
/// starts at [`LEAF_TAG`]`.len()`).
pub(crate) fn check_body_members(
    leaf: &[u8],
    mode: CanonicalCheck,
) -> Result<(Option<u64>, canonical::TopMembers), LeafProblem> {
    let body = leaf.strip_prefix(LEAF_TAG).ok_or(LeafProblem::BadTag)?;
    if mode == CanonicalCheck::Recanonicalize {
        recanonicalize_check(body).map_err(|_| LeafProblem::NotCanonical)?;
    }
    canonical::check_members(body)
        .map(|(seq, members)| (seq.as_option(), members))
        .map_err(|_| LeafProblem::NotCanonical)
}

/// What is wrong with a leaf (internal, allocation-free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafProblem {
    BadTag,
    NotCanonical,
}

fn seq_of(v: &serde_json::Value) -> Option<u64> {
    v.as_object()?.get("seq")?.as_u64()
}

fn recanonicalize_check(body: &[u8]) -> Result<serde_json::Value, LedgerError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| LedgerError::NotCanonical(format!("invalid JSON: {e}")))?;
    let again = serde_json_canonicalizer::to_vec(&value)
        .map_err(|e| LedgerError::NotCanonical(format!("cannot canonicalise: {e}")))?;
    if again != body {
        return Err(LedgerError::NotCanonical(
            "re-canonicalising changes the bytes".to_owned(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encode_decode_round_trip() {
        let ev = json!({"seq": 3, "b": [1, 2.5, "x"], "a": {"z": null, "y": true}});
        let leaf = encode_leaf(&ev).unwrap();
        assert_eq!(
            leaf,
            b"writ.event.v1\n{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2.5,\"x\"],\"seq\":3}"
        );
        assert_eq!(decode_leaf(&leaf).unwrap(), ev);
        for mode in [CanonicalCheck::Streaming, CanonicalCheck::Recanonicalize] {
            assert_eq!(validate_leaf(&leaf, mode).unwrap(), Some(3));
        }
    }

    #[test]
    fn rfc8785_numbers() {
        // Sample values from RFC 8785 Appendix B / §3.2.2.3.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (333333333.3333333, "333333333.3333333"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (295147905179352830000.0, "295147905179352830000"),
            (0.000001, "0.000001"),
        ];
        for (v, want) in cases {
            let leaf = encode_leaf(v).unwrap();
            assert_eq!(&leaf[LEAF_TAG.len()..], want.as_bytes(), "{v}");
            assert!(decode_leaf(&leaf).is_ok());
            assert!(validate_leaf(&leaf, CanonicalCheck::Streaming).is_ok());
        }
        // Integers beyond 2^53 are formatted as the double they round to.
        let leaf = encode_leaf(&9007199254740993u64).unwrap();
        assert_eq!(&leaf[LEAF_TAG.len()..], b"9007199254740992");
        assert!(encode_leaf(&f64::NAN).is_err());
    }

    #[test]
    fn rejects_bad_tag_and_non_canonical() {
        assert_eq!(decode_leaf(b"{\"seq\":1}"), Err(LedgerError::BadLeafTag));
        assert_eq!(
            validate_leaf(b"writ.event.v2\n{}", CanonicalCheck::Streaming),
            Err(LedgerError::BadLeafTag)
        );
        for body in [&b"{\"seq\": 1}"[..], b"{\"seq\":1}\n", b"{\"seq\":1.0}"] {
            let leaf = [LEAF_TAG, body].concat();
            assert!(matches!(
                decode_leaf(&leaf),
                Err(LedgerError::NotCanonical(_))
            ));
            assert!(matches!(
                validate_leaf(&leaf, CanonicalCheck::Streaming),
                Err(LedgerError::NotCanonical(_))
            ));
        }
    }

    #[test]
    fn members_encode_like_the_object() {
        let body = json!({"z": [1, {"b": "\u{1}", "a": 2.5}], "a": null});
        let seq = json!(7);
        let leaf = encode_members_leaf(vec![("seq", &seq), ("body", &body)]).unwrap();
        assert_eq!(leaf, encode_leaf(&json!({"body": body, "seq": 7})).unwrap());
        assert!(encode_members_leaf(vec![("seq", &seq), ("seq", &seq)]).is_err());
    }

    #[test]
    fn leaf_hash_is_rfc6962() {
        // RFC 6962 leaf hash of the empty leaf (transparency-dev test data).
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
