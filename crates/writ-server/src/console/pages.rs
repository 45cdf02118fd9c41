//! The console's pages and actions. Each page reads through the store as the API's handlers
//! do; each action calls the engine function its API twin calls, as the session's principal.
#![expect(
    clippy::result_large_err,
    reason = "the error is the page sent back, built at most once per request"
)]

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use writ_core::approval::Verdict;
use writ_core::case::{Case, CaseState};
use writ_core::event::EventBody;
use writ_core::principal::{Principal, Role};
use writ_store::CaseFilter;

use super::session::{SESSION_COOKIE, SIGNIN_COOKIE, Session, cookie, same_token, set_cookie};
use super::{CSP, ConsoleSettings};
use crate::AppState;

/// How many cases a queue scans at most (the newest changed first).
const QUEUE_SCAN: u32 = 200;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    title: &'a str,
    message: &'a str,
}

/// An HTML page with the console's security headers.
pub(super) fn page(
    status: StatusCode,
    html: Result<String, askama::Error>,
    cookies: &[String],
) -> Response {
    let body = match html {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "a console template failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response();
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for value in cookies {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(super) fn error_page(
    status: StatusCode,
    viewer: Option<&Viewer>,
    title: &str,
    message: &str,
) -> Response {
    let html = ErrorPage {
        viewer: viewer.map_or("", |v| v.principal.name.as_str()),
        csrf: viewer.map_or("", |v| v.session.csrf.as_str()),
        title,
        message,
    }
    .render();
    page(status, html, &[])
}

pub(crate) fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        None,
        "Not found",
        "There is nothing here.",
    )
}

pub(super) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, value);
    }
    for value in cookies {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(super) fn settings(state: &AppState) -> Result<&ConsoleSettings, Response> {
    state.console.as_ref().ok_or_else(not_found)
}

/// Random bytes as hex, for CSRF tokens and sign-in state.
pub(super) fn random_hex(state: &AppState) -> Result<String, Response> {
    let mut bytes = [0u8; 32];
    state.random.fill(&mut bytes).map_err(|err| {
        tracing::error!(error = %err, "no randomness for a console token");
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Unavailable",
            "The server has no randomness to start a session.",
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The signed-in principal of a console request.
pub(crate) struct Viewer {
    pub(super) principal: Principal,
    pub(super) session: Session,
    /// A renewed session cookie to send back (the idle timeout moves with use).
    pub(super) refresh: Option<String>,
}

/// Roles that may use the console: anyone who may read cases (a findings source may not).
fn may_use_console(principal: &Principal) -> bool {
    crate::READERS.iter().any(|role| principal.has_role(*role))
}

/// The session's principal, or a redirect to the sign-in page (an absent, forged, expired or
/// idle session, or a principal since disabled).
pub(super) async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Response> {
    let settings = settings(state)?;
    let to_login = || {
        redirect(
            "/login",
            &[set_cookie(SESSION_COOKIE, "", 0, settings.secure_cookies)],
        )
    };
    let Some(value) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie(v, SESSION_COOKIE))
    else {
        return Err(redirect("/login", &[]));
    };
    let Some(mut session) = settings.key.open::<Session>("session", value) else {
        return Err(to_login());
    };
    let now = state.clock.now();
    if !session.alive(now, settings.limits) {
        return Err(to_login());
    }
    let principal = match state.store.principal(&session.name).await {
        Ok(Some(view)) if !view.principal.disabled && may_use_console(&view.principal) => {
            view.principal
        }
        Ok(_) => return Err(to_login()),
        Err(err) => {
            tracing::error!(error = %err, "store unavailable");
            return Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Unavailable",
                "The database does not answer.",
            ));
        }
    };
    let refresh = (now.as_microsecond() - session.seen_us > 60_000_000).then(|| {
        session.seen_us = now.as_microsecond();
        session_cookie(settings, &session)
    });
    Ok(Viewer {
        principal,
        session,
        refresh,
    })
}

fn session_cookie(settings: &ConsoleSettings, session: &Session) -> String {
    set_cookie(
        SESSION_COOKIE,
        &settings.key.seal("session", session),
        settings.limits.absolute.as_secs(),
        settings.secure_cookies,
    )
}

/// Refuses a state-changing request whose CSRF token (form field or `X-CSRF-Token`) is not
/// the session's.
pub(super) fn check_csrf(
    viewer: &Viewer,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), Response> {
    let sent = form_token.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    match sent {
        Some(token) if same_token(token, &viewer.session.csrf) => Ok(()),
        _ => Err(error_page(
            StatusCode::FORBIDDEN,
            Some(viewer),
            "Refused",
            "The form's CSRF token is missing or wrong: reload the page and try again.",
        )),
    }
}

fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

// ---- Sign-in -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    signin_csrf: &'a str,
    sso: bool,
    error: Option<&'a str>,
}

/// `GET /login`: the sign-in form (a token, or single sign-on when configured).
pub(crate) async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    // A new installation: the first admin is made on the setup page.
    if !super::admin::admin_exists(&state).await {
        return redirect("/setup", &[]);
    }
    login_page(&state, StatusCode::OK, None)
}

/// A form shown before there is a session (`purpose` names which): the settings, a fresh form
/// token, and the cookie that carries it sealed for ten minutes.
pub(super) fn pre_session_form<'a>(
    state: &'a AppState,
    purpose: &str,
) -> Result<(&'a ConsoleSettings, String, String), Response> {
    let settings = settings(state)?;
    let token = random_hex(state)?;
    let cookie = set_cookie(
        SIGNIN_COOKIE,
        &settings.key.seal(purpose, &token),
        600,
        settings.secure_cookies,
    );
    Ok((settings, token, cookie))
}

/// Whether `sent` is the token of the `purpose` form this browser was given (its cookie).
pub(super) fn pre_session_form_ok(
    settings: &ConsoleSettings,
    headers: &HeaderMap,
    purpose: &str,
    sent: Option<&str>,
) -> bool {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie(v, SIGNIN_COOKIE))
        .and_then(|v| settings.key.open::<String>(purpose, v))
        .is_some_and(|token| sent.is_some_and(|sent| same_token(&token, sent)))
}

fn login_page(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let (settings, token, cookie) = match pre_session_form(state, "signin-form") {
        Ok(form) => form,
        Err(response) => return response,
    };
    let html = LoginPage {
        viewer: "",
        csrf: "",
        signin_csrf: &token,
        sso: settings.oidc.is_some(),
        error,
    }
    .render();
    page(status, html, &[cookie])
}

#[derive(serde::Deserialize)]
struct TokenForm {
    csrf: String,
    token: String,
}

/// `POST /login`: signs in with a principal's API token. Failed attempts count against the
/// client's address like the API's failed authentications (429 when over the limit).
pub(crate) async fn login_token(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<crate::PeerAddr>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let settings = match settings(&state) {
        Ok(settings) => settings.clone(),
        Err(response) => return response,
    };
    let peer = peer.map(|axum::Extension(peer)| peer.0.ip());
    if let Some(peer) = peer
        && state
            .limits
            .may_authenticate(peer, state.clock.now())
            .is_err()
    {
        return login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins from this address: wait a while and try again."),
        );
    }
    let Some(form) = parse_form::<TokenForm>(&body) else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("The form is incomplete."),
        );
    };
    if !pre_session_form_ok(&settings, &headers, "signin-form", Some(&form.csrf)) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired: try again."),
        );
    }
    let principal = match state.principals.authenticate(&form.token).await {
        Ok(principal) if may_use_console(&principal) => principal,
        Ok(_) => {
            return login_page(
                &state,
                StatusCode::FORBIDDEN,
                Some("This principal has no role that may use the console."),
            );
        }
        Err(_) => {
            if let Some(peer) = peer {
                state.limits.failed_authentication(peer, state.clock.now());
            }
            return login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("That token does not sign anyone in."),
            );
        }
    };
    start_session(&state, &settings, &principal.name, "token")
}

/// Starts a session for `name` and sends the browser to the queues.
pub(crate) fn start_session(
    state: &AppState,
    settings: &ConsoleSettings,
    name: &str,
    via: &str,
) -> Response {
    match session_cookies(state, settings, name, via) {
        Ok(cookies) => redirect("/", &cookies),
        Err(response) => response,
    }
}

/// The cookies of a new session for `name` (and the sign-in form's cookie cleared).
pub(super) fn session_cookies(
    state: &AppState,
    settings: &ConsoleSettings,
    name: &str,
    via: &str,
) -> Result<Vec<String>, Response> {
    let csrf = random_hex(state)?;
    let now = state.clock.now().as_microsecond();
    let session = Session {
        name: name.to_owned(),
        issued_us: now,
        seen_us: now,
        csrf,
        via: via.to_owned(),
    };
    Ok(vec![
        session_cookie(settings, &session),
        set_cookie(SIGNIN_COOKIE, "", 0, settings.secure_cookies),
    ])
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let form = parse_form::<CsrfForm>(&body);
    if let Err(response) = check_csrf(
        &viewer,
        &headers,
        form.as_ref().and_then(|f| f.csrf.as_deref()),
    ) {
        return response;
    }
    let secure = state.console.as_ref().is_some_and(|s| s.secure_cookies);
    redirect("/login", &[set_cookie(SESSION_COOKIE, "", 0, secure)])
}

pub(crate) use super::oidc::{oidc_callback, oidc_start};

// ---- Queues --------------------------------------------------------------------------------

struct QueueRow {
    case_id: String,
    short_id: String,
    subject: String,
    finding_type: String,
    state: &'static str,
    detail: String,
}

struct Queue {
    id: &'static str,
    title: &'static str,
    detail_title: &'static str,
    rows: Vec<QueueRow>,
    /// There are more than the home page shows.
    more: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    roles: String,
    queues: Vec<Queue>,
    render_ms: u128,
    /// Links to the setting-up pages the viewer may use.
    admin: bool,
    reads_principals: bool,
    source: bool,
}

fn row(case: &Case, detail: String) -> QueueRow {
    let id = case.id.to_string();
    QueueRow {
        short_id: id
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
        case_id: id,
        subject: case.subject.clone(),
        finding_type: case.finding_type.clone(),
        state: case.state.into(),
        detail,
    }
}

/// Where a queue's page starts and what it shows.
#[derive(Debug, Clone, Default)]
struct Window {
    offset: u32,
    limit: u32,
    finding_type: Option<String>,
}

async fn cases_in(
    state: &AppState,
    case_state: CaseState,
    window: &Window,
) -> Result<Vec<Case>, Response> {
    state
        .store
        .cases(&CaseFilter {
            state: Some(case_state),
            limit: Some(window.limit),
            offset: Some(window.offset),
            finding_type: window.finding_type.clone(),
        })
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "store unavailable");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Unavailable",
                "The database does not answer.",
            )
        })
}

/// Why a case waits for a person: its decision's routing, else the decision's reason.
async fn decision_reason(state: &AppState, case: &Case) -> String {
    let Ok(Some(view)) = state.store.case_view(case.id).await else {
        return String::new();
    };
    let Some(seq) = view.decision_seq else {
        return String::new();
    };
    let Ok(mut rows) = state.store.entries_at(&[seq]).await else {
        return String::new();
    };
    match rows
        .pop()
        .map(|row| writ_engine::entries::decode_body(&row))
    {
        Some(Ok(EventBody::DecisionRecorded(b))) => b
            .routing
            .map_or(b.decision.reason, |routing| routing.reason),
        Some(Ok(body)) => body
            .recorded_decision()
            .map(|(decision, _)| decision.reason.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The queues: id, title, the column that explains each row, and whether the viewer sees it.
const QUEUES: &[(&str, &str, &str)] = &[
    ("mine", "Approvals due for me", "Rule"),
    ("review", "Needing review", "Why"),
    ("failed", "Failed write-backs", "Why"),
    ("frozen", "Frozen work", "Why"),
    ("expiring", "Exceptions expiring within 14 days", "Expiry"),
    (
        "bypass",
        "Break-glass reviews owed (overdue first)",
        "Review",
    ),
];

/// One page of queue `id` for `principal`.
async fn queue(
    state: &AppState,
    principal: &Principal,
    id: &str,
    window: &Window,
) -> Result<Vec<QueueRow>, Response> {
    let mut rows = Vec::new();
    match id {
        "mine" => {
            let Some(writeback) = &state.writeback else {
                return Ok(rows);
            };
            if !(principal.has_role(Role::Approver) || principal.has_role(Role::RiskOwner)) {
                return Ok(rows);
            }
            // The cases waiting for votes in this window, kept where the viewer may vote
            // (every check of a vote, nothing recorded).
            for wanted in [
                CaseState::AwaitingApproval,
                CaseState::RollbackRequested,
                CaseState::ExceptionRequested,
                CaseState::DismissalRequested,
            ] {
                for case in cases_in(state, wanted, window).await? {
                    if let Ok(offer) = writeback.vote_offer(case.id, principal).await {
                        rows.push(row(
                            &case,
                            format!(
                                "{}: {} ({} more needed; you count for {})",
                                offer.rule,
                                offer.progress,
                                offer.missing,
                                offer.groups.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        "review" | "failed" | "frozen" => {
            let wanted = match id {
                "review" => CaseState::NeedsReview,
                "failed" => CaseState::WriteBackFailed,
                _ => CaseState::Frozen,
            };
            for case in cases_in(state, wanted, window).await? {
                let why = decision_reason(state, &case).await;
                rows.push(row(&case, why));
            }
        }
        "expiring" => {
            let soon = state.clock.now() + jiff::SignedDuration::from_hours(24 * 14);
            let exceptions = state
                .store
                .exceptions(&writ_store::ExceptionFilter {
                    state: Some(writ_core::exception::ExceptionState::Active),
                    expiring_before: Some(soon),
                    limit: Some(window.offset + window.limit),
                    ..writ_store::ExceptionFilter::default()
                })
                .await
                .unwrap_or_default();
            for view in exceptions.into_iter().skip(window.offset as usize) {
                if let Ok(Some(case)) = state.store.case(view.exception.case_id).await
                    && window
                        .finding_type
                        .as_ref()
                        .is_none_or(|t| *t == case.finding_type)
                {
                    rows.push(row(
                        &case,
                        format!(
                            "expires {} ({})",
                            view.exception.expires_at, view.exception.justification
                        ),
                    ));
                }
            }
        }
        "bypass" => {
            // Break-glass changes are applied at once: their cases are remediated, owing a
            // review until someone else upholds or rejects it. The earliest due come first,
            // and overdue ones say so.
            let now = state.clock.now();
            let mut owing_rows = Vec::new();
            for case in cases_in(state, CaseState::Remediated, window).await? {
                let Ok(rows_of) = state.store.case_entries(case.id).await else {
                    continue;
                };
                let mut owing = None;
                for entry in &rows_of {
                    match writ_engine::entries::decode_body(entry) {
                        Ok(EventBody::BreakGlassUsed(b)) => {
                            let due = if b.review_due < now {
                                format!("OVERDUE since {}", b.review_due)
                            } else {
                                format!("due {}", b.review_due)
                            };
                            owing = Some((
                                b.review_due,
                                format!("{due}; {} by {}: {}", b.incident, b.by, b.reason),
                            ));
                        }
                        Ok(EventBody::BypassReviewed(_)) => owing = None,
                        _ => {}
                    }
                }
                if let Some((due, detail)) = owing {
                    owing_rows.push((due, row(&case, detail)));
                }
            }
            owing_rows.sort_by_key(|(due, _)| *due);
            rows.extend(owing_rows.into_iter().map(|(_, row)| row));
        }
        _ => {}
    }
    Ok(rows)
}

/// How many rows each queue shows on the home page; the queue's own page shows more.
const PREVIEW: u32 = 10;
/// Rows per page on a queue's own page.
const PAGE: u32 = 50;

/// `GET /`: the queues, by what the viewer may do.
pub(crate) async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let principal = &viewer.principal;
    let started = std::time::Instant::now();
    let mut queues = Vec::new();
    for (id, title, detail_title) in QUEUES {
        // The approvals queue looks further: most waiting cases are someone else's.
        let window = Window {
            offset: 0,
            limit: if *id == "mine" { QUEUE_SCAN } else { PREVIEW },
            finding_type: None,
        };
        let mut rows = match queue(&state, principal, id, &window).await {
            Ok(rows) => rows,
            Err(response) => return response,
        };
        let more =
            rows.len() > PREVIEW as usize || (*id != "mine" && rows.len() == PREVIEW as usize);
        rows.truncate(PREVIEW as usize);
        queues.push(Queue {
            id,
            title,
            detail_title,
            rows,
            more,
        });
    }
    let roles: Vec<&str> = principal.roles.iter().map(|r| <&str>::from(*r)).collect();
    let html = HomePage {
        viewer: &principal.name,
        csrf: &viewer.session.csrf,
        roles: roles.join(", "),
        queues,
        render_ms: started.elapsed().as_millis(),
        admin: principal.has_role(Role::Admin),
        reads_principals: principal.has_role(Role::Admin) || principal.has_role(Role::Auditor),
        source: principal.has_role(Role::Source),
    }
    .render();
    page(StatusCode::OK, html, viewer.refresh.as_slice())
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    id: &'a str,
    title: &'a str,
    detail_title: &'a str,
    rows: Vec<QueueRow>,
    finding_type: String,
    page: u32,
    next: bool,
    render_ms: u128,
}

/// A queue's page and filter.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct QueueQuery {
    page: Option<u32>,
    #[serde(rename = "type")]
    finding_type: Option<String>,
}

/// `GET /queues/{id}?page=N&type=T`: one queue, 50 rows a page, filtered by finding type.
pub(crate) async fn queue_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<QueueQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Some((id, title, detail_title)) = QUEUES.iter().find(|(q, ..)| *q == id) else {
        return not_found();
    };
    let page_number = query.page.unwrap_or(1).clamp(1, 10_000);
    let finding_type = query
        .finding_type
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let window = Window {
        offset: (page_number - 1) * PAGE,
        limit: PAGE,
        finding_type: finding_type.clone(),
    };
    let started = std::time::Instant::now();
    let rows = match queue(&state, &viewer.principal, id, &window).await {
        Ok(rows) => rows,
        Err(response) => return response,
    };
    let next = *id == "mine" || rows.len() == PAGE as usize;
    let html = QueuePage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        id,
        title,
        detail_title,
        rows,
        finding_type: finding_type.unwrap_or_default(),
        page: page_number,
        next,
        render_ms: started.elapsed().as_millis(),
    }
    .render();
    page(StatusCode::OK, html, viewer.refresh.as_slice())
}

// ---- The case page ---------------------------------------------------------------------------

struct TimelineItem {
    seq: u64,
    time: String,
    kind: &'static str,
    actor: String,
    summary: String,
    body: String,
    superseded: bool,
}

struct VoteOffer {
    rule: String,
    missing: u64,
    groups: String,
}

/// A step on a case that needs only a rationale, offered by role and state; the engine checks
/// it again when it is taken.
struct StepOffer {
    action: &'static str,
    label: &'static str,
    help: &'static str,
}

/// A step: its action, its button, what it does, who may take it (the API's roles), and from
/// which states.
type Step = (
    &'static str,
    &'static str,
    &'static str,
    &'static [Role],
    &'static [CaseState],
);

/// The steps a rationale is enough for.
const STEPS: &[Step] = &[
    (
        "close",
        "Close",
        "Close the finding for compliance on your word.",
        &[Role::Approver, Role::Admin],
        writ_core::workflow::CLOSABLE,
    ),
    (
        "rollback",
        "Roll back",
        "Undo the verified change from its recorded pre-image (policy decides: now, or after approvals).",
        &[Role::Approver, Role::Admin, Role::BreakGlass],
        &[CaseState::Remediated],
    ),
    (
        "unfreeze",
        "Unfreeze",
        "Let the frozen work go on where it stopped.",
        &[Role::Admin],
        &[CaseState::Frozen],
    ),
];

fn step_offers(principal: &Principal, state: CaseState) -> Vec<StepOffer> {
    STEPS
        .iter()
        .filter(|(_, _, _, roles, states)| {
            states.contains(&state) && roles.iter().any(|r| principal.has_role(*r))
        })
        .map(|(action, label, help, _, _)| StepOffer {
            action,
            label,
            help,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    case_id: String,
    short_id: String,
    subject: String,
    finding_type: String,
    state: &'static str,
    operational: String,
    compliance: String,
    proofs: String,
    error: Option<String>,
    /// The case is changing by itself (a change being applied): the state polls (htmx).
    moving: bool,
    vote: Option<VoteOffer>,
    steps: Vec<StepOffer>,
    /// An exception may be asked for (by role and state).
    exception: bool,
    /// A break-glass change owes a review the viewer may give (by role, not its user).
    review: Option<String>,
    timeline: Vec<TimelineItem>,
}

/// One line about an event, for the timeline.
fn summary(body: &EventBody) -> String {
    use EventBody as B;
    match body {
        B::FindingReceived(b) => format!(
            "{} from {} ({} trust): {}",
            b.finding.finding_type,
            b.source.name,
            <&str>::from(b.source.trust),
            b.observation.title
        ),
        B::DecisionRecorded(b) => format!(
            "{} (bundle {}; determined by {}){}",
            b.decision.reason,
            b.decision.bundle_hash,
            b.decision.determining_policies.join(", "),
            b.routing
                .as_ref()
                .map(|r| format!("; to a person: {}", r.reason))
                .unwrap_or_default()
        ),
        B::ApprovalGranted(b) => format!("{} approved: {}", b.approval.approver, b.rationale),
        B::ChangeRejected(b) => format!("{} rejected: {}", b.approval.approver, b.rationale),
        B::ChangeRequested(b) => format!(
            "{} of {} queued (job {})",
            b.job.action.name(),
            b.job.external_id,
            b.job.id
        ),
        B::WriteBackIntent(b) => format!(
            "plan: {} {}, pre-image recorded ({})",
            b.plan.action.name(),
            b.plan.external_id,
            if b.plan.pre_image.exists {
                "the object exists"
            } else {
                "no object"
            }
        ),
        B::WriteBackApplied(b) => format!("applied to {} ({:?})", b.job.external_id, b.outcome),
        B::WriteBackVerified(b) => {
            format!("read back from the target: {:?}", b.verification)
        }
        B::WriteBackFailed(b) => {
            format!("failed: {}", b.job.last_error.clone().unwrap_or_default())
        }
        B::CaseClosed(b) => format!("compliance closed: {:?}", b.evidence),
        B::CaseDismissed(b) => format!("dismissed by {}: {}", b.reviewer, b.rationale),
        B::CertificationOverdue(b) => {
            format!("nobody answered campaign {} by {}", b.campaign, b.deadline)
        }
        other => other
            .case()
            .map(|case| format!("the case is now {}", <&str>::from(case.state)))
            .unwrap_or_default(),
    }
}

/// `GET /cases/{id}`: the case's timeline from the ledger and what the viewer may do.
pub(crate) async fn case_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    render_case(&state, &viewer, &id, StatusCode::OK, None).await
}

async fn render_case(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let Ok(case_id) = id.parse::<writ_core::ids::CaseId>() else {
        return error_page(
            StatusCode::NOT_FOUND,
            Some(viewer),
            "Not found",
            "No such case.",
        );
    };
    let (case, rows) = match (
        state.store.case(case_id).await,
        state.store.case_entries(case_id).await,
    ) {
        (Ok(Some(case)), Ok(rows)) => (case, rows),
        (Ok(None), _) => {
            return error_page(
                StatusCode::NOT_FOUND,
                Some(viewer),
                "Not found",
                "No such case.",
            );
        }
        _ => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(viewer),
                "Unavailable",
                "The database does not answer.",
            );
        }
    };
    let mut decoded = Vec::with_capacity(rows.len());
    for row in &rows {
        match writ_engine::entries::decode(row) {
            Ok(event) => decoded.push(event),
            Err(err) => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(viewer),
                    "Unreadable ledger entry",
                    &err.to_string(),
                );
            }
        }
    }
    let lifecycle = writ_core::lifecycle::Lifecycle::of(&decoded);
    let superseded: std::collections::HashSet<u64> = lifecycle
        .decisions
        .iter()
        .filter(|d| d.superseded)
        .map(|d| d.seq)
        .collect();
    let proofs = proof_status(state, &rows).await;
    let timeline = decoded
        .iter()
        .map(|event| TimelineItem {
            seq: event.seq,
            time: event.time.to_string(),
            kind: event.kind.name(),
            actor: event.actor.clone(),
            summary: summary(&event.body),
            body: event
                .body
                .to_value()
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_default(),
            superseded: superseded.contains(&event.seq),
        })
        .collect();
    let vote = match &state.writeback {
        Some(writeback) => writeback
            .vote_offer(case.id, &viewer.principal)
            .await
            .ok()
            .map(|outcome| VoteOffer {
                rule: format!("{}: {}", outcome.rule, outcome.progress),
                missing: outcome.missing,
                groups: outcome.groups.join(", "),
            }),
        None => None,
    };
    let compliance = if lifecycle.compliance.closed {
        format!(
            "closed by {} ({})",
            lifecycle.compliance.by.clone().unwrap_or_default(),
            lifecycle.compliance.evidence.clone().unwrap_or_default()
        )
    } else {
        "open".to_owned()
    };
    let id_text = case.id.to_string();
    let html = CasePage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        short_id: id_text
            .chars()
            .skip(id_text.len().saturating_sub(8))
            .collect(),
        case_id: id_text,
        subject: case.subject.clone(),
        finding_type: case.finding_type.clone(),
        state: case.state.into(),
        operational: if lifecycle.operational.remediated {
            "remediated: a verified change is in effect".to_owned()
        } else {
            "not remediated".to_owned()
        },
        compliance,
        proofs,
        error,
        moving: MOVING.contains(&case.state),
        vote,
        steps: step_offers(&viewer.principal, case.state),
        exception: writ_core::workflow::EXCEPTABLE.contains(&case.state)
            && EXCEPTION_ROLES
                .iter()
                .any(|r| viewer.principal.has_role(*r)),
        review: lifecycle
            .bypasses
            .last()
            .filter(|b| {
                b.review == "pending"
                    && b.by != viewer.principal.name
                    && REVIEW_ROLES.iter().any(|r| viewer.principal.has_role(*r))
            })
            .map(|b| format!("{} used break-glass for {}: {}", b.by, b.incident, b.reason)),
        timeline,
    }
    .render();
    page(status, html, viewer.refresh.as_slice())
}

/// Whether the latest signed checkpoint covers the case's entries (their inclusion proofs
/// can be made against it), said in words.
async fn proof_status(state: &AppState, rows: &[writ_store::LedgerRow]) -> String {
    let Ok(Some(checkpoint)) = state.store.latest_checkpoint().await else {
        return "no signed checkpoint yet".to_owned();
    };
    let covered = rows.iter().filter(|r| r.seq < checkpoint.size).count();
    format!(
        "{covered} of {} entries covered by the signed checkpoint of size {} (each provable with `writ audit export --case`)",
        rows.len(),
        checkpoint.size
    )
}

/// Where an action on a case ends: back on the case page, or the page again with the
/// engine's refusal and the status the API answers for the same error.
async fn action_done(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    case_id: writ_core::ids::CaseId,
    result: Result<(), writ_engine::writeback::WriteBackError>,
) -> Response {
    match result {
        Ok(()) => redirect(&format!("/cases/{case_id}"), viewer.refresh.as_slice()),
        Err(err) => {
            let message = err.to_string();
            let status = StatusCode::from_u16(crate::cases::writeback_problem(err).status)
                .unwrap_or(StatusCode::CONFLICT);
            render_case(state, viewer, id, status, Some(message)).await
        }
    }
}

#[derive(serde::Deserialize)]
struct VoteForm {
    csrf: Option<String>,
    verdict: String,
    rationale: String,
}

/// `POST /cases/{id}/vote`: approve or reject as the viewer, through `WriteBack::vote` (the
/// API's vote), with the session's CSRF token.
pub(crate) async fn vote(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Some(form) = parse_form::<VoteForm>(&body) else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::BAD_REQUEST,
            Some("The form is incomplete: a verdict and a rationale are needed.".into()),
        )
        .await;
    };
    if let Err(response) = check_csrf(&viewer, &headers, form.csrf.as_deref()) {
        return response;
    }
    if !(viewer.principal.has_role(Role::Approver) || viewer.principal.has_role(Role::RiskOwner)) {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::FORBIDDEN,
            Some("Voting needs the role approver or risk_owner.".into()),
        )
        .await;
    }
    let verdict = match form.verdict.as_str() {
        "approve" => Verdict::Approve,
        "reject" => Verdict::Reject,
        _ => {
            return render_case(
                &state,
                &viewer,
                &id,
                StatusCode::BAD_REQUEST,
                Some("The verdict is approve or reject.".into()),
            )
            .await;
        }
    };
    let Ok(case_id) = id.parse::<writ_core::ids::CaseId>() else {
        return not_found();
    };
    let Some(writeback) = &state.writeback else {
        return not_found();
    };
    let result = writeback
        .vote(case_id, &viewer.principal, verdict, &form.rationale, false)
        .await
        .map(|_| ());
    action_done(&state, &viewer, &id, case_id, result).await
}

/// States a case leaves by itself (the worker applies, verifies or undoes a change).
const MOVING: &[CaseState] = &[CaseState::Remediating, CaseState::RollbackRequested];

#[derive(serde::Deserialize)]
pub(crate) struct StateQuery {
    was: Option<String>,
}

/// `GET /cases/{id}/state` (htmx): the case's state as a fragment; when it is no longer the
/// one the page showed, the page reloads to show what happened (`HX-Refresh`).
pub(crate) async fn case_state(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<StateQuery>,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Ok(case_id) = id.parse::<writ_core::ids::CaseId>() else {
        return not_found();
    };
    let Ok(Some(case)) = state.store.case(case_id).await else {
        return not_found();
    };
    let now: &'static str = case.state.into();
    let mut response = page(
        StatusCode::OK,
        Ok(if MOVING.contains(&case.state) {
            format!(
                "<span id=\"case-state\" class=\"state state-{now}\" hx-get=\"/cases/{case_id}/state?was={now}\" hx-trigger=\"every 2s\" hx-swap=\"outerHTML\" aria-live=\"polite\">{now}</span>"
            )
        } else {
            format!("<span id=\"case-state\" class=\"state state-{now}\">{now}</span>")
        }),
        viewer.refresh.as_slice(),
    );
    if query.was.as_deref() != Some(now) {
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
    }
    response
}

/// Who may ask for an exception (the API's roles).
const EXCEPTION_ROLES: &[Role] = &[Role::Requester, Role::Approver, Role::Admin];
/// Who may review a break-glass change (the API's roles; never who used it).
const REVIEW_ROLES: &[Role] = &[Role::Approver, Role::Admin];

#[derive(serde::Deserialize)]
struct ExceptionForm {
    csrf: Option<String>,
    justification: String,
    /// The last day it holds (`YYYY-MM-DD`, to the end of that day in UTC).
    until: String,
    /// Compensating controls, one per line.
    controls: String,
    follow_up: String,
}

/// `POST /cases/{id}/exception`: asks to accept the case's risk until a day, through
/// `WriteBack::request_exception` (policy decides: in force now, or after approvals).
pub(crate) async fn exception(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Some(form) = parse_form::<ExceptionForm>(&body) else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::BAD_REQUEST,
            Some("The form is incomplete: justification, until, controls and follow-up.".into()),
        )
        .await;
    };
    if let Err(response) = check_csrf(&viewer, &headers, form.csrf.as_deref()) {
        return response;
    }
    if !EXCEPTION_ROLES
        .iter()
        .any(|r| viewer.principal.has_role(*r))
    {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::FORBIDDEN,
            Some("Asking for an exception needs the role requester, approver or admin.".into()),
        )
        .await;
    }
    let until = form
        .until
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|day| day.at(23, 59, 59, 0).to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp());
    let Some(expires_at) = until else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("until: a day as YYYY-MM-DD.".into()),
        )
        .await;
    };
    let (Ok(case_id), Some(writeback)) = (id.parse::<writ_core::ids::CaseId>(), &state.writeback)
    else {
        return not_found();
    };
    let ask = writ_engine::exceptions::ExceptionAsk {
        justification: form.justification,
        expires_at,
        compensating_controls: form
            .controls
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        follow_up: form.follow_up,
    };
    let result = writeback
        .request_exception(case_id, &viewer.principal, ask)
        .await
        .map(|_| ());
    action_done(&state, &viewer, &id, case_id, result).await
}

#[derive(serde::Deserialize)]
struct ReviewForm {
    csrf: Option<String>,
    verdict: String,
    rationale: String,
}

/// `POST /cases/{id}/review`: reviews a break-glass change through `WriteBack::review_bypass`
/// (upheld, or rejected: the change is rolled back).
pub(crate) async fn review(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Some(form) = parse_form::<ReviewForm>(&body) else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::BAD_REQUEST,
            Some("The form is incomplete: a verdict and a rationale are needed.".into()),
        )
        .await;
    };
    if let Err(response) = check_csrf(&viewer, &headers, form.csrf.as_deref()) {
        return response;
    }
    if !REVIEW_ROLES.iter().any(|r| viewer.principal.has_role(*r)) {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::FORBIDDEN,
            Some("Reviewing a break-glass change needs the role approver or admin.".into()),
        )
        .await;
    }
    let verdict = match form.verdict.as_str() {
        "upheld" => writ_core::event::ReviewVerdict::Upheld,
        "rejected" => writ_core::event::ReviewVerdict::Rejected,
        _ => {
            return render_case(
                &state,
                &viewer,
                &id,
                StatusCode::BAD_REQUEST,
                Some("The verdict is upheld or rejected.".into()),
            )
            .await;
        }
    };
    let (Ok(case_id), Some(writeback)) = (id.parse::<writ_core::ids::CaseId>(), &state.writeback)
    else {
        return not_found();
    };
    let result = writeback
        .review_bypass(case_id, &viewer.principal, verdict, &form.rationale)
        .await
        .map(|_| ());
    action_done(&state, &viewer, &id, case_id, result).await
}

#[derive(serde::Deserialize)]
struct StepForm {
    csrf: Option<String>,
    action: String,
    rationale: String,
}

/// `POST /cases/{id}/step`: close, roll back or unfreeze with a rationale, as the viewer,
/// through the API's engine functions and role rules, with the session's CSRF token.
pub(crate) async fn step(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let Some(form) = parse_form::<StepForm>(&body) else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::BAD_REQUEST,
            Some("The form is incomplete: an action and a rationale are needed.".into()),
        )
        .await;
    };
    if let Err(response) = check_csrf(&viewer, &headers, form.csrf.as_deref()) {
        return response;
    }
    let Some((action, _, _, roles, _)) = STEPS.iter().find(|(a, ..)| *a == form.action) else {
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::BAD_REQUEST,
            Some(format!("There is no action {:?}.", form.action)),
        )
        .await;
    };
    if !roles.iter().any(|r| viewer.principal.has_role(*r)) {
        let names: Vec<&str> = roles.iter().map(|r| <&str>::from(*r)).collect();
        return render_case(
            &state,
            &viewer,
            &id,
            StatusCode::FORBIDDEN,
            Some(format!(
                "To {action} a case needs the role {}.",
                names.join(" or ")
            )),
        )
        .await;
    }
    let (Ok(case_id), Some(writeback)) = (id.parse::<writ_core::ids::CaseId>(), &state.writeback)
    else {
        return not_found();
    };
    let principal = &viewer.principal;
    let result = match *action {
        "close" => writeback
            .close(case_id, principal, &form.rationale)
            .await
            .map(|_| ()),
        "rollback" => writeback
            .rollback(case_id, principal, &form.rationale)
            .await
            .map(|_| ()),
        _ => writeback
            .unfreeze(case_id, principal, &form.rationale)
            .await
            .map(|_| ()),
    };
    action_done(&state, &viewer, &id, case_id, result).await
}

// ---- Inventory, systems, dashboard -------------------------------------------------------------

#[derive(Template)]
#[template(path = "table.html")]
struct TablePage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    title: &'a str,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// `GET /identities`: the inventory with owners, criticality and freshness.
pub(crate) async fn identities(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let identities = state.store.identities().await.unwrap_or_default();
    let rows = identities
        .iter()
        .take(1000)
        .map(|i| {
            vec![
                i.system.clone(),
                i.external_id.clone(),
                <&str>::from(i.kind).to_owned(),
                i.owner_team.clone().unwrap_or_else(|| "(none)".into()),
                <&str>::from(i.criticality).to_owned(),
                i.reconciled_at.map(|t| t.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    let html = TablePage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        title: "Identities",
        headers: vec![
            "System",
            "Identity",
            "Kind",
            "Owner team",
            "Criticality",
            "Reconciled at",
        ],
        rows,
    }
    .render();
    page(StatusCode::OK, html, viewer.refresh.as_slice())
}

/// `GET /systems`: each system's sync freshness and whether automation is paused there, why.
pub(crate) async fn systems(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    super::admin::systems_page(&state, &viewer, StatusCode::OK, None, None).await
}

struct Bar {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    label: String,
    value: usize,
}

struct Chart {
    title: &'static str,
    width: u32,
    height: u32,
    bars: Vec<Bar>,
}

/// A bar chart of `counts` (label, value), drawn as SVG shapes (no script).
fn chart(title: &'static str, counts: &[(String, usize)]) -> Chart {
    let (width, height, top, bottom) = (480u32, 200u32, 16u32, 20u32);
    let max = counts.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = u32::try_from(counts.len().max(1)).unwrap_or(1);
    let slot = width / n;
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let h =
                u32::try_from(*value * usize::try_from(height - top - bottom).unwrap_or(0) / max)
                    .unwrap_or(0);
            Bar {
                x: u32::try_from(i).unwrap_or(0) * slot + 4,
                y: height - bottom - h,
                w: slot.saturating_sub(8).clamp(2, 64),
                h,
                label: label.clone(),
                value: *value,
            }
        })
        .collect();
    Chart {
        title,
        width,
        height,
        bars,
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    viewer: &'a str,
    csrf: &'a str,
    cases: usize,
    charts: Vec<Chart>,
}

/// How many of the most recently changed cases the dashboard reads the stories of.
const DASHBOARD_CASES: u32 = 300;

/// The bucket a span falls in, for the time charts.
fn span_bucket(span: jiff::SignedDuration) -> &'static str {
    let secs = span.as_secs();
    match secs {
        s if s < 60 => "<1m",
        s if s < 3600 => "<1h",
        s if s < 86_400 => "<1d",
        s if s < 7 * 86_400 => "<7d",
        s if s < 30 * 86_400 => "<30d",
        _ => ">=30d",
    }
}

const SPAN_BUCKETS: &[&str] = &["<1m", "<1h", "<1d", "<7d", "<30d", ">=30d"];

fn ordered(
    counts: &std::collections::BTreeMap<String, usize>,
    order: &[&str],
) -> Vec<(String, usize)> {
    order
        .iter()
        .map(|k| ((*k).to_owned(), counts.get(*k).copied().unwrap_or(0)))
        .collect()
}

/// `GET /dashboard`: charts over the most recently changed cases, read from their stories in
/// the ledger: time from finding to verified remediation, open cases by age and severity,
/// decisions by tier (the share of automation), exceptions by expiry, write-back outcomes per
/// target.
pub(crate) async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    use std::collections::BTreeMap;
    let viewer = match viewer(&state, &headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let now = state.clock.now();
    let cases = state
        .store
        .cases(&CaseFilter {
            limit: Some(DASHBOARD_CASES),
            ..CaseFilter::default()
        })
        .await
        .unwrap_or_default();
    let mut to_verified: BTreeMap<String, usize> = BTreeMap::new();
    let mut open_age: BTreeMap<String, usize> = BTreeMap::new();
    let mut open_severity: BTreeMap<String, usize> = BTreeMap::new();
    let mut tiers: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for case in &cases {
        let Ok(rows) = state.store.case_entries(case.id).await else {
            continue;
        };
        let mut first: Option<jiff::Timestamp> = None;
        let mut severity = None;
        for row in &rows {
            let Ok(event) = writ_engine::entries::decode(row) else {
                continue;
            };
            match &event.body {
                EventBody::FindingReceived(b) => {
                    first.get_or_insert(event.time);
                    severity = Some(<&str>::from(b.finding.severity));
                }
                EventBody::DecisionRecorded(b) => {
                    let tier = match &b.decision.tier {
                        writ_core::decision::Tier::Auto if b.routing.is_none() => "auto",
                        writ_core::decision::Tier::Auto => "auto, to a person",
                        writ_core::decision::Tier::Approval { .. } => "approval",
                        writ_core::decision::Tier::CaseOnly { .. } => "case only",
                        writ_core::decision::Tier::Deny => "deny",
                    };
                    *tiers.entry(tier.to_owned()).or_default() += 1;
                }
                EventBody::WriteBackVerified(b) => {
                    if let Some(first) = first {
                        *to_verified
                            .entry(span_bucket(event.time.duration_since(first)).to_owned())
                            .or_default() += 1;
                    }
                    *outcomes
                        .entry(format!("{} verified", b.job.system))
                        .or_default() += 1;
                }
                EventBody::WriteBackFailed(b) => {
                    *outcomes
                        .entry(format!("{} failed", b.job.system))
                        .or_default() += 1;
                }
                _ => {}
            }
        }
        if case.state.is_open() {
            if let Some(first) = first {
                *open_age
                    .entry(span_bucket(now.duration_since(first)).to_owned())
                    .or_default() += 1;
            }
            *open_severity
                .entry(severity.unwrap_or("unknown").to_owned())
                .or_default() += 1;
        }
    }
    let exceptions = state
        .store
        .exceptions(&writ_store::ExceptionFilter {
            state: Some(writ_core::exception::ExceptionState::Active),
            limit: Some(1000),
            ..writ_store::ExceptionFilter::default()
        })
        .await
        .unwrap_or_default();
    let mut expiry: BTreeMap<String, usize> = BTreeMap::new();
    for view in &exceptions {
        *expiry
            .entry(span_bucket(view.exception.expires_at.duration_since(now)).to_owned())
            .or_default() += 1;
    }
    let mut outcomes: Vec<(String, usize)> = outcomes.into_iter().collect();
    outcomes.truncate(10);
    let html = DashboardPage {
        viewer: &viewer.principal.name,
        csrf: &viewer.session.csrf,
        cases: cases.len(),
        charts: vec![
            chart(
                "Time from finding to verified remediation",
                &ordered(&to_verified, SPAN_BUCKETS),
            ),
            chart("Open cases by age", &ordered(&open_age, SPAN_BUCKETS)),
            chart(
                "Open cases by severity",
                &ordered(
                    &open_severity,
                    &["critical", "high", "medium", "low", "info", "unknown"],
                ),
            ),
            chart("Decisions by tier", &tiers.into_iter().collect::<Vec<_>>()),
            chart(
                "Exceptions by time to expiry",
                &ordered(&expiry, SPAN_BUCKETS),
            ),
            chart("Write-back outcomes per target", &outcomes),
        ],
    }
    .render();
    page(StatusCode::OK, html, viewer.refresh.as_slice())
}
