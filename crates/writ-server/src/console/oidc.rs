//! Single sign-on with OpenID Connect: the authorization code flow with PKCE, `state` and
//! `nonce` (the `openidconnect` crate does the protocol and checks the ID token's signature,
//! issuer, audience, expiry and nonce). The state, nonce and PKCE verifier come from writ's
//! random source and wait in a signed, short-lived cookie until the provider sends the browser
//! back. The configured claim names the principal, who must exist in writ and not be
//! disabled: signing in never creates a principal or changes its roles.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use super::OidcSettings;
use super::pages::{error_page, random_hex, redirect, settings, start_session};
use super::session::{SIGNIN_COOKIE, cookie, same_token, set_cookie};
use crate::AppState;

/// A sign-in in progress, as its cookie carries it.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    started_us: i64,
}

/// Every claim UserInfo sends, to read the configured ones by name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct AnyClaims {
    #[serde(flatten)]
    claims: std::collections::HashMap<String, serde_json::Value>,
}

impl openidconnect::AdditionalClaims for AnyClaims {}

/// How long a sign-in may take at the provider.
const SIGNIN_SECONDS: i64 = 600;

fn http() -> Result<reqwest::Client, String> {
    // No redirects: the provider's endpoints answer directly (the crate's advice against SSRF).
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

fn failed(why: &str) -> Response {
    tracing::warn!(reason = why, "single sign-on failed");
    error_page(
        StatusCode::UNAUTHORIZED,
        None,
        "Sign-in failed",
        &format!("Single sign-on did not complete: {why}. Try again from the sign-in page."),
    )
}

fn redirect_uri(oidc: &OidcSettings) -> Result<RedirectUrl, String> {
    RedirectUrl::new(format!(
        "{}/auth/oidc/callback",
        oidc.public_url.trim_end_matches('/')
    ))
    .map_err(|e| e.to_string())
}

/// The client writ is at the provider, from its discovery document (endpoints and keys).
async fn client(
    oidc: &OidcSettings,
    http: &reqwest::Client,
) -> Result<
    CoreClient<
        EndpointSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointMaybeSet,
        EndpointMaybeSet,
    >,
    String,
> {
    let issuer = IssuerUrl::new(oidc.issuer.clone()).map_err(|e| e.to_string())?;
    let provider = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| format!("discovery at {}: {e}", oidc.issuer))?;
    Ok(CoreClient::from_provider_metadata(
        provider,
        ClientId::new(oidc.client_id.clone()),
        Some(ClientSecret::new(oidc.client_secret.clone())),
    )
    .set_redirect_uri(redirect_uri(oidc)?))
}

/// `GET /auth/oidc`: sends the browser to the provider.
pub(crate) async fn oidc_start(State(state): State<Arc<AppState>>) -> Response {
    let settings = match settings(&state) {
        Ok(settings) => settings.clone(),
        Err(response) => return response,
    };
    let Some(oidc) = settings.oidc.clone() else {
        return super::pages::not_found();
    };
    let (state_token, nonce, verifier) =
        match (random_hex(&state), random_hex(&state), random_hex(&state)) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => return failed("no randomness"),
        };
    let http = match http() {
        Ok(http) => http,
        Err(why) => return failed(&why),
    };
    let client = match client(&oidc, &http).await {
        Ok(client) => client,
        Err(why) => return failed(&why),
    };
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.clone()));
    let (state_for_url, nonce_for_url) = (state_token.clone(), nonce.clone());
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || Nonce::new(nonce_for_url),
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: state_token,
        nonce,
        verifier,
        started_us: state.clock.now().as_microsecond(),
    };
    redirect(
        url.as_str(),
        &[set_cookie(
            SIGNIN_COOKIE,
            &settings.key.seal("signin-oidc", &pending),
            SIGNIN_SECONDS,
            settings.secure_cookies,
        )],
    )
}

/// What the provider sends back.
#[derive(Debug, Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/oidc/callback`: checks the state, exchanges the code (with the PKCE verifier),
/// checks the ID token (with the nonce), and signs the named principal in.
pub(crate) async fn oidc_callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let settings = match settings(&state) {
        Ok(settings) => settings.clone(),
        Err(response) => return response,
    };
    let Some(oidc) = settings.oidc.clone() else {
        return super::pages::not_found();
    };
    if let Some(error) = callback.error {
        return failed(&format!("the provider answered {error}"));
    }
    let pending = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie(v, SIGNIN_COOKIE))
        .and_then(|v| settings.key.open::<Pending>("signin-oidc", v));
    let Some(pending) = pending else {
        return failed("no sign-in was started in this browser");
    };
    let now = state.clock.now().as_microsecond();
    if now - pending.started_us > SIGNIN_SECONDS * 1_000_000 {
        return failed("the sign-in took too long");
    }
    if !callback
        .state
        .as_deref()
        .is_some_and(|s| same_token(s, &pending.state))
    {
        return failed("the state does not match");
    }
    let Some(code) = callback.code else {
        return failed("no authorization code");
    };
    let http = match http() {
        Ok(http) => http,
        Err(why) => return failed(&why),
    };
    let client = match client(&oidc, &http).await {
        Ok(client) => client,
        Err(why) => return failed(&why),
    };
    let request = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(request) => request,
        Err(err) => return failed(&err.to_string()),
    };
    let tokens = match request
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&http)
        .await
    {
        Ok(tokens) => tokens,
        Err(err) => return failed(&format!("the code exchange: {err}")),
    };
    let Some(id_token) = tokens.id_token() else {
        return failed("the provider sent no ID token");
    };
    let verifier = client.id_token_verifier();
    let claims = match id_token.claims(&verifier, &Nonce::new(pending.nonce)) {
        Ok(claims) => claims,
        Err(err) => return failed(&format!("the ID token: {err}")),
    };
    let mut name = match oidc.name_claim.as_str() {
        "sub" => Some(claims.subject().as_str().to_owned()),
        "email" => claims.email().map(|e| e.as_str().to_owned()),
        _ => claims.preferred_username().map(|u| u.as_str().to_owned()),
    };
    // A conformant provider may keep profile claims out of the ID token and answer them at
    // the UserInfo endpoint, for the subject the ID token names (the crate checks it is the
    // same); the teams claim is read there too.
    let mut teams = None;
    if name.is_none() || oidc.teams_claim.is_some() {
        let subject = claims.subject().clone();
        let userinfo = match client.user_info(tokens.access_token().clone(), Some(subject)) {
            Ok(request) => request
                .request_async::<AnyClaims, _, openidconnect::core::CoreGenderClaim>(&http)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match userinfo {
            Ok(info) => {
                if name.is_none() {
                    name = match oidc.name_claim.as_str() {
                        "email" => info.email().map(|e| e.as_str().to_owned()),
                        _ => info.preferred_username().map(|u| u.as_str().to_owned()),
                    };
                }
                if let Some(claim) = &oidc.teams_claim {
                    let Some(listed) = info.additional_claims().claims.get(claim) else {
                        return failed(&format!("UserInfo has no {claim} claim"));
                    };
                    let Some(listed) = listed.as_array().map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    }) else {
                        return failed(&format!("the {claim} claim is not a list of teams"));
                    };
                    teams = Some(listed);
                }
            }
            Err(why) => return failed(&format!("the UserInfo request: {why}")),
        }
    }
    let Some(name) = name else {
        return failed(&format!("the ID token has no {} claim", oidc.name_claim));
    };
    let Ok(canonical) = writ_core::principal::canonical_name(&name) else {
        return failed("the claimed name is not a principal name");
    };
    match state.store.principal(&canonical).await {
        Ok(Some(view))
            if !view.principal.disabled
                && crate::READERS.iter().any(|r| view.principal.has_role(*r)) =>
        {
            if let Some(teams) = teams
                && let Err(err) = state
                    .principals
                    .sync_teams(&view.principal.name, &teams, &oidc.issuer)
                    .await
            {
                return failed(&format!("recording the teams the provider names: {err}"));
            }
            start_session(&state, &settings, &view.principal.name, "oidc")
        }
        Ok(_) => failed(&format!(
            "{canonical} is not a principal of this writ that may use the console (an admin adds it)"
        )),
        Err(err) => {
            tracing::error!(error = %err, "store unavailable");
            failed("the database does not answer")
        }
    }
}
