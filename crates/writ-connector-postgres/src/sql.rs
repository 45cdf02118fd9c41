//! SQL text safety: identifier and literal quoting, role-name checks, and the entitlement item
//! syntax (`grant:<privilege>:<schema.table>`, `member:<role>`).
//!
//! Role names reach this connector from findings and are untrusted. Utility statements
//! (`ALTER ROLE`, `GRANT`, `REVOKE`) take no bind parameters, so every name is quoted here:
//! identifiers always in double quotes (`"` doubled), literals in single quotes (`'` doubled,
//! and the `E''` form with doubled backslashes when a backslash is present, as PostgreSQL's own
//! `quote_literal` does, so the result is right whatever `standard_conforming_strings` says).
//! Privileges are never interpolated: they are checked against a fixed list.

use std::fmt;

/// PostgreSQL's identifier length limit in bytes (`NAMEDATALEN - 1`). Longer identifiers are
/// silently truncated by the server, which could make a statement hit a different role, so
/// they are refused instead.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a name or an item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("empty name")]
    Empty,
    /// Contains a NUL byte, which PostgreSQL names cannot hold.
    #[error("name contains a NUL byte")]
    Nul,
    /// Longer than [`MAX_IDENTIFIER_BYTES`]; the server would truncate it.
    #[error("name is longer than {MAX_IDENTIFIER_BYTES} bytes")]
    TooLong,
    /// An entitlement item this connector does not understand.
    #[error("unrecognised item {0:?}: expected grant:<privilege>:<schema.table> or member:<role>")]
    BadItem(String),
    /// A privilege that is not a table privilege.
    #[error("unknown table privilege {0:?}")]
    BadPrivilege(String),
}

/// Checks that `name` can be used as a PostgreSQL identifier without being altered.
pub fn check_identifier(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// Quotes an identifier: always in double quotes, inner double quotes doubled. The caller
/// checks the name with [`check_identifier`] first.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string literal like PostgreSQL's `quote_literal`: single quotes doubled, and when
/// the text holds a backslash, the `E'...'` form with backslashes doubled.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The table privileges `grant:` items may name.
pub const TABLE_PRIVILEGES: [&str; 7] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// A schema-qualified relation name, exact (not case-folded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// The schema.
    pub schema: String,
    /// The relation.
    pub name: String,
}

impl QualifiedName {
    /// Parses `schema.table`. Names are exact, never case-folded. A schema holding a `.` or
    /// starting with `"` is written in double quotes (`""` for a quote); the table is the rest
    /// of the text after the first separating `.`, unquoted, or in double quotes.
    pub fn parse(text: &str) -> Option<Self> {
        let (schema, rest) = if let Some(quoted) = text.strip_prefix('"') {
            let (schema, after) = take_quoted(quoted)?;
            (schema, after.strip_prefix('.')?)
        } else {
            let (schema, rest) = text.split_once('.')?;
            (schema.to_string(), rest)
        };
        let name = if let Some(quoted) = rest.strip_prefix('"') {
            let (name, after) = take_quoted(quoted)?;
            if !after.is_empty() {
                return None;
            }
            name
        } else {
            rest.to_string()
        };
        (!schema.is_empty() && !name.is_empty()).then_some(Self { schema, name })
    }

    /// The name quoted for SQL: `"schema"."name"`.
    pub fn to_sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Reads a double-quoted name up to its closing quote; returns it and the text after.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if let Some((_, '"')) = chars.peek() {
                chars.next();
                out.push('"');
            } else {
                return Some((out, &text[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn needs_quotes(part: &str, is_schema: bool) -> bool {
    part.starts_with('"') || (is_schema && part.contains('.'))
}

fn write_part(f: &mut fmt::Formatter<'_>, part: &str, is_schema: bool) -> fmt::Result {
    if needs_quotes(part, is_schema) {
        f.write_str(&quote_ident(part))
    } else {
        f.write_str(part)
    }
}

impl fmt::Display for QualifiedName {
    /// The item form [`QualifiedName::parse`] reads back: `schema.table`, quoting only a part
    /// that would otherwise be misread.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_part(f, &self.schema, true)?;
        f.write_str(".")?;
        write_part(f, &self.name, false)
    }
}

/// One entitlement a `revoke` or `reduce_scope` removes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// `grant:<privilege>:<schema.table>`: a table privilege granted directly to the role.
    Grant {
        /// Upper-case privilege, one of [`TABLE_PRIVILEGES`].
        privilege: String,
        /// The table.
        table: QualifiedName,
    },
    /// `member:<role>`: the role's membership in another role.
    Member {
        /// The group role.
        role: String,
    },
}

impl Item {
    /// Parses an item.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let bad = || NameError::BadItem(text.to_string());
        if let Some(rest) = text.strip_prefix("grant:") {
            let (privilege, table) = rest.split_once(':').ok_or_else(bad)?;
            let privilege = privilege.to_ascii_uppercase();
            if !TABLE_PRIVILEGES.contains(&privilege.as_str()) {
                return Err(NameError::BadPrivilege(privilege));
            }
            let table = QualifiedName::parse(table).ok_or_else(bad)?;
            check_identifier(&table.schema)?;
            check_identifier(&table.name)?;
            Ok(Item::Grant { privilege, table })
        } else if let Some(role) = text.strip_prefix("member:") {
            check_identifier(role)?;
            Ok(Item::Member {
                role: role.to_string(),
            })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Grant { privilege, table } => write!(f, "grant:{privilege}:{table}"),
            Item::Member { role } => write!(f, "member:{role}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a quoted identifier back the way the PostgreSQL lexer does.
    fn unquote_ident(quoted: &str) -> Option<String> {
        let inner = quoted.strip_prefix('"')?;
        let (name, rest) = take_quoted(inner)?;
        rest.is_empty().then_some(name)
    }

    #[test]
    fn quotes_hostile_identifiers() {
        assert_eq!(quote_ident("svc"), "\"svc\"");
        assert_eq!(
            quote_ident("x\"; DROP ROLE postgres; --"),
            "\"x\"\"; DROP ROLE postgres; --\""
        );
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
    }

    #[test]
    fn quotes_literals_like_postgres() {
        assert_eq!(quote_literal("2030-01-01"), "'2030-01-01'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }

    #[test]
    fn checks_identifiers() {
        assert_eq!(check_identifier(""), Err(NameError::Empty));
        assert_eq!(check_identifier("a\0b"), Err(NameError::Nul));
        assert_eq!(check_identifier(&"x".repeat(64)), Err(NameError::TooLong));
        assert!(check_identifier(&"x".repeat(63)).is_ok());
        // 63 bytes, not characters: 32 two-byte characters are too long.
        assert_eq!(check_identifier(&"é".repeat(32)), Err(NameError::TooLong));
    }

    #[test]
    fn parses_items() {
        assert_eq!(
            Item::parse("grant:select:public.accounts").unwrap(),
            Item::Grant {
                privilege: "SELECT".into(),
                table: QualifiedName {
                    schema: "public".into(),
                    name: "accounts".into()
                }
            }
        );
        assert_eq!(
            Item::parse("grant:UPDATE:\"a.b\".c.d").unwrap(),
            Item::Grant {
                privilege: "UPDATE".into(),
                table: QualifiedName {
                    schema: "a.b".into(),
                    name: "c.d".into()
                }
            }
        );
        assert_eq!(
            Item::parse("member:app_readers").unwrap(),
            Item::Member {
                role: "app_readers".into()
            }
        );
        assert!(matches!(
            Item::parse("grant:ALL; DROP:public.t"),
            Err(NameError::BadPrivilege(_))
        ));
        assert!(matches!(
            Item::parse("grant:SELECT:nodot"),
            Err(NameError::BadItem(_))
        ));
        assert!(matches!(Item::parse("owner:x"), Err(NameError::BadItem(_))));
        assert!(matches!(Item::parse("member:"), Err(NameError::Empty)));
    }

    proptest! {
        #[test]
        fn ident_quoting_round_trips(name in "\\PC{1,40}") {
            let quoted = quote_ident(&name);
            prop_assert_eq!(unquote_ident(&quoted), Some(name));
        }

        #[test]
        fn qualified_names_round_trip(schema in "[a-z.\"' ;]{1,12}", name in "[a-z.\"' ;]{1,12}") {
            let q = QualifiedName { schema, name };
            prop_assert_eq!(QualifiedName::parse(&q.to_string()), Some(q.clone()));
            let item = Item::Grant { privilege: "SELECT".into(), table: q };
            prop_assert_eq!(Item::parse(&item.to_string()).unwrap(), item);
        }
    }
}
