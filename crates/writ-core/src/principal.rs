//! Principals: the people and services that act on writ, their teams and roles, and the tokens
//! they authenticate with.
//!
//! Names are canonical: trimmed, then Unicode NFKC, full case folding and NFKC again. So
//! `alice`, `Alice`, ` ALICE ` and `ａｌｉｃｅ` are one principal. Names hold letters, marks,
//! digits and `- _ . @ +` only, so no invisible, spacing or symbol character can tell two names
//! apart. (Letters of different scripts that look alike, Cyrillic `а` and Latin `a`, stay
//! different names: NFKC does not map between scripts.) Everything here is pure: a token is made from
//! random bytes the caller draws (the edge owns randomness), and only its SHA-256 is kept.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

use crate::Sha256Digest;
use crate::finding::Trust;
use crate::ids::{PrincipalId, TokenId};

/// The longest principal or team name as typed, in characters (surrounding blanks included).
pub const MAX_NAME_CHARS: usize = 128;

/// The longest canonical name, in characters (folding can lengthen a name: `ß` is `ss`).
pub const MAX_CANONICAL_NAME_CHARS: usize = 4 * MAX_NAME_CHARS;

/// What a name may look like as typed, as a regular expression (the API documents it, and
/// [`canonical_name`] applies exactly it): letters and decimal digits of any script, the
/// combining marks of the general diacritical blocks (not first; listed as ranges, not as
/// `\p{M}`, so that every regex engine reads the class the same), and `_ . @ + -`, with spaces
/// or tabs around it that are trimmed.
pub const NAME_PATTERN: &str = r"^[ \t]*[\p{L}\p{Nd}_.@+-][\p{L}\u0300-\u036F\u0483-\u0489\u1DC0-\u1DFF\u20D0-\u20F0\p{Nd}_.@+-]*[ \t]*$";

/// Why a name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after trimming.
    #[error("a name cannot be empty")]
    Empty,
    /// Too long.
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A character that names may not hold.
    #[error(
        "a name may hold letters, digits, combining marks (not first) and - _ . @ + only, not {0:?}"
    )]
    Character(char),
}

/// One character a name may hold, and whether it may come first.
fn name_char(c: char, first: bool) -> bool {
    use std::sync::LazyLock;
    // The classes of NAME_PATTERN, one character at a time. A regex rather than a table of
    // Unicode categories: `regex` is already in the build (Cedar) and knows them exactly.
    static FIRST: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{Nd}_.@+-]$").ok());
    static REST: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"^[\p{L}\u0300-\u036F\u0483-\u0489\u1DC0-\u1DFF\u20D0-\u20F0\p{Nd}_.@+-]$",
        )
        .ok()
    });
    let class = if first { &FIRST } else { &REST };
    let mut buffer = [0u8; 4];
    class
        .as_ref()
        .is_some_and(|class| class.is_match(c.encode_utf8(&mut buffer)))
}

/// The first character of `name` that breaks [`NAME_PATTERN`]'s classes, if any.
fn bad_char(name: &str) -> Option<char> {
    name.chars()
        .enumerate()
        .find(|(i, c)| !name_char(*c, *i == 0))
        .map(|(_, c)| c)
}

fn fold(name: &str) -> String {
    let folded: String = name.nfkc().collect();
    caseless::default_case_fold_str(&folded).nfkc().collect()
}

/// The canonical form of a principal or team name: spaces and tabs trimmed, then NFKC, full
/// case folding and NFKC again. The name as typed must match [`NAME_PATTERN`] (letters, marks,
/// digits and `- _ . @ +`: e-mail addresses and service names work; no whitespace, control,
/// symbol or separator character can make two names look alike), and so must what folding
/// makes of it.
pub fn canonical_name(raw: &str) -> Result<String, NameError> {
    if raw.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    let trimmed = raw.trim_matches([' ', '\t']);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(bad) = bad_char(trimmed) {
        return Err(NameError::Character(bad));
    }
    let name = fold(trimmed);
    // Folding a letter can yield a character the pattern does not list (`ŀ` is `l·`); that
    // is harmless (nobody can type it: the pattern applies to what is typed), except white
    // space or a control character, which would make names that look alike.
    if let Some(bad) = unseen_char(&name) {
        return Err(NameError::Character(bad));
    }
    if name.chars().count() > MAX_CANONICAL_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(name)
}

/// A white-space, control or format character of a folded name, if any.
fn unseen_char(name: &str) -> Option<char> {
    name.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(*c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
    })
}

/// Whether `name` is already canonical (what [`canonical_name`] makes, and stays so).
pub fn is_canonical(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(bad) = unseen_char(name) {
        return Err(NameError::Character(bad));
    }
    if name.chars().count() > MAX_CANONICAL_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if fold(name) != name {
        return Err(NameError::Character(
            name.chars().next().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// What a principal may do. A principal holds any number of roles.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Sends findings (has a trust level).
    Source,
    /// Asks for changes.
    Requester,
    /// Votes on changes (where the policy's approver groups include it).
    Approver,
    /// Manages principals, targets and inventory; not exempt from separation of duties.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
    /// May use the emergency bypass (with mandatory review afterwards).
    BreakGlass,
    /// Owns a control and may accept residual risk: approves an admin's override of an
    /// automated deny or case-only decision.
    RiskOwner,
}

/// A person or a service.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PrincipalKind {
    /// A human.
    Person,
    /// A machine (a scanner, a pipeline).
    Service,
}

/// A principal as recorded in the ledger: every create, change and disable carries the whole
/// record, so the ledger alone says who could do what at any point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Its id (stable across renames of teams and roles).
    pub id: PrincipalId,
    /// Its canonical name ([`canonical_name`]); unique.
    pub name: String,
    /// Person or service.
    pub kind: PrincipalKind,
    /// Its teams, canonical names.
    pub teams: BTreeSet<String>,
    /// Its roles.
    pub roles: BTreeSet<Role>,
    /// How far its findings are trusted (sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
    /// Disabled principals authenticate no more and their votes stop counting.
    pub disabled: bool,
}

/// Why a principal record is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// The name.
    #[error("name {raw:?}: {error}")]
    Name {
        /// As given.
        raw: String,
        /// What is wrong.
        error: NameError,
    },
    /// A team name.
    #[error("team {raw:?}: {error}")]
    Team {
        /// As given.
        raw: String,
        /// What is wrong.
        error: NameError,
    },
    /// A principal needs at least one role.
    #[error("a principal needs at least one role")]
    NoRole,
    /// Trust is for sources, and a source needs one.
    #[error("{0}")]
    Trust(&'static str),
}

impl Principal {
    /// Builds a principal from names as typed, canonicalising the name and the teams.
    pub fn new(
        id: PrincipalId,
        name: &str,
        kind: PrincipalKind,
        teams: impl IntoIterator<Item = impl AsRef<str>>,
        roles: impl IntoIterator<Item = Role>,
        trust: Option<Trust>,
    ) -> Result<Self, PrincipalError> {
        let canonical = canonical_name(name).map_err(|error| PrincipalError::Name {
            raw: name.to_owned(),
            error,
        })?;
        let teams = canonical_teams(teams)?;
        let principal = Self {
            id,
            name: canonical,
            kind,
            teams,
            roles: roles.into_iter().collect(),
            trust,
            disabled: false,
        };
        principal.validate()?;
        Ok(principal)
    }

    /// Checks the rules a record must keep: canonical names, a role, and trust exactly for
    /// sources.
    pub fn validate(&self) -> Result<(), PrincipalError> {
        if let Err(error) = is_canonical(&self.name) {
            return Err(PrincipalError::Name {
                raw: self.name.clone(),
                error,
            });
        }
        for team in &self.teams {
            if let Err(error) = is_canonical(team) {
                return Err(PrincipalError::Team {
                    raw: team.clone(),
                    error,
                });
            }
        }
        if self.roles.is_empty() {
            return Err(PrincipalError::NoRole);
        }
        if self.roles.contains(&Role::Source) && self.trust.is_none() {
            return Err(PrincipalError::Trust(
                "a source needs a trust level (low, medium or high)",
            ));
        }
        Ok(())
    }

    /// Whether it holds `role` and is enabled.
    pub fn has_role(&self, role: Role) -> bool {
        !self.disabled && self.roles.contains(&role)
    }

    /// Whether it is in `team` (a canonical name).
    pub fn in_team(&self, team: &str) -> bool {
        self.teams.contains(team)
    }
}

/// Canonicalises team names.
pub fn canonical_teams(
    teams: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<BTreeSet<String>, PrincipalError> {
    teams
        .into_iter()
        .map(|team| {
            let team = team.as_ref();
            canonical_name(team).map_err(|error| PrincipalError::Team {
                raw: team.to_owned(),
                error,
            })
        })
        .collect()
}

/// The prefix of every writ API token, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "writ_";

/// A freshly made API token: the secret, shown once, and what is kept of it.
pub struct NewToken {
    /// The secret (`writ_` and 64 hex characters). Never stored, never logged.
    pub secret: String,
    /// Its SHA-256, which is all writ keeps.
    pub sha256: Sha256Digest,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("secret", &"<redacted>")
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl NewToken {
    /// Makes a token from 32 random bytes drawn by the caller.
    pub fn from_random(random: [u8; 32]) -> Self {
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(random));
        let sha256 = token_digest(&secret);
        Self { secret, sha256 }
    }
}

/// The digest under which a presented token is looked up.
pub fn token_digest(secret: &str) -> Sha256Digest {
    Sha256Digest::of(secret.trim().as_bytes())
}

/// A token as recorded: whose it is, its digest, and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Its id (shown in listings; the secret never is).
    pub id: TokenId,
    /// Whose it is (canonical name).
    pub principal: String,
    /// SHA-256 of the secret. A 256-bit random secret cannot be recovered from it.
    pub sha256: Sha256Digest,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether it still works at `now` (not counting revocation, which the store records).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_alike_are_one_name() {
        for raw in ["alice", "Alice", "alice ", " ALICE", "ａｌｉｃｅ"] {
            assert_eq!(canonical_name(raw).as_deref(), Ok("alice"), "{raw:?}");
        }
        assert_eq!(canonical_name("Straße").as_deref(), Ok("strasse"));
        assert_eq!(
            canonical_name("CI-Deployer@Example.com").as_deref(),
            Ok("ci-deployer@example.com")
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(canonical_name("  "), Err(NameError::Empty));
        assert_eq!(
            canonical_name("\u{301}a"),
            Err(NameError::Character('\u{301}'))
        );
        assert_eq!(canonical_name("a\u{301}").unwrap(), "\u{e1}");
        assert_eq!(canonical_name("\u{130}").unwrap(), "i\u{307}");
        assert_eq!(canonical_name("ⓐ"), Err(NameError::Character('ⓐ')));
        assert_eq!(canonical_name("a\nb"), Err(NameError::Character('\n')));
        assert_eq!(canonical_name(&"ß".repeat(128)).unwrap(), "ss".repeat(128));
        assert_eq!(canonical_name("\u{140}a").unwrap(), "l\u{b7}a");
        assert!(is_canonical("l\u{b7}a").is_ok());
        assert!(
            canonical_name("\u{fdfa}").is_err(),
            "folds to words with spaces"
        );
        assert_eq!(canonical_name("a b"), Err(NameError::Character(' ')));
        assert_eq!(
            canonical_name("a\u{200b}b"),
            Err(NameError::Character('\u{200b}'))
        );
        assert_eq!(canonical_name("a/b"), Err(NameError::Character('/')));
        assert_eq!(canonical_name(&"x".repeat(129)), Err(NameError::TooLong));
    }

    #[test]
    fn a_source_needs_trust() {
        let id = PrincipalId(uuid::Uuid::nil());
        let source = Principal::new(
            id,
            "Prowler",
            PrincipalKind::Service,
            ["Sec"],
            [Role::Source],
            None,
        );
        assert!(matches!(source, Err(PrincipalError::Trust(_))));
        let alice = Principal::new(
            id,
            "alice",
            PrincipalKind::Person,
            ["data"],
            [Role::Approver],
            Some(Trust::High),
        );
        // Inert until the principal is given the role source.
        assert!(alice.is_ok());
        let alice = Principal::new(
            id,
            " Alice ",
            PrincipalKind::Person,
            ["Data", "data"],
            [Role::Approver],
            None,
        )
        .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.teams.iter().collect::<Vec<_>>(), ["data"]);
        assert!(
            Principal::new(
                id,
                "x",
                PrincipalKind::Person,
                Vec::<String>::new(),
                [],
                None
            )
            .is_err()
        );
    }

    #[test]
    fn a_token_is_kept_as_its_digest_only() {
        let token = NewToken::from_random([7; 32]);
        assert!(token.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(token.secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_digest(&token.secret), token.sha256);
        assert!(!format!("{token:?}").contains(&token.secret));
    }
}
