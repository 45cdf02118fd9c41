//! The HTTP edge, driven in-process against real stores (SQLite and PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use writ_engine::Engine;
use writ_server::{AppState, ServerSettings, router};
use writ_testkit::PgCluster;

async fn call(
    app: axum::Router,
    method: &str,
    path: &str,
) -> (StatusCode, String, serde_json::Value) {
    let response = app
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

async fn app_on(url: &str) -> axum::Router {
    let store = writ_store::open(url).await.unwrap();
    let (signer, _) = writ_ledger::generate_key("writ.test/ledger", [5; 32]).unwrap();
    let engine = Engine::builder(store.clone(), signer)
        .start()
        .await
        .unwrap();
    router(AppState::from_engine(
        &engine,
        writ_engine::sources::SourceRegistry::default(),
        Default::default(),
        ServerSettings::default(),
    ))
}

async fn sqlite_app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("writ.db").display());
    (app_on(&url).await, dir)
}

#[tokio::test]
async fn health_ready_and_status_answer() {
    let (app, _dir) = sqlite_app().await;
    let (status, _, body) = call(app.clone(), "GET", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, _, body) = call(app.clone(), "GET", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "sqlite");
    let (status, _, body) = call(app, "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ledger_size"], 0);
}

#[tokio::test]
async fn errors_are_problem_json() {
    let (app, _dir) = sqlite_app().await;
    let (status, content_type, body) = call(app.clone(), "GET", "/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "urn:writ:problem:not-found");
    assert_eq!(body["instance"], "/v1/nope");

    let (status, content_type, body) = call(app, "DELETE", "/healthz").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 405);
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let (app, _dir) = sqlite_app().await;
    let (status, _, doc) = call(app, "GET", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/v1/status",
        "/v1/ledger/checkpoint",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// Readiness follows the database: when PostgreSQL goes away, `/readyz` answers 503 with a
/// problem document, and `/healthz` still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_postgres_stops() {
    let cluster = PgCluster::start().unwrap();
    let url = cluster.create_database("writ").unwrap();
    let app = app_on(&url).await;
    let (status, _, body) = call(app.clone(), "GET", "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "postgres");

    drop(cluster);
    let (status, content_type, body) = call(app.clone(), "GET", "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["type"], "urn:writ:problem:store-unavailable");
    let (status, _, _) = call(app, "GET", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
