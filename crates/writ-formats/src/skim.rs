//! Byte spans of members and items inside a JSON text already in memory.
//!
//! Used where a finding sits deeper than the top level (detect-secrets baselines) and to
//! replace single member values without re-serialising the rest (gitleaks redaction). The input
//! is expected to be valid JSON (parse it first); on anything unexpected these return `None`.

use crate::scan::value_len;

/// A member of an object: its decoded key and the byte range of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub key: String,
    pub start: usize,
    pub end: usize,
}

fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The members of the object starting at `start` (after blanks).
pub(crate) fn object_members(b: &[u8], start: usize) -> Option<Vec<Member>> {
    let mut i = skip_blank(b, start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_blank(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_len = value_len(b.get(i..)?)?;
        let key: String = serde_json::from_slice(&b[i..i + key_len]).ok()?;
        i = skip_blank(b, i + key_len);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_blank(b, i + 1);
        let len = value_len(b.get(i..)?)?;
        out.push(Member {
            key,
            start: i,
            end: i + len,
        });
        i = skip_blank(b, i + len);
        match b.get(i) {
            Some(b',') => i = skip_blank(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The byte ranges of the items of the array starting at `start` (after blanks).
pub(crate) fn array_items(b: &[u8], start: usize) -> Option<Vec<(usize, usize)>> {
    let mut i = skip_blank(b, start);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_blank(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let len = value_len(b.get(i..)?)?;
        out.push((i, i + len));
        i = skip_blank(b, i + len);
        match b.get(i) {
            Some(b',') => i = skip_blank(b, i + 1),
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_and_items() {
        let doc = br#" { "a" : [1, {"x":"]"} , "s"], "b\"c": {} } "#;
        let m = object_members(doc, 0).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].key, "a");
        assert_eq!(m[1].key, "b\"c");
        assert_eq!(&doc[m[1].start..m[1].end], b"{}");
        let items = array_items(doc, m[0].start).unwrap();
        let texts: Vec<&[u8]> = items.iter().map(|&(s, e)| &doc[s..e]).collect();
        assert_eq!(texts, vec![&b"1"[..], br#"{"x":"]"}"#, br#""s""#]);
        assert_eq!(object_members(b"[]", 0), None);
        assert_eq!(array_items(b"{}", 0), None);
    }
}
