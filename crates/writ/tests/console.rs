//! End to end, the reviewer console over HTTP against the real binary, on SQLite and
//! PostgreSQL, with a real PostgreSQL target: sign in with a token, see the approval due in the
//! queue, approve it on the case page and see it applied and verified; a reviewer of another
//! team is offered no approval and a forged vote is refused; a form without its CSRF token is
//! refused; every page carries the strict Content-Security-Policy; signing out ends the session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, pg_can_login as can_login, text};
use serde_json::json;
use writ_testkit::{PgCluster, TestDb};

/// A browser's view of the console: its cookies, kept by hand (name = value).
struct Browser {
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn get(
        &mut self,
        server: &Server,
        path: &str,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let response = self
            .http
            .get(server.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, response.text().await.unwrap(), headers)
    }

    async fn post(&mut self, server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .http
            .post(server.url(path))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Signs in with `token` through the login form.
    async fn sign_in(&mut self, server: &Server, token: &str) {
        let (status, page, _) = self.get(server, "/login").await;
        assert_eq!(status, 200, "{page}");
        let csrf = hidden_csrf(&page);
        let (status, body) = self
            .post(server, "/login", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(status, 303, "{body}");
        assert!(self.cookies.contains_key("writ_session"));
    }
}

/// The value of the page's hidden `csrf` field.
fn hidden_csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field: {page}"))
        .to_owned()
}

async fn a_reviewer_approves_in_the_console(db: TestDb) {
    let target = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let pg = target.url("postgres");
    writ_testkit::exec_sql(&pg, "CREATE ROLE svc_old LOGIN")
        .await
        .unwrap();
    let site = Site::new(
        db,
        &format!(
            "[writeback]\ninterval_ms = 200\n\n\
             [[targets]]\nname = \"pg\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{pg}\"\n"
        ),
    );
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\npg-main/svc_*,data,medium\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    let dana = site.add_principal(
        &server,
        &root,
        &["dana", "--team", "data", "--role", "approver"],
    );
    let sam = site.add_principal(
        &server,
        &root,
        &["sam", "--team", "security", "--role", "approver"],
    );
    let scanner = site.add_principal(
        &server,
        &root,
        &[
            "scanner",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ],
    );
    for args in [&["inventory", "import", "owners.csv"][..], &["sync", "pg"]] {
        let output = site.run_as(&server, &root, args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let answer: serde_json::Value = reqwest::Client::new()
        .post(server.url("/v1/findings"))
        .bearer_auth(&scanner)
        .json(&json!({
            "finding_type": "inactive_service_account",
            "severity": "medium",
            "confidence": 0.95,
            "subject": {"system": "pg-main", "external_id": "svc_old"},
            "title": "no login for 200 days",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case = answer["accepted"][0]["outcome"]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // No session: the console sends the browser to sign in; a bad token does not sign in.
    let mut anonymous = Browser::new();
    let (status, _, headers) = anonymous.get(&server, "/").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/login");
    let (_, page, headers) = anonymous.get(&server, "/login").await;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let csrf = hidden_csrf(&page);
    let (status, _) = anonymous
        .post(
            &server,
            "/login",
            &[("csrf", &csrf), ("token", "writ_nope")],
        )
        .await;
    assert_eq!(status, 401);
    // A sign-in form without its token (a login CSRF) is refused.
    let mut stranger = Browser::new();
    let (status, _) = stranger
        .post(&server, "/login", &[("csrf", &csrf), ("token", &dana)])
        .await;
    assert_eq!(status, 403);

    // Sam (security) is offered no approval, and a vote forced through is refused.
    let mut sam_browser = Browser::new();
    sam_browser.sign_in(&server, &sam).await;
    let (_, home, _) = sam_browser.get(&server, "/").await;
    assert!(!home.contains(&case), "not due for sam: {home}");
    let (status, page, _) = sam_browser.get(&server, &format!("/cases/{case}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("id=\"approve\""), "{page}");
    let csrf = hidden_csrf(&page);
    let (status, page) = sam_browser
        .post(
            &server,
            &format!("/cases/{case}/vote"),
            &[
                ("csrf", &csrf),
                ("verdict", "approve"),
                ("rationale", "forged"),
            ],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    // Sam may ask for an exception (an approver); one past the policy's bounds is refused,
    // and nothing changes.
    let (_, page, _) = sam_browser.get(&server, &format!("/cases/{case}")).await;
    assert!(page.contains("id=\"ask-exception\""), "{page}");
    let (status, page) = sam_browser
        .post(
            &server,
            &format!("/cases/{case}/exception"),
            &[
                ("csrf", &csrf),
                ("justification", "needed for the quarter close"),
                ("until", "2099-12-31"),
                ("controls", "alerting on use"),
                ("follow_up", "decommission in Q1"),
            ],
        )
        .await;
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(page.contains("state-awaiting_approval"), "{page}");

    // Dana (the owner team) sees it due, and approves it on the case page.
    let mut browser = Browser::new();
    browser.sign_in(&server, &dana).await;
    let (_, home, _) = browser.get(&server, "/").await;
    assert!(home.contains(&case), "due for dana: {home}");
    assert!(home.contains("1 of owner_team: owner_team 0/1"), "{home}");
    // The queue's own page, filtered by finding type.
    let (status, queue, _) = browser
        .get(&server, "/queues/mine?type=inactive_service_account")
        .await;
    assert_eq!(status, 200);
    assert!(queue.contains(&case), "{queue}");
    let (_, queue, _) = browser
        .get(&server, "/queues/mine?type=leaked_secret")
        .await;
    assert!(!queue.contains(&case), "{queue}");
    let (status, _, _) = browser.get(&server, "/queues/nope").await;
    assert_eq!(status, 404);
    let (_, page, _) = browser.get(&server, &format!("/cases/{case}")).await;
    assert!(page.contains("id=\"approve\""), "{page}");
    // Without its CSRF token the vote is refused.
    let (status, _) = browser
        .post(
            &server,
            &format!("/cases/{case}/vote"),
            &[("verdict", "approve"), ("rationale", "no token")],
        )
        .await;
    assert_eq!(status, 403);
    let csrf = hidden_csrf(&page);
    let (status, body) = browser
        .post(
            &server,
            &format!("/cases/{case}/vote"),
            &[
                ("csrf", &csrf),
                ("verdict", "approve"),
                ("rationale", "unused since spring, confirmed with the team"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page, _) = browser.get(&server, &format!("/cases/{case}")).await;
        if page.contains("write_back_verified") {
            assert!(page.contains("remediated"), "{page}");
            assert!(
                page.contains("dana approved: unused since spring"),
                "{page}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never verified: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!can_login(&pg, "svc_old").await);
    // On the remediated case an approver is offered a rollback and a closure, not an unfreeze
    // (an admin's); one forced through is refused. Closing it records the rationale.
    let (_, page, _) = browser.get(&server, &format!("/cases/{case}")).await;
    assert!(
        page.contains("id=\"step-rollback\"") && page.contains("id=\"step-close\""),
        "{page}"
    );
    assert!(!page.contains("id=\"step-unfreeze\""), "{page}");
    let csrf = hidden_csrf(&page);
    let (status, _) = browser
        .post(
            &server,
            &format!("/cases/{case}/step"),
            &[
                ("csrf", &csrf),
                ("action", "unfreeze"),
                ("rationale", "forced"),
            ],
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = browser
        .post(
            &server,
            &format!("/cases/{case}/step"),
            &[
                ("csrf", &csrf),
                ("action", "close"),
                ("rationale", "disabled and confirmed"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let (_, page, _) = browser.get(&server, &format!("/cases/{case}")).await;
    assert!(
        page.contains("state-closed") && page.contains("disabled and confirmed"),
        "{page}"
    );
    // The other pages render for a signed-in reviewer.
    for path in ["/dashboard", "/identities", "/systems"] {
        let (status, page, _) = browser.get(&server, path).await;
        assert_eq!(status, 200, "{path}: {page}");
    }
    let (_, page, _) = browser.get(&server, "/identities").await;
    assert!(page.contains("svc_old") && page.contains("data"), "{page}");

    // Signing out ends the session.
    let (_, page, _) = browser.get(&server, "/").await;
    let csrf = hidden_csrf(&page);
    let (status, _) = browser.post(&server, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (status, _, _) = browser.get(&server, "/").await;
    assert_eq!(status, 303);
    // Guessing tokens at the sign-in form is limited per address, like the API.
    let mut limited = false;
    for _ in 0..40 {
        let (_, page, _) = anonymous.get(&server, "/login").await;
        let csrf = hidden_csrf(&page);
        let (status, _) = anonymous
            .post(
                &server,
                "/login",
                &[("csrf", &csrf), ("token", "writ_guess")],
            )
            .await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "forty wrong tokens and no limit");
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_reviewer_approves_in_the_console() {
    a_reviewer_approves_in_the_console(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_reviewer_approves_in_the_console() {
    a_reviewer_approves_in_the_console(TestDb::postgres().unwrap()).await;
}
