//! Administration over the API: principals and their tokens, target discovery, ownership
//! rules, and `whoami`. Everything here is an admin's action (except `whoami` and revoking
//! one's own token), recorded in the ledger as that admin.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use writ_core::finding::Trust;
use writ_core::ids::TokenId;
use writ_core::principal::{Principal, PrincipalKind, Role};
use writ_engine::principals::{NewPrincipal, PrincipalChange, PrincipalsError};
use writ_store::TokenView;

use crate::AppState;
use crate::auth::{Caller, forbidden};
use crate::body::{bytes, json_body};
use crate::problem::Problem;

/// A principal, as shown (never with a token secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalInfo {
    /// Its canonical name.
    pub name: String,
    /// `person` or `service`.
    pub kind: String,
    /// Its teams.
    pub teams: Vec<String>,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its trust level (sources).
    pub trust: Option<String>,
    /// Whether it is disabled.
    pub disabled: bool,
}

impl From<&Principal> for PrincipalInfo {
    fn from(p: &Principal) -> Self {
        Self {
            name: p.name.clone(),
            kind: <&str>::from(p.kind).to_owned(),
            teams: p.teams.iter().cloned().collect(),
            roles: p
                .roles
                .iter()
                .map(|r| <&str>::from(*r).to_owned())
                .collect(),
            trust: p.trust.map(|t| <&str>::from(t).to_owned()),
            disabled: p.disabled,
        }
    }
}

/// A role name.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleParam {
    /// Sends findings.
    Source,
    /// Asks for changes.
    Requester,
    /// Votes on changes.
    Approver,
    /// Manages principals, targets and inventory.
    Admin,
    /// Reads everything.
    Auditor,
    /// Emergency bypass.
    BreakGlass,
    /// Accepts residual risk (approves overrides of automated denials).
    RiskOwner,
}

impl From<RoleParam> for Role {
    fn from(r: RoleParam) -> Self {
        match r {
            RoleParam::Source => Role::Source,
            RoleParam::Requester => Role::Requester,
            RoleParam::Approver => Role::Approver,
            RoleParam::Admin => Role::Admin,
            RoleParam::Auditor => Role::Auditor,
            RoleParam::BreakGlass => Role::BreakGlass,
            RoleParam::RiskOwner => Role::RiskOwner,
        }
    }
}

/// A trust level.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrustParam {
    /// Unvetted.
    Low,
    /// Ordinary.
    Medium,
    /// Authoritative.
    High,
}

impl From<TrustParam> for Trust {
    fn from(t: TrustParam) -> Self {
        match t {
            TrustParam::Low => Trust::Low,
            TrustParam::Medium => Trust::Medium,
            TrustParam::High => Trust::High,
        }
    }
}

/// A person or a service.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindParam {
    /// A human.
    #[default]
    Person,
    /// A machine.
    Service,
}

/// A new principal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// Its name (canonicalised: NFKC, case-folded, trimmed; letters, digits and `-_.@+`).
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Person (default) or service.
    #[serde(default)]
    pub kind: KindParam,
    /// Its teams.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Its roles (at least one).
    #[schema(min_items = 1)]
    pub roles: Vec<RoleParam>,
    /// Trust level: required for a source, refused for anything else.
    pub trust: Option<TrustParam>,
    /// Days until its first token expires (default 90; 0: never).
    #[schema(minimum = 0, maximum = 3650)]
    #[serde(default, deserialize_with = "whole_days")]
    pub token_days: Option<u32>,
}

/// A new token: the secret is shown here once and kept nowhere.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The principal.
    pub principal: PrincipalInfo,
    /// The token's id (for listing and revoking).
    pub token_id: String,
    /// When it expires (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// The secret. Store it now: writ keeps only its SHA-256.
    pub token: String,
}

/// A token as listed (no secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// When it expires, if ever.
    pub expires_at: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<&TokenView> for TokenInfo {
    fn from(t: &TokenView) -> Self {
        Self {
            id: t.token.id.to_string(),
            expires_at: t.token.expires_at.map(|at| at.to_string()),
            revoked: t.revoked,
        }
    }
}

/// A change to a principal; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePrincipal {
    /// Its new teams.
    pub teams: Option<Vec<String>>,
    /// Its new roles (at least one).
    #[schema(min_items = 1)]
    pub roles: Option<Vec<RoleParam>>,
    /// Its new trust level (sources).
    pub trust: Option<TrustParam>,
    /// Why.
    pub reason: Option<String>,
}

/// Why a principal is disabled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisablePrincipal {
    /// Why (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub reason: String,
}

/// A new token's lifetime.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Days until it expires (default 90; 0: never).
    #[schema(minimum = 0, maximum = 3650)]
    #[serde(default, deserialize_with = "whole_days")]
    pub days: Option<u32>,
}

const ADMIN: &[Role] = &[Role::Admin];

/// A number of days: any JSON number with no fraction (`30` or `30.0`: JSON Schema calls both
/// an integer), or null.
fn whole_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    crate::body::whole_number(&number)
        .and_then(|days| u32::try_from(days).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number of days")))
}

/// The longest a token may live, in days.
const MAX_TOKEN_DAYS: u32 = 3650;

/// A token's lifetime from `days` (`field` names it in the 400 when over the maximum).
#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
fn ttl(days: Option<u32>, field: &str) -> Result<Option<SignedDuration>, Problem> {
    match days.unwrap_or(90) {
        0 => Ok(None),
        days if days > MAX_TOKEN_DAYS => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .field(
            field,
            format!("at most {MAX_TOKEN_DAYS} days (0: never expires)"),
        )),
        days => Ok(Some(SignedDuration::from_hours(i64::from(days) * 24))),
    }
}

fn issued(
    principal: &Principal,
    id: TokenId,
    expires: Option<jiff::Timestamp>,
    secret: String,
) -> IssuedToken {
    IssuedToken {
        principal: PrincipalInfo::from(principal),
        token_id: id.to_string(),
        expires_at: expires.map(|at| at.to_string()),
        token: secret,
    }
}

/// Who am I: the authenticated principal.
#[utoipa::path(get, path = "/v1/whoami", tag = "principals",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = PrincipalInfo),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn whoami(caller: Caller) -> Json<PrincipalInfo> {
    Json(PrincipalInfo::from(caller.principal()))
}

/// Every principal.
#[utoipa::path(get, path = "/v1/principals", tag = "principals",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The principals", body = [PrincipalInfo]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins and auditors list principals", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_principals(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<PrincipalInfo>>, Problem> {
    caller.require(&[Role::Admin, Role::Auditor], "listing principals")?;
    let all = state.principals.list().await.map_err(principals_problem)?;
    Ok(Json(
        all.iter()
            .map(|v| PrincipalInfo::from(&v.principal))
            .collect(),
    ))
}

/// Add a principal and issue its first token (shown once).
#[utoipa::path(post, path = "/v1/principals", tag = "principals",
    request_body(content = CreatePrincipal, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the token is in the body, once", body = IssuedToken),
        (status = 400, description = "Malformed request or invalid principal", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins add principals", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn create_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    caller.require(ADMIN, "adding principals")?;
    let request: CreatePrincipal = json_body(&state, body)?;
    let new = NewPrincipal {
        name: request.name,
        kind: match request.kind {
            KindParam::Person => PrincipalKind::Person,
            KindParam::Service => PrincipalKind::Service,
        },
        teams: request.teams,
        roles: request.roles.into_iter().map(Role::from).collect(),
        trust: request.trust.map(Trust::from),
        token_ttl: ttl(request.token_days, "token_days")?,
    };
    let (principal, token) = state
        .principals
        .create(caller.principal(), new)
        .await
        .map_err(principals_problem)?;
    let tokens = state
        .principals
        .tokens(&principal.name)
        .await
        .map_err(principals_problem)?;
    let record = tokens.iter().find(|t| t.token.sha256 == token.sha256);
    Ok((
        StatusCode::CREATED,
        Json(issued(
            &principal,
            record.map_or(TokenId(uuid::Uuid::nil()), |t| t.token.id),
            record.and_then(|t| t.token.expires_at),
            token.secret,
        )),
    ))
}

/// One principal.
#[utoipa::path(get, path = "/v1/principals/{name}", tag = "principals",
    params(("name" = String, Path, description = "The principal's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The principal", body = PrincipalInfo),
        (status = 400, description = "Not a valid name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins and auditors read principals", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn get_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PrincipalInfo>, Problem> {
    caller.require(&[Role::Admin, Role::Auditor], "reading principals")?;
    let view = state
        .principals
        .get(&name)
        .await
        .map_err(principals_problem)?;
    Ok(Json(PrincipalInfo::from(&view.principal)))
}

/// Change a principal's teams, roles or trust.
#[utoipa::path(patch, path = "/v1/principals/{name}", tag = "principals",
    params(("name" = String, Path, description = "The principal's name")),
    request_body(content = ChangePrincipal, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = PrincipalInfo),
        (status = 400, description = "Malformed request or invalid principal", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins change principals", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn change_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PrincipalInfo>, Problem> {
    caller.require(ADMIN, "changing principals")?;
    let request: ChangePrincipal = json_body(&state, body)?;
    let principal = state
        .principals
        .change(
            caller.principal(),
            &name,
            PrincipalChange {
                teams: request.teams,
                roles: request
                    .roles
                    .map(|r| r.into_iter().map(Role::from).collect()),
                trust: request.trust.map(Trust::from),
            },
            request.reason,
        )
        .await
        .map_err(principals_problem)?;
    Ok(Json(PrincipalInfo::from(&principal)))
}

/// Disable a principal: its tokens are revoked and its votes stop counting.
#[utoipa::path(post, path = "/v1/principals/{name}/disable", tag = "principals",
    params(("name" = String, Path, description = "The principal's name")),
    request_body(content = DisablePrincipal, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Disabled", body = PrincipalInfo),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins disable principals (not themselves)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Disabled already, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn disable_principal(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PrincipalInfo>, Problem> {
    caller.require(ADMIN, "disabling principals")?;
    let request: DisablePrincipal = json_body(&state, body)?;
    if request.reason.trim().is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .field("reason", "required, not blank"));
    }
    let principal = state
        .principals
        .disable(caller.principal(), &name, request.reason)
        .await
        .map_err(principals_problem)?;
    Ok(Json(PrincipalInfo::from(&principal)))
}

/// A principal's tokens (ids and state, never secrets).
#[utoipa::path(get, path = "/v1/principals/{name}/tokens", tag = "principals",
    params(("name" = String, Path, description = "The principal's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = [TokenInfo]),
        (status = 400, description = "Not a valid name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins, auditors and the principal itself list its tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenInfo>>, Problem> {
    let own =
        writ_core::principal::canonical_name(&name).is_ok_and(|n| n == caller.principal().name);
    if !own {
        caller.require(
            &[Role::Admin, Role::Auditor],
            "listing another principal's tokens",
        )?;
    }
    let tokens = state
        .principals
        .tokens(&name)
        .await
        .map_err(principals_problem)?;
    Ok(Json(tokens.iter().map(TokenInfo::from).collect()))
}

/// Issue a new token to a principal (shown once).
#[utoipa::path(post, path = "/v1/principals/{name}/tokens", tag = "principals",
    params(("name" = String, Path, description = "The principal's name")),
    request_body(content = NewTokenRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Issued; the token is in the body, once", body = IssuedToken),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins issue tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The principal is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn issue_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    caller.require(ADMIN, "issuing tokens")?;
    let request: NewTokenRequest = json_body(&state, body)?;
    let (record, token) = state
        .principals
        .issue_token(caller.principal(), &name, ttl(request.days, "days")?)
        .await
        .map_err(principals_problem)?;
    let principal = state
        .principals
        .get(&name)
        .await
        .map_err(principals_problem)?
        .principal;
    Ok((
        StatusCode::CREATED,
        Json(issued(
            &principal,
            record.id,
            record.expires_at,
            token.secret,
        )),
    ))
}

/// Revoke a token (an admin, or the token's own principal).
#[utoipa::path(delete, path = "/v1/principals/{name}/tokens/{id}", tag = "principals",
    params(
        ("name" = String, Path, description = "The principal's name"),
        ("id" = String, Path, format = Uuid, description = "The token id")
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Not a valid name or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins and the principal itself revoke its tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let id: TokenId = id.parse().map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-token-id", "Not a token id")
            .field("id", format!("{id:?} is not a UUID"))
    })?;
    state
        .principals
        .revoke_token(caller.principal(), &name, id)
        .await
        .map_err(principals_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a discovery or an import recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryResult {
    /// The system discovered (discovery only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Objects the target reported (discovery only).
    pub discovered: usize,
    /// Identities recorded (new or updated).
    pub recorded: usize,
    /// Of those, how many an ownership rule matched.
    pub owned: usize,
    /// Cases opened before their identity was known, decided now (discovery only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<usize>,
    /// Reconciliation findings the sync raised (orphaned, dormant, drift, expired but active,
    /// unknown), new ones only (discovery only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<usize>,
}

/// Discover a configured target's identities into the inventory.
#[utoipa::path(post, path = "/v1/targets/{name}/sync", tag = "inventory",
    params(("name" = String, Path, description = "The [[targets]] name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Discovered and recorded", body = InventoryResult),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins run discovery", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The target could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn sync_target(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<InventoryResult>, Problem> {
    caller.require(ADMIN, "running discovery")?;
    let connector = state.targets.get(&name).cloned().ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "no-target", "No such target").field(
            "name",
            format!("no [[targets]] named {name:?} is configured and reachable"),
        )
    })?;
    let actor = writ_engine::principals::actor_of(caller.principal());
    let report = writ_engine::inventory::sync_target(
        &*state.store,
        &state.sequencer,
        &*connector,
        &*state.clock,
        &*state.ids,
        &writ_engine::inventory::SyncRun {
            target: &name,
            scheduled: false,
            actor: &actor,
            refresh_after: jiff::SignedDuration::ZERO,
            dormant_after: Some(state.settings.dormant_after),
        },
    )
    .await
    .map_err(inventory_problem)?;
    // What the sync found wrong goes through the same pipeline as any source's findings.
    let raised = match &state.ingestor {
        Some(ingestor) => writ_engine::inventory::raise_findings(ingestor, report.findings.clone())
            .await
            .map_err(|err| Problem::unavailable(&err))?,
        None => 0,
    };
    // Cases opened before their identity was known are decided now.
    let decided = match &state.ingestor {
        Some(ingestor) => ingestor
            .resolve_cases(&report.subjects)
            .await
            .map_err(|err| Problem::unavailable(&err))?,
        None => 0,
    };
    Ok(Json(InventoryResult {
        system: Some(connector.system().to_owned()),
        discovered: report.discovered,
        recorded: report.recorded,
        owned: report.owned,
        decided: Some(decided),
        findings: Some(raised),
    }))
}

/// A target system's inventory sync: freshness and last result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemSummary {
    /// The `[[targets]]` name (as last recorded, for a system no longer configured).
    pub target: Option<String>,
    /// The system.
    pub system: String,
    /// Whether this writ can reach it now (its connector is configured and connected).
    pub connected: bool,
    /// When a sync last ended (RFC 3339), if ever.
    pub last_attempt_at: Option<String>,
    /// When a sync last succeeded: the inventory's freshness (RFC 3339), if ever.
    pub last_success_at: Option<String>,
    /// Seconds since the last successful sync, if any.
    pub age_seconds: Option<i64>,
    /// Whether the last sync ran on the schedule.
    pub scheduled: Option<bool>,
    /// `succeeded`, `failed`, or `never`.
    pub result: String,
    /// Why the last sync failed.
    pub error: Option<String>,
    /// The last successful sync's counts: objects, identities, owned, changed.
    pub discovered: Option<u64>,
    /// Identities the system holds.
    pub identities: Option<u64>,
    /// Of those, with an owner.
    pub owned: Option<u64>,
    /// New or changed at the last sync.
    pub changed: Option<u64>,
    /// Why automation is paused on the system (no automatic tier, queued jobs wait), if it is.
    pub paused_reason: Option<String>,
}

/// Every target system: how fresh its inventory is, and how its last sync went.
#[utoipa::path(get, path = "/v1/systems", tag = "inventory",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The systems, by name", body = [SystemSummary]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read the inventory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_systems(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<SystemSummary>>, Problem> {
    use writ_core::event::SyncOutcome;
    caller.require(crate::READERS, "reading the inventory")?;
    let recorded = state
        .store
        .systems()
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    let now = state.clock.now();
    let mut out: Vec<SystemSummary> = Vec::new();
    let configured: Vec<(&String, &std::sync::Arc<dyn writ_connectors::Connector>)> =
        state.targets.iter().collect();
    for status in &recorded {
        let target = configured
            .iter()
            .find(|(_, c)| c.system() == status.system)
            .map(|(name, _)| (*name).clone());
        let (result, error, counts) = match &status.outcome {
            SyncOutcome::Succeeded {
                discovered,
                identities,
                owned,
                changed,
            } => (
                "succeeded",
                None,
                Some((*discovered, *identities, *owned, *changed)),
            ),
            SyncOutcome::Failed { error } => ("failed", Some(error.clone()), None),
        };
        out.push(SystemSummary {
            connected: target.is_some(),
            target: Some(target.unwrap_or_else(|| status.target.clone())),
            system: status.system.clone(),
            last_attempt_at: Some(status.last_attempt_at.to_string()),
            last_success_at: status.last_success_at.map(|t| t.to_string()),
            age_seconds: status
                .last_success_at
                .map(|t| now.duration_since(t).as_secs()),
            scheduled: Some(status.scheduled),
            result: result.to_owned(),
            error,
            discovered: counts.map(|c| c.0),
            identities: counts.map(|c| c.1),
            owned: counts.map(|c| c.2),
            changed: counts.map(|c| c.3),
            paused_reason: status.paused_reason.clone(),
        });
    }
    for (name, connector) in configured {
        if recorded.iter().any(|s| s.system == connector.system()) {
            continue;
        }
        out.push(SystemSummary {
            target: Some(name.clone()),
            system: connector.system().to_owned(),
            connected: true,
            last_attempt_at: None,
            last_success_at: None,
            age_seconds: None,
            scheduled: None,
            result: "never".to_owned(),
            error: None,
            discovered: None,
            identities: None,
            owned: None,
            changed: None,
            paused_reason: None,
        });
    }
    out.sort_by(|a, b| a.system.cmp(&b.system));
    Ok(Json(out))
}

/// One ownership rule (see `writ_core::ownership`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "documents the body; the handler reads writ_core's OwnershipRule"
)]
pub struct RuleParam {
    /// A glob over `system/external_id`: `*` any run of characters, `?` one; `[ ] { } \` are
    /// not allowed.
    #[schema(min_length = 1, pattern = r"^[^\[\]{}\\]+$")]
    pub pattern: String,
    /// The owning team (absent or null: no owner).
    pub owner_team: Option<String>,
    /// How critical.
    pub criticality: CriticalityParam,
    /// Overrides what the target says about administrative rights.
    pub privileged: Option<bool>,
}

/// How critical an identity's system is.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code, reason = "documents the body")]
pub enum CriticalityParam {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Business critical.
    BusinessCritical,
}

/// Query of `POST /v1/inventory/rules`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesQuery {
    /// The rules file's name, as recorded in the ledger and named in errors (default
    /// `rules.json`).
    #[param(min_length = 1, max_length = 255)]
    pub name: Option<String>,
}

/// Import ownership and criticality rules (a JSON array; `writ inventory import` also reads CSV
/// files and sends them as this), record them in the ledger and apply them to known
/// identities.
#[utoipa::path(post, path = "/v1/inventory/rules", tag = "inventory",
    params(RulesQuery),
    request_body(content = Vec<RuleParam>, description = "The rules, first match wins", content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Imported and applied", body = InventoryResult),
        (status = 400, description = "The rules are malformed (the line is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Only admins import rules", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn import_rules(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<RulesQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<InventoryResult>, Problem> {
    caller.require(ADMIN, "importing ownership rules")?;
    let Query(query) = query.map_err(|err| crate::body::bad_query(&err))?;
    let name = query.name.unwrap_or_else(|| "rules.json".to_owned());
    if name.is_empty() || name.chars().count() > 255 {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
                .field("name", "1 to 255 characters"),
        );
    }
    let body = bytes(&state, body)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .field("body", "not UTF-8 text")
    })?;
    // The body is always JSON (the CLI turns a CSV file into it); `name` only names it.
    let rules = writ_core::ownership::parse_rules(writ_core::ownership::RulesFormat::Json, text)
        .map_err(|err| {
            inventory_problem(writ_engine::inventory::InventoryError::Rules {
                file: name.clone(),
                line: err.line,
                message: err.message,
            })
        })?;
    if rules.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "Invalid request body",
        )
        .detail(format!("{name} holds no rule"))
        .field("body", "no rule"));
    }
    let report = writ_engine::inventory::import_rules(
        &*state.store,
        &state.sequencer,
        &name,
        &body,
        rules,
        &*state.clock,
        &writ_engine::principals::actor_of(caller.principal()),
    )
    .await
    .map_err(inventory_problem)?;
    Ok(Json(InventoryResult {
        system: None,
        discovered: report.discovered,
        recorded: report.recorded,
        owned: report.owned,
        decided: None,
        findings: None,
    }))
}

fn inventory_problem(err: writ_engine::inventory::InventoryError) -> Problem {
    use writ_engine::inventory::InventoryError as E;
    match err {
        E::Rules { line, message, .. } => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-rules",
            "Invalid ownership rules",
        )
        .detail(format!("line {line}: {message}"))
        .field(format!("line {line}"), message),
        E::Connector(err) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "target-failed",
            "The target could not be read",
        )
        .detail(err.to_string()),
        err @ (E::Store(_) | E::Append(_)) => Problem::unavailable(&err),
        err @ E::Corrupt(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt-ledger",
            "Unreadable ledger",
        )
        .detail(err.to_string()),
    }
}

pub(crate) fn principals_problem(err: PrincipalsError) -> Problem {
    match err {
        PrincipalsError::Invalid(err) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-principal",
            "Invalid principal",
        )
        .detail(err.to_string())
        .field("name", err.to_string()),
        PrincipalsError::Forbidden(why) => forbidden(why),
        PrincipalsError::NotFound(why) => {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").field("name", why)
        }
        PrincipalsError::Conflict(why) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(why)
        }
        err @ (PrincipalsError::Store(_)
        | PrincipalsError::Append(_)
        | PrincipalsError::Random(_)) => Problem::unavailable(&err),
    }
}
