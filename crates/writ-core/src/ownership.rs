//! Ownership and criticality rules: who owns an identity and how critical it is.
//!
//! Targets do not know which team owns a service account. The operator says it in a rules file
//! (CSV or JSON): each rule is a glob over `system/external_id` with an owner team, a
//! criticality and optionally whether the identity is privileged; the first matching rule wins.
//! The rules are recorded in the ledger when imported and applied to every identity then and at
//! every later sync. Patterns are globs with two wildcards: `*` matches any run of characters
//! (including `/`) and `?` one character; `[ ] { } \` are refused.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::identity::{Criticality, Identity};

/// One ownership rule: identities whose `system/external_id` matches `pattern` belong to
/// `owner_team` and have `criticality`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipRule {
    /// Glob over `system/external_id`, e.g. `aws:123456789012/svc-*`.
    pub pattern: String,
    /// The owning team; none means "no owner" (findings then go to human review).
    #[serde(default)]
    pub owner_team: Option<String>,
    /// How critical the identity's system is.
    pub criticality: Criticality,
    /// Overrides what the target says about administrative rights.
    #[serde(default)]
    pub privileged: Option<bool>,
}

/// A rules file, or a recorded rule, that cannot be used. `line` is 1-based, 0 when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct RuleError {
    /// The line of the rules file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Rules compiled for matching, in file order.
#[derive(Debug, Clone)]
pub struct OwnershipRules {
    rules: Vec<OwnershipRule>,
    set: GlobSet,
}

impl Default for OwnershipRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl OwnershipRules {
    /// Compiles `rules`; an invalid pattern is an error naming the rule (1-based, as `line`).
    pub fn new(rules: Vec<OwnershipRule>) -> Result<Self, RuleError> {
        let mut builder = GlobSetBuilder::new();
        for (index, rule) in rules.iter().enumerate() {
            builder.add(compile(&rule.pattern, index + 1)?);
        }
        let set = builder.build().map_err(|err| RuleError {
            line: 0,
            message: err.to_string(),
        })?;
        Ok(Self { rules, set })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[OwnershipRule] {
        &self.rules
    }

    /// The first rule matching `system/external_id`.
    pub fn first_match(&self, system: &str, external_id: &str) -> Option<&OwnershipRule> {
        let key = format!("{system}/{external_id}");
        self.set
            .matches(&key)
            .into_iter()
            .min()
            .and_then(|index| self.rules.get(index))
    }

    /// Applies the first matching rule to `identity`; returns whether one matched.
    pub fn apply(&self, identity: &mut Identity) -> bool {
        match self.first_match(&identity.system, &identity.external_id) {
            Some(rule) => {
                identity.owner_team = rule.owner_team.clone();
                identity.criticality = rule.criticality;
                if let Some(privileged) = rule.privileged {
                    identity.privileged = privileged;
                }
                true
            }
            None => false,
        }
    }
}

/// The characters a pattern may not hold: globset's classes, alternatives and escapes. Only
/// `*` and `?` are wildcards, so every pattern the API's schema allows compiles, and a
/// pattern reads the same to a person as to the matcher.
pub const PATTERN_FORBIDDEN: &[char] = &['[', ']', '{', '}', '\\'];

fn compile(pattern: &str, line: usize) -> Result<globset::Glob, RuleError> {
    if pattern.is_empty() {
        return Err(RuleError {
            line,
            message: "empty pattern".into(),
        });
    }
    if let Some(bad) = pattern.chars().find(|c| PATTERN_FORBIDDEN.contains(c)) {
        return Err(RuleError {
            line,
            message: format!(
                "pattern {pattern:?}: {bad:?} is not allowed (only * and ? are wildcards)"
            ),
        });
    }
    GlobBuilder::new(pattern)
        .backslash_escape(true)
        .build()
        .map_err(|err| RuleError {
            line,
            message: format!("pattern {pattern:?}: {}", err.kind()),
        })
}

/// The format of a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesFormat {
    /// `pattern,owner_team,criticality[,privileged]`, `#` comments, an optional header line;
    /// fields may be quoted (RFC 4180).
    Csv,
    /// A JSON array of [`OwnershipRule`]s.
    Json,
}

/// Parses a rules file. Every pattern is checked to compile; errors name the line.
pub fn parse_rules(format: RulesFormat, text: &str) -> Result<Vec<OwnershipRule>, RuleError> {
    let rules = match format {
        RulesFormat::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let rules = Vec::<OwnershipRule>::deserialize(&mut de).map_err(|err| RuleError {
                line: err.line(),
                message: err.to_string(),
            })?;
            de.end().map_err(|err| RuleError {
                line: err.line(),
                message: err.to_string(),
            })?;
            for (index, rule) in rules.iter().enumerate() {
                compile(&rule.pattern, 0).map_err(|err| RuleError {
                    line: 0,
                    message: format!("rule {}: {}", index + 1, err.message),
                })?;
            }
            rules
        }
        RulesFormat::Csv => parse_csv(text)?,
    };
    Ok(rules)
}

fn parse_csv(text: &str) -> Result<Vec<OwnershipRule>, RuleError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rules = Vec::new();
    let mut first = true;
    for record in reader.records() {
        let record = record.map_err(|err| RuleError {
            line: err
                .position()
                .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0)),
            message: err.to_string(),
        })?;
        let line = record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
        let error = |message: String| RuleError { line, message };
        let is_first = std::mem::take(&mut first);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if is_first && record.get(0) == Some("pattern") {
            continue;
        }
        if !(3..=4).contains(&record.len()) {
            return Err(error(format!(
                "expected pattern,owner_team,criticality[,privileged]; found {} fields",
                record.len()
            )));
        }
        let field = |i: usize| record.get(i).unwrap_or_default();
        let criticality = field(2).parse::<Criticality>().map_err(|_| {
            error(format!(
                "criticality {:?} is not low, medium, high or business_critical",
                field(2)
            ))
        })?;
        let privileged = match field(3) {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            other => return Err(error(format!("privileged {other:?} is not true or false"))),
        };
        compile(field(0), line)?;
        rules.push(OwnershipRule {
            pattern: field(0).to_owned(),
            owner_team: Some(field(1).to_owned()).filter(|t| !t.is_empty()),
            criticality,
            privileged,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKind;
    use crate::ids::IdentityId;

    fn rules(text: &str) -> OwnershipRules {
        OwnershipRules::new(parse_rules(RulesFormat::Csv, text).unwrap()).unwrap()
    }

    #[test]
    fn globs_match_like_shells() {
        let cases = [
            ("aws:1/svc-*", "aws:1", "svc-etl/AccessKey1", true),
            ("*", "", "", true),
            ("a?c", "a", "bc", false),
            ("aws:1/a?c", "aws:1", "abc", true),
            ("aws:1/a?c", "aws:1", "abbc", false),
            ("*AccessKey?", "aws:1", "u/AccessKey2", true),
            ("postgres:*", "aws:1", "x", false),
        ];
        for (pattern, system, id, want) in cases {
            let set = rules(&format!("\"{pattern}\",team,low\n"));
            assert_eq!(
                set.first_match(system, id).is_some(),
                want,
                "{pattern} vs {system}/{id}"
            );
        }
    }

    #[test]
    fn classes_alternatives_and_escapes_are_refused() {
        for pattern in ["aws:1/{ci,cd}-*", "aws:1/svc-[ab]", "aws:1/a\\*"] {
            let err =
                parse_rules(RulesFormat::Csv, &format!("\"{pattern}\",team,low\n")).unwrap_err();
            assert!(err.message.contains("is not allowed"), "{pattern}: {err}");
        }
    }

    #[test]
    fn csv_rules_parse_and_errors_name_the_line() {
        let text = "pattern,owner_team,criticality,privileged\n# comment\naws:1/svc-etl*,data,high\naws:1/*,,low,false\n\"aws:1/odd,name*\",\"team, with comma\",medium\n";
        let rules = parse_rules(RulesFormat::Csv, text).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].owner_team.as_deref(), Some("data"));
        assert_eq!(rules[1].owner_team, None);
        assert_eq!(rules[1].privileged, Some(false));
        assert_eq!(rules[2].pattern, "aws:1/odd,name*");
        assert_eq!(rules[2].owner_team.as_deref(), Some("team, with comma"));
        let err = parse_rules(RulesFormat::Csv, "a,b,low\na,b,urgent\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2: criticality \"urgent\" is not low, medium, high or business_critical"
        );
        let err = parse_rules(RulesFormat::Csv, "a,b\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = parse_rules(RulesFormat::Csv, "ok,b,low\n\"[bad,b,low\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = parse_rules(
            RulesFormat::Json,
            "[{\"pattern\": \"x\",\n \"criticality\": \"high\", \"owner\": 1}]",
        )
        .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = rules("aws:1/svc-etl/*,data,high,true\naws:1/*,platform,low\n");
        let mut identity = Identity {
            id: IdentityId(uuid::Uuid::nil()),
            system: "aws:1".into(),
            external_id: "svc-etl/AccessKey1".into(),
            kind: IdentityKind::ApiKey,
            owner_team: None,
            criticality: Criticality::Medium,
            privileged: false,
            tags: vec![],
            last_used_at: None,
            reconciled_at: None,
        };
        assert!(rules.apply(&mut identity));
        assert_eq!(identity.owner_team.as_deref(), Some("data"));
        assert!(identity.privileged);
        identity.external_id = "ci/AccessKey1".into();
        assert!(rules.apply(&mut identity));
        assert_eq!(identity.owner_team.as_deref(), Some("platform"));
    }
}
