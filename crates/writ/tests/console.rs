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
use writ_testkit::TestDb;

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
    let (_target, pg) = common::pg_target("CREATE ROLE svc_old LOGIN").await;
    let site = Site::new(db, &common::pg_target_config(&pg));
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
    site.import_owners_and_sync(&server, &root);
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

/// The token a token page shows, once.
fn shown_token(page: &str) -> String {
    page.split("id=\"new-token\" class=\"token\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no token shown: {page}"))
        .trim()
        .to_owned()
}

/// A new installation is set up in the console alone: the first admin with the setup code
/// `writ serve` left on the host, an approver added, the target synced, ownership imported,
/// a finding sent by hand, approved, applied and verified; each refusal on the way.
async fn a_new_installation_is_set_up_in_the_console(db: TestDb) {
    let (_target, pg) = common::pg_target("CREATE ROLE etl_old LOGIN").await;
    let site = Site::new(db, &common::pg_target_config(&pg));
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    // The code is on the host, readable by its owner only; the log says where, never what.
    let code_file = site.path("writ-setup.code");
    let code = std::fs::read_to_string(&code_file)
        .unwrap()
        .trim()
        .to_owned();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&code_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let log = std::fs::read_to_string(site.path("serve.log")).unwrap_or_default();
    assert!(
        log.contains("writ-setup.code") && log.contains("/setup"),
        "{log}"
    );
    assert!(!log.contains(&code), "the setup code is in the log");

    // Nobody can sign in yet: the console sends the browser to the setup page.
    let mut admin = Browser::new();
    let (status, _, headers) = admin.get(&server, "/login").await;
    assert_eq!(
        (status, &headers["location"]),
        (303, &"/setup".parse().unwrap())
    );
    let (status, page, _) = admin.get(&server, "/setup").await;
    assert_eq!(status, 200, "{page}");
    let csrf = hidden_csrf(&page);
    let form = |code: &'static str| {
        move |csrf: &str| {
            vec![
                ("csrf".to_owned(), csrf.to_owned()),
                ("code".to_owned(), code.to_owned()),
                ("name".to_owned(), "root".to_owned()),
                ("team".to_owned(), "security".to_owned()),
                ("role".to_owned(), "approver".to_owned()),
                ("role".to_owned(), "source".to_owned()),
                ("trust".to_owned(), "high".to_owned()),
            ]
        }
    };
    let post = |browser: &Browser, path: &str, fields: Vec<(String, String)>| {
        browser
            .http
            .post(server.url(path))
            .header("cookie", browser.cookie_header())
            .form(&fields)
            .send()
    };
    // A wrong code, and a form from another page, are refused; nothing is made.
    let response = post(&admin, "/setup", form("0000")(&csrf)).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let code: &'static str = Box::leak(code.into_boxed_str());
    let response = post(&Browser::new(), "/setup", form(code)(&csrf))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let (_, page, _) = admin.get(&server, "/setup").await;
    let response = post(&admin, "/setup", form(code)(&hidden_csrf(&page)))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    admin.keep(&response);
    let page = response.text().await.unwrap();
    let root = shown_token(&page);
    assert!(admin.cookies.contains_key("writ_session"), "signed in");
    assert!(!code_file.exists(), "the used code is removed");
    // Once an admin exists, the setup page is closed.
    let (status, _, headers) = Browser::new().get(&server, "/setup").await;
    assert_eq!(
        (status, &headers["location"]),
        (303, &"/login".parse().unwrap())
    );
    let whoami = common::api_get(&server, &root, "/v1/whoami").await;
    assert_eq!(
        whoami["roles"],
        json!(["source", "approver", "admin"]),
        "{whoami}"
    );

    // The admin's home links to the setting-up pages.
    let (_, home, _) = admin.get(&server, "/").await;
    for link in ["to-principals", "to-systems", "to-findings"] {
        assert!(home.contains(link), "{link}: {home}");
    }
    let csrf = hidden_csrf(&home);
    // An approver is added (not without the CSRF token), and their token shown once.
    let (status, _) = admin
        .post(
            &server,
            "/principals",
            &[("name", "omar"), ("role", "approver")],
        )
        .await;
    assert_eq!(status, 403);
    let (status, page) = admin
        .post(
            &server,
            "/principals",
            &[
                ("csrf", &csrf),
                ("name", "omar"),
                ("kind", "person"),
                ("team", "data"),
                ("role", "approver"),
                ("token_days", "30"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let omar = shown_token(&page);
    let (status, page) = admin
        .post(
            &server,
            "/principals",
            &[("csrf", &csrf), ("name", "omar"), ("role", "approver")],
        )
        .await;
    assert_eq!(status, 409, "the name is taken: {page}");
    // Ownership rules: a bad line is named; good ones are imported.
    let (status, page) = admin
        .post(
            &server,
            "/systems/rules",
            &[
                ("csrf", &csrf),
                ("name", "owners.csv"),
                (
                    "rules",
                    "pg-main/etl_*,data,medium\npg-main/[,data,medium\n",
                ),
            ],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("owners.csv, line 2"), "{page}");
    let (status, page) = admin
        .post(
            &server,
            "/systems/rules",
            &[
                ("csrf", &csrf),
                ("name", "owners.csv"),
                (
                    "rules",
                    "pattern,owner_team,criticality\npg-main/etl_*,data,medium\n",
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Imported owners.csv: 1 rule(s)"), "{page}");
    // The target is synced from the systems page; an unknown one is a 404.
    let (status, _) = admin
        .post(
            &server,
            "/systems/sync",
            &[("csrf", &csrf), ("target", "nope")],
        )
        .await;
    assert_eq!(status, 404);
    let (status, page) = admin
        .post(
            &server,
            "/systems/sync",
            &[("csrf", &csrf), ("target", "pg")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Synced pg:"), "{page}");
    // A finding sent by hand; a bad one beside it is refused with its line, the good one
    // recorded.
    let findings = format!(
        "{}\n{}\n",
        json!({
            "finding_type": "inactive_service_account",
            "severity": "medium",
            "confidence": 0.95,
            "subject": {"system": "pg-main", "external_id": "etl_old"},
            "title": "no login for 200 days",
        }),
        json!({"finding_type": "inactive_service_account"}),
    );
    let (status, page) = admin
        .post(
            &server,
            "/findings",
            &[
                ("csrf", &csrf),
                ("format", "detect"),
                ("findings", &findings),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("1 recorded") && page.contains("1 refused"),
        "{page}"
    );
    assert!(page.contains("line 2"), "{page}");
    let case = page
        .split("<a href=\"/cases/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert!(page.contains("state-awaiting_approval"), "{page}");

    // Omar (an approver of the owner team) may not read principals, send findings or sync;
    // he approves, and the change is applied and verified.
    let mut approver = Browser::new();
    approver.sign_in(&server, &omar).await;
    for path in ["/principals", "/findings"] {
        let (status, _, _) = approver.get(&server, path).await;
        assert_eq!(status, 403, "{path}");
    }
    let (_, page, _) = approver.get(&server, "/systems").await;
    assert!(
        !page.contains("sync-pg") && !page.contains("import-rules"),
        "{page}"
    );
    let (_, home, _) = approver.get(&server, "/").await;
    assert!(!home.contains("to-principals"), "{home}");
    let csrf_omar = hidden_csrf(&home);
    let (status, _) = approver
        .post(
            &server,
            "/systems/sync",
            &[("csrf", &csrf_omar), ("target", "pg")],
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = approver
        .post(
            &server,
            &format!("/cases/{case}/vote"),
            &[
                ("csrf", &csrf_omar),
                ("verdict", "approve"),
                ("rationale", "the old ETL is gone"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    server
        .wait_for_case_state(&root, &case, "remediated", Duration::from_secs(30))
        .await;
    assert!(!can_login(&pg, "etl_old").await);
    // The admin disables omar in the console: his session ends at once.
    let (status, page) = admin
        .post(
            &server,
            "/principals/omar/disable",
            &[("csrf", &csrf), ("reason", "left the team")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let (status, _, _) = approver.get(&server, "/").await;
    assert_eq!(status, 303);
    // An admin cannot disable itself.
    let (status, _) = admin
        .post(
            &server,
            "/principals/root/disable",
            &[("csrf", &csrf), ("reason", "oops")],
        )
        .await;
    assert_eq!(status, 403);
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_new_installation_is_set_up_in_the_console() {
    a_new_installation_is_set_up_in_the_console(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_new_installation_is_set_up_in_the_console() {
    a_new_installation_is_set_up_in_the_console(TestDb::postgres().unwrap()).await;
}
