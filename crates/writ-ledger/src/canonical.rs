//! Allocation-free, single-pass validator for RFC 8785 (JCS) canonical JSON.
//!
//! It accepts exactly the byte strings that re-canonicalisation (parse with
//! `serde_json`, re-serialize with `serde_json_canonicalizer`) maps to
//! themselves, without building a value tree:
//!
//! - no insignificant whitespace anywhere;
//! - object members sorted by the UTF-16 code units of their (unescaped)
//!   names, no duplicate names;
//! - strings escape only `"`, `\`, and U+0000..U+001F, using `\b \t \n \f \r`
//!   where available and lowercase `\u00xx` otherwise; everything else is
//!   literal UTF-8;
//! - numbers are exactly what ECMAScript `Number.prototype.toString` prints
//!   for the IEEE 754 double they denote (checked with `ryu-js`, the same
//!   formatter `serde_json_canonicalizer` uses);
//! - nesting depth at most 127 (the `serde_json` recursion limit).
//!
//! While scanning it also extracts the top-level `"seq"` member, and the spans
//! of the top-level members' values ([`TopMembers`]), so chain verification and
//! the comparison of a stored row with its leaf need a single pass per leaf.

use std::cmp::Ordering;

/// Maximum nesting depth of arrays and objects (same as `serde_json`).
const MAX_DEPTH: u32 = 127;

/// The top-level `"seq"` member found while validating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqField {
    /// The document is not an object, or has no `"seq"` member.
    Absent,
    /// `"seq"` is present but is not a non-negative integer fitting in `u64`.
    NotUnsigned,
    /// `"seq"` is this non-negative integer.
    Value(u64),
}

impl SeqField {
    /// The value as an `Option`.
    pub(crate) fn as_option(self) -> Option<u64> {
        match self {
            SeqField::Value(v) => Some(v),
            SeqField::Absent | SeqField::NotUnsigned => None,
        }
    }
}

/// The most top-level members whose spans are kept (a writ leaf has about ten);
/// members past it are validated but not kept.
const MAX_MEMBERS: usize = 16;

/// The byte spans of the top-level object's members: each name (without its
/// quotes) and its raw JSON value, in document order. No allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopMembers {
    spans: [(u32, u32, u32, u32); MAX_MEMBERS],
    len: usize,
}

impl TopMembers {
    const EMPTY: Self = Self {
        spans: [(0, 0, 0, 0); MAX_MEMBERS],
        len: 0,
    };

    fn push(&mut self, name: (usize, usize), value: (usize, usize)) {
        let fits = |n: usize| u32::try_from(n).ok();
        if let (Some(a), Some(b), Some(c), Some(d)) =
            (fits(name.0), fits(name.1), fits(value.0), fits(value.1))
            && let Some(slot) = self.spans.get_mut(self.len)
        {
            *slot = (a, b, c, d);
            self.len += 1;
        }
    }

    /// The raw JSON value of the member named `name` (a simple ASCII name) in
    /// `json`, the document these spans were taken from.
    pub(crate) fn get<'a>(&self, json: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.spans[..self.len].iter().find_map(|&(a, b, c, d)| {
            let key = json.get(a as usize..b as usize)?;
            (key == name.as_bytes())
                .then(|| json.get(c as usize..d as usize))
                .flatten()
        })
    }
}

/// Why a document is not canonical (static text, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotCanonical(pub(crate) &'static str);

/// Validates that `json` is RFC 8785 canonical JSON and returns its top-level
/// `"seq"` member.
pub(crate) fn check(json: &[u8]) -> Result<SeqField, NotCanonical> {
    check_members(json).map(|(seq, _)| seq)
}

/// [`check`], also returning the top-level members' spans.
pub(crate) fn check_members(json: &[u8]) -> Result<(SeqField, TopMembers), NotCanonical> {
    let mut p = Parser {
        b: json,
        i: 0,
        seq: SeqField::Absent,
        members: TopMembers::EMPTY,
    };
    p.value(0)?;
    if p.i != json.len() {
        return Err(NotCanonical("trailing bytes after the JSON value"));
    }
    Ok((p.seq, p.members))
}

/// A string token: content is `b[start..end]`; `simple` means ASCII without
/// escapes (so byte order equals UTF-16 order).
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    simple: bool,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    seq: SeqField,
    members: TopMembers,
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: u32) -> Result<(), NotCanonical> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(_) => Err(NotCanonical(
                "unexpected byte (whitespace is not canonical)",
            )),
            None => Err(NotCanonical("unexpected end of input")),
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<(), NotCanonical> {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(NotCanonical("invalid literal"))
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), NotCanonical> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(NotCanonical(what))
        }
    }

    fn array(&mut self, depth: u32) -> Result<(), NotCanonical> {
        if depth > MAX_DEPTH {
            return Err(NotCanonical("nesting too deep"));
        }
        self.i += 1; // '['
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(NotCanonical("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: u32) -> Result<(), NotCanonical> {
        if depth > MAX_DEPTH {
            return Err(NotCanonical("nesting too deep"));
        }
        self.i += 1; // '{'
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<Str> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(NotCanonical("expected a member name"));
            }
            let key = self.string()?;
            if let Some(p) = prev
                && self.key_cmp(p, key)? != Ordering::Less
            {
                return Err(NotCanonical(
                    "member names not sorted by UTF-16 code units, or duplicated",
                ));
            }
            prev = Some(key);
            self.expect(b':', "expected ':'")?;
            let value_start = self.i;
            if depth == 1 && &self.b[key.start..key.end] == b"seq" {
                self.seq = self.seq_value(depth)?;
            } else {
                self.value(depth)?;
            }
            if depth == 1 {
                self.members
                    .push((key.start, key.end), (value_start, self.i));
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(NotCanonical("expected ',' or '}'")),
            }
        }
    }

    /// Parses the value of the top-level `"seq"` member.
    fn seq_value(&mut self, depth: u32) -> Result<SeqField, NotCanonical> {
        if let Some(b'0'..=b'9') = self.peek() {
            let (start, end) = self.number()?;
            let mut v: u64 = 0;
            for &d in &self.b[start..end] {
                if !d.is_ascii_digit() {
                    return Ok(SeqField::NotUnsigned);
                }
                v = match v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(d - b'0')))
                {
                    Some(v) => v,
                    None => return Ok(SeqField::NotUnsigned),
                };
            }
            Ok(SeqField::Value(v))
        } else {
            self.value(depth)?;
            Ok(SeqField::NotUnsigned)
        }
    }

    fn key_cmp(&self, a: Str, b: Str) -> Result<Ordering, NotCanonical> {
        let ab = &self.b[a.start..a.end];
        let bb = &self.b[b.start..b.end];
        if a.simple && b.simple {
            // Names mostly differ in their first byte: settle that without a call.
            return Ok(match ab.first().cmp(&bb.first()) {
                Ordering::Equal => ab.cmp(bb),
                order => order,
            });
        }
        let sa = std::str::from_utf8(ab).map_err(|_| NotCanonical("invalid UTF-8"))?;
        let sb = std::str::from_utf8(bb).map_err(|_| NotCanonical("invalid UTF-8"))?;
        Ok(Utf16Units::new(sa).cmp(Utf16Units::new(sb)))
    }

    /// Scans a string token starting at the opening quote.
    fn string(&mut self) -> Result<Str, NotCanonical> {
        self.i += 1; // opening quote
        let start = self.i;
        let mut simple = true;
        let mut ascii = true;
        loop {
            // Skip ordinary bytes (printable ASCII but `"` and `\\`), eight at a time while
            // they last, then one at a time.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                if has_special_byte(u64::from_le_bytes(bytes)) {
                    break;
                }
                self.i += 8;
            }
            while let Some(&c) = self.b.get(self.i) {
                if ORDINARY[usize::from(c)] {
                    self.i += 1;
                } else {
                    break;
                }
            }
            let Some(&c) = self.b.get(self.i) else {
                return Err(NotCanonical("unterminated string"));
            };
            match c {
                b'"' => {
                    let end = self.i;
                    // The only UTF-8 check: outside strings, canonical JSON is ASCII by its
                    // grammar.
                    if !ascii && std::str::from_utf8(&self.b[start..end]).is_err() {
                        return Err(NotCanonical("invalid UTF-8"));
                    }
                    self.i += 1;
                    return Ok(Str { start, end, simple });
                }
                b'\\' => {
                    simple = false;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self
                                .b
                                .get(self.i + 2..self.i + 6)
                                .ok_or(NotCanonical("truncated \\u escape"))?;
                            let v = match hex {
                                [b'0', b'0', h1, h2] => match (lower_hex(*h1), lower_hex(*h2)) {
                                    (Some(h1), Some(h2)) => h1 * 16 + h2,
                                    _ => return Err(NotCanonical("non-canonical \\u escape")),
                                },
                                _ => return Err(NotCanonical("non-canonical \\u escape")),
                            };
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return Err(NotCanonical("non-canonical \\u escape"));
                            }
                            self.i += 6;
                        }
                        _ => return Err(NotCanonical("non-canonical escape")),
                    }
                }
                0x00..=0x1f => return Err(NotCanonical("unescaped control character")),
                _ => {
                    // A byte of a multi-byte character: checked with the whole string.
                    simple = false;
                    ascii = false;
                    self.i += 1;
                }
            }
        }
    }

    /// Scans a number token and checks it is the ECMAScript form of its
    /// double. Returns the token's byte range.
    fn number(&mut self) -> Result<(usize, usize), NotCanonical> {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        let tok = &self.b[start..self.i];
        if !is_short_integer(tok) {
            let s = std::str::from_utf8(tok).map_err(|_| NotCanonical("invalid number"))?;
            let v: f64 = s.parse().map_err(|_| NotCanonical("invalid number"))?;
            if !v.is_finite() {
                return Err(NotCanonical("number out of range"));
            }
            let mut buf = ryu_js::Buffer::new();
            if buf.format_finite(v).as_bytes() != tok {
                return Err(NotCanonical("number not in ECMAScript canonical form"));
            }
        }
        Ok((start, self.i))
    }
}

/// `0`, or an optional `-` then 1..=15 digits without a leading zero: such
/// integers are exact doubles that ECMAScript prints digit for digit.
#[inline]
fn is_short_integer(tok: &[u8]) -> bool {
    if tok == b"0" {
        return true;
    }
    let digits = match tok.split_first() {
        Some((b'-', rest)) => rest,
        _ => tok,
    };
    matches!(digits.first(), Some(b'1'..=b'9'))
        && digits.len() <= 15
        && digits.iter().all(u8::is_ascii_digit)
}

/// Bytes a string's content may hold as they are, with no more checks: printable ASCII but
/// `"` and `\\`.
static ORDINARY: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0x20;
    while c < 0x80 {
        table[c] = c != b'"' as usize && c != b'\\' as usize;
        c += 1;
    }
    table
};

/// Whether any of the eight bytes of `word` is not [`ORDINARY`] (SWAR: a quote, a backslash,
/// a control byte, or a byte with its high bit set).
#[inline]
fn has_special_byte(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    // A byte below 0x20 (exact when no byte has its high bit set, which is tested too).
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (quote | backslash | control | (word & HIGH)) != 0
}

#[inline]
fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Iterates the UTF-16 code units of a (validated, canonical) JSON string's
/// raw content, decoding escapes.
struct Utf16Units<'a> {
    chars: std::str::Chars<'a>,
    pending: Option<u16>,
}

impl<'a> Utf16Units<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            chars: s.chars(),
            pending: None,
        }
    }
}

impl Iterator for Utf16Units<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if let Some(u) = self.pending.take() {
            return Some(u);
        }
        let c = self.chars.next()?;
        let c = if c == '\\' {
            match self.chars.next()? {
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'u' => {
                    let mut v = 0u32;
                    for _ in 0..4 {
                        v = v * 16 + self.chars.next()?.to_digit(16)?;
                    }
                    char::from_u32(v)?
                }
                other => other,
            }
        } else {
            c
        };
        let mut buf = [0u16; 2];
        let units = c.encode_utf16(&mut buf);
        if let [first, second] = *units {
            self.pending = Some(second);
            Some(first)
        } else {
            units.first().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        check(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_canonical() {
        for s in [
            "{}",
            "[]",
            "0",
            "-1",
            "1e+21",
            "1e-7",
            "0.1",
            "123456789012345",
            "9007199254740992",
            r#"{"a":1,"b":[true,false,null],"c":"\u001f\n"}"#,
            r#"{"\r":1,"a":2}"#,
            "\"\u{7f}\u{2028}\"",
            r#"{"":0}"#,
        ] {
            assert!(ok(s), "{s}");
        }
    }

    proptest::proptest! {
        /// The eight-byte test agrees with the byte table, for any word.
        #[test]
        fn the_word_test_is_the_byte_table(word: u64) {
            let any_special = word.to_le_bytes().iter().any(|&c| !ORDINARY[usize::from(c)]);
            proptest::prop_assert_eq!(has_special_byte(word), any_special);
        }
    }

    #[test]
    fn the_word_test_finds_each_special_byte_anywhere() {
        for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
            for position in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[position] = special;
                assert!(
                    has_special_byte(u64::from_le_bytes(bytes)),
                    "{special} at {position}"
                );
            }
        }
        assert!(!has_special_byte(u64::from_le_bytes(*b" ~!#[]{}")));
    }

    /// UTF-8 is checked inside strings only (elsewhere the grammar admits ASCII alone): every
    /// invalid sequence is refused wherever it is.
    #[test]
    fn rejects_invalid_utf8_anywhere() {
        for bytes in [
            &b"\"\xff\""[..],
            b"\"a\xc3\"",
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"{\"a\xff\":1}",
            b"[\"ok\",\"\xe2\x82\"]",
            b"\xff",
            b"[1,\xff]",
            b"\"\x01\"",
        ] {
            assert!(check(bytes).is_err(), "{bytes:?}");
        }
        assert!(check("\"é\\n€𝄞\"".as_bytes()).is_ok());
    }

    #[test]
    fn rejects_non_canonical() {
        for s in [
            "",
            " {}",
            "{} ",
            "{ }",
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            "1.0",
            "-0",
            "01",
            "1E+21",
            "1e21",
            "9007199254740993",
            "1e400",
            r#""\/""#,
            r#""\u000a""#,
            r#""\u001F""#,
            r#""\u0041""#,
            "\"\u{1}\"",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "\"unterminated",
        ] {
            assert!(!ok(s), "{s:?}");
        }
    }

    #[test]
    fn utf16_ordering() {
        // U+E000 sorts before U+10000 in code point order but after it in
        // UTF-16 code unit order (0xD800 < 0xE000).
        let good = "{\"\u{10000}\":1,\"\u{e000}\":2}";
        let bad = "{\"\u{e000}\":1,\"\u{10000}\":2}";
        assert!(ok(good));
        assert!(!ok(bad));
    }

    #[test]
    fn extracts_seq() {
        assert_eq!(check(br#"{"a":1,"seq":42}"#), Ok(SeqField::Value(42)));
        assert_eq!(check(br#"{"seq":"1"}"#), Ok(SeqField::NotUnsigned));
        assert_eq!(check(br#"{"seq":-1}"#), Ok(SeqField::NotUnsigned));
        assert_eq!(check(br#"{"seq":1.5}"#), Ok(SeqField::NotUnsigned));
        assert_eq!(check(br#"{"x":{"seq":1}}"#), Ok(SeqField::Absent));
        assert_eq!(check(b"[1]"), Ok(SeqField::Absent));
    }

    #[test]
    fn depth_limit() {
        let deep_ok = "[".repeat(127) + &"]".repeat(127);
        let deep_bad = "[".repeat(128) + &"]".repeat(128);
        assert!(ok(&deep_ok));
        assert!(!ok(&deep_bad));
    }
}
