//! writ's HTTP edge (axum).
//!
//! Serves the API under `/v1`, the operational endpoints (`/healthz`, `/readyz`), and the
//! OpenAPI 3.1 document at `/openapi.json`. Every error leaves as `application/problem+json`
//! (RFC 9457) naming what was wrong; no handler answers an error in plain text. Handlers are thin:
//! they parse, call the store or the core, and map the result.

mod admin;
mod api;
mod auth;
mod body;
mod campaigns;
mod cases;
pub mod console;
mod findings;
mod limits;
mod listener;
pub mod metrics;
mod problem;
mod requests;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;

use writ_connectors::Connector;
use writ_core::{Clock, IdSource};
use writ_engine::Sequencer;
use writ_engine::ingest::Ingestor;
use writ_engine::principals::Principals;
use writ_engine::sources::SourceRegistry;
use writ_engine::writeback::WriteBack;
use writ_store::Store;

pub use api::ApiDoc;
pub use auth::READERS;
pub use findings::parse_format;
pub use limits::{Limits, RateLimit};
pub use listener::{PeerAddr, TlsError, TlsFiles, serve};
pub use problem::{FieldError, Problem};

/// Settings the HTTP edge needs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a client has to send a request's headers (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// How long a request body may go without sending anything.
    pub body_read_timeout: Duration,
    /// How long a request may take in all.
    pub request_timeout: Duration,
    /// Requests served at once; more get 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Requests per authenticated principal; more get 429 with `Retry-After`.
    pub rate_limit: RateLimit,
    /// Failed authentications per client address; past them, the address gets 429 with
    /// `Retry-After` before its credentials are checked.
    pub auth_failure_limit: RateLimit,
    /// Serve TLS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// A sync's dormancy threshold for its reconciliation findings (`ingest.dormant_after_days`).
    pub dormant_after: jiff::SignedDuration,
    /// Who may read `/metrics`.
    pub metrics_access: metrics::MetricsAccess,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 512,
            rate_limit: RateLimit::default(),
            auth_failure_limit: RateLimit {
                per_second: 0.5,
                burst: 20.0,
            },
            tls: None,
            dormant_after: jiff::SignedDuration::from_hours(90 * 24),
            metrics_access: metrics::MetricsAccess::Loopback,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store (reads).
    pub store: Arc<dyn Store>,
    /// The ledger's single writer: every state change goes through it.
    pub sequencer: Sequencer,
    /// The ingest pipeline (absent in tests that do not ingest).
    pub ingestor: Option<Ingestor>,
    /// Group commit in front of the ingestor: concurrent requests' findings are planned and
    /// committed together (`None`: each request on its own).
    pub group_commit: Option<writ_engine::group_commit::GroupCommit>,
    /// The HMAC signing secrets of source principals (`[[sources]]`).
    pub sources: SourceRegistry,
    /// Principals and tokens: who is calling.
    pub principals: Principals,
    /// Votes and rollbacks (absent in tests that do not write back).
    pub writeback: Option<WriteBack>,
    /// The configured targets discovery may read, by `[[targets]]` name.
    pub targets: BTreeMap<String, Arc<dyn Connector>>,
    /// The clock (signature freshness, token expiry).
    pub clock: Arc<dyn Clock>,
    /// The id source.
    pub ids: Arc<dyn IdSource>,
    /// The settings.
    pub settings: ServerSettings,
    /// Requests in flight and per-principal rates.
    pub limits: Arc<Limits>,
    /// HMAC signatures seen within the replay window.
    pub replays: Arc<writ_engine::sources::ReplayCache>,
    /// The ledger's public key, embedded in the bundles the API hands out.
    pub verifier: Option<writ_ledger::VerifierKey>,
    /// The reviewer console (`/`), when it is on.
    pub console: Option<console::ConsoleSettings>,
    /// Randomness for the console's CSRF tokens and sign-in state.
    pub random: Arc<dyn writ_core::clock::RandomSource>,
    /// This process's metrics (`GET /metrics`).
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    /// The state of a server over `engine`'s services: its store, ledger writer, ingest
    /// pipeline, principals and write-back, with `sources` (HMAC secrets) and the named
    /// `targets` discovery may read.
    pub fn from_engine(
        engine: &writ_engine::Engine,
        sources: SourceRegistry,
        targets: BTreeMap<String, Arc<dyn Connector>>,
        settings: ServerSettings,
    ) -> Self {
        Self {
            store: engine.store.clone(),
            sequencer: engine.sequencer.clone(),
            ingestor: engine.ingestor.clone(),
            group_commit: engine.ingestor.clone().map(|ingestor| {
                writ_engine::group_commit::GroupCommit::new(
                    ingestor,
                    writ_engine::group_commit::GroupLimits::default(),
                )
            }),
            sources,
            principals: engine.principals.clone(),
            writeback: Some(engine.writeback.clone()),
            targets,
            clock: engine.clock.clone(),
            ids: engine.ids.clone(),
            limits: Arc::new(Limits::new(&settings)),
            replays: Arc::default(),
            verifier: Some(engine.verifier.clone()),
            console: None,
            random: Arc::new(writ_engine::principals::OsRandom),
            metrics: Arc::default(),
            settings,
        }
    }
}

/// The whole HTTP application: the routes, behind the body limit, the body-read timeout,
/// the limit on requests in flight and the request deadline.
pub fn router(state: AppState) -> Router {
    // Shared, not copied: axum hands every handler and middleware its own clone of the state,
    // and copying this struct's dozens of fields was 8% of the server's time under many small
    // requests.
    let state = Arc::new(state);
    let limit = state.settings.max_body_bytes;
    let body_timeout = state.settings.body_read_timeout;
    let routes = if state.console.is_some() {
        api::routes().merge(console::routes())
    } else {
        api::routes()
    };
    routes
        // After routing, so each request is counted by its route template.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
