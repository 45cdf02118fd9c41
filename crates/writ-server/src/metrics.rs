//! `GET /metrics`: what this replica has done and what waits, in the Prometheus text format
//! (the `prometheus-client` crate encodes it).
//!
//! Counters are this process's (since it started): HTTP requests by route and status with
//! their latency, findings in by source and outcome, decisions by tier. Gauges are read from
//! the shared database at scrape time, so every replica reports the same value for them: the
//! ledger's size, webhook deliveries waiting, cases by state among the most recently changed,
//! systems with automation paused.
//!
//! Access (`[server] metrics_access`): `loopback` (the default) answers clients on the
//! loopback interface without credentials and asks others for a token of an `admin` or
//! `auditor`; `token` always asks for one.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use writ_core::principal::Role;

use crate::AppState;

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Open to loopback clients; a token of an admin or auditor elsewhere.
    #[default]
    Loopback,
    /// A token of an admin or auditor, always.
    Token,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FindingLabels {
    pub(crate) source: String,
    pub(crate) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TierLabels {
    pub(crate) tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub(crate) findings: Family<FindingLabels, Counter>,
    pub(crate) decisions: Family<TierLabels, Counter>,
    ledger_entries: Gauge,
    outbox_pending: Gauge,
    cases: Family<StateLabels, Gauge>,
    paused_systems: Gauge,
}

/// How many of the most recently changed cases the case gauge counts.
const CASES_SCANNED: u32 = 10_000;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("writ");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "Findings received, by source and outcome (new, duplicate, refused)",
            findings.clone(),
        );
        let decisions = Family::<TierLabels, Counter>::default();
        registry.register(
            "decisions",
            "Policy decisions on received findings, by tier",
            decisions.clone(),
        );
        let ledger_entries = Gauge::default();
        registry.register(
            "ledger_entries",
            "Entries in the ledger (the shared database)",
            ledger_entries.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "webhook_outbox_pending",
            "Webhook deliveries waiting in the outbox (up to 1000 counted)",
            outbox_pending.clone(),
        );
        let cases = Family::<StateLabels, Gauge>::default();
        registry.register(
            "cases",
            "Cases by state, among the 10,000 most recently changed",
            cases.clone(),
        );
        let paused_systems = Gauge::default();
        registry.register(
            "systems_paused",
            "Systems where automation is paused",
            paused_systems.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            findings,
            decisions,
            ledger_entries,
            outbox_pending,
            cases,
            paused_systems,
        }
    }
}

impl Metrics {
    /// Counts a finding received from `source` with `outcome`.
    pub(crate) fn finding(&self, source: &str, outcome: &str) {
        self.findings
            .get_or_create(&FindingLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a decision of `tier`.
    pub(crate) fn decision(&self, tier: &str) {
        self.decisions
            .get_or_create(&TierLabels {
                tier: tier.to_owned(),
            })
            .inc();
    }
}

/// Middleware: counts every request by its route template (never the raw path, whose ids
/// would make a label per case) and times it.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The metrics, in the Prometheus text format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The metrics (Prometheus text format)", body = String, content_type = "text/plain"),
        (status = 401, description = "Not authenticated (a client off the loopback interface)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The principal may not read metrics", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer", body = crate::problem::Problem, content_type = "application/problem+json")
    ))]
pub async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    let loopback = request
        .extensions()
        .get::<crate::PeerAddr>()
        .is_some_and(|peer| peer.0.ip().is_loopback());
    if !(loopback && state.settings.metrics_access == MetricsAccess::Loopback) {
        let (mut parts, _) = request.into_parts();
        let caller = match <crate::auth::Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await {
            Ok(caller) => caller,
            Err(refusal) => return refusal.into_response(),
        };
        if let Err(problem) = caller.require(&[Role::Admin, Role::Auditor], "reading metrics") {
            return problem.into_response();
        }
    }
    let metrics = Arc::clone(&state.metrics);
    let store = &state.store;
    match store.ledger_size().await {
        Ok(size) => {
            metrics.ledger_entries.set(clamp(size));
        }
        Err(err) => return crate::problem::Problem::unavailable(&err).into_response(),
    }
    if let Ok(rows) = store.outbox(1000).await {
        metrics.outbox_pending.set(clamp(rows.len() as u64));
    }
    if let Ok(systems) = store.systems().await {
        metrics.paused_systems.set(clamp(
            systems.iter().filter(|s| s.paused_reason.is_some()).count() as u64,
        ));
    }
    if let Ok(cases) = store
        .cases(&writ_store::CaseFilter {
            limit: Some(CASES_SCANNED),
            ..writ_store::CaseFilter::default()
        })
        .await
    {
        metrics.cases.clear();
        for case in &cases {
            metrics
                .cases
                .get_or_create(&StateLabels {
                    state: <&str>::from(case.state).to_owned(),
                })
                .inc();
        }
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
