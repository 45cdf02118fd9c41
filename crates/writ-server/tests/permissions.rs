//! The permission matrix: every operation of the OpenAPI document, called by every role, by an
//! anonymous client and with a disabled principal's token, on both backends. An operation
//! missing from the table (or a table row the document no longer has) fails the test, so a
//! new endpoint cannot ship without saying who may call it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;
use utoipa::OpenApi as _;
use writ_core::finding::Trust;
use writ_core::principal::{PrincipalKind, Role};
use writ_engine::Engine;
use writ_engine::principals::NewPrincipal;
use writ_server::{ApiDoc, AppState, ServerSettings, router};
use writ_testkit::TestDb;

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone, without a token (health, the API description, the signed checkpoint).
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// Authenticated principals with one of these roles.
    Roles(&'static [Role]),
}

use Access::{Authenticated, Public, Roles};

const READERS: &[Role] = &[
    Role::Requester,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
    Role::BreakGlass,
    Role::RiskOwner,
];
const ADMIN: &[Role] = &[Role::Admin];
const ADMIN_AUDITOR: &[Role] = &[Role::Admin, Role::Auditor];

/// The matrix. Paths are the OpenAPI templates.
const MATRIX: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/openapi.json", Public),
    ("GET", "/v1/status", Public),
    ("GET", "/v1/ledger/checkpoint", Public),
    ("POST", "/v1/findings", Roles(&[Role::Source])),
    ("GET", "/v1/cases", Roles(READERS)),
    ("GET", "/v1/cases/{id}", Roles(READERS)),
    ("GET", "/v1/identities", Roles(READERS)),
    ("GET", "/v1/systems", Roles(READERS)),
    ("GET", "/v1/cases/{id}/replay", Roles(READERS)),
    ("GET", "/v1/reports/controls", Roles(READERS)),
    ("GET", "/metrics", Roles(ADMIN_AUDITOR)),
    ("GET", "/v1/campaigns", Roles(READERS)),
    ("GET", "/v1/campaigns/{id}", Roles(READERS)),
    ("POST", "/v1/campaigns", Roles(ADMIN)),
    (
        "POST",
        "/v1/cases/{id}/certification",
        Roles(&[Role::Approver, Role::RiskOwner]),
    ),
    (
        "POST",
        "/v1/cases/{id}/approvals",
        Roles(&[Role::Approver, Role::RiskOwner]),
    ),
    ("POST", "/v1/cases/{id}/override", Roles(ADMIN)),
    (
        "POST",
        "/v1/cases/{id}/rollback",
        Roles(&[Role::Approver, Role::Admin, Role::BreakGlass]),
    ),
    (
        "POST",
        "/v1/cases/{id}/close",
        Roles(&[Role::Approver, Role::Admin]),
    ),
    (
        "POST",
        "/v1/cases/{id}/dismiss",
        Roles(&[Role::Approver, Role::Admin]),
    ),
    ("POST", "/v1/cases/{id}/unfreeze", Roles(ADMIN)),
    (
        "POST",
        "/v1/cases/{id}/exception",
        Roles(&[Role::Requester, Role::Approver, Role::Admin]),
    ),
    ("GET", "/v1/exceptions", Roles(READERS)),
    ("POST", "/v1/requests", Roles(&[Role::Requester])),
    (
        "POST",
        "/v1/cases/{id}/break-glass",
        Roles(&[Role::BreakGlass]),
    ),
    (
        "POST",
        "/v1/cases/{id}/review",
        Roles(&[Role::Approver, Role::Admin]),
    ),
    ("GET", "/v1/whoami", Authenticated),
    ("GET", "/v1/principals", Roles(ADMIN_AUDITOR)),
    ("POST", "/v1/principals", Roles(ADMIN)),
    ("GET", "/v1/principals/{name}", Roles(ADMIN_AUDITOR)),
    ("PATCH", "/v1/principals/{name}", Roles(ADMIN)),
    ("POST", "/v1/principals/{name}/disable", Roles(ADMIN)),
    // A principal may also list its own tokens; `nobody` is no caller's own.
    ("GET", "/v1/principals/{name}/tokens", Roles(ADMIN_AUDITOR)),
    ("POST", "/v1/principals/{name}/tokens", Roles(ADMIN)),
    // A principal may also revoke its own tokens; `nobody` is no caller's own.
    ("DELETE", "/v1/principals/{name}/tokens/{id}", Roles(ADMIN)),
    ("POST", "/v1/targets/{name}/sync", Roles(ADMIN)),
    ("POST", "/v1/inventory/rules", Roles(ADMIN)),
];

const ROLES: &[Role] = &[
    Role::Source,
    Role::Requester,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
    Role::BreakGlass,
    Role::RiskOwner,
];

struct World {
    app: axum::Router,
    /// A token per role, in the order of `ROLES`.
    tokens: Vec<(Role, String)>,
    /// The token of a principal that was disabled after it was issued.
    disabled: String,
    _engine: Engine,
    _db: TestDb,
}

async fn harness(db: TestDb) -> World {
    // The matrix makes many calls per principal at once: no rate limit.
    let unlimited = writ_server::RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
    harness_with(db, unlimited).await
}

async fn harness_with(db: TestDb, rate_limit: writ_server::RateLimit) -> World {
    let store = writ_store::open(&db.url).await.unwrap();
    let (signer, _) = writ_ledger::generate_key("writ.test/ledger", [5; 32]).unwrap();
    let policy = writ_policy::PolicyBundle::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo"),
    )
    .unwrap();
    let engine = Engine::builder(store, signer)
        .policy(std::sync::Arc::new(policy))
        .start()
        .await
        .unwrap();
    let person = |name: &str, roles: Vec<Role>| NewPrincipal {
        name: name.into(),
        kind: PrincipalKind::Person,
        teams: vec!["platform".into()],
        trust: roles.contains(&Role::Source).then_some(Trust::High),
        roles,
        token_ttl: None,
    };
    let (root, _) = engine
        .principals
        .bootstrap(person("root", vec![Role::Admin]))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for role in ROLES {
        let name = format!("p-{}", <&str>::from(*role)).replace('_', "-");
        let (_, token) = engine
            .principals
            .create(&root, person(&name, vec![*role]))
            .await
            .unwrap();
        tokens.push((*role, token.secret));
    }
    let (_, gone) = engine
        .principals
        .create(&root, person("gone", ROLES.to_vec()))
        .await
        .unwrap();
    engine
        .principals
        .disable(&root, "gone", "left the company".into())
        .await
        .unwrap();
    let app = router(AppState::from_engine(
        &engine,
        writ_engine::sources::SourceRegistry::default(),
        Default::default(),
        ServerSettings {
            rate_limit,
            ..ServerSettings::default()
        },
    ));
    World {
        app,
        tokens,
        disabled: gone.secret,
        _engine: engine,
        _db: db,
    }
}

/// The path with its parameters filled in: ids that name nothing, so that an allowed call
/// is refused for what it names (404, 400), never for who calls.
fn concrete(template: &str) -> String {
    let path = template
        .replace("{id}", "00000000-0000-4000-8000-000000000001")
        .replace("{name}", "nobody");
    match template {
        // Its one required query parameter.
        "/v1/reports/controls" => path + "?framework=owasp-nhi",
        _ => path,
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = if matches!(method, "POST" | "PATCH") {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(
            content_type,
            "application/problem+json",
            "{method} {path}: a {status} that is not problem+json: {}",
            String::from_utf8_lossy(&body)
        );
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Every operation the OpenAPI document describes, as (METHOD, template).
fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations
}

async fn every_operation_by_every_role(w: World) {
    let documented = documented();
    let table: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "operations with no row in the permission matrix: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "matrix rows for operations the OpenAPI document does not have: {stale:?}"
    );

    let mut failures = Vec::new();
    for (method, template, access) in MATRIX {
        let path = concrete(template);
        // Anonymous, and a disabled principal's token (revoked with it).
        for (who, token) in [("anonymous", None), ("disabled", Some(w.disabled.as_str()))] {
            let (status, body) = call(&w.app, method, &path, token).await;
            let ok = match access {
                Public => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                _ => status == StatusCode::UNAUTHORIZED,
            };
            if !ok {
                failures.push(format!("{method} {template} as {who}: {status} {body}"));
            }
        }
        for (role, token) in &w.tokens {
            let (status, body) = call(&w.app, method, &path, Some(token)).await;
            let allowed = match access {
                Public | Authenticated => true,
                Roles(roles) => roles.contains(role),
            };
            let ok = if allowed {
                status != StatusCode::UNAUTHORIZED
                    && status != StatusCode::FORBIDDEN
                    && !status.is_server_error()
            } else {
                status == StatusCode::FORBIDDEN
            };
            if !ok {
                failures.push(format!(
                    "{method} {template} as {} ({}): {status} {body}",
                    <&str>::from(*role),
                    if allowed { "allowed" } else { "refused" }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the permission matrix does not hold:\n{}",
        failures.join("\n")
    );
}

writ_testkit::backend_suite!(every_operation_by_every_role);

/// A principal over its rate gets 429 with `Retry-After`; another principal is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_rate_gets_429() {
    let w = harness_with(
        TestDb::sqlite().unwrap(),
        writ_server::RateLimit {
            per_second: 0.01,
            burst: 2.0,
        },
    )
    .await;
    let (_, auditor) = w.tokens.iter().find(|(r, _)| *r == Role::Auditor).unwrap();
    let (_, admin) = w.tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap();
    for _ in 0..2 {
        assert_eq!(
            call(&w.app, "GET", "/v1/whoami", Some(auditor)).await.0,
            StatusCode::OK
        );
    }
    let response = w
        .app
        .clone()
        .oneshot(
            Request::get("/v1/whoami")
                .header(header::AUTHORIZATION, format!("Bearer {auditor}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After: {wait}");
    assert_eq!(
        call(&w.app, "GET", "/v1/whoami", Some(admin)).await.0,
        StatusCode::OK
    );
}
