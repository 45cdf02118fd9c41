//! `POST /v1/requests`: a principal with role `requester` asks for a change that no finding
//! called for: a new service account, an OAuth client's scopes, an agent's time-boxed tool
//! access. The body is one of the request kinds (`kind` names it); each is validated field by
//! field, then decided by policy and recorded in a new case (`writ_engine::requests`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use writ_core::decision::Tier;
use writ_core::principal::Role;
use writ_core::request::{AgentToolAccess, NewServiceAccount, OauthScopeChange, RequestSpec};
use writ_engine::writeback::WriteBackError;

use crate::AppState;
use crate::auth::Caller;
use crate::body::json_body;
use crate::cases::writeback_problem;
use crate::problem::Problem;

/// A requested change; `kind` says which.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChangeRequestBody {
    /// A new service account: created only after policy review and approvals, then disabled
    /// at its expiry.
    NewServiceAccount {
        /// The target system (a `[[targets]]` name).
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        system: String,
        /// The account's name in that system.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        name: String,
        /// The team that will own it.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        owner_team: String,
        /// What it is for.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        purpose: String,
        /// When it is disabled (RFC 3339): in the future, within the policy's `@max_hours`.
        #[schema(value_type = String, format = DateTime)]
        expires_at: jiff::Timestamp,
        /// The change ticket this request belongs to.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        ticket: Option<String>,
    },
    /// An OAuth client's scopes, narrowed or widened (policy sees which are added and removed).
    OauthScopeChange {
        /// The target system (a `[[targets]]` name of kind `oauth`).
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        system: String,
        /// The client's id.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        client_id: String,
        /// Every scope the client should have afterwards (RFC 6749 scope tokens, none twice).
        #[schema(max_items = 100)]
        scopes: Vec<String>,
        /// Why.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        justification: String,
        /// The change ticket.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        ticket: Option<String>,
    },
    /// An AI agent's access to tools (scopes) for a while; taken away by itself at the end.
    AgentToolAccess {
        /// The target system.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        system: String,
        /// The agent's id there (an OAuth client id).
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        agent: String,
        /// The scopes to add for the duration (RFC 6749 scope tokens, none twice).
        #[schema(min_items = 1, max_items = 100)]
        scopes: Vec<String>,
        /// How long, in seconds from when the access is granted (at most the policy's
        /// `@max_hours`).
        #[schema(minimum = 1)]
        #[serde(deserialize_with = "crate::body::whole_seconds")]
        duration_seconds: u64,
        /// Finding types that end the access at once when raised about the agent.
        #[serde(default)]
        revoke_on: Vec<String>,
        /// Why.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        justification: String,
        /// The change ticket.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        ticket: Option<String>,
    },
    /// An agent or service principal taken away (deleted where the target can, else
    /// disabled), once its dependants are shown to have cut over.
    Offboard {
        /// The target system.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        system: String,
        /// The principal (or its credential) there.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        principal: String,
        /// The change ticket (required).
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        ticket: String,
        /// Why.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )]
        justification: String,
        /// The rotation case whose consumer check showed the dependants cut over; without one,
        /// the principal must have gone unused for `writeback.offboard_quiet_seconds`.
        #[schema(value_type = Option<String>, format = Uuid)]
        cutover_case: Option<writ_core::ids::CaseId>,
    },
}

impl From<ChangeRequestBody> for RequestSpec {
    fn from(body: ChangeRequestBody) -> Self {
        match body {
            ChangeRequestBody::NewServiceAccount {
                system,
                name,
                owner_team,
                purpose,
                expires_at,
                ticket,
            } => RequestSpec::NewServiceAccount(NewServiceAccount {
                system,
                name,
                owner_team,
                purpose,
                expires_at,
                ticket,
            }),
            ChangeRequestBody::OauthScopeChange {
                system,
                client_id,
                scopes,
                justification,
                ticket,
            } => RequestSpec::OauthScopeChange(OauthScopeChange {
                system,
                client_id,
                scopes,
                justification,
                ticket,
            }),
            ChangeRequestBody::AgentToolAccess {
                system,
                agent,
                scopes,
                duration_seconds,
                revoke_on,
                justification,
                ticket,
            } => RequestSpec::AgentToolAccess(AgentToolAccess {
                system,
                agent,
                scopes,
                duration_seconds,
                revoke_on,
                justification,
                ticket,
            }),
            ChangeRequestBody::Offboard {
                system,
                principal,
                ticket,
                justification,
                cutover_case,
            } => RequestSpec::Offboard(writ_core::request::Offboard {
                system,
                principal,
                ticket,
                justification,
                cutover_case,
            }),
        }
    }
}

/// What a request came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestResponse {
    /// The case the request opened (follow it with `GET /v1/cases/{id}`).
    pub case_id: String,
    /// The case's state: `awaiting_approval`, `remediating` (the change is queued), `denied`
    /// or `needs_review`.
    pub state: String,
    /// The change that fulfils it (`create`, `set_scopes`, `grant`).
    pub action: String,
    /// Policy's tier: `auto`, `approval`, `case_only` or `deny`.
    pub tier: String,
    /// The approval rule it waits for, when it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Policy's reason.
    pub reason: String,
    /// The policies that decided.
    pub determining_policies: Vec<String>,
    /// The scopes the change adds to what the object has today.
    pub scopes_added: Vec<String>,
    /// The scopes it takes away.
    pub scopes_removed: Vec<String>,
    /// The queued job, when policy allowed the change outright.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Who may ask for a change.
const REQUESTERS: &[Role] = &[Role::Requester];

/// Ask for a change as the authenticated principal (role `requester`, who never counts as an
/// approver of it). The request is checked field by field (422 names the field), the target
/// is read, and policy decides: the change is queued at once (201), waits for approvals (202:
/// vote with `POST /v1/cases/{id}/approvals`), or is denied (201 with state `denied`: the
/// request stays on record). Nothing is created before that.
#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    request_body(content = ChangeRequestBody, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Recorded and decided: queued at once, or denied", body = RequestResponse),
        (status = 202, description = "Recorded: waiting for approvals", body = RequestResponse),
        (status = 400, description = "Malformed request (a field missing or of the wrong type)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not ask for changes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No target of that name, or no such object in it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request of this kind for the object is still open, or the target cannot be read", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable (an expiry past the policy's maximum, a scope that is not a scope token)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RequestResponse>), Problem> {
    caller.require(REQUESTERS, "asking for a change")?;
    let body: ChangeRequestBody = json_body(&state, body)?;
    let writeback = state.writeback.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writeback-disabled",
            "Write-back is not configured",
        )
    })?;
    let outcome = writeback
        .submit_request(caller.principal(), body.into())
        .await
        .map_err(|err| match err {
            WriteBackError::NotFound(why) => {
                let field = why.split_once(": ").map_or("system", |(f, _)| f);
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-target",
                    "No such target or object",
                )
                .field(field.to_owned(), why.clone())
            }
            other => writeback_problem(other),
        })?;
    let current = outcome.request.current_scopes.iter().cloned().collect();
    let (added, removed) = outcome.request.spec.scope_delta(&current);
    let (tier, rule) = match &outcome.decision.tier {
        Tier::Auto => ("auto", None),
        Tier::Approval { .. } => ("approval", outcome.rule.clone()),
        Tier::CaseOnly { .. } => ("case_only", None),
        Tier::Deny => ("deny", None),
    };
    let status = if rule.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(RequestResponse {
            case_id: outcome.case.id.to_string(),
            state: <&str>::from(outcome.case.state).to_owned(),
            action: outcome.request.change.name().to_owned(),
            tier: tier.to_owned(),
            rule,
            reason: outcome.decision.reason.clone(),
            determining_policies: outcome.decision.determining_policies.clone(),
            scopes_added: added,
            scopes_removed: removed,
            job_id: outcome.job.map(|j| j.id.to_string()),
        }),
    ))
}
