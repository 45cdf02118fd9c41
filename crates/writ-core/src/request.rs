//! Requested changes: what a person (or a schedule) asks writ to do, rather than what a finding
//! calls for. Three kinds: a new service account, a change of an OAuth client's scopes, and
//! time-boxed tool access for an AI agent.
//!
//! A request is checked field by field ([`RequestSpec::check`]) before anything is decided; it
//! then opens a case like a finding does (`request_submitted`, carrying the policy decision),
//! is approved under the same rules (the requester never counts as an approver), and written
//! back by the same worker as the change [`RequestSpec::change`] names. A change that holds for
//! a while (an account's expiry, an agent's access) carries its end on the job
//! ([`crate::job::Job::expires_at`]); the scheduler undoes it then ([`RequestSpec::at_expiry`]).

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::change::Action;
use crate::ids::{CaseId, JobId};
use crate::job::Job;

/// The Cedar action a new service account is decided as (also the job's action name).
pub const CREATE_ACTION: &str = "create";
/// The Cedar action a change of an OAuth client's scopes is decided as.
pub const SET_SCOPES_ACTION: &str = "set_scopes";
/// The Cedar action time-boxed access for an agent is decided as.
pub const GRANT_ACTION: &str = "grant";

/// The longest anything a request asks for may last when policy sets no `@max_hours`: a year.
pub const DEFAULT_MAX_HOURS: u32 = 24 * 366;

/// The longest a name, scope or reference may be, in characters.
pub const MAX_FIELD_CHARS: usize = 256;

/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 100;

/// A request, as asked: its kind and that kind's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestSpec {
    /// A new service account, created only after approval and disabled at its expiry.
    NewServiceAccount(NewServiceAccount),
    /// An OAuth client's scopes, narrowed or widened.
    OauthScopeChange(OauthScopeChange),
    /// An AI agent's access to tools (scopes), for a while.
    AgentToolAccess(AgentToolAccess),
    /// An agent or service principal taken away: deleted where the target can, else disabled,
    /// once its dependants are shown to have cut over.
    Offboard(Offboard),
}

/// `offboard`: the principal, the change ticket, and the evidence that its dependants moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offboard {
    /// The target system.
    pub system: String,
    /// The principal (or its credential) there: an access key, a role, an OAuth client.
    pub principal: String,
    /// The change ticket (required).
    pub ticket: String,
    /// Why.
    pub justification: String,
    /// The rotation case whose consumer check showed the dependants cut over to a new
    /// credential; without one, the principal's own last use must be older than the quiet
    /// period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover_case: Option<CaseId>,
}

/// What showed that an offboarded principal's dependants no longer need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum DependantsCheck {
    /// A rotation's consumer check: its dependants use the new credential.
    Rotation {
        /// The rotation's case.
        case: CaseId,
        /// The old credential (the one offboarded, or its predecessor).
        old_key_id: String,
        /// The credential they use now.
        new_key_id: String,
        /// When the new credential was first seen in use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        used_at: Option<Timestamp>,
    },
    /// The target's own record of last use: none within the quiet period.
    Quiet {
        /// When it was last used, if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_used_at: Option<Timestamp>,
        /// The quiet period it was checked against, in seconds.
        quiet_seconds: u64,
    },
}

/// `new_service_account`: system, name, owner team, purpose, expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// The target system (a `[[targets]]` name).
    pub system: String,
    /// The account's name in that system.
    pub name: String,
    /// The team that will own it (recorded in the inventory).
    pub owner_team: String,
    /// What it is for.
    pub purpose: String,
    /// When it is disabled, automatically.
    pub expires_at: Timestamp,
    /// The change ticket this request belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// `oauth_scope_change`: an OAuth client and the scopes it should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthScopeChange {
    /// The target system (a `[[targets]]` name of kind `oauth`).
    pub system: String,
    /// The client's id.
    pub client_id: String,
    /// Every scope it should have afterwards.
    pub scopes: Vec<String>,
    /// Why.
    pub justification: String,
    /// The change ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// `agent_tool_access`: an agent, the tools (scopes) it may use, for how long, and what ends it
/// early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToolAccess {
    /// The target system.
    pub system: String,
    /// The agent's id there (an OAuth client id).
    pub agent: String,
    /// The scopes to add for the duration.
    pub scopes: Vec<String>,
    /// How long, in seconds, from when the access is granted (at most the policy's
    /// `@max_hours`).
    pub duration_seconds: u64,
    /// Finding types that end the access at once when raised about the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke_on: Vec<String>,
    /// Why.
    pub justification: String,
    /// The change ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// What is wrong with a request: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestProblem {
    /// The request's field (`name`, `scopes[2]`, ...).
    pub field: String,
    /// Why.
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> RequestProblem {
    RequestProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// A text field: not blank, no control characters, at most [`MAX_FIELD_CHARS`].
fn check_text(field: &str, value: &str) -> Result<(), RequestProblem> {
    if value.trim().is_empty() {
        return Err(problem(field, "must not be blank"));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(problem(
            field,
            format!("must be at most {MAX_FIELD_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(problem(field, "must not contain control characters"));
    }
    Ok(())
}

/// A scope token as RFC 6749 section 3.3 defines it: printable ASCII but space, `"` and `\`.
fn check_scope(field: &str, scope: &str) -> Result<(), RequestProblem> {
    let valid = !scope.is_empty()
        && scope.len() <= MAX_FIELD_CHARS
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if valid {
        Ok(())
    } else {
        Err(problem(
            field,
            "is not an OAuth scope token (RFC 6749 3.3: printable ASCII, no space, quote or backslash)",
        ))
    }
}

fn check_scopes(scopes: &[String], allow_empty: bool) -> Result<(), RequestProblem> {
    if scopes.is_empty() && !allow_empty {
        return Err(problem("scopes", "must name at least one scope"));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(problem(
            "scopes",
            format!("must name at most {MAX_SCOPES} scopes"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, scope) in scopes.iter().enumerate() {
        check_scope(&format!("scopes[{i}]"), scope)?;
        if !seen.insert(scope) {
            return Err(problem(format!("scopes[{i}]"), "is named twice"));
        }
    }
    Ok(())
}

fn check_ticket(ticket: Option<&String>) -> Result<(), RequestProblem> {
    ticket.map_or(Ok(()), |t| check_text("ticket", t))
}

impl RequestSpec {
    /// The request kind's name (`new_service_account`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            RequestSpec::NewServiceAccount(_) => "new_service_account",
            RequestSpec::OauthScopeChange(_) => "oauth_scope_change",
            RequestSpec::AgentToolAccess(_) => "agent_tool_access",
            RequestSpec::Offboard(_) => "offboard",
        }
    }

    /// The finding type a request's case is grouped under (`request:<kind>`).
    pub fn case_type(&self) -> String {
        format!("request:{}", self.kind())
    }

    /// The target system.
    pub fn system(&self) -> &str {
        match self {
            RequestSpec::NewServiceAccount(r) => &r.system,
            RequestSpec::OauthScopeChange(r) => &r.system,
            RequestSpec::AgentToolAccess(r) => &r.system,
            RequestSpec::Offboard(r) => &r.system,
        }
    }

    /// The object in the target the request is about.
    pub fn external_id(&self) -> &str {
        match self {
            RequestSpec::NewServiceAccount(r) => &r.name,
            RequestSpec::OauthScopeChange(r) => &r.client_id,
            RequestSpec::AgentToolAccess(r) => &r.agent,
            RequestSpec::Offboard(r) => &r.principal,
        }
    }

    /// The change ticket, if one is named.
    pub fn ticket(&self) -> Option<&str> {
        match self {
            RequestSpec::NewServiceAccount(r) => r.ticket.as_deref(),
            RequestSpec::OauthScopeChange(r) => r.ticket.as_deref(),
            RequestSpec::AgentToolAccess(r) => r.ticket.as_deref(),
            RequestSpec::Offboard(r) => Some(&r.ticket),
        }
    }

    /// The Cedar action it is decided as, which is also the name of the change it makes.
    pub fn action_name(&self) -> &'static str {
        match self {
            RequestSpec::NewServiceAccount(_) => CREATE_ACTION,
            RequestSpec::OauthScopeChange(_) => SET_SCOPES_ACTION,
            RequestSpec::AgentToolAccess(_) => GRANT_ACTION,
            RequestSpec::Offboard(_) => "delete",
        }
    }

    /// Checks every field at `now`: what a person can get wrong is named by its field.
    /// `max_hours` bounds an agent's access and an account's lifetime (the policy's
    /// `@max_hours`, checked again once the policy has decided).
    pub fn check(&self, now: Timestamp) -> Result<(), RequestProblem> {
        check_text("system", self.system())?;
        match self {
            RequestSpec::NewServiceAccount(r) => {
                check_text("name", &r.name)?;
                check_text("owner_team", &r.owner_team)?;
                check_text("purpose", &r.purpose)?;
                if r.expires_at <= now {
                    return Err(problem("expires_at", "must be in the future"));
                }
                check_ticket(r.ticket.as_ref())
            }
            RequestSpec::OauthScopeChange(r) => {
                check_text("client_id", &r.client_id)?;
                check_scopes(&r.scopes, true)?;
                check_text("justification", &r.justification)?;
                check_ticket(r.ticket.as_ref())
            }
            RequestSpec::AgentToolAccess(r) => {
                check_text("agent", &r.agent)?;
                check_scopes(&r.scopes, false)?;
                if r.duration_seconds == 0 {
                    return Err(problem("duration_seconds", "must be at least 1"));
                }
                for (i, finding_type) in r.revoke_on.iter().enumerate() {
                    check_text(&format!("revoke_on[{i}]"), finding_type)?;
                }
                check_text("justification", &r.justification)?;
                check_ticket(r.ticket.as_ref())
            }
            RequestSpec::Offboard(r) => {
                check_text("principal", &r.principal)?;
                check_text("ticket", &r.ticket)?;
                check_text("justification", &r.justification)
            }
        }
    }

    /// Checks what the policy limits: how long the request lasts against `max_hours` (the
    /// decision's `@max_hours`, else [`DEFAULT_MAX_HOURS`]), from `now`.
    pub fn check_terms(
        &self,
        now: Timestamp,
        max_hours: Option<u32>,
    ) -> Result<(), RequestProblem> {
        let max_hours = max_hours.unwrap_or(DEFAULT_MAX_HOURS);
        let longest = SignedDuration::from_hours(i64::from(max_hours));
        match self {
            RequestSpec::NewServiceAccount(r) => {
                if r.expires_at.duration_since(now) > longest {
                    return Err(problem(
                        "expires_at",
                        format!("is more than the policy's {max_hours} hours away"),
                    ));
                }
            }
            RequestSpec::AgentToolAccess(r) => {
                if r.duration_seconds > u64::from(max_hours) * 3600 {
                    return Err(problem(
                        "duration_seconds",
                        format!("is longer than the policy's {max_hours} hours"),
                    ));
                }
            }
            RequestSpec::OauthScopeChange(_) | RequestSpec::Offboard(_) => {}
        }
        Ok(())
    }

    /// The change that fulfils the request, given the scopes the object has now (`current`;
    /// ignored for a new account).
    pub fn change(&self, current: &BTreeSet<String>) -> Action {
        match self {
            RequestSpec::NewServiceAccount(r) => Action::Create {
                owner_team: r.owner_team.clone(),
                purpose: r.purpose.clone(),
            },
            RequestSpec::OauthScopeChange(r) => Action::SetScopes {
                scopes: sorted(r.scopes.iter().cloned()),
            },
            RequestSpec::AgentToolAccess(r) => Action::Grant {
                scopes: sorted(r.scopes.iter().filter(|s| !current.contains(*s)).cloned()),
            },
            // Deleted; the engine disables instead where the target cannot delete.
            RequestSpec::Offboard(_) => Action::Delete,
        }
    }

    /// The scopes the request adds to and removes from `current`.
    pub fn scope_delta(&self, current: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
        match self {
            RequestSpec::NewServiceAccount(_) | RequestSpec::Offboard(_) => {
                (Vec::new(), Vec::new())
            }
            RequestSpec::OauthScopeChange(r) => {
                let wanted: BTreeSet<&String> = r.scopes.iter().collect();
                let added = sorted(
                    wanted
                        .iter()
                        .filter(|s| !current.contains(**s))
                        .map(|s| (*s).clone()),
                );
                let removed = sorted(current.iter().filter(|s| !wanted.contains(s)).cloned());
                (added, removed)
            }
            RequestSpec::AgentToolAccess(r) => (
                sorted(r.scopes.iter().filter(|s| !current.contains(*s)).cloned()),
                Vec::new(),
            ),
        }
    }

    /// When the change ends, if it ends: an account at its expiry, an agent's access
    /// `duration_seconds` after `granted_at`.
    pub fn expires_at(&self, granted_at: Timestamp) -> Option<Timestamp> {
        match self {
            RequestSpec::NewServiceAccount(r) => Some(r.expires_at),
            RequestSpec::AgentToolAccess(r) => {
                let seconds = i64::try_from(r.duration_seconds).unwrap_or(i64::MAX / 2);
                granted_at
                    .checked_add(SignedDuration::from_secs(seconds))
                    .ok()
            }
            RequestSpec::OauthScopeChange(_) | RequestSpec::Offboard(_) => None,
        }
    }

    /// The change that ends what `granted` did, at expiry: an account is disabled, an agent's
    /// added scopes are taken away.
    pub fn at_expiry(granted: &Action) -> Option<Action> {
        match granted {
            Action::Create { .. } => Some(Action::Disable),
            Action::Grant { scopes } => Some(Action::ReduceScope {
                remove: scopes.clone(),
            }),
            _ => None,
        }
    }

    /// How long the request lasts, in hours rounded up (what policies see as
    /// `context.request.duration_hours`), from `now`.
    pub fn duration_hours(&self, now: Timestamp) -> i64 {
        let seconds = match self {
            RequestSpec::NewServiceAccount(r) => r.expires_at.duration_since(now).as_secs().max(0),
            RequestSpec::AgentToolAccess(r) => {
                i64::try_from(r.duration_seconds).unwrap_or(i64::MAX)
            }
            RequestSpec::OauthScopeChange(_) | RequestSpec::Offboard(_) => 0,
        };
        seconds.saturating_add(3599) / 3600
    }
}

fn sorted(scopes: impl Iterator<Item = String>) -> Vec<String> {
    scopes.collect::<BTreeSet<_>>().into_iter().collect()
}

/// A request as recorded: what was asked, by whom, and the scopes it found in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// What was asked.
    pub spec: RequestSpec,
    /// Who asked (a principal's canonical name); never counted as an approver of it.
    pub requester: String,
    /// The object's scopes when the request was decided (empty for a new account).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_scopes: Vec<String>,
    /// The change that fulfils it.
    pub change: Action,
    /// For an offboarding: what showed that its dependants no longer need the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependants: Option<DependantsCheck>,
}

impl Request {
    /// The job that makes the change, queued at `now`: a change that ends by itself (an
    /// account's expiry, an agent's access) carries its end.
    pub fn job(&self, id: JobId, case_id: CaseId, now: Timestamp, dry_run: bool) -> Job {
        let mut job = Job::queued(
            id,
            case_id,
            self.spec.system(),
            self.spec.external_id(),
            self.change.clone(),
            dry_run,
        );
        job.expires_at = self.spec.expires_at(now);
        job
    }

    /// The team that will own what the request creates (a new account's), if it says.
    pub fn owner_team(&self) -> Option<&str> {
        match &self.spec {
            RequestSpec::NewServiceAccount(r) => Some(&r.owner_team),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    fn account() -> RequestSpec {
        RequestSpec::NewServiceAccount(NewServiceAccount {
            system: "pg".into(),
            name: "svc_reports".into(),
            owner_team: "data".into(),
            purpose: "nightly reports".into(),
            expires_at: "2026-12-31T00:00:00Z".parse().unwrap(),
            ticket: Some("CHG-1".into()),
        })
    }

    #[test]
    fn requests_parse_by_kind_and_refuse_unknown_fields() {
        let json = r#"{"kind":"oauth_scope_change","system":"idp","client_id":"c1","scopes":["api:read"],"justification":"x"}"#;
        let spec: RequestSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.kind(), "oauth_scope_change");
        assert_eq!(serde_json::to_string(&spec).unwrap(), json);
        let extra = r#"{"kind":"oauth_scope_change","system":"idp","client_id":"c1","scopes":[],"justification":"x","admin":true}"#;
        assert!(serde_json::from_str::<RequestSpec>(extra).is_err());
        let missing = r#"{"kind":"new_service_account","system":"pg","name":"a","purpose":"p","expires_at":"2027-01-01T00:00:00Z"}"#;
        let err = serde_json::from_str::<RequestSpec>(missing).unwrap_err();
        assert!(err.to_string().contains("owner_team"), "{err}");
    }

    #[test]
    fn checks_name_the_field() {
        assert_eq!(account().check(now()), Ok(()));
        let RequestSpec::NewServiceAccount(mut r) = account() else {
            unreachable!()
        };
        r.expires_at = now();
        assert_eq!(
            RequestSpec::NewServiceAccount(r)
                .check(now())
                .unwrap_err()
                .field,
            "expires_at"
        );
        let spec = RequestSpec::AgentToolAccess(AgentToolAccess {
            system: "idp".into(),
            agent: "bot".into(),
            scopes: vec!["tools:search".into(), "bad scope".into()],
            duration_seconds: 60,
            revoke_on: vec![],
            justification: "x".into(),
            ticket: None,
        });
        assert_eq!(spec.check(now()).unwrap_err().field, "scopes[1]");
    }

    #[test]
    fn scope_deltas_and_changes() {
        let current: BTreeSet<String> = ["api:read".to_owned(), "api:write".to_owned()].into();
        let spec = RequestSpec::OauthScopeChange(OauthScopeChange {
            system: "idp".into(),
            client_id: "c".into(),
            scopes: vec!["api:read".into(), "tools:deploy".into()],
            justification: "x".into(),
            ticket: None,
        });
        assert_eq!(
            spec.scope_delta(&current),
            (
                vec!["tools:deploy".to_owned()],
                vec!["api:write".to_owned()]
            )
        );
        let agent = RequestSpec::AgentToolAccess(AgentToolAccess {
            system: "idp".into(),
            agent: "bot".into(),
            scopes: vec!["api:read".into(), "tools:search".into()],
            duration_seconds: 7200,
            revoke_on: vec![],
            justification: "x".into(),
            ticket: None,
        });
        let granted = agent.change(&current);
        assert_eq!(
            granted,
            Action::Grant {
                scopes: vec!["tools:search".into()]
            }
        );
        assert_eq!(
            RequestSpec::at_expiry(&granted),
            Some(Action::ReduceScope {
                remove: vec!["tools:search".into()]
            })
        );
        assert_eq!(agent.duration_hours(now()), 2);
        assert!(agent.check_terms(now(), Some(1)).is_err());
        assert!(agent.check_terms(now(), Some(2)).is_ok());
        assert_eq!(
            agent.expires_at(now()),
            Some("2026-12-01T02:00:00Z".parse().unwrap())
        );
    }
}
