//! Routes and the OpenAPI document that describes them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;

/// How long `/readyz` waits for the store.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
use crate::problem::Problem;

/// The OpenAPI 3.1 description of writ's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "writ",
        description = "Governed write-back for non-human identities: findings in, policy decisions, approved and verified changes out, all in one tamper-evident ledger."
    ),
    paths(healthz, readyz, status, latest_checkpoint, openapi_json, crate::findings::ingest,
        crate::cases::list_cases, crate::cases::get_case, crate::cases::replay_case, crate::cases::list_identities,
        crate::cases::vote, crate::cases::rollback, crate::cases::close_case,
        crate::cases::dismiss_case, crate::cases::unfreeze_case, crate::cases::request_exception,
        crate::cases::list_exceptions, crate::cases::break_glass, crate::cases::review_bypass,
        crate::cases::override_decision, crate::requests::submit,
        crate::admin::whoami, crate::admin::list_principals, crate::admin::create_principal,
        crate::admin::get_principal, crate::admin::change_principal, crate::admin::disable_principal,
        crate::admin::list_tokens, crate::admin::issue_token, crate::admin::revoke_token,
        crate::admin::sync_target, crate::admin::list_systems, crate::admin::import_rules,
        crate::cases::controls_report, crate::campaigns::start_campaign,
        crate::campaigns::list_campaigns, crate::campaigns::get_campaign,
        crate::campaigns::answer, crate::metrics::metrics),
    components(schemas(Health, Ready, Status, Problem, crate::problem::FieldError, crate::findings::IngestResponse, crate::findings::Accepted, crate::findings::Refused)),
    modifiers(&BearerAuth, &ExactSchemas),
    tags(
        (name = "operations", description = "Liveness, readiness and the API description"),
        (name = "ledger", description = "The tamper-evident event ledger"),
        (name = "findings", description = "Findings in: authenticated ingest in several formats"),
        (name = "cases", description = "Cases, their timelines, votes, rollbacks, closures and freezes"),
        (name = "principals", description = "Who may act: principals, teams, roles and tokens"),
        (name = "inventory", description = "Target discovery and ownership rules"),
        (name = "requests", description = "Requested changes: new service accounts, OAuth scopes, agents' time-boxed access"),
        (name = "campaigns", description = "Certification campaigns: owner teams certify or revoke each identity by a deadline")
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every authenticated operation names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A principal's API token (`writ principal add` prints it once)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Makes the document say exactly what the handlers accept where utoipa's derive cannot: the
/// pattern of principal and team names (the one [`writ_core::principal::canonical_name`]
/// applies), and the body of `POST /v1/findings` (writ's native format, strict). A request the
/// document calls valid is accepted, and one it calls invalid is refused (schemathesis checks
/// both in the test suite).
struct ExactSchemas;

/// A string holding something other than whitespace (Rust's `char::is_whitespace`, which the
/// handlers' blank checks use), as an ECMA-262 class.
pub(crate) const NOT_BLANK: &str =
    r"[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// JSON Schema of one finding in writ's native format (`writ-formats`' `native` module).
fn native_finding_schema() -> serde_json::Value {
    use strum::VariantArray as _;
    let text = serde_json::json!({"type": "string", "pattern": NOT_BLANK});
    let severities: Vec<&str> = writ_core::finding::Severity::VARIANTS
        .iter()
        .map(|s| <&str>::from(*s))
        .collect();
    let kinds: Vec<&str> = writ_core::identity::IdentityKind::VARIANTS
        .iter()
        .map(|k| <&str>::from(*k))
        .collect();
    let controls: Vec<String> = (1..=10).map(|n| format!("NHI-{n:02}")).collect();
    serde_json::json!({
        "type": "object",
        "description": "One finding in writ's native format",
        "additionalProperties": false,
        "required": ["finding_type", "severity", "confidence", "subject", "title"],
        "properties": {
            "finding_type": text,
            "severity": {"type": "string", "enum": severities},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.0001},
            "subject": {
                "type": "object",
                "additionalProperties": false,
                "required": ["system", "external_id"],
                "properties": {
                    "system": text,
                    "external_id": text,
                    "kind": {"type": ["string", "null"], "enum": kinds.iter().map(|k| serde_json::json!(k)).chain([serde_json::Value::Null]).collect::<Vec<_>>()}
                }
            },
            "observed_at": {"type": ["string", "null"], "format": "date-time"},
            "title": text,
            "idempotency_key": {"type": ["string", "null"], "pattern": NOT_BLANK},
            "controls": {"type": "array", "items": {"type": "string", "enum": controls}},
            "details": {"type": ["object", "null"]}
        }
    })
}

impl utoipa::Modify for ExactSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Ok(mut doc) = serde_json::to_value(&*openapi) else {
            return;
        };
        let name = serde_json::json!({
            "type": "string",
            "pattern": writ_core::principal::NAME_PATTERN,
            "maxLength": writ_core::principal::MAX_NAME_CHARS,
        });
        for (schema, field) in [
            ("CreatePrincipal", "name"),
            ("CreatePrincipal", "teams"),
            ("ChangePrincipal", "teams"),
            ("OverrideRequest", "risk_owner"),
        ] {
            let Some(property) =
                doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            else {
                continue;
            };
            if field == "teams" {
                if let Some(items) = property.get_mut("items") {
                    *items = name.clone();
                } else if let Some(variants) =
                    property.get_mut("oneOf").and_then(|v| v.as_array_mut())
                {
                    for variant in variants {
                        if let Some(items) = variant.get_mut("items") {
                            *items = name.clone();
                        }
                    }
                }
            } else {
                let description = property.get("description").cloned();
                *property = name.clone();
                if let Some(description) = description {
                    property["description"] = description;
                }
            }
        }
        // A request body's kinds take no other fields (serde denies unknown ones; utoipa does
        // not say so for an enum's variants).
        if let Some(variants) = doc
            .pointer_mut("/components/schemas/ChangeRequestBody/oneOf")
            .and_then(|v| v.as_array_mut())
        {
            for variant in variants {
                if variant.get("properties").is_some() {
                    variant["additionalProperties"] = serde_json::Value::Bool(false);
                }
            }
        }
        let finding = native_finding_schema();
        if let Some(body) = doc
            .pointer_mut("/paths/~1v1~1findings/post/requestBody/content/application~1json/schema")
        {
            *body = serde_json::json!({
                "oneOf": [
                    finding,
                    {"type": "array", "minItems": 1, "items": finding}
                ]
            });
        }
        // Answers any operation may give: 503 (too many requests in flight, or past the
        // request deadline), and, for authenticated ones, 429 (the principal's rate, or the
        // address's failed authentications).
        if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
            let problem = |description: &str| {
                serde_json::json!({
                    "description": description,
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                })
            };
            for item in paths.values_mut() {
                let Some(item) = item.as_object_mut() else {
                    continue;
                };
                for operation in item.values_mut() {
                    let secured = operation.get("security").is_some();
                    let Some(responses) = operation
                        .get_mut("responses")
                        .and_then(|r| r.as_object_mut())
                    else {
                        continue;
                    };
                    responses.entry("503").or_insert_with(|| {
                        problem("The server is busy or the request ran past its deadline")
                    });
                    if secured {
                        responses.entry("429").or_insert_with(|| {
                            problem("Over the principal's rate, or too many failed authentications from this address (Retry-After says when to try again)")
                        });
                    }
                }
            }
        }
        // The case states `GET /v1/cases?state=` takes: the core's, by their stored names.
        if let Some(parameters) = doc
            .pointer_mut("/paths/~1v1~1cases/get/parameters")
            .and_then(|p| p.as_array_mut())
        {
            use strum::VariantArray as _;
            let states: Vec<&str> = writ_core::case::CaseState::VARIANTS
                .iter()
                .map(|s| <&str>::from(*s))
                .collect();
            for parameter in parameters.iter_mut().filter(|p| p["name"] == "state") {
                parameter["schema"] = serde_json::json!({"type": "string", "enum": states});
            }
        }
        // Each compensating control of an exception says something.
        if let Some(items) = doc.pointer_mut(
            "/components/schemas/ExceptionRequest/properties/compensating_controls/items",
        ) {
            *items = serde_json::json!({"type": "string", "minLength": 1, "pattern": NOT_BLANK});
        }
        // The verdicts of a break-glass review.
        if let Some(verdict) =
            doc.pointer_mut("/components/schemas/ReviewRequest/properties/verdict")
        {
            use strum::VariantArray as _;
            let verdicts: Vec<&str> = writ_core::event::ReviewVerdict::VARIANTS
                .iter()
                .map(|v| <&str>::from(*v))
                .collect();
            verdict["enum"] = serde_json::json!(verdicts);
        }
        // The exception states `GET /v1/exceptions?state=` takes.
        if let Some(parameters) = doc
            .pointer_mut("/paths/~1v1~1exceptions/get/parameters")
            .and_then(|p| p.as_array_mut())
        {
            use strum::VariantArray as _;
            let states: Vec<&str> = writ_core::exception::ExceptionState::VARIANTS
                .iter()
                .map(|s| <&str>::from(*s))
                .collect();
            for parameter in parameters.iter_mut().filter(|p| p["name"] == "state") {
                parameter["schema"] = serde_json::json!({"type": "string", "enum": states});
            }
        }
        // The frameworks `GET /v1/reports/controls?framework=` takes.
        if let Some(parameters) = doc
            .pointer_mut("/paths/~1v1~1reports~1controls/get/parameters")
            .and_then(|p| p.as_array_mut())
        {
            for parameter in parameters.iter_mut().filter(|p| p["name"] == "framework") {
                parameter["schema"] =
                    serde_json::json!({"type": "string", "enum": ["nist-csf-2", "owasp-nhi"]});
                parameter["required"] = serde_json::json!(true);
            }
        }
        // An import holds at least one rule.
        if let Some(body) = doc.pointer_mut(
            "/paths/~1v1~1inventory~1rules/post/requestBody/content/application~1json/schema",
        ) {
            body["minItems"] = serde_json::json!(1);
        }
        if let Ok(exact) = serde_json::from_value(doc) {
            *openapi = exact;
        }
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    use axum::routing::{delete, patch, post};
    Router::new()
        .route("/v1/cases", get(crate::cases::list_cases))
        .route("/v1/cases/{id}", get(crate::cases::get_case))
        .route("/v1/cases/{id}/replay", get(crate::cases::replay_case))
        .route("/v1/cases/{id}/approvals", post(crate::cases::vote))
        .route("/v1/cases/{id}/rollback", post(crate::cases::rollback))
        .route("/v1/cases/{id}/close", post(crate::cases::close_case))
        .route("/v1/cases/{id}/dismiss", post(crate::cases::dismiss_case))
        .route("/v1/cases/{id}/unfreeze", post(crate::cases::unfreeze_case))
        .route(
            "/v1/cases/{id}/exception",
            post(crate::cases::request_exception),
        )
        .route("/v1/exceptions", get(crate::cases::list_exceptions))
        .route(
            "/v1/cases/{id}/break-glass",
            post(crate::cases::break_glass),
        )
        .route("/v1/cases/{id}/review", post(crate::cases::review_bypass))
        .route(
            "/v1/cases/{id}/override",
            post(crate::cases::override_decision),
        )
        .route("/v1/identities", get(crate::cases::list_identities))
        .route("/v1/requests", post(crate::requests::submit))
        .route("/v1/whoami", get(crate::admin::whoami))
        .route(
            "/v1/principals",
            get(crate::admin::list_principals).post(crate::admin::create_principal),
        )
        .route(
            "/v1/principals/{name}",
            get(crate::admin::get_principal).merge(patch(crate::admin::change_principal)),
        )
        .route(
            "/v1/principals/{name}/disable",
            post(crate::admin::disable_principal),
        )
        .route(
            "/v1/principals/{name}/tokens",
            get(crate::admin::list_tokens).post(crate::admin::issue_token),
        )
        .route(
            "/v1/principals/{name}/tokens/{id}",
            delete(crate::admin::revoke_token),
        )
        .route("/v1/targets/{name}/sync", post(crate::admin::sync_target))
        .route("/v1/systems", get(crate::admin::list_systems))
        .route("/v1/reports/controls", get(crate::cases::controls_report))
        .route(
            "/v1/campaigns",
            get(crate::campaigns::list_campaigns).post(crate::campaigns::start_campaign),
        )
        .route("/v1/campaigns/{id}", get(crate::campaigns::get_campaign))
        .route(
            "/v1/cases/{id}/certification",
            post(crate::campaigns::answer),
        )
        .route("/v1/inventory/rules", post(crate::admin::import_rules))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/status", get(status))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/v1/ledger/checkpoint", get(latest_checkpoint))
        .route("/v1/findings", axum::routing::post(crate::findings::ingest))
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: &'static str,
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` when the store answers.
    pub status: &'static str,
    /// The storage backend (`sqlite` or `postgres`).
    pub backend: &'static str,
}

/// What this writ instance is and how far its ledger has grown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// writ's version.
    pub version: &'static str,
    /// The storage backend.
    pub backend: &'static str,
    /// Entries in the ledger.
    pub ledger_size: u64,
}

/// Is the process alive? Does not touch the store.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Can this instance serve traffic? Checks that the store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Ready>, Problem> {
    // A probe must answer quickly even when the database hangs.
    match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(Problem::unavailable(&err)),
        Err(_) => return Err(Problem::unavailable(&"ping timed out")),
    }
    Ok(Json(Ready {
        status: "ready",
        backend: state.store.backend().name(),
    }))
}

/// Version, backend and ledger size.
#[utoipa::path(get, path = "/v1/status", tag = "ledger",
    responses(
        (status = 200, description = "Status", body = Status),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
async fn status(State(state): State<Arc<AppState>>) -> Result<Json<Status>, Problem> {
    let ledger_size = state
        .store
        .ledger_size()
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        backend: state.store.backend().name(),
        ledger_size,
    }))
}

/// The latest signed checkpoint of the ledger: a C2SP `tlog-checkpoint` signed as a C2SP
/// `signed-note` (Ed25519). Auditors keep these to check later exports for consistency.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger",
    responses(
        (status = 200, description = "The signed checkpoint note", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "Nothing has been appended yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json")
    ))]
async fn latest_checkpoint(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let latest = state
        .store
        .latest_checkpoint()
        .await
        .map_err(|err| Problem::unavailable(&err))?;
    match latest {
        Some(latest) => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            latest.note,
        )
            .into_response()),
        None => Err(
            Problem::new(StatusCode::NOT_FOUND, "no-checkpoint", "No checkpoint yet")
                .detail("the ledger is empty"),
        ),
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
