//! `POST /v1/findings`: authenticated ingest of one finding or a batch, in any supported format.

use std::io::Cursor;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use writ_core::finding::SourceFormat;
use writ_core::principal::Role;
use writ_engine::ingest::{IngestOutcome, Submission};
use writ_engine::sources::{
    AuthError, AuthHeaders, PendingSignature, SignedRequest, Source, SourceRegistry,
};
use writ_formats::{FindingReader, ParseOptions, detect_format};

use crate::AppState;
use crate::problem::Problem;

/// Query parameters of `POST /v1/findings`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    /// `native`, `ocsf`, `prowler`, `detect_secrets` or `gitleaks`; detected from the content
    /// when absent. Not in the OpenAPI document, whose body schema is the native format: the
    /// other formats are the scanners' own documents, described by them.
    #[param(ignore)]
    pub format: Option<String>,
    /// For secrets scanners: the repository or system that was scanned.
    pub system: Option<String>,
}

/// One accepted finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Its position in the request (0-based).
    pub index: usize,
    /// The line it started on.
    pub line: u64,
    /// What happened to it.
    #[schema(value_type = Object)]
    pub outcome: IngestOutcome,
}

/// One refused finding. Nothing was recorded for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refused {
    /// Its position in the request (0-based), when it could be delimited.
    pub index: usize,
    /// The line of the problem.
    pub line: u64,
    /// The offending field, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// The result of an ingest request: which findings were accepted and which refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// The format read.
    pub format: String,
    /// The authenticated source.
    pub source: String,
    /// Findings recorded (new, or joining an open case).
    pub accepted: Vec<Accepted>,
    /// Findings already recorded under the same idempotency key (nothing new recorded).
    pub duplicates: Vec<Accepted>,
    /// Findings refused, each with its line and field.
    pub refused: Vec<Refused>,
    /// Findings recorded nowhere: passing checks with no open case to close, and findings
    /// the format says are neither problems nor passes (Prowler MANUAL, audited false
    /// positives). A pass that closes a case is in `accepted`, with `closed_case` set.
    pub skipped: u64,
}

/// Ingest findings. Authenticate with `Authorization: Bearer <token>`, or sign the request
/// with HMAC-SHA256 (`X-Writ-Source`, `X-Writ-Timestamp`, `X-Writ-Signature: v2=<hex>` over
/// `writ-hmac-v2`, the method, path, query, timestamp, `Idempotency-Key` and the body's
/// SHA-256, one per line; each signature is accepted once). One bad finding does not lose the others: the response lists what
/// was accepted and what was refused, with lines and fields.
#[utoipa::path(post, path = "/v1/findings", tag = "findings",
    params(IngestQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Idempotency key, when the body holds a single finding")),
    request_body(content = String, description = "Findings: native JSON (object, array or NDJSON), OCSF 2004, Prowler OCSF, detect-secrets baseline, or gitleaks JSON", content_type = "application/json"),
    responses(
        (status = 200, description = "Some or all findings accepted", body = IngestResponse),
        (status = 400, description = "Malformed input or unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal does not have the role source; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body arrived too slowly; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Every finding was already ingested", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The source is over its rate (Retry-After says when to try again)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the configured limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No finding was valid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The ledger could not be written; nothing stored", body = Problem, content_type = "application/problem+json")
    ))]
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Query(query): Query<IngestQuery>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    // Credentials are checked before the body is read, so an unauthenticated client cannot
    // make the server buffer megabytes: a bearer token wholly, an HMAC signature's headers
    // (source, freshness, scheme); the signature itself covers the body, so it is verified
    // after.
    let peer = request
        .extensions()
        .get::<crate::PeerAddr>()
        .map(|peer| peer.0.ip());
    if let Some(peer) = peer
        && let Err(wait) = state.limits.may_authenticate(peer, state.clock.now())
    {
        return challenge(state.limits.locked_out(wait).instance("/v1/findings"));
    }
    let line = RequestLine {
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
    };
    let credentials = match credentials(&state, &headers, line).await {
        Ok(Some(found)) => found,
        // None presented: refused, but not a guess to count.
        Ok(None) => return challenge(auth_problem(AuthError::Missing).instance("/v1/findings")),
        Err(problem) => {
            failed(&state, peer, &problem);
            return challenge(problem.instance("/v1/findings"));
        }
    };
    // A bearer token is authenticated already: its principal's rate applies before the body
    // is read. A signature is charged once it is verified (a claimed source name alone must
    // not spend the real source's quota).
    if let Credentials::Bearer(source) = &credentials
        && let Some(problem) = state.limits.check(&source.name, &*state.clock)
    {
        return problem.instance("/v1/findings").into_response();
    }
    let body = axum::body::to_bytes(request.into_body(), state.settings.max_body_bytes)
        .await
        .map_err(|err| {
            let err = err.into_inner();
            if crate::limits::is_body_timeout(&*err) {
                StatusCode::REQUEST_TIMEOUT
            } else if err.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            }
        });
    match ingest_inner(state, query, headers, body, credentials, peer).await {
        Ok(response) => response,
        Err(problem) => problem.instance("/v1/findings").into_response(),
    }
}

/// What an HMAC signature covers of the request line.
struct RequestLine {
    method: String,
    path: String,
    query: String,
}

/// Who a request says it is, checked as far as possible before its body is read.
enum Credentials {
    /// A bearer token of a source principal: authenticated.
    Bearer(Source),
    /// An HMAC signature whose headers check out; the body is still to be verified.
    Signed {
        pending: PendingSignature,
        line: RequestLine,
    },
}

async fn ingest_inner(
    state: Arc<AppState>,
    query: IngestQuery,
    headers: HeaderMap,
    body: Result<Bytes, StatusCode>,
    credentials: Credentials,
    peer: Option<std::net::IpAddr>,
) -> Result<Response, Problem> {
    let body = body.map_err(|status| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            crate::body::too_large(&state.settings)
        } else if status == StatusCode::REQUEST_TIMEOUT {
            crate::limits::body_timeout(&state.settings)
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable-body",
                "Unreadable request body",
            )
            .detail("the body could not be read")
        }
    })?;
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let source = match credentials {
        Credentials::Bearer(source) => source,
        Credentials::Signed { pending, line } => {
            let request = SignedRequest {
                method: &line.method,
                path: &line.path,
                query: &line.query,
                idempotency_key,
            };
            match signed_source(&state, pending, request, &body).await {
                Ok(source) => {
                    if let Some(problem) = state.limits.check(&source.name, &*state.clock) {
                        return Err(problem);
                    }
                    source
                }
                Err(problem) => {
                    failed(&state, peer, &problem);
                    return Ok(challenge(problem.instance("/v1/findings")));
                }
            }
        }
    };
    let response = ingest_as(&state, source, &query, &headers, &body).await?;
    Ok((StatusCode::OK, Json(response)).into_response())
}

/// Parses `body` and records its findings as `source`'s: the one path of the API's
/// `POST /v1/findings` and the console's findings form, once the source is authenticated.
pub(crate) async fn ingest_as(
    state: &AppState,
    source: Source,
    query: &IngestQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IngestResponse, Problem> {
    let Some(ingestor) = state.ingestor.as_ref() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest-disabled",
            "Ingest is not configured",
        ));
    };

    let format = match query.format.as_deref() {
        Some(name) => parse_format(name).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-format",
                "Unknown finding format",
            )
            .field(
                "format",
                format!("{name:?} is not one of native, ocsf, prowler, detect_secrets, gitleaks"),
            )
        })?,
        None => detect_format(body).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-format",
                "Unknown finding format",
            )
            .detail("the body is not a format writ recognises; name it with ?format=")
            .field("format", "could not be detected from the body")
        })?,
    };
    let mut options = ParseOptions::default();
    if let Some(system) = &query.system {
        options.secrets_system = system.clone();
    }
    options.max_finding_bytes = state.settings.max_body_bytes;
    let header_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);

    let mut reader = FindingReader::new(Cursor::new(body), format, options);
    let mut parsed = Vec::new();
    let mut refused = Vec::new();
    let mut fatal = None;
    for (index, item) in reader.by_ref().enumerate() {
        match item {
            Ok(finding) => parsed.push((index, finding)),
            Err(err) if err.is_fatal() => {
                fatal = Some(err);
                break;
            }
            Err(err) => refused.push(Refused {
                index,
                line: err.line,
                field: err.field.clone(),
                message: err.message.clone(),
            }),
        }
    }
    let mut skipped = reader.report().skipped;
    if let Some(err) = fatal {
        let mut problem = Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-input",
            "Malformed input",
        )
        .detail(format!("line {}: {}", err.line, err.message));
        problem = problem.field(
            err.field
                .clone()
                .unwrap_or_else(|| format!("line {}", err.line)),
            err.message.clone(),
        );
        if !parsed.is_empty() {
            problem = problem.detail(format!(
                "line {}: {}; nothing was stored, because the input's structure is broken",
                err.line, err.message
            ));
        }
        return Err(problem);
    }
    let single = parsed.len() + refused.len() == 1;

    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    let (positions, submissions): (Vec<(usize, u64)>, Vec<Submission>) = parsed
        .into_iter()
        .map(|(index, finding)| {
            (
                (index, finding.line),
                Submission {
                    observation: finding.observation,
                    evidence: finding.evidence,
                    redacted_from: finding.redacted_from,
                    idempotency_key: if single { header_key.clone() } else { None },
                },
            )
        })
        .unzip();
    // Together with other requests' findings waiting at the same time (group commit); each
    // request still gets its own results, after its findings are committed.
    let results = match &state.group_commit {
        Some(group) => group.ingest(source.clone(), submissions).await,
        None => ingestor.ingest_batch(&source, submissions).await,
    };
    for ((index, line), result) in positions.into_iter().zip(results) {
        match result {
            Ok(outcome) if outcome.duplicate => duplicates.push(Accepted {
                index,
                line,
                outcome,
            }),
            Ok(outcome) => accepted.push(Accepted {
                index,
                line,
                outcome,
            }),
            Err(writ_engine::ingest::IngestError::Append(
                writ_engine::AppendError::SecretInEvent { pointer },
            )) => refused.push(Refused {
                index,
                line,
                field: Some(pointer),
                message: "holds secret material; nothing recorded".into(),
            }),
            // A passing check about nothing open: nothing to close, nothing recorded.
            Err(writ_engine::ingest::IngestError::NothingToClose) => skipped += 1,
            Err(err) => {
                tracing::error!(error = %err, "ingest failed");
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ledger-unavailable",
                    "The ledger could not be written",
                )
                .detail(format!(
                    "finding {index} (line {line}) was not recorded: {err}; retry the request (findings already recorded come back as duplicates)"
                )));
            }
        }
    }

    for a in &accepted {
        state.metrics.finding(&source.name, "new");
        if let Some(decision) = &a.outcome.decision {
            state.metrics.decision(match decision.tier {
                writ_core::decision::Tier::Auto => "auto",
                writ_core::decision::Tier::Approval { .. } => "approval",
                writ_core::decision::Tier::CaseOnly { .. } => "case_only",
                writ_core::decision::Tier::Deny => "deny",
            });
        }
    }
    for _ in &duplicates {
        state.metrics.finding(&source.name, "duplicate");
    }
    for _ in &refused {
        state.metrics.finding(&source.name, "refused");
    }
    if accepted.is_empty() && duplicates.is_empty() && !refused.is_empty() {
        let mut problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-findings",
            "No finding was valid",
        )
        .detail(format!(
            "{} finding(s) refused; nothing was stored",
            refused.len()
        ));
        for r in &refused {
            problem = problem.field(
                format!(
                    "line {}{}",
                    r.line,
                    r.field
                        .as_deref()
                        .map(|f| format!(": {f}"))
                        .unwrap_or_default()
                ),
                r.message.clone(),
            );
        }
        return Err(problem);
    }
    if accepted.is_empty() && refused.is_empty() && !duplicates.is_empty() {
        let first = &duplicates[0].outcome;
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "duplicate-finding",
            "Already ingested",
        )
        .detail(format!(
            "{} finding(s) were already ingested under the same idempotency key; nothing new was recorded (first: finding {} in case {})",
            duplicates.len(),
            first.finding_id,
            first.case_id
        ))
        .field("idempotency_key", "already used"));
    }
    Ok(IngestResponse {
        format: format_name(format).to_owned(),
        source: source.name,
        accepted,
        duplicates,
        refused,
        skipped,
    })
}

/// Counts a refused credential (a 401) against the client's address.
fn failed(state: &AppState, peer: Option<std::net::IpAddr>, problem: &Problem) {
    if let Some(peer) = peer
        && problem.status == StatusCode::UNAUTHORIZED.as_u16()
    {
        state.limits.failed_authentication(peer, state.clock.now());
    }
}

fn challenge(problem: Problem) -> Response {
    crate::auth::Unauthenticated(problem).into_response()
}

/// The request's credentials: a bearer token (checked wholly), or HMAC signature headers
/// (checked as far as they go without the body); `None` when it presents neither.
async fn credentials(
    state: &AppState,
    headers: &HeaderMap,
    line: RequestLine,
) -> Result<Option<Credentials>, Problem> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = crate::auth::bearer_token(value)
            .ok_or_else(|| unauthenticated("Authorization", crate::auth::NOT_BEARER))?;
        let principal = match state.principals.authenticate(token).await {
            Ok(principal) => principal,
            Err(writ_engine::principals::AuthFailure::Store(err)) => {
                return Err(Problem::unavailable(&err));
            }
            Err(writ_engine::principals::AuthFailure::Rejected(err)) => {
                return Err(unauthenticated("Authorization", &err.to_string()));
            }
        };
        return source_of(principal).map(|source| Some(Credentials::Bearer(source)));
    }
    let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let auth = AuthHeaders {
        authorization: None,
        source: get("x-writ-source"),
        timestamp: get("x-writ-timestamp"),
        signature: get("x-writ-signature"),
    };
    match state
        .sources
        .check_signature_headers(auth, state.clock.now())
    {
        Ok(pending) => Ok(Some(Credentials::Signed { pending, line })),
        Err(AuthError::Missing) => Ok(None),
        Err(err) => Err(auth_problem(err)),
    }
}

fn auth_problem(err: AuthError) -> Problem {
    let field = match err {
        AuthError::Missing | AuthError::Rejected => "Authorization",
        AuthError::Stale => "X-Writ-Timestamp",
        AuthError::Scheme | AuthError::Replayed => "X-Writ-Signature",
    };
    unauthenticated(field, &err.to_string())
}

/// The source an HMAC signature names, once the signature is verified over the body: a
/// `[[sources]]` secret of an enabled source principal.
async fn signed_source(
    state: &AppState,
    pending: PendingSignature,
    request: SignedRequest<'_>,
    body: &[u8],
) -> Result<Source, Problem> {
    let signed =
        SourceRegistry::verify_signature(pending, request, body, &state.replays, state.clock.now())
            .map_err(auth_problem)?;
    let name = writ_core::principal::canonical_name(&signed.name)
        .map_err(|_| unauthenticated("X-Writ-Source", "credentials not accepted"))?;
    let principal = state
        .store
        .principal(&name)
        .await
        .map_err(|err| Problem::unavailable(&err))?
        .filter(|view| !view.principal.disabled)
        .ok_or_else(|| unauthenticated("X-Writ-Source", "credentials not accepted"))?
        .principal;
    source_of(principal)
}

#[expect(
    clippy::result_large_err,
    reason = "a Problem is built at most once per request, on its way out"
)]
pub(crate) fn source_of(principal: writ_core::principal::Principal) -> Result<Source, Problem> {
    if !principal.has_role(Role::Source) {
        return Err(crate::auth::forbidden(format!(
            "sending findings needs the role source; {} has {}",
            principal.name,
            writ_engine::principals::role_names(&principal.roles)
        )));
    }
    Ok(Source {
        trust: principal.trust.unwrap_or(writ_core::finding::Trust::Low),
        name: principal.name,
    })
}

fn unauthenticated(field: &str, why: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not authenticated",
    )
    .detail(format!("{why}; nothing was stored"))
    .field(field, why.to_owned())
}

/// A format by its name (`detect_secrets` or `detect-secrets`).
pub fn parse_format(name: &str) -> Option<SourceFormat> {
    name.replace('-', "_").parse().ok()
}

fn format_name(format: SourceFormat) -> &'static str {
    format.into()
}
