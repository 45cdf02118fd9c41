//! `GET /metrics`: what this replica has done and what waits, in the Prometheus text format
//! (the `prometheus-client` crate encodes it).
//!
//! Counters are this process's (since it started): HTTP requests by route and status with
//! their latency, findings in by source and outcome, decisions by tier, ledger transactions
//! (entries appended, commit latency; reported by the sequencer through
//! [`writ_engine::CommitObserver`]), and target calls by system and operation with their
//! latency (reported by each connector wrapped in [`writ_connectors::observed::Observed`]).
//! Gauges are read from the shared database at scrape time (one `GROUP BY` each), so every
//! replica reports the same value for them: the ledger's size, cases by state, write-back
//! jobs by system and state, webhook notifications by endpoint and state (delivered, failed,
//! pending), systems with automation paused.
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    system: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallOutcomeLabels {
    system: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    system: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    endpoint: String,
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
    ledger_commits: Family<OutcomeLabels, Counter>,
    ledger_appends: Counter,
    ledger_commit_latency: Histogram,
    target_calls: Family<CallOutcomeLabels, Counter>,
    target_latency: Family<CallLabels, Histogram>,
    jobs: Family<JobLabels, Gauge>,
    notifications: Family<NotificationLabels, Gauge>,
}

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
            "Webhook notifications waiting to be delivered",
            outbox_pending.clone(),
        );
        let cases = Family::<StateLabels, Gauge>::default();
        registry.register("cases", "Cases by state", cases.clone());
        let ledger_commits = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "ledger_commits",
            "Ledger transactions by this replica's writer, by outcome (ok, failed)",
            ledger_commits.clone(),
        );
        let ledger_appends = Counter::default();
        registry.register(
            "ledger_appends",
            "Entries this replica appended to the ledger",
            ledger_appends.clone(),
        );
        let ledger_commit_latency = Histogram::new(exponential_buckets(0.0002, 2.0, 16));
        registry.register(
            "ledger_commit_duration_seconds",
            "Time to commit one ledger transaction (the group of entries written together)",
            ledger_commit_latency.clone(),
        );
        let target_calls = Family::<CallOutcomeLabels, Counter>::default();
        registry.register(
            "target_calls",
            "Calls to target systems, by system, operation and outcome (ok, error)",
            target_calls.clone(),
        );
        let target_latency = Family::<CallLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "target_call_duration_seconds",
            "Time a target system took to answer, by system and operation",
            target_latency.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "writeback_jobs",
            "Write-back jobs by system and state",
            jobs.clone(),
        );
        let notifications = Family::<NotificationLabels, Gauge>::default();
        registry.register(
            "webhook_notifications",
            "Webhook notifications by endpoint and state (pending, delivered, failed, disabled)",
            notifications.clone(),
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
            ledger_commits,
            ledger_appends,
            ledger_commit_latency,
            target_calls,
            target_latency,
            jobs,
            notifications,
        }
    }
}

impl writ_engine::CommitObserver for Metrics {
    fn ledger_committed(&self, entries: usize, took: std::time::Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.ledger_commits
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if ok {
            self.ledger_appends.inc_by(entries as u64);
        }
        self.ledger_commit_latency.observe(took.as_secs_f64());
    }
}

impl writ_connectors::observed::CallObserver for Metrics {
    fn target_called(
        &self,
        system: &str,
        operation: &'static str,
        took: std::time::Duration,
        ok: bool,
    ) {
        self.target_calls
            .get_or_create(&CallOutcomeLabels {
                system: system.to_owned(),
                operation: operation.to_owned(),
                outcome: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.target_latency
            .get_or_create(&CallLabels {
                system: system.to_owned(),
                operation: operation.to_owned(),
            })
            .observe(took.as_secs_f64());
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
pub(crate) async fn track(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
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
pub async fn metrics(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let loopback = request
        .extensions()
        .get::<crate::PeerAddr>()
        .is_some_and(|peer| peer.0.ip().is_loopback());
    if !(loopback && state.settings.metrics_access == MetricsAccess::Loopback) {
        let (mut parts, _) = request.into_parts();
        let caller = match <crate::auth::Caller as axum::extract::FromRequestParts<Arc<AppState>>>::from_request_parts(&mut parts, &state).await {
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
    if let Ok(depths) = store.queue_depths().await {
        metrics.cases.clear();
        for (state, n) in &depths.cases {
            metrics
                .cases
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        metrics.jobs.clear();
        for (system, state, n) in &depths.jobs {
            metrics
                .jobs
                .get_or_create(&JobLabels {
                    system: system.clone(),
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        metrics.notifications.clear();
        let mut pending = 0;
        for (endpoint, state, n) in &depths.notifications {
            if state == "pending" {
                pending += n;
            }
            metrics
                .notifications
                .get_or_create(&NotificationLabels {
                    endpoint: endpoint.clone(),
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        metrics.outbox_pending.set(clamp(pending));
    }
    if let Ok(systems) = store.systems().await {
        metrics.paused_systems.set(clamp(
            systems.iter().filter(|s| s.paused_reason.is_some()).count() as u64,
        ));
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
