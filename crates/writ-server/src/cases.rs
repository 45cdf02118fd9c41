//! Cases and identities: reading them, voting on a case's change, and rolling a change back.
//! Every route here needs an authenticated principal ([`Caller`]); the actor recorded in the
//! ledger is that principal, never a name from the request.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use writ_core::approval::Verdict;
use writ_core::case::{Case, CaseState};
use writ_core::ids::CaseId;
use writ_core::principal::Role;
use writ_engine::writeback::RollbackOutcome;
use writ_engine::writeback::WriteBackError;
use writ_store::CaseFilter;

use crate::AppState;
use crate::auth::{Caller, READERS, forbidden};
use crate::body::json_body;
use crate::problem::Problem;

/// A case, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseSummary {
    /// Its id.
    pub id: String,
    /// The identity it is about, once known.
    pub identity_id: Option<String>,
    /// The subject as the findings named it.
    pub subject: String,
    /// The finding type that groups it.
    pub finding_type: String,
    /// Its operational state.
    pub state: String,
    /// Whether the finding is closed for compliance.
    pub compliance_closed: bool,
}

impl From<&Case> for CaseSummary {
    fn from(case: &Case) -> Self {
        Self {
            id: case.id.to_string(),
            identity_id: case.identity_id.map(|id| id.to_string()),
            subject: case.subject.clone(),
            finding_type: case.finding_type.clone(),
            state: <&str>::from(case.state).to_owned(),
            compliance_closed: case.compliance_closed,
        }
    }
}

/// One ledger event of a case's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEvent {
    /// Its position in the ledger.
    pub seq: u64,
    /// When it was appended (RFC 3339).
    pub time: String,
    /// What happened.
    pub kind: String,
    /// Who did it: `user:NAME` or `service:NAME` (an authenticated principal), `source:NAME`,
    /// `engine`, `operator:...`.
    pub actor: String,
    /// The event's fields (rationales, decisions, plans; never secrets).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// A case with its whole timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    /// The case.
    pub case: CaseSummary,
    /// The lifecycle at a glance: the operational and the compliance closure apart, every
    /// decision (the one in force, those superseded), exceptions with their expiry, break-glass
    /// changes with their review, and the closed case this one continues.
    #[schema(value_type = Object)]
    pub lifecycle: writ_core::lifecycle::Lifecycle,
    /// Every ledger event about it, oldest first.
    pub events: Vec<TimelineEvent>,
}

/// Query of `GET /v1/cases`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CasesQuery {
    /// Only cases in this state (the document lists the states: see `ExactSchemas`).
    #[param(value_type = Option<String>)]
    pub state: Option<CaseState>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// List cases, most recently changed first.
#[utoipa::path(get, path = "/v1/cases", tag = "cases",
    params(CasesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cases", body = [CaseSummary]),
        (status = 400, description = "A bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read cases", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_cases(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<CasesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CaseSummary>>, Problem> {
    caller.require(READERS, "reading cases")?;
    let Query(query) = query.map_err(|err| crate::body::bad_query(&err))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
                .field("limit", "between 1 and 1000"),
        );
    }
    let cases = state
        .store
        .cases(&CaseFilter {
            state: query.state,
            limit: Some(limit),
            ..CaseFilter::default()
        })
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    Ok(Json(cases.iter().map(CaseSummary::from).collect()))
}

/// Query of `GET /v1/reports/controls`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ControlsQuery {
    /// `nist-csf-2` or `owasp-nhi`.
    #[param(value_type = String)]
    pub framework: ControlFramework,
    /// Only entries from the last this many days (1 to 36500); all when absent.
    #[param(minimum = 1, maximum = 36500)]
    pub since_days: Option<u32>,
}

/// A control framework, as the query names it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub enum ControlFramework {
    /// NIST Cybersecurity Framework 2.0.
    #[serde(rename = "nist-csf-2")]
    NistCsf2,
    /// OWASP Non-Human Identities Top 10.
    #[serde(rename = "owasp-nhi")]
    OwaspNhi,
}

/// Evidence by control.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlsReport {
    /// The framework.
    pub framework: String,
    /// Per control id: `events`, `kinds` (event kind -> count), `cases`, and `entries`
    /// (`seq`, `kind`, `case_id`).
    #[schema(value_type = Object)]
    pub controls: serde_json::Value,
    /// Those entries with their inclusion proofs against the latest signed checkpoint: an
    /// offline bundle `writ audit verify --bundle` checks.
    #[schema(value_type = Object)]
    pub bundle: serde_json::Value,
}

/// Evidence by control: per control of the framework, the ledger entries and cases that
/// evidence it, and a bundle of those entries with inclusion proofs, for an auditor to check
/// offline.
#[utoipa::path(get, path = "/v1/reports/controls", tag = "ledger",
    params(ControlsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", body = ControlsReport),
        (status = 400, description = "A bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read cases", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Nothing has been appended yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn controls_report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<ControlsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ControlsReport>, Problem> {
    use writ_engine::audit::{AuditError, Framework};
    caller.require(READERS, "reading the ledger's evidence")?;
    let Query(query) = query.map_err(|err| crate::body::bad_query(&err))?;
    if query.since_days.is_some_and(|d| !(1..=36500).contains(&d)) {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
                .field("since_days", "between 1 and 36500"),
        );
    }
    let Some(verifier) = &state.verifier else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-ledger-key",
            "The ledger's public key is not loaded",
        ));
    };
    let (framework, name) = match query.framework {
        ControlFramework::NistCsf2 => (Framework::NistCsf2, "nist-csf-2"),
        ControlFramework::OwaspNhi => (Framework::OwaspNhi, "owasp-nhi"),
    };
    let since = query.since_days.and_then(|days| {
        state
            .clock
            .now()
            .checked_sub(jiff::SignedDuration::from_hours(i64::from(days) * 24))
            .ok()
    });
    let (controls, bundle) =
        writ_engine::audit::controls_report(&*state.store, framework, since, verifier)
            .await
            .map_err(|err| match err {
                AuditError::NoCheckpoint => {
                    Problem::new(StatusCode::NOT_FOUND, "no-checkpoint", "No checkpoint yet")
                        .detail("the ledger is empty")
                }
                other => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "report-failed",
                    "The report could not be made",
                )
                .detail(other.to_string()),
            })?;
    let bundle = bundle
        .to_json()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    Ok(Json(ControlsReport {
        framework: name.to_owned(),
        controls: serde_json::to_value(&controls).unwrap_or_default(),
        bundle,
    }))
}

/// A case's decisions replayed (see `writ_engine::replay`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseReplay {
    /// Whether every decision replays identically under the bundle that made it.
    pub all_identical: bool,
    /// The bundle in force today, if one is loaded.
    pub today_bundle: Option<String>,
    /// Each recorded decision: `seq`, `kind`, `action`, `bundle_hash`, `recorded`, `replay`
    /// (`identical`, `different`, `not_kept`, `error`), `replayed` (when different), `error`,
    /// `today` (what today's bundle decides) and `today_same_tier`.
    #[schema(value_type = Vec<Object>)]
    pub decisions: serde_json::Value,
}

/// Replays a case: every decision it records, re-evaluated from its recorded inputs under the
/// bundle that made it (kept by hash) and compared byte for byte, then under today's bundle.
#[utoipa::path(get, path = "/v1/cases/{id}/replay", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The replay", body = CaseReplay),
        (status = 400, description = "Not a case id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read cases", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn replay_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaseReplay>, Problem> {
    caller.require(READERS, "reading cases")?;
    let id = parse_case_id(&id)?;
    let today = state.ingestor.as_ref().map(|i| i.policy());
    let report = writ_engine::replay::replay_case(&*state.store, id, today)
        .await
        .map_err(|err| match err {
            writ_engine::replay::ReplayError::NotFound(id) => no_case(id),
            writ_engine::replay::ReplayError::Store(err) => Problem::unavailable(&err),
            other => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unreadable-entry",
                "A ledger entry is unreadable",
            )
            .detail(other.to_string()),
        })?;
    Ok(Json(CaseReplay {
        all_identical: report.all_identical,
        today_bundle: report.today_bundle.map(|h| h.to_string()),
        decisions: serde_json::to_value(&report.decisions).unwrap_or_default(),
    }))
}

/// One case with its timeline: every ledger event about it, with actors and rationales.
#[utoipa::path(get, path = "/v1/cases/{id}", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The case", body = CaseDetail),
        (status = 400, description = "Not a case id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read cases", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn get_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, Problem> {
    caller.require(READERS, "reading cases")?;
    let id = parse_case_id(&id)?;
    let case = state
        .store
        .case(id)
        .await
        .map_err(|err| Problem::unavailable(&err))?
        .ok_or_else(|| no_case(id))?;
    let rows = state
        .store
        .case_entries(id)
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    let mut events = Vec::with_capacity(rows.len());
    let mut decoded = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = writ_engine::entries::decode(row).map_err(|err| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unreadable-entry",
                "A ledger entry is unreadable",
            )
            .detail(err.to_string())
        })?;
        events.push(TimelineEvent {
            seq: event.seq,
            time: event.time.to_string(),
            kind: event.kind.name().to_owned(),
            actor: event.actor.clone(),
            body: event.body.to_value().unwrap_or_default(),
        });
        decoded.push(event);
    }
    Ok(Json(CaseDetail {
        case: CaseSummary::from(&case),
        lifecycle: writ_core::lifecycle::Lifecycle::of(&decoded),
        events,
    }))
}

/// An identity in the inventory.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentitySummary {
    /// Its id.
    pub id: String,
    /// The system holding it.
    pub system: String,
    /// Its id there.
    pub external_id: String,
    /// What kind of identity it is.
    pub kind: String,
    /// The team that owns it.
    pub owner_team: Option<String>,
    /// How critical it is.
    pub criticality: String,
    /// Whether it holds privileged entitlements.
    pub privileged: bool,
    /// When its source of truth last confirmed it (RFC 3339), if ever.
    pub reconciled_at: Option<String>,
}

/// The inventory: every identity writ knows.
#[utoipa::path(get, path = "/v1/identities", tag = "cases",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The identities", body = [IdentitySummary]),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read the inventory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_identities(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<IdentitySummary>>, Problem> {
    caller.require(READERS, "reading the inventory")?;
    let identities = state
        .store
        .identities()
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    Ok(Json(
        identities
            .into_iter()
            .map(|i| IdentitySummary {
                id: i.id.to_string(),
                system: i.system,
                external_id: i.external_id,
                kind: <&str>::from(i.kind).to_owned(),
                owner_team: i.owner_team,
                criticality: <&str>::from(i.criticality).to_owned(),
                privileged: i.privileged,
                reconciled_at: i.reconciled_at.map(|t| t.to_string()),
            })
            .collect(),
    ))
}

/// A vote on a case's pending change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// Approve or reject.
    pub verdict: VerdictParam,
    /// Why, in the voter's words (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
}

/// A verdict.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictParam {
    /// Go ahead.
    Approve,
    /// No: the request ends.
    Reject,
}

/// What a vote did.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteResponse {
    /// The case.
    pub case_id: String,
    /// Who voted (the authenticated principal).
    pub voter: String,
    /// The verdict recorded.
    pub verdict: VerdictParam,
    /// The decision's approval rule.
    pub rule: String,
    /// The rule's groups the voter counted for.
    pub groups: Vec<String>,
    /// How many more approvers the rule needs, at least.
    pub missing: u64,
    /// The write-back job, when this approval completed the rule.
    pub job_id: Option<String>,
    /// That job's state: `queued` (a change), or `rollback_intent` (a rollback the worker
    /// now carries out).
    pub job_state: Option<String>,
}

/// Approve or reject a case's pending change (or pending rollback), as the authenticated
/// principal. The voter must
/// be in a group of the decision's approval rule and not excluded by separation of duties.
#[utoipa::path(post, path = "/v1/cases/{id}/approvals", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = VoteRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The vote was recorded", body = VoteResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not vote on this change", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case is not awaiting approval, or the principal voted already", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn vote(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VoteResponse>, Problem> {
    caller.require(&[Role::Approver, Role::RiskOwner], "voting on a change")?;
    let id = parse_case_id(&id)?;
    let request: VoteRequest = json_body(&state, body)?;
    let verdict = match request.verdict {
        VerdictParam::Approve => Verdict::Approve,
        VerdictParam::Reject => Verdict::Reject,
    };
    let writeback = writeback(&state)?;
    let outcome = writeback
        .vote(id, caller.principal(), verdict, &request.rationale, false)
        .await
        .map_err(writeback_problem)?;
    Ok(Json(VoteResponse {
        case_id: id.to_string(),
        voter: caller.principal().name.clone(),
        verdict: request.verdict,
        rule: outcome.rule,
        groups: outcome.groups,
        missing: outcome.missing,
        job_state: outcome
            .job
            .as_ref()
            .map(|job| <&str>::from(job.state).to_owned()),
        job_id: outcome.job.map(|job| job.id.to_string()),
    }))
}

/// A rollback request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
}

/// What a rollback request came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollbackResponse {
    /// The case.
    pub case_id: String,
    /// `rolled_back` (policy allowed it on the caller's word and the change is undone) or
    /// `rollback_requested` (policy asks for approvals first: vote with
    /// `POST /v1/cases/{id}/approvals`). When the target does not take the rollback at once,
    /// the answer is a 409 saying whether the worker will try again.
    pub state: String,
    /// The job whose change is undone, once the rollback goes ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The approval rule the rollback waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How many more approvals it needs, at least.
    pub missing: u64,
    /// Policy's reason, when it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Ask to undo a case's verified change from its recorded pre-image, as the authenticated
/// principal. Policy decides the rollback (Cedar action `rollback`): on the caller's word
/// (done now, 200), with approvals (202: the case waits in `rollback_requested`; the caller
/// never counts), or not at all (403).
#[utoipa::path(post, path = "/v1/cases/{id}/rollback", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = RollbackRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rolled back", body = RollbackResponse),
        (status = 202, description = "Recorded: waiting for approvals", body = RollbackResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not ask, or policy does not allow this rollback", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case has no verified change to roll back, or a rollback already waits", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger or the target could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RollbackResponse>), Problem> {
    caller.require(
        &[Role::Approver, Role::Admin, Role::BreakGlass],
        "rolling a change back",
    )?;
    let id = parse_case_id(&id)?;
    let request: RollbackRequest = json_body(&state, body)?;
    let writeback = writeback(&state)?;
    let outcome = writeback
        .rollback(id, caller.principal(), &request.rationale)
        .await
        .map_err(writeback_problem)?;
    Ok(match outcome {
        RollbackOutcome::RolledBack(job) => (
            StatusCode::OK,
            Json(RollbackResponse {
                case_id: id.to_string(),
                state: <&str>::from(job.state).to_owned(),
                job_id: Some(job.id.to_string()),
                rule: None,
                missing: 0,
                reason: None,
            }),
        ),
        RollbackOutcome::AwaitingApproval {
            rule,
            reason,
            missing,
        } => (
            StatusCode::ACCEPTED,
            Json(RollbackResponse {
                case_id: id.to_string(),
                state: "rollback_requested".to_owned(),
                job_id: None,
                rule: Some(rule),
                missing,
                reason: Some(reason),
            }),
        ),
    })
}

#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
pub(crate) fn writeback(state: &AppState) -> Result<&writ_engine::writeback::WriteBack, Problem> {
    state.writeback.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "writeback-disabled",
            "Write-back is not configured",
        )
    })
}

#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
pub(crate) fn parse_case_id(text: &str) -> Result<CaseId, Problem> {
    text.parse().map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-case-id", "Not a case id")
            .field("id", format!("{text:?} is not a UUID"))
    })
}

fn no_case(id: CaseId) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no-case", "No such case")
        .field("id", format!("no case {id}"))
}

/// The problem for a refused write-back request.
pub(crate) fn writeback_problem(err: WriteBackError) -> Problem {
    match err {
        WriteBackError::NotFound(why) => {
            Problem::new(StatusCode::NOT_FOUND, "no-case", "No such case").field("id", why)
        }
        WriteBackError::Forbidden(why) => forbidden(why),
        WriteBackError::Refused(why) | WriteBackError::Stale(why) => {
            Problem::new(StatusCode::CONFLICT, "refused", "Not possible now").detail(why)
        }
        WriteBackError::Invalid { field, message } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "A field is not acceptable",
        )
        .field(field, message),
        err @ (WriteBackError::Store(_) | WriteBackError::Append(_)) => Problem::unavailable(&err),
        err @ WriteBackError::Corrupt { .. } => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt-ledger",
            "A ledger entry is unreadable",
        )
        .detail(err.to_string()),
    }
}

/// A step on a case that needs only a reason in the caller's words.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RationaleRequest {
    /// Why (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
}

/// The future of a step on a case the handlers below hand to [`rationale_step`].
type StepFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Case, WriteBackError>> + Send + 'a>>;

/// A step on case `id` that takes only a rationale, as the (already authorised) caller: the
/// id and the body read, the step taken, the case as it leaves it.
async fn rationale_step(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: Result<Bytes, BytesRejection>,
    step: impl for<'a> FnOnce(
        &'a writ_engine::writeback::WriteBack,
        CaseId,
        &'a writ_core::principal::Principal,
        &'a str,
    ) -> StepFuture<'a>,
) -> Result<Json<CaseSummary>, Problem> {
    let id = parse_case_id(id)?;
    let request: RationaleRequest = json_body(state, body)?;
    let case = step(
        writeback(state)?,
        id,
        caller.principal(),
        &request.rationale,
    )
    .await
    .map_err(writeback_problem)?;
    Ok(Json(CaseSummary::from(&case)))
}

/// Who may close or dismiss a case on their word.
const REVIEWERS: &[Role] = &[Role::Approver, Role::Admin];

/// Close a case's compliance side on the caller's word: the finding is closed with the
/// rationale as evidence, and the case closes (a later finding of the same problem opens a
/// new case naming this one). Nothing may be under way: no queued or running job, no pending
/// rollback, no freeze. A passing scan closes cases by itself.
#[utoipa::path(post, path = "/v1/cases/{id}/close", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = RationaleRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Closed", body = CaseSummary),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not close cases", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case cannot be closed now (work under way, frozen, or closed already)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn close_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CaseSummary>, Problem> {
    caller.require(REVIEWERS, "closing a case")?;
    rationale_step(
        &state,
        &caller,
        &id,
        body,
        |writeback, id, principal, rationale| Box::pin(writeback.close(id, principal, rationale)),
    )
    .await
}

/// Dismiss a case as a false positive: it closes and nothing changes in the target. A case
/// whose change is in effect must be rolled back first. Policy decides it (Cedar `dismiss`):
/// on the caller's word the case is `closed`; when policy asks for a second person the case is
/// `dismissal_requested` until that approval (`POST /v1/cases/{id}/approvals`; the caller never
/// counts).
#[utoipa::path(post, path = "/v1/cases/{id}/dismiss", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = RationaleRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dismissed (state closed), or waiting for a second person (state dismissal_requested)", body = CaseSummary),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not dismiss cases, or policy does not allow this dismissal", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case cannot be dismissed now (work under way, a change in effect, frozen, or closed already)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn dismiss_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CaseSummary>, Problem> {
    caller.require(REVIEWERS, "dismissing a case")?;
    rationale_step(
        &state,
        &caller,
        &id,
        body,
        |writeback, id, principal, rationale| Box::pin(writeback.dismiss(id, principal, rationale)),
    )
    .await
}

/// Unfreeze a case a `@freeze` decision held: its approvals wait again, its queued job is
/// worked (a case its own decision froze goes to review).
#[utoipa::path(post, path = "/v1/cases/{id}/unfreeze", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = RationaleRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unfrozen", body = CaseSummary),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not unfreeze cases", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case is not frozen", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn unfreeze_case(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CaseSummary>, Problem> {
    caller.require(&[Role::Admin], "unfreezing a case")?;
    rationale_step(
        &state,
        &caller,
        &id,
        body,
        |writeback, id, principal, rationale| {
            Box::pin(writeback.unfreeze(id, principal, rationale))
        },
    )
    .await
}

/// An exception as asked for: the risk of a case accepted for a while.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRequest {
    /// Why the risk is accepted (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub justification: String,
    /// When it ends (RFC 3339): in the future, and within the policy's `@max_days` (a year
    /// when the policy sets none).
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: jiff::Timestamp,
    /// What makes up for the risk meanwhile (at least one, none blank).
    #[schema(min_items = 1)]
    pub compensating_controls: Vec<String>,
    /// What will be done about it: a ticket or a task (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub follow_up: String,
}

/// An exception, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionSummary {
    /// Its id.
    pub id: String,
    /// The case whose risk it accepts.
    pub case_id: String,
    /// `requested` (waiting for approvals), `active`, `expired`, `superseded` (renewed) or
    /// `ended` (its case closed).
    pub state: String,
    /// Who asked.
    pub requester: String,
    /// Why.
    pub justification: String,
    /// When it ends (RFC 3339).
    pub expires_at: String,
    /// When re-approval is asked for (RFC 3339), if the policy says so.
    pub renew_at: Option<String>,
    /// What makes up for the risk.
    pub compensating_controls: Vec<String>,
    /// What will be done about it.
    pub follow_up: String,
}

impl ExceptionSummary {
    fn of(exception: &writ_core::exception::Exception, state: &str) -> Self {
        Self {
            id: exception.id.to_string(),
            case_id: exception.case_id.to_string(),
            state: state.to_owned(),
            requester: exception.requester.clone(),
            justification: exception.justification.clone(),
            expires_at: exception.expires_at.to_string(),
            renew_at: exception.renew_at.map(|t| t.to_string()),
            compensating_controls: exception.compensating_controls.clone(),
            follow_up: exception.follow_up.clone(),
        }
    }
}

/// What an exception request came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionResponse {
    /// The exception.
    pub exception: ExceptionSummary,
    /// The approval rule it waits for, when it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How many more approvals it needs, at least.
    pub missing: u64,
    /// Policy's reason, when it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who may ask for an exception.
const EXCEPTION_ASKERS: &[Role] = &[Role::Requester, Role::Approver, Role::Admin];

/// Ask to accept a case's risk for a while (an exception), as the authenticated principal.
/// Policy decides it (Cedar action `accept_risk`): in force at once (201), or waiting for
/// approvals (202: vote with `POST /v1/cases/{id}/approvals`; the asker never counts), or not
/// at all (403). When it expires the case reopens and is decided again.
#[utoipa::path(post, path = "/v1/cases/{id}/exception", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = ExceptionRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "In force", body = ExceptionResponse),
        (status = 202, description = "Recorded: waiting for approvals", body = ExceptionResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not ask, or policy does not allow this exception", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case cannot take an exception now", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable (an expiry past the policy's maximum, say)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn request_exception(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ExceptionResponse>), Problem> {
    caller.require(EXCEPTION_ASKERS, "asking for an exception")?;
    let id = parse_case_id(&id)?;
    let request: ExceptionRequest = json_body(&state, body)?;
    let ask = writ_engine::exceptions::ExceptionAsk {
        justification: request.justification,
        expires_at: request.expires_at,
        compensating_controls: request.compensating_controls,
        follow_up: request.follow_up,
    };
    let outcome = writeback(&state)?
        .request_exception(id, caller.principal(), ask)
        .await
        .map_err(writeback_problem)?;
    Ok(match outcome {
        writ_engine::exceptions::ExceptionOutcome::Granted(exception) => (
            StatusCode::CREATED,
            Json(ExceptionResponse {
                exception: ExceptionSummary::of(&exception, "active"),
                rule: None,
                missing: 0,
                reason: None,
            }),
        ),
        writ_engine::exceptions::ExceptionOutcome::AwaitingApproval {
            exception,
            rule,
            missing,
            reason,
        } => (
            StatusCode::ACCEPTED,
            Json(ExceptionResponse {
                exception: ExceptionSummary::of(&exception, "requested"),
                rule: Some(rule),
                missing,
                reason: Some(reason),
            }),
        ),
    })
}

/// Query of `GET /v1/exceptions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExceptionsQuery {
    /// Only exceptions in this state (`active`, `expired`, `superseded`, `ended`).
    #[param(value_type = Option<String>)]
    pub state: Option<writ_core::exception::ExceptionState>,
    /// Only those expiring within this many days from now.
    #[param(minimum = 0, maximum = 3650)]
    pub expiring_within_days: Option<u32>,
    /// At most this many (1 to 1000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// List exceptions in force or past, soonest expiry first. Exceptions waiting for approvals
/// are cases in state `exception_requested`.
#[utoipa::path(get, path = "/v1/exceptions", tag = "cases",
    params(ExceptionsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The exceptions", body = [ExceptionSummary]),
        (status = 400, description = "A bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read cases", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn list_exceptions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<ExceptionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ExceptionSummary>>, Problem> {
    caller.require(READERS, "reading exceptions")?;
    let Query(query) = query.map_err(|err| crate::body::bad_query(&err))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
                .field("limit", "between 1 and 1000"),
        );
    }
    if query.expiring_within_days.is_some_and(|d| d > 3650) {
        return Err(
            Problem::new(StatusCode::BAD_REQUEST, "bad-query", "Bad query")
                .field("expiring_within_days", "between 0 and 3650"),
        );
    }
    let expiring_before = query
        .expiring_within_days
        .map(|days| state.clock.now() + jiff::SignedDuration::from_hours(i64::from(days) * 24));
    let exceptions = state
        .store
        .exceptions(&writ_store::ExceptionFilter {
            state: query.state,
            expiring_before,
            case_id: None,
            limit: Some(limit),
        })
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    Ok(Json(
        exceptions
            .iter()
            .map(|view| ExceptionSummary::of(&view.exception, <&str>::from(view.state)))
            .collect(),
    ))
}

/// An emergency change without approvals.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// Why it cannot wait (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub reason: String,
    /// The incident it answers: a ticket or incident id (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub incident: String,
}

/// What a break-glass did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BreakGlassResponse {
    /// The case.
    pub case_id: String,
    /// The write-back job the worker applies and verifies now.
    pub job_id: String,
    /// The action applied.
    pub action: String,
}

/// Apply a case's remediation at once, without approvals, in an emergency (an override,
/// recorded as `break_glass_used`), where policy allows it (Cedar `auto:break_glass`). The
/// case then owes a review by another principal; overdue, it escalates. A principal whose
/// earlier break-glass is not reviewed yet cannot use it again.
#[utoipa::path(post, path = "/v1/cases/{id}/break-glass", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = BreakGlassRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded; the worker applies the change now", body = BreakGlassResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a break_glass principal, an earlier break-glass owes its review, or policy does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case cannot take the change now", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn break_glass(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BreakGlassResponse>), Problem> {
    caller.require(&[Role::BreakGlass], "using break-glass")?;
    let id = parse_case_id(&id)?;
    let request: BreakGlassRequest = json_body(&state, body)?;
    let job = writeback(&state)?
        .break_glass(id, caller.principal(), &request.reason, &request.incident)
        .await
        .map_err(writeback_problem)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BreakGlassResponse {
            case_id: id.to_string(),
            job_id: job.id.to_string(),
            action: job.action.name().to_owned(),
        }),
    ))
}

/// The after-the-fact review of a break-glass change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// `upheld` (the change stays) or `rejected` (it is rolled back).
    #[schema(value_type = String)]
    pub verdict: writ_core::event::ReviewVerdict,
    /// Why (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
}

/// What a review did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewResponse {
    /// The case.
    pub case_id: String,
    /// The verdict recorded.
    pub verdict: String,
    /// The job being rolled back, when the review rejected a change in effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_job_id: Option<String>,
    /// The new job rotating the credential again, when the review rejected a rotation (which
    /// cannot be rolled back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_job_id: Option<String>,
    /// True when the rejected change can be neither rolled back nor redone (a deletion): the
    /// rejection is recorded and nothing changes.
    pub irreversible: bool,
}

/// Review a case's break-glass change after the fact (never by who used it): upheld, or
/// rejected (a change in effect is rolled back through the engine; a rotation, which cannot be
/// rolled back, is rotated again).
#[utoipa::path(post, path = "/v1/cases/{id}/review", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = ReviewRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded", body = ReviewResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not review it (or used it)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to review, reviewed already, or still being applied", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn review_bypass(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReviewResponse>, Problem> {
    caller.require(REVIEWERS, "reviewing a break-glass change")?;
    let id = parse_case_id(&id)?;
    let request: ReviewRequest = json_body(&state, body)?;
    let outcome = writeback(&state)?
        .review_bypass(id, caller.principal(), request.verdict, &request.rationale)
        .await
        .map_err(writeback_problem)?;
    Ok(Json(ReviewResponse {
        case_id: id.to_string(),
        verdict: <&str>::from(outcome.verdict).to_owned(),
        rollback_job_id: outcome.rollback.map(|job| job.to_string()),
        rotation_job_id: outcome.rotation.map(|job| job.to_string()),
        irreversible: outcome.irreversible,
    }))
}

/// An admin's override of an automated deny or case-only decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// Why the automated decision is wrong here (required, not blank).
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub rationale: String,
    /// The principal asked to accept the residual risk (holds the role `risk_owner`; not the
    /// caller).
    pub risk_owner: String,
}

/// Override a case's automated deny or case-only decision, as an admin, with a rationale. The
/// change is made only after the named risk owner approves it (`POST /v1/cases/{id}/approvals`),
/// accepting the residual risk; both are recorded and shown in the case.
#[utoipa::path(post, path = "/v1/cases/{id}/override", tag = "cases",
    params(("id" = String, Path, format = Uuid, description = "The case id")),
    request_body(content = OverrideRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded: waiting for the risk owner's approval", body = CaseSummary),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the admin named itself as risk owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case's decision is not an automated deny or case-only, or the risk owner is no enabled principal holding the role risk_owner", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn override_decision(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CaseSummary>), Problem> {
    caller.require(&[Role::Admin], "overriding a decision")?;
    let id = parse_case_id(&id)?;
    let request: OverrideRequest = json_body(&state, body)?;
    let case = writeback(&state)?
        .request_override(
            id,
            caller.principal(),
            &request.rationale,
            &request.risk_owner,
        )
        .await
        .map_err(writeback_problem)?;
    Ok((StatusCode::ACCEPTED, Json(CaseSummary::from(&case))))
}
