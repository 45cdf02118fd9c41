//! The console's setting-up pages: the first admin of a new installation (proved by the setup
//! code `writ serve` leaves on the host), principals and their tokens, target syncs and
//! ownership rules, and findings pasted by a principal with the `source` role. With them a new
//! user goes from an empty database to a verified change without the CLI.
//!
//! Each action runs what its API twin runs, as the signed-in principal: the API's handler
//! itself where it holds more than the engine call (`sync_target`, `import_rules`, the findings
//! path), else the engine function (`Principals::create`, ...), so each is checked the same way.
#![expect(
    clippy::result_large_err,
    reason = "the error is the page sent back, built at most once per request"
)]

use std::str::FromStr as _;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::SignedDuration;
use writ_core::finding::Trust;
use writ_core::principal::{PrincipalKind, Role};
use writ_engine::principals::NewPrincipal;

use super::pages::{Viewer, check_csrf, error_page, page, session_cookies, viewer};
use super::session::same_token;
use crate::AppState;
use crate::problem::Problem;

/// The roles a form may give, in the order they are offered.
const ROLES: &[(Role, &str)] = &[
    (Role::Admin, "manages principals, targets and inventory"),
    (
        Role::Approver,
        "votes on changes where policy names their team",
    ),
    (Role::Requester, "asks for changes"),
    (Role::Auditor, "reads everything, changes nothing"),
    (Role::BreakGlass, "may use the emergency bypass"),
    (Role::RiskOwner, "may accept residual risk"),
    (Role::Source, "sends findings (with a trust level)"),
];

/// A refusal of the API, as one sentence for a page: its detail, else its title, and the
/// fields it names.
pub(super) fn problem_text(problem: &Problem) -> String {
    let mut text = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    for error in &problem.errors {
        if !text.contains(&error.message) {
            text.push_str(&format!("; {}: {}", error.field, error.message));
        }
    }
    text
}

/// The viewer of a form sent in a session, and its fields; or the page refusing it (no
/// session, or no CSRF token of the session's).
async fn signed_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Viewer, Vec<(String, String)>), Response> {
    let viewer = viewer(state, headers).await?;
    let pairs = form_pairs(body);
    check_csrf(&viewer, headers, field(&pairs, "csrf"))?;
    Ok((viewer, pairs))
}

/// A form's fields as pairs, so that checkboxes sharing a name (`role`) all count.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Teams as typed: separated by commas or spaces.
fn teams_of(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A principal as a form describes it (`name`, `kind`, `team`, each `role`, `trust`,
/// `token_days`), or what is wrong with the form.
fn new_principal(pairs: &[(String, String)], roles: Vec<Role>) -> Result<NewPrincipal, String> {
    let name = field(pairs, "name").ok_or("A name is needed.")?.to_owned();
    let kind = match field(pairs, "kind").unwrap_or("person") {
        "service" => PrincipalKind::Service,
        "person" => PrincipalKind::Person,
        other => return Err(format!("There is no kind {other:?}.")),
    };
    let trust = match field(pairs, "trust") {
        Some(text) if roles.contains(&Role::Source) => {
            Some(Trust::from_str(text).map_err(|_| format!("There is no trust {text:?}."))?)
        }
        _ => None,
    };
    let token_days = match field(pairs, "token_days") {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|days| (1..=3650).contains(days))
            .ok_or("The token's lifetime is 1 to 3650 days.")?,
        None => 90,
    };
    Ok(NewPrincipal {
        name,
        kind,
        teams: teams_of(field(pairs, "team")),
        roles,
        trust,
        token_ttl: Some(SignedDuration::from_hours(24 * i64::from(token_days))),
    })
}

fn roles_of(pairs: &[(String, String)]) -> Result<Vec<Role>, String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| Role::from_str(v).map_err(|_| format!("There is no role {v:?}.")))
        .collect()
}

// ---- The first admin -------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    signin_csrf: &'a str,
    code_file: String,
    roles: Vec<(&'static str, &'static str)>,
    error: Option<&'a str>,
}

/// Whether some admin exists (enabled or not); an unreadable store counts as yes, so that the
/// setup page never opens by mistake.
pub(super) async fn admin_exists(state: &AppState) -> bool {
    state.principals.admin_exists().await.unwrap_or(true)
}

/// `GET /setup`: on an installation without an admin, the form that makes the first one.
pub(crate) async fn setup_form(State(state): State<Arc<AppState>>) -> Response {
    if admin_exists(&state).await {
        return super::pages::redirect("/login", &[]);
    }
    setup_page(&state, StatusCode::OK, None)
}

fn setup_page(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let (settings, token, cookie) = match super::pages::pre_session_form(state, "setup-form") {
        Ok(form) => form,
        Err(response) => return response,
    };
    let html = SetupPage {
        viewer: "",
        csrf: "",
        signin_csrf: &token,
        code_file: settings
            .setup_code_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        roles: ROLES
            .iter()
            .filter(|(role, _)| *role != Role::Admin)
            .map(|(role, help)| (<&'static str>::from(*role), *help))
            .collect(),
        error,
    }
    .render();
    page(status, html, &[cookie])
}

/// `POST /setup`: makes the first admin when the setup code matches the file `writ serve`
/// wrote on the host (whoever can read it could run `writ principal add --bootstrap` there
/// too), signs them in and shows their API token once. A wrong code counts as a failed
/// sign-in of the client's address.
pub(crate) async fn setup(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<crate::PeerAddr>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let settings = match super::pages::settings(&state) {
        Ok(settings) => settings.clone(),
        Err(response) => return response,
    };
    let now = state.clock.now();
    let peer = peer.map(|axum::Extension(peer)| peer.0.ip());
    if let Some(peer) = peer
        && state.limits.may_authenticate(peer, now).is_err()
    {
        return setup_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong setup codes from this address: wait a while and try again."),
        );
    }
    let pairs = form_pairs(&body);
    if !super::pages::pre_session_form_ok(&settings, &headers, "setup-form", field(&pairs, "csrf"))
    {
        return setup_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The setup form expired: try again."),
        );
    }
    if admin_exists(&state).await {
        return super::pages::redirect("/login", &[]);
    }
    let on_file = settings
        .setup_code_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .filter(|code| !code.is_empty());
    let Some(on_file) = on_file else {
        return setup_page(
            &state,
            StatusCode::FORBIDDEN,
            Some(
                "This server has no setup code: restart `writ serve` to make one, or run \
                 `writ principal add NAME --role admin --bootstrap` on the host.",
            ),
        );
    };
    if !field(&pairs, "code").is_some_and(|code| same_token(code, &on_file)) {
        if let Some(peer) = peer {
            state.limits.failed_authentication(peer, now);
        }
        return setup_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That is not the setup code in the file named above."),
        );
    }
    let mut roles = match roles_of(&pairs) {
        Ok(roles) => roles,
        Err(message) => return setup_page(&state, StatusCode::BAD_REQUEST, Some(&message)),
    };
    if !roles.contains(&Role::Admin) {
        roles.insert(0, Role::Admin);
    }
    let new = match new_principal(&pairs, roles) {
        Ok(new) => new,
        Err(message) => return setup_page(&state, StatusCode::BAD_REQUEST, Some(&message)),
    };
    let (principal, token) = match state.principals.bootstrap(new).await {
        Ok(made) => made,
        Err(err) => {
            let problem = crate::admin::principals_problem(err);
            return setup_page(
                &state,
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
                Some(&problem_text(&problem)),
            );
        }
    };
    if let Some(path) = &settings.setup_code_file
        && let Err(err) = std::fs::remove_file(path)
    {
        tracing::warn!(file = %path.display(), error = %err, "could not remove the used setup code");
    }
    tracing::info!(admin = %principal.name, "the first admin was made in the console");
    let cookies = match session_cookies(&state, &settings, &principal.name, "setup") {
        Ok(cookies) => cookies,
        Err(response) => return response,
    };
    token_page(
        &state,
        None,
        &principal.name,
        &token.secret,
        "You are the first admin, and signed in. Next: add the people who approve \
         (Principals), sync a target and import its owners (Systems).",
        &cookies,
    )
}

#[derive(Template)]
#[template(path = "token.html")]
struct TokenPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    name: &'a str,
    token: &'a str,
    next: &'a str,
    url: String,
}

/// A new token, shown this once (the page is never cached).
fn token_page(
    state: &AppState,
    viewer: Option<&Viewer>,
    name: &str,
    token: &str,
    next: &str,
    cookies: &[String],
) -> Response {
    let url = state
        .console
        .as_ref()
        .map(|s| s.public_url.clone())
        .unwrap_or_default();
    let html = TokenPage {
        viewer: viewer.map_or(name, |v| v.principal.name.as_str()),
        csrf: viewer.map_or("", |v| v.session.csrf.as_str()),
        name,
        token,
        next,
        url,
    }
    .render();
    page(StatusCode::OK, html, cookies)
}

// ---- Principals --------------------------------------------------------------------------------

struct PrincipalRow {
    name: String,
    kind: &'static str,
    teams: String,
    roles: String,
    trust: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "principals.html")]
struct PrincipalsPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    admin: bool,
    me: &'a str,
    rows: Vec<PrincipalRow>,
    roles: Vec<(&'static str, &'static str)>,
    message: Option<String>,
    error: Option<String>,
}

fn may_read_principals(viewer: &Viewer) -> bool {
    viewer.principal.has_role(Role::Admin) || viewer.principal.has_role(Role::Auditor)
}

async fn principals_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let all = state.principals.list().await.unwrap_or_default();
    let rows = all
        .iter()
        .map(|view| {
            let p = &view.principal;
            PrincipalRow {
                name: p.name.clone(),
                kind: p.kind.into(),
                teams: p.teams.iter().cloned().collect::<Vec<_>>().join(", "),
                roles: writ_engine::principals::role_names(&p.roles),
                trust: p
                    .trust
                    .map(|t| <&str>::from(t).to_owned())
                    .unwrap_or_default(),
                disabled: p.disabled,
            }
        })
        .collect();
    let html = PrincipalsPage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        admin: viewer.principal.has_role(Role::Admin),
        me: &viewer.principal.name,
        rows,
        roles: ROLES
            .iter()
            .map(|(role, help)| (<&'static str>::from(*role), *help))
            .collect(),
        message,
        error,
    }
    .render();
    page(status, html, viewer.refresh.as_slice())
}

/// `GET /principals`: who may do what (admins and auditors), with the forms admins use.
pub(crate) async fn principals(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if !may_read_principals(&viewer) {
        return error_page(
            StatusCode::FORBIDDEN,
            Some(&viewer),
            "Refused",
            "Only admins and auditors read principals.",
        );
    }
    principals_page(&state, &viewer, StatusCode::OK, None, None).await
}

/// The outcome of an admin's change to a principal: the page again, with the refusal when
/// there is one (in the API's status).
async fn principal_refused(
    state: &AppState,
    viewer: &Viewer,
    err: writ_engine::principals::PrincipalsError,
) -> Response {
    let problem = crate::admin::principals_problem(err);
    principals_page(
        state,
        viewer,
        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
        None,
        Some(problem_text(&problem)),
    )
    .await
}

/// `POST /principals`: adds a principal (`Principals::create`, admins only) and shows its
/// first token once.
pub(crate) async fn add_principal(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, pairs) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let new = match roles_of(&pairs).and_then(|roles| new_principal(&pairs, roles)) {
        Ok(new) => new,
        Err(message) => {
            return principals_page(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                None,
                Some(message),
            )
            .await;
        }
    };
    match state.principals.create(&viewer.principal, new).await {
        Ok((principal, token)) => token_page(
            &state,
            Some(&viewer),
            &principal.name,
            &token.secret,
            "Give it to them by a channel you trust. They sign in to the console with it, \
             or use it with the CLI and the API.",
            viewer.refresh.as_slice(),
        ),
        Err(err) => principal_refused(&state, &viewer, err).await,
    }
}

/// `POST /principals/{name}/token`: a new token for the principal (admins only), shown once.
pub(crate) async fn new_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, _) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let ttl = Some(SignedDuration::from_hours(24 * 90));
    match state
        .principals
        .issue_token(&viewer.principal, &name, ttl)
        .await
    {
        Ok((_, token)) => token_page(
            &state,
            Some(&viewer),
            &name,
            &token.secret,
            "Its other tokens still work until they expire or are revoked.",
            viewer.refresh.as_slice(),
        ),
        Err(err) => principal_refused(&state, &viewer, err).await,
    }
}

/// `POST /principals/{name}/disable`: disables the principal and revokes its tokens (admins
/// only; not oneself), with a reason.
pub(crate) async fn disable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, pairs) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let reason = field(&pairs, "reason")
        .unwrap_or("disabled in the console")
        .to_owned();
    match state
        .principals
        .disable(&viewer.principal, &name, reason)
        .await
    {
        Ok(principal) => {
            principals_page(
                &state,
                &viewer,
                StatusCode::OK,
                Some(format!(
                    "{} is disabled and its tokens are revoked.",
                    principal.name
                )),
                None,
            )
            .await
        }
        Err(err) => principal_refused(&state, &viewer, err).await,
    }
}

// ---- Systems: sync and ownership rules ---------------------------------------------------------

struct SystemRow {
    system: String,
    last_success: String,
    result: String,
    owned: String,
    automation: String,
}

#[derive(Template)]
#[template(path = "systems.html")]
struct SystemsPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    admin: bool,
    rows: Vec<SystemRow>,
    targets: Vec<(String, String)>,
    message: Option<String>,
    error: Option<String>,
}

pub(super) async fn systems_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let systems = state.store.systems().await.unwrap_or_default();
    let rows = systems
        .iter()
        .map(|s| SystemRow {
            system: s.system.clone(),
            last_success: s
                .last_success_at
                .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            result: match &s.outcome {
                writ_core::event::SyncOutcome::Succeeded { .. } => "succeeded".to_owned(),
                writ_core::event::SyncOutcome::Failed { error } => format!("failed: {error}"),
            },
            owned: format!("{} of {}", s.owned.unwrap_or(0), s.identities.unwrap_or(0)),
            automation: s
                .paused_reason
                .clone()
                .map_or_else(|| "running".to_owned(), |r| format!("paused: {r}")),
        })
        .collect();
    let targets = state
        .targets
        .iter()
        .map(|(name, connector)| (name.clone(), connector.system().to_owned()))
        .collect();
    let html = SystemsPage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        admin: viewer.principal.has_role(Role::Admin),
        rows,
        targets,
        message,
        error,
    }
    .render();
    page(status, html, viewer.refresh.as_slice())
}

/// `POST /systems/sync`: discovers a configured target now, through the API's own
/// `POST /v1/targets/{name}/sync` handler as the viewer (admins only).
pub(crate) async fn sync(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, pairs) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let target = field(&pairs, "target").unwrap_or_default().to_owned();
    let outcome = crate::admin::sync_target(
        State(state.clone()),
        crate::auth::Caller(viewer.principal.clone()),
        Path(target.clone()),
    )
    .await;
    match outcome {
        Ok(axum::Json(result)) => {
            let message = format!(
                "Synced {target}: {} identities read, {} new or changed, {} owned; {} finding(s) raised, {} waiting case(s) decided.",
                result.discovered,
                result.recorded,
                result.owned,
                result.findings.unwrap_or(0),
                result.decided.unwrap_or(0)
            );
            systems_page(&state, &viewer, StatusCode::OK, Some(message), None).await
        }
        Err(problem) => {
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
            systems_page(&state, &viewer, status, None, Some(problem_text(&problem))).await
        }
    }
}

/// `POST /systems/rules`: imports ownership rules pasted as CSV or JSON (read by the file name
/// given, as `writ inventory import` reads a file), through the API's own
/// `POST /v1/inventory/rules` handler as the viewer (admins only).
pub(crate) async fn import_rules(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, pairs) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let name = field(&pairs, "name").unwrap_or("owners.csv").to_owned();
    let text = pairs
        .iter()
        .find(|(k, _)| k == "rules")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let refused = |message: String| async {
        systems_page(
            &state,
            &viewer,
            StatusCode::BAD_REQUEST,
            None,
            Some(message),
        )
        .await
    };
    let format = if name.to_ascii_lowercase().ends_with(".json") {
        writ_core::ownership::RulesFormat::Json
    } else {
        writ_core::ownership::RulesFormat::Csv
    };
    // Read here, so that a mistake names the pasted text's line; the API takes JSON.
    let rules = match writ_core::ownership::parse_rules(format, text) {
        Ok(rules) => rules,
        Err(err) => return refused(format!("{name}, line {}: {}", err.line, err.message)).await,
    };
    let Ok(json) = serde_json::to_vec(&rules) else {
        return refused("The rules could not be encoded.".to_owned()).await;
    };
    let outcome = crate::admin::import_rules(
        State(state.clone()),
        crate::auth::Caller(viewer.principal.clone()),
        Ok(axum::extract::Query(crate::admin::RulesQuery {
            name: Some(name.clone()),
        })),
        Ok(json.into()),
    )
    .await;
    match outcome {
        Ok(axum::Json(result)) => {
            let message = format!(
                "Imported {name}: {} rule(s); {} identities now owned, {} updated.",
                rules.len(),
                result.owned,
                result.recorded
            );
            systems_page(&state, &viewer, StatusCode::OK, Some(message), None).await
        }
        Err(problem) => {
            let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
            systems_page(&state, &viewer, status, None, Some(problem_text(&problem))).await
        }
    }
}

// ---- Findings by hand --------------------------------------------------------------------------

struct FindingRow {
    line: u64,
    case_id: String,
    state: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "findings.html")]
struct FindingsPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    rows: Vec<FindingRow>,
    refused: Vec<String>,
    message: Option<String>,
    error: Option<String>,
}

fn findings_page(
    viewer: &Viewer,
    status: StatusCode,
    rows: Vec<FindingRow>,
    refused: Vec<String>,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let html = FindingsPage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        rows,
        refused,
        message,
        error,
    }
    .render();
    page(status, html, viewer.refresh.as_slice())
}

/// The viewer as a findings source, or the refusal page.
fn as_source(viewer: &Viewer) -> Result<writ_engine::sources::Source, Response> {
    crate::findings::source_of(viewer.principal.clone()).map_err(|problem| {
        error_page(
            StatusCode::FORBIDDEN,
            Some(viewer),
            "Refused",
            &problem_text(&problem),
        )
    })
}

/// `GET /findings`: the form to send findings by hand (principals with the `source` role).
pub(crate) async fn findings_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if let Err(response) = as_source(&viewer) {
        return response;
    }
    findings_page(&viewer, StatusCode::OK, Vec::new(), Vec::new(), None, None)
}

/// `POST /findings`: records pasted findings (any format `POST /v1/findings` reads) as the
/// viewer's, through the API's own path: its rate, parsing, per-finding results.
pub(crate) async fn submit_findings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (viewer, pairs) = match signed_form(&state, &headers, &body).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let source = match as_source(&viewer) {
        Ok(source) => source,
        Err(response) => return response,
    };
    if let Some(problem) = state.limits.check(&source.name, &*state.clock) {
        return findings_page(
            &viewer,
            StatusCode::TOO_MANY_REQUESTS,
            Vec::new(),
            Vec::new(),
            None,
            Some(problem_text(&problem)),
        );
    }
    let text = pairs
        .iter()
        .find(|(k, _)| k == "findings")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let query = crate::findings::IngestQuery {
        format: field(&pairs, "format")
            .filter(|f| *f != "detect")
            .map(str::to_owned),
        system: field(&pairs, "system").map(str::to_owned),
    };
    match crate::findings::ingest_as(&state, source, &query, &HeaderMap::new(), text.as_bytes())
        .await
    {
        Ok(response) => {
            let rows = response
                .accepted
                .iter()
                .map(|a| (a, "recorded"))
                .chain(response.duplicates.iter().map(|a| (a, "already recorded")))
                .map(|(a, outcome)| FindingRow {
                    line: a.line,
                    case_id: a.outcome.case_id.to_string(),
                    state: <&str>::from(a.outcome.case_state).to_owned(),
                    outcome: outcome.to_owned(),
                })
                .collect();
            let refused = response
                .refused
                .iter()
                .map(|r| {
                    format!(
                        "line {}{}: {}",
                        r.line,
                        r.field
                            .as_deref()
                            .map(|f| format!(" ({f})"))
                            .unwrap_or_default(),
                        r.message
                    )
                })
                .collect();
            let message = format!(
                "Read as {}: {} recorded, {} already recorded, {} refused, {} skipped.",
                response.format,
                response.accepted.len(),
                response.duplicates.len(),
                response.refused.len(),
                response.skipped
            );
            findings_page(&viewer, StatusCode::OK, rows, refused, Some(message), None)
        }
        Err(problem) => findings_page(
            &viewer,
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
            Vec::new(),
            Vec::new(),
            None,
            Some(problem_text(&problem)),
        ),
    }
}
