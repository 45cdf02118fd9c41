//! Who may approve a change, and when the approvals are enough.
//!
//! A permit's `@approvers` annotation is an [`ApprovalRule`]: quorums joined by `and`, each
//! "N of GROUP", where a group is the identity's owner team, a named team or a role:
//!
//! ```text
//! rule  := term ( "and" term )*
//! term  := [ N "of" ] group            N >= 1; without it, @approvals (default 1)
//! group := "owner_team" | "team:" NAME | "role:" ROLE | NAME   (a bare NAME is a team)
//! ```
//!
//! `1 of owner_team and 2 of team:security` needs three distinct approvers: one of the owner
//! team and two of security. A principal counts once per request even when it is in several
//! groups: the rule is met when the voters can be assigned to the quorums' seats with nobody
//! sitting twice (a bipartite matching, [`ApprovalRule::is_met`]).
//!
//! Separation of duties ([`Exclusions`]) holds for everybody, admins included: the engine, the
//! source of any finding in the case, the requester of the change and the subject identity
//! itself never count.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::principal::{Principal, Role, canonical_name};

/// A group of possible approvers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproverGroup {
    /// The team that owns the subject identity (from the ownership rules or the target).
    OwnerTeam,
    /// A named team (canonical name).
    Team(String),
    /// Everybody holding a role.
    Role(Role),
}

impl fmt::Display for ApproverGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverGroup::OwnerTeam => f.write_str("owner_team"),
            ApproverGroup::Team(team) => write!(f, "team:{team}"),
            ApproverGroup::Role(role) => write!(f, "role:{role}"),
        }
    }
}

impl ApproverGroup {
    /// Whether `principal` belongs to this group, for a subject owned by `owner_team`.
    pub fn contains(&self, principal: &Principal, owner_team: Option<&str>) -> bool {
        match self {
            ApproverGroup::OwnerTeam => owner_team.is_some_and(|team| principal.in_team(team)),
            ApproverGroup::Team(team) => principal.in_team(team),
            ApproverGroup::Role(role) => principal.roles.contains(role),
        }
    }
}

/// "N of GROUP".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// How many distinct approvers.
    pub count: u32,
    /// From which group.
    pub group: ApproverGroup,
}

/// Every quorum must be met (AND across groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// The quorums.
    pub quorums: Vec<Quorum>,
}

/// Why an `@approvers` text is not a rule. Says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("@approvers {text:?}: {reason}")]
pub struct RuleError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// The largest quorum a rule may ask for (a typo guard: nobody means 1000 approvers).
pub const MAX_QUORUM: u32 = 100;

impl ApprovalRule {
    /// Parses `text`; `default_count` (from `@approvals`) applies to quorums without "N of".
    pub fn parse(text: &str, default_count: u32) -> Result<Self, RuleError> {
        let error = |reason: String| RuleError {
            text: text.to_owned(),
            reason,
        };
        let mut quorums: Vec<Quorum> = Vec::new();
        for term in split_and(text) {
            let words: Vec<&str> = term.split_whitespace().collect();
            let (count, group) = match words.as_slice() {
                [] => {
                    return Err(error(
                        "a quorum is empty (\"and\" with nothing beside it)".into(),
                    ));
                }
                [group] => (default_count, *group),
                [n, of, group] if of.eq_ignore_ascii_case("of") => {
                    let n = n.parse::<u32>().map_err(|_| {
                        error(format!(
                            "{n:?} is not a whole number (write \"2 of team:security\")"
                        ))
                    })?;
                    (n, *group)
                }
                _ => {
                    return Err(error(format!(
                        "{term:?} is not \"N of GROUP\" (groups: owner_team, team:NAME, role:ROLE)"
                    )));
                }
            };
            if count == 0 || count > MAX_QUORUM {
                return Err(error(format!(
                    "a quorum needs between 1 and {MAX_QUORUM} approvers, not {count}"
                )));
            }
            let group = parse_group(group).map_err(error)?;
            if quorums.iter().any(|q| q.group == group) {
                return Err(error(format!("{group} is named twice")));
            }
            quorums.push(Quorum { count, group });
        }
        Ok(Self { quorums })
    }

    /// The rule a recorded decision asked for: its `approver_group` text with its `count`.
    /// Recorded texts were validated when their bundle loaded; one that no longer parses asks
    /// for an impossible quorum, so it can never be met (fail closed).
    pub fn from_recorded(count: u32, text: &str) -> Self {
        let single = !text.contains(" of ") && split_and(text).count() == 1;
        let default = if single { count } else { 1 };
        Self::parse(text, default).unwrap_or(Self {
            quorums: vec![Quorum {
                count: u32::MAX,
                group: ApproverGroup::Team(String::new()),
            }],
        })
    }

    /// How many distinct approvers the rule needs in all.
    pub fn total(&self) -> u32 {
        self.quorums.iter().map(|q| q.count).sum()
    }

    /// The groups of this rule `principal` belongs to.
    pub fn groups_of(
        &self,
        principal: &Principal,
        owner_team: Option<&str>,
    ) -> BTreeSet<ApproverGroup> {
        self.quorums
            .iter()
            .filter(|q| q.group.contains(principal, owner_team))
            .map(|q| q.group.clone())
            .collect()
    }

    /// Whether voters, each with the groups it counts for, meet every quorum, each voter
    /// counting once. Kuhn's augmenting paths over the seats; the sizes are tiny (at most
    /// [`MAX_QUORUM`] seats per quorum), so no crate is worth it.
    pub fn is_met(&self, voters: &BTreeMap<String, BTreeSet<ApproverGroup>>) -> bool {
        self.seats_filled(voters) >= u64::from(self.total())
    }

    /// How many seats the voters fill (each voter at most one).
    pub fn seats_filled(&self, voters: &BTreeMap<String, BTreeSet<ApproverGroup>>) -> u64 {
        let seats: Vec<&ApproverGroup> = self
            .quorums
            .iter()
            .flat_map(|q| std::iter::repeat_n(&q.group, usize::try_from(q.count).unwrap_or(0)))
            .collect();
        let voters: Vec<&BTreeSet<ApproverGroup>> = voters.values().collect();
        let mut seat_holder: Vec<Option<usize>> = vec![None; seats.len()];
        let mut filled = 0;
        for voter in 0..voters.len() {
            let mut visited = vec![false; seats.len()];
            if augment(voter, &voters, &seats, &mut seat_holder, &mut visited) {
                filled += 1;
            }
        }
        filled
    }

    /// How many more approvers are needed, at least (0 when met).
    pub fn missing(&self, voters: &BTreeMap<String, BTreeSet<ApproverGroup>>) -> u64 {
        u64::from(self.total()).saturating_sub(self.seats_filled(voters))
    }

    /// Per quorum, how many of the voters count for its group (at most its count), and its
    /// count: what a reviewer reads as "owner_team 0/1, security 1/1". A voter in two groups
    /// shows in both; whether the rule is met is [`ApprovalRule::is_met`]'s (each voter fills
    /// one seat).
    pub fn progress(
        &self,
        voters: &BTreeMap<String, BTreeSet<ApproverGroup>>,
    ) -> Vec<(ApproverGroup, u32, u32)> {
        self.quorums
            .iter()
            .map(|q| {
                let have = voters
                    .values()
                    .filter(|groups| groups.contains(&q.group))
                    .count();
                (
                    q.group.clone(),
                    u32::try_from(have).unwrap_or(u32::MAX).min(q.count),
                    q.count,
                )
            })
            .collect()
    }
}

impl fmt::Display for ApprovalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, quorum) in self.quorums.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{} of {}", quorum.count, quorum.group)?;
        }
        Ok(())
    }
}

fn augment(
    voter: usize,
    voters: &[&BTreeSet<ApproverGroup>],
    seats: &[&ApproverGroup],
    seat_holder: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for (seat, group) in seats.iter().enumerate() {
        if visited[seat] || !voters[voter].contains(*group) {
            continue;
        }
        visited[seat] = true;
        let free = match seat_holder[seat] {
            None => true,
            Some(holder) => augment(holder, voters, seats, seat_holder, visited),
        };
        if free {
            seat_holder[seat] = Some(voter);
            return true;
        }
    }
    false
}

fn split_and(text: &str) -> impl Iterator<Item = &str> {
    // Split on the word "and", any case, surrounded by whitespace.
    let mut parts = Vec::new();
    let mut rest = text.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        match find_word(&lower, "and") {
            Some(at) => {
                parts.push(rest[..at].trim());
                rest = rest[at + 3..].trim();
            }
            None => {
                parts.push(rest.trim());
                break;
            }
        }
    }
    parts.into_iter()
}

fn find_word(haystack: &str, word: &str) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let mut from = 0;
    while let Some(found) = haystack[from..].find(word) {
        let at = from + found;
        let before = at == 0 || bytes[at - 1].is_ascii_whitespace();
        let end = at + word.len();
        let after = end == bytes.len() || bytes[end].is_ascii_whitespace();
        if before && after {
            return Some(at);
        }
        from = end;
    }
    None
}

fn parse_group(text: &str) -> Result<ApproverGroup, String> {
    if text == "owner_team" {
        return Ok(ApproverGroup::OwnerTeam);
    }
    if let Some(role) = text.strip_prefix("role:") {
        return role.parse::<Role>().map(ApproverGroup::Role).map_err(|_| {
            format!(
                "{role:?} is not a role (source, requester, approver, admin, auditor, break_glass)"
            )
        });
    }
    let team = text.strip_prefix("team:").unwrap_or(text);
    canonical_name(team)
        .map(ApproverGroup::Team)
        .map_err(|err| format!("team {team:?}: {err}"))
}

/// Who never counts as an approver of a change, whatever their teams and roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// The source principals of the case's findings.
    pub sources: BTreeSet<String>,
    /// Who requested the change, when a principal did (the engine otherwise).
    pub requester: Option<String>,
    /// The subject identity's own names (a principal that is the identity).
    pub subject: BTreeSet<String>,
}

/// Why a principal may not vote on a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteRefusal {
    /// Disabled principals do nothing.
    #[error("{0} is disabled")]
    Disabled(String),
    /// Separation of duties.
    #[error("{name} may not approve: {why} (separation of duties; admins are not exempt)")]
    Excluded {
        /// The principal.
        name: String,
        /// Which rule.
        why: &'static str,
    },
    /// Not in any group of the rule.
    #[error("{name} is in no group of the approval rule \"{rule}\"")]
    NotEligible {
        /// The principal.
        name: String,
        /// The rule, as text.
        rule: String,
    },
}

impl Exclusions {
    /// Why `name` never counts, if it does not.
    pub fn excludes(&self, name: &str) -> Option<&'static str> {
        if name == crate::workflow::ENGINE_ACTOR {
            Some("the engine never approves")
        } else if self.sources.contains(name) {
            Some("it is the source of a finding in this case")
        } else if self.requester.as_deref() == Some(name) {
            Some("it requested the change")
        } else if self.subject.contains(name) {
            Some("it is the subject identity")
        } else {
            None
        }
    }
}

/// The groups `principal` counts for on a change governed by `rule`, or why it may not vote.
pub fn eligibility(
    rule: &ApprovalRule,
    principal: &Principal,
    owner_team: Option<&str>,
    exclusions: &Exclusions,
) -> Result<BTreeSet<ApproverGroup>, VoteRefusal> {
    if principal.disabled {
        return Err(VoteRefusal::Disabled(principal.name.clone()));
    }
    if let Some(why) = exclusions.excludes(&principal.name) {
        return Err(VoteRefusal::Excluded {
            name: principal.name.clone(),
            why,
        });
    }
    let groups = rule.groups_of(principal, owner_team);
    if groups.is_empty() {
        return Err(VoteRefusal::NotEligible {
            name: principal.name.clone(),
            rule: rule.to_string(),
        });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PrincipalId;
    use crate::principal::PrincipalKind;

    fn person(name: &str, teams: &[&str], roles: &[Role]) -> Principal {
        Principal::new(
            PrincipalId(uuid::Uuid::nil()),
            name,
            PrincipalKind::Person,
            teams,
            roles.iter().copied(),
            None,
        )
        .unwrap()
    }

    fn votes(
        rule: &ApprovalRule,
        owner: Option<&str>,
        who: &[&Principal],
    ) -> BTreeMap<String, BTreeSet<ApproverGroup>> {
        who.iter()
            .map(|p| (p.name.clone(), rule.groups_of(p, owner)))
            .collect()
    }

    #[test]
    fn progress_counts_the_votes_for_each_group() {
        let rule = ApprovalRule::parse("owner_team and 2 of team:security", 1).unwrap();
        let owner = person("dana", &["data"], &[Role::Approver]);
        let sec = person("sam", &["security"], &[Role::Approver]);
        let voters = votes(&rule, Some("data"), &[&sec]);
        let shown: Vec<String> = rule
            .progress(&voters)
            .iter()
            .map(|(g, have, need)| format!("{g} {have}/{need}"))
            .collect();
        assert_eq!(shown, ["owner_team 0/1", "team:security 1/2"]);
        let voters = votes(&rule, Some("data"), &[&sec, &owner]);
        assert_eq!(rule.progress(&voters)[0].1, 1);
    }

    #[test]
    fn parses_the_old_and_the_new_syntax() {
        assert_eq!(
            ApprovalRule::parse("owner_team", 2).unwrap().to_string(),
            "2 of owner_team"
        );
        assert_eq!(
            ApprovalRule::parse("security", 1).unwrap().to_string(),
            "1 of team:security"
        );
        let rule = ApprovalRule::parse(
            "1 of owner_team AND 2 of team:Security and 1 of role:admin",
            1,
        )
        .unwrap();
        assert_eq!(
            rule.to_string(),
            "1 of owner_team and 2 of team:security and 1 of role:admin"
        );
        assert_eq!(rule.total(), 4);
        assert_eq!(ApprovalRule::from_recorded(2, "security").total(), 2);
        assert_eq!(
            ApprovalRule::from_recorded(3, "1 of owner_team and 2 of security").total(),
            3
        );
        assert_eq!(
            ApprovalRule::parse("team:band", 1).unwrap().to_string(),
            "1 of team:band"
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (text, needle) in [
            ("", "empty"),
            ("owner_team and", "empty"),
            ("two of owner_team", "not a whole number"),
            ("0 of owner_team", "between 1"),
            ("1 of role:root", "not a role"),
            ("1 of owner_team and 1 of owner_team", "named twice"),
            ("1 of team:a b", "not \"N of GROUP\""),
        ] {
            let err = ApprovalRule::parse(text, 1).unwrap_err();
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn one_team_cannot_fill_two_quorums_and_nobody_counts_twice() {
        let rule = ApprovalRule::parse("1 of owner_team and 1 of team:security", 1).unwrap();
        let alice = person("alice", &["data"], &[Role::Approver]);
        let dora = person("dora", &["data"], &[Role::Approver]);
        let sam = person("sam", &["security", "data"], &[Role::Approver]);
        assert!(!rule.is_met(&votes(&rule, Some("data"), &[&alice, &dora])));
        // sam is in both groups but counts once.
        assert!(!rule.is_met(&votes(&rule, Some("data"), &[&sam])));
        assert!(rule.is_met(&votes(&rule, Some("data"), &[&alice, &sam])));
        // The order of assignment does not matter: sam first takes owner_team, then moves.
        assert!(rule.is_met(&votes(&rule, Some("data"), &[&sam, &alice])));
        assert_eq!(rule.missing(&votes(&rule, Some("data"), &[&alice])), 1);
    }

    #[test]
    fn separation_of_duties_has_no_bypass() {
        let rule = ApprovalRule::parse("1 of role:admin", 1).unwrap();
        let root = person("root", &[], &[Role::Admin]);
        let mut exclusions = Exclusions::default();
        assert!(eligibility(&rule, &root, None, &exclusions).is_ok());
        exclusions.sources.insert("root".into());
        assert!(matches!(
            eligibility(&rule, &root, None, &exclusions),
            Err(VoteRefusal::Excluded { .. })
        ));
        let mut disabled = root.clone();
        disabled.disabled = true;
        assert!(matches!(
            eligibility(&rule, &disabled, None, &Exclusions::default()),
            Err(VoteRefusal::Disabled(_))
        ));
        let bob = person("bob", &["platform"], &[Role::Approver]);
        let err = eligibility(
            &ApprovalRule::parse("owner_team", 1).unwrap(),
            &bob,
            Some("data"),
            &Exclusions::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bob is in no group of the approval rule \"1 of owner_team\""
        );
    }
}
