//! Limits that keep one client from starving the others: a cap on requests in flight, a
//! deadline for each request, a deadline for each read of a request body, a token bucket per
//! authenticated principal, and one per client address for failed authentications (an address
//! whose failures empty it is refused before its next credentials are even checked).
//!
//! The header-read timeout lives in the connection loop ([`crate::serve`]): it has to act
//! before there is a request to route.
//!
//! The rate limiter is hand-written rather than taken from `governor`: it must run on the
//! injected [`Clock`] (so tests move time), key by principal name, and answer how long to
//! wait; that is a few lines of arithmetic over a map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use tokio::sync::Semaphore;
use writ_core::Clock;

use crate::problem::Problem;
use crate::{AppState, ServerSettings};

/// How many requests one principal may make: `per_second` on average, in bursts of up to
/// `burst`. A `per_second` of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 200.0,
        }
    }
}

/// The limits of one server process, shared by every request it serves.
#[derive(Debug)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    rate: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
    failure_rate: RateLimit,
    failures: Mutex<HashMap<std::net::IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Limits {
    /// The limits `settings` ask for.
    pub fn new(settings: &ServerSettings) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            rate: settings.rate_limit,
            buckets: Mutex::new(HashMap::new()),
            failure_rate: settings.auth_failure_limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `principal`'s bucket at `now`. When the bucket is empty, says
    /// how many whole seconds to wait.
    pub fn take(&self, principal: &str, now: Timestamp) -> Result<(), u64> {
        take_from(&self.buckets, principal.to_owned(), self.rate, now, true)
    }

    /// Whether `peer` may try to authenticate at `now`: not while its failed attempts have
    /// emptied its bucket (says how many whole seconds to wait).
    pub fn may_authenticate(&self, peer: std::net::IpAddr, now: Timestamp) -> Result<(), u64> {
        take_from(&self.failures, peer, self.failure_rate, now, false)
    }

    /// Counts a failed authentication from `peer` at `now`.
    pub fn failed_authentication(&self, peer: std::net::IpAddr, now: Timestamp) {
        let _ = take_from(&self.failures, peer, self.failure_rate, now, true);
    }

    /// The 429 problem for a peer whose failed authentications are over the limit.
    pub fn locked_out(&self, wait: u64) -> Problem {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-failures",
            "Too many failed authentications",
        )
        .detail(format!(
            "this address failed to authenticate too often (server.auth_failure_burst, server.auth_failures_per_second); try again in {wait} s"
        ))
        .retry_after(wait)
    }

    /// The 429 problem when `principal` is over its rate, `None` otherwise.
    pub fn check(&self, principal: &str, clock: &dyn Clock) -> Option<Problem> {
        self.take(principal, clock.now()).err().map(|wait| {
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .detail(format!(
                "{principal} is over its rate of {} request(s) per second (server.rate_limit_per_second); try again in {wait} s",
                self.rate.per_second
            ))
            .retry_after(wait)
        })
    }
}

/// Refills `key`'s bucket in `buckets` to `now` and, when `spend`, takes one token from it.
/// Err with the whole seconds to wait when there is no token to take (or, not spending, none
/// left).
fn take_from<K: std::hash::Hash + Eq>(
    buckets: &Mutex<HashMap<K, Bucket>>,
    key: K,
    rate: RateLimit,
    now: Timestamp,
    spend: bool,
) -> Result<(), u64> {
    let RateLimit { per_second, burst } = rate;
    if per_second <= 0.0 {
        return Ok(());
    }
    let burst = burst.max(1.0);
    // A poisoned lock only means another request panicked mid-update; the counts are still
    // numbers, so go on with them.
    let mut buckets = buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bucket = buckets.entry(key).or_insert(Bucket {
        tokens: burst,
        at: now,
    });
    let elapsed = now.duration_since(bucket.at).as_secs_f64().max(0.0);
    bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        if spend {
            bucket.tokens -= 1.0;
        }
        Ok(())
    } else {
        let wait = (1.0 - bucket.tokens) / per_second;
        // At least one second: Retry-After counts whole seconds.
        Err(wait.ceil().max(1.0) as u64)
    }
}

/// Middleware: refuses a request when the server already has its maximum in flight (503,
/// `Retry-After`), and answers 503 when a request runs past its deadline.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = state.limits.in_flight.clone().try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too many requests in flight",
        )
        .detail(format!(
            "the server is serving its maximum of {} requests (server.max_concurrent_requests)",
            state.settings.max_concurrent_requests
        ))
        .retry_after(1)
        .instance(request.uri().path().to_owned())
        .into_response();
    };
    let path = request.uri().path().to_owned();
    let deadline = state.settings.request_timeout;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, ?deadline, "request ran past its deadline");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                "The request took too long",
            )
            .detail(format!(
                "the request did not finish within {} ms (server.request_timeout_ms); anything it recorded stays recorded",
                deadline.as_millis()
            ))
            .retry_after(1)
            .instance(path)
            .into_response()
        }
    }
}

/// Whether `err` (or what caused it) is a body read that timed out.
pub(crate) fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// The 408 problem for a body that did not arrive in time.
pub(crate) fn body_timeout(settings: &ServerSettings) -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "The request body arrived too slowly",
    )
    .detail(format!(
        "no part of the body arrived for {} ms (server.body_read_timeout_ms); nothing was stored",
        settings.body_read_timeout.as_millis()
    ))
    .field("body", "arrived too slowly")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: f64, burst: f64) -> Limits {
        Limits::new(&ServerSettings {
            rate_limit: RateLimit { per_second, burst },
            ..ServerSettings::default()
        })
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limits = limits(2.0, 3.0);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.take("alice", t0), Ok(()));
        }
        assert_eq!(limits.take("alice", t0), Err(1));
        // Another principal has its own bucket.
        assert_eq!(limits.take("bob", t0), Ok(()));
        // Half a second later one token is back.
        let later = t0 + jiff::SignedDuration::from_millis(500);
        assert_eq!(limits.take("alice", later), Ok(()));
        assert_eq!(limits.take("alice", later), Err(1));
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let limits = limits(0.1, 1.0);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(limits.take("svc", t0), Ok(()));
        assert_eq!(limits.take("svc", t0), Err(10));
    }

    #[test]
    fn failures_lock_an_address_out_until_they_refill() {
        let limits = Limits::new(&ServerSettings {
            auth_failure_limit: RateLimit {
                per_second: 0.5,
                burst: 2.0,
            },
            ..ServerSettings::default()
        });
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let peer: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(limits.may_authenticate(peer, t0), Ok(()));
        limits.failed_authentication(peer, t0);
        assert_eq!(
            limits.may_authenticate(peer, t0),
            Ok(()),
            "checking spends nothing"
        );
        limits.failed_authentication(peer, t0);
        assert_eq!(limits.may_authenticate(peer, t0), Err(2));
        assert_eq!(limits.may_authenticate(other, t0), Ok(()));
        let later = t0 + jiff::SignedDuration::from_secs(2);
        assert_eq!(limits.may_authenticate(peer, later), Ok(()));
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limits = limits(0.0, 0.0);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(limits.take("alice", t0), Ok(()));
        }
    }
}
