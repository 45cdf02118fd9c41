//! End to end in a real browser: headless Chromium (Debian `chromium`) driven by Playwright
//! (`tests/browser/console.mjs`, npm `playwright-core` pinned by its lock file) against the real
//! `writ serve`, a real PostgreSQL target and a real OpenID Connect provider (npm
//! `oidc-provider`), on SQLite and PostgreSQL: an approver signs in through the provider,
//! approves a pending change and sees it applied and verified on the case page; a reviewer of
//! another team is offered no approval, and a forged vote or a form without its CSRF token is
//! refused; no page trips the Content-Security-Policy. Screenshots of each page land in
//! `target/console-screenshots/<backend>/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{Site, pg_can_login as can_login, text};
use serde_json::json;
use writ_testkit::{OidcProvider, PgCluster, SignInClient, TestDb};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The browser to drive, once it and playwright-core are known to be there.
fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no browser at {chromium}: install Debian's chromium (.ci/run does) or set CHROMIUM"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} (scripts/test does it)",
        browser_dir().display()
    );
    chromium
}

/// Where a backend's screenshots go.
fn shots(backend: &str) -> PathBuf {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../console-screenshots")
        .join(backend);
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Runs a browser script with `vars`; panics with its output and the server's log when it
/// fails.
async fn run_script(script: &str, site: &Site, vars: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new("node");
    command.arg(script).current_dir(browser_dir());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "the browser run failed:\n{}\nserve.log:\n{}",
        text(&output),
        std::fs::read_to_string(site.path("serve.log")).unwrap_or_default()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn a_reviewer_signs_in_and_approves_in_chromium(db: TestDb, backend: &str) {
    let chromium = chromium();
    let target = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let pg = target.url("postgres");
    writ_testkit::exec_sql(
        &pg,
        "CREATE ROLE svc_old LOGIN; CREATE ROLE svc_batch LOGIN;",
    )
    .await
    .unwrap();
    let site = Site::new(
        db,
        &format!(
            "[writeback]\ninterval_ms = 200\n\n\
             [[targets]]\nname = \"pg\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{pg}\"\n"
        ),
    );
    let redirect = format!("http://127.0.0.1:{}/auth/oidc/callback", site.port);
    let idp = tokio::task::spawn_blocking(move || {
        OidcProvider::start_with_sign_in(Some(SignInClient {
            client_id: "writ-console",
            client_secret: "console-secret",
            redirect_uri: &redirect,
            groups: r#"{"dana": ["data", "platform"]}"#,
        }))
    })
    .await
    .unwrap()
    .unwrap();
    let secret = site.path("oidc-secret");
    std::fs::write(&secret, "console-secret\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = std::fs::read_to_string(site.path("writ.toml")).unwrap();
    std::fs::write(
        site.path("writ.toml"),
        format!(
            "{config}\n[oidc]\nissuer = \"{}\"\nclient_id = \"writ-console\"\nclient_secret_file = \"oidc-secret\"\nteams_claim = \"groups\"\n",
            idp.issuer()
        ),
    )
    .unwrap();
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\npg-main/svc_*,data,medium\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    site.add_principal(
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
    let mut cases = Vec::new();
    for role in ["svc_old", "svc_batch"] {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(server.url("/v1/findings"))
            .bearer_auth(&scanner)
            .json(&json!({
                "finding_type": "inactive_service_account",
                "severity": "medium",
                "confidence": 0.95,
                "subject": {"system": "pg-main", "external_id": role},
                "title": "no login for 200 days",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cases.push(
            answer["accepted"][0]["outcome"]["case_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let shots = shots(backend);
    run_script(
        "console.mjs",
        &site,
        &[
            ("WRIT_URL", &server.base),
            ("CASE", &cases[0]),
            ("OTHER_CASE", &cases[1]),
            ("APPROVER", "dana"),
            ("OTHER_TOKEN", &sam),
            ("SHOTS", &shots.to_string_lossy()),
            ("CHROMIUM", &chromium),
        ],
    )
    .await;
    // The change the approver made in the browser is in the target.
    assert!(!can_login(&pg, "svc_old").await);
    assert!(can_login(&pg, "svc_batch").await);
    // The approval was recorded as the signed-in principal's.
    let story: serde_json::Value = reqwest::Client::new()
        .get(server.url(&format!("/v1/cases/{}", cases[0])))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let approval = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approval_granted")
        .unwrap();
    assert_eq!(approval["actor"], "user:dana", "{approval}");
    // The provider named dana's teams at sign-in: recorded, by the provider, in the ledger.
    let dana: serde_json::Value = reqwest::Client::new()
        .get(server.url("/v1/principals/dana"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dana["teams"], json!(["data", "platform"]), "{dana}");
    server.stop();
    drop(idp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_reviewer_signs_in_and_approves_in_chromium() {
    a_reviewer_signs_in_and_approves_in_chromium(TestDb::sqlite().unwrap(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_reviewer_signs_in_and_approves_in_chromium() {
    a_reviewer_signs_in_and_approves_in_chromium(TestDb::postgres().unwrap(), "postgres").await;
}

/// The README's promise: a new user opens the console of a fresh installation and takes a case
/// from finding to verified remediation without the CLI (only `writ.toml` names the target).
async fn a_new_user_goes_from_nothing_to_a_verified_change_in_chromium(db: TestDb, backend: &str) {
    let chromium = chromium();
    let (_target, pg) =
        common::pg_target("CREATE ROLE etl_old LOGIN; CREATE ROLE etl_new LOGIN;").await;
    let site = Site::new(db, &common::pg_target_config(&pg));
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    let code = std::fs::read_to_string(site.path("writ-setup.code")).unwrap();
    let shots = shots(backend);
    let out = run_script(
        "first_run.mjs",
        &site,
        &[
            ("WRIT_URL", &server.base),
            ("SETUP_CODE", code.trim()),
            ("TARGET", "pg"),
            ("SYSTEM", "pg-main"),
            ("ROLE", "etl_old"),
            ("SHOTS", &shots.to_string_lossy()),
            ("CHROMIUM", &chromium),
        ],
    )
    .await;
    let printed = |name: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} printed: {out}"))
            .to_owned()
    };
    let (case, root) = (printed("CASE"), printed("ROOT"));
    // The change is in the target, and only that one.
    assert!(!can_login(&pg, "etl_old").await);
    assert!(can_login(&pg, "etl_new").await);
    // Each step is the signed-in principal's in the ledger.
    let story = common::api_get(&server, &root, &format!("/v1/cases/{case}")).await;
    server.stop();
    let actor_of = |kind: &str| {
        story["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["actor"].clone())
            .unwrap_or_else(|| panic!("no {kind}: {story}"))
    };
    assert_eq!(actor_of("finding_received"), json!("source:root"));
    assert_eq!(actor_of("approval_granted"), json!("user:omar"));
    assert_eq!(actor_of("write_back_verified"), json!("engine"));
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_new_user_goes_from_nothing_to_a_verified_change_in_chromium() {
    a_new_user_goes_from_nothing_to_a_verified_change_in_chromium(
        TestDb::sqlite().unwrap(),
        "sqlite",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_new_user_goes_from_nothing_to_a_verified_change_in_chromium() {
    a_new_user_goes_from_nothing_to_a_verified_change_in_chromium(
        TestDb::postgres().unwrap(),
        "postgres",
    )
    .await;
}
