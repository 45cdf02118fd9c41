//! The reviewer console: server-rendered HTML (askama templates, htmx for partial updates)
//! served by `writ serve` at `/`, with its assets embedded in the binary.
//!
//! It is a client of the same authorization as the API: a session names a principal (signed in
//! with a token, or through OpenID Connect), every page reads through the store like the API's
//! handlers, and every action calls the same engine function as the API action it mirrors
//! (`WriteBack::vote`, ...), so it is checked the same way. What the viewer may not do is not
//! offered (a dry run of the same check), and refused if forced. Every form and htmx request
//! carries the session's CSRF token; every page is sent with a strict Content-Security-Policy
//! (no inline script or style).

use std::sync::Arc;

mod admin;
mod oidc;
mod pages;
pub mod session;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The key sessions are signed with.
    pub key: session::SessionKey,
    /// Idle and absolute timeouts.
    pub limits: session::SessionLimits,
    /// Whether cookies are marked `Secure` (served over TLS).
    pub secure_cookies: bool,
    /// OpenID Connect sign-in, when configured.
    pub oidc: Option<OidcSettings>,
    /// The file holding the one-time code that makes the first admin on `/setup`, written by
    /// `writ serve` while no admin exists (`None`: the setup page only points to the CLI).
    pub setup_code_file: Option<std::path::PathBuf>,
    /// The URL browsers reach the console at.
    pub public_url: String,
}

/// OpenID Connect sign-in (authorization code flow with PKCE, state and nonce).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer URL (its discovery document names the endpoints).
    pub issuer: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The console's public base URL (the redirect URI is `{base}/auth/oidc/callback`).
    pub public_url: String,
    /// The ID token claim that names the principal.
    pub name_claim: String,
    /// The UserInfo claim that lists the principal's teams, when the provider is their
    /// source of truth.
    pub teams_claim: Option<String>,
}

/// The Content-Security-Policy every console page is sent with: only writ's own scripts,
/// styles and images, no inline script or style, no framing, forms only to writ.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/console.css");

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "console.css" => (CSS, "text/css; charset=utf-8"),
        _ => return pages::not_found(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The console's routes (merged into the API router when the console is on).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login_token))
        .route("/logout", post(pages::logout))
        .route("/auth/oidc", get(pages::oidc_start))
        .route("/auth/oidc/callback", get(pages::oidc_callback))
        .route("/cases/{id}", get(pages::case_page))
        .route("/cases/{id}/vote", post(pages::vote))
        .route("/cases/{id}/step", post(pages::step))
        .route("/cases/{id}/state", get(pages::case_state))
        .route("/cases/{id}/exception", post(pages::exception))
        .route("/cases/{id}/review", post(pages::review))
        .route("/queues/{id}", get(pages::queue_page))
        .route("/identities", get(pages::identities))
        .route("/systems", get(pages::systems))
        .route("/systems/sync", post(admin::sync))
        .route("/systems/rules", post(admin::import_rules))
        .route("/setup", get(admin::setup_form).post(admin::setup))
        .route(
            "/principals",
            get(admin::principals).post(admin::add_principal),
        )
        .route("/principals/{name}/token", post(admin::new_token))
        .route("/principals/{name}/disable", post(admin::disable))
        .route(
            "/findings",
            get(admin::findings_form).post(admin::submit_findings),
        )
        .route("/dashboard", get(pages::dashboard))
        .route("/assets/{name}", get(asset))
}
