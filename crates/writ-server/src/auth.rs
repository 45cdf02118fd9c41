//! Who is calling: bearer-token authentication and role checks.
//!
//! [`Caller`] is an extractor that runs before any body extractor, so a request is
//! authenticated before its body is read. A missing or invalid token is a 401 problem with
//! `WWW-Authenticate: Bearer`; a valid token whose principal lacks the role an endpoint needs is
//! a 403 problem naming the rule. The same answer is given for an unknown, expired or revoked
//! token and for a disabled principal. An authenticated principal over its rate gets 429 with
//! `Retry-After` (see [`crate::limits`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use writ_core::principal::{Principal, Role};
use writ_engine::principals::AuthFailure;

use crate::AppState;
use crate::problem::Problem;

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A refusal before the handler runs: 401 (with the `WWW-Authenticate` challenge), 429 (with
/// `Retry-After`) or 503.
#[derive(Debug)]
pub struct Unauthenticated(pub Problem);

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"writ\""),
            );
        }
        response
    }
}

/// What a malformed `Authorization` header is told.
pub(crate) const NOT_BEARER: &str = "the Authorization header is not \"Bearer <token>\"";

/// The token of an `Authorization: Bearer <token>` header, if it is one.
pub(crate) fn bearer_token(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The 401 problem for `why`.
pub fn unauthenticated(why: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not authenticated",
    )
    .detail(why.to_owned())
    .field("Authorization", why.to_owned())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Unauthenticated;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_owned();
        let peer = parts
            .extensions
            .get::<crate::PeerAddr>()
            .map(|peer| peer.0.ip());
        if let Some(peer) = peer
            && let Err(wait) = state.limits.may_authenticate(peer, state.clock.now())
        {
            return Err(Unauthenticated(
                state.limits.locked_out(wait).instance(path),
            ));
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Unauthenticated(
                unauthenticated("no credentials: send Authorization: Bearer <token>")
                    .instance(path),
            ));
        };
        let token = bearer_token(value)
            .ok_or_else(|| Unauthenticated(unauthenticated(NOT_BEARER).instance(path.clone())))?;
        match state.principals.authenticate(token).await {
            Ok(principal) => match state.limits.check(&principal.name, &*state.clock) {
                None => Ok(Caller(principal)),
                Some(problem) => Err(Unauthenticated(problem.instance(path))),
            },
            Err(AuthFailure::Rejected(err)) => {
                if let Some(peer) = peer {
                    state.limits.failed_authentication(peer, state.clock.now());
                }
                Err(Unauthenticated(
                    unauthenticated(&err.to_string()).instance(path),
                ))
            }
            Err(AuthFailure::Store(err)) => {
                Err(Unauthenticated(Problem::unavailable(&err).instance(path)))
            }
        }
    }
}

impl Caller {
    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.0
    }

    /// Refuses (403, naming the rule) unless the caller holds one of `roles`.
    #[expect(
        clippy::result_large_err,
        reason = "a Problem is built at most once per request, on its way out"
    )]
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Problem> {
        if roles.iter().any(|role| self.0.has_role(*role)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| <&str>::from(*r)).collect();
        Err(forbidden(format!(
            "{what} needs the role {}; {} has {}",
            names.join(" or "),
            self.0.name,
            writ_engine::principals::role_names(&self.0.roles)
        )))
    }
}

/// A 403 problem.
pub fn forbidden(why: impl Into<String>) -> Problem {
    let why = why.into();
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
        .detail(why.clone())
        .field("principal", why)
}

/// Roles that may read cases, identities and the inventory.
pub const READERS: &[Role] = &[
    Role::Requester,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
    Role::BreakGlass,
    Role::RiskOwner,
];
