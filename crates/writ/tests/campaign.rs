//! End to end, a certification campaign over a real PostgreSQL cluster's roles, on SQLite and
//! PostgreSQL: `writ campaign start` puts each role to its owner team; an owner certifies one
//! (the case closes on the answer), revokes another (disabled in the target and read back),
//! someone outside the team cannot answer, and a role nobody answered by the deadline is
//! escalated to the security team as the demo policy says, never disabled by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, api_get as get, api_post as post, pg_can_login as can_login, text};
use serde_json::{Value, json};
use writ_testkit::{PgCluster, TestDb};

/// The campaign's item about `role`.
fn item<'a>(report: &'a Value, role: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["external_id"] == role)
        .unwrap_or_else(|| panic!("no item {role}: {report}"))
}

/// Polls the campaign until `role`'s item has `status` (60 s at most).
async fn wait_for_item(server: &Server, token: &str, id: &str, role: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = get(server, token, &format!("/v1/campaigns/{id}")).await;
        if item(&report, role)["status"] == status {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "{role} never became {status}: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_campaign_certifies_revokes_and_escalates(db: TestDb) {
    let target = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let pg = target.url("postgres");
    writ_testkit::exec_sql(
        &pg,
        "CREATE ROLE svc_keep LOGIN; CREATE ROLE svc_drop LOGIN; CREATE ROLE svc_silent LOGIN;",
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
    site.import_owners_and_sync(&server, &root);

    // Only an admin starts a campaign; a deadline in the past is refused, naming the field.
    let later = (writ_core::Clock::now(&writ_core::SystemClock)
        + jiff::SignedDuration::from_hours(24 * 30))
    .to_string();
    let (status, _) = post(
        &server,
        &dana,
        "/v1/campaigns",
        json!({"system": "pg-main", "deadline": later}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, problem) = post(
        &server,
        &root,
        "/v1/campaigns",
        json!({"system": "pg-main", "deadline": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "deadline", "{problem}");
    let (status, problem) = post(
        &server,
        &root,
        "/v1/campaigns",
        json!({"system": "no-such-system", "deadline": later}),
    )
    .await;
    assert_eq!(status, 404, "{problem}");

    let output = site.run_as(
        &server,
        &root,
        &[
            "campaign",
            "start",
            "--system",
            "pg-main",
            "--deadline",
            "25s",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let list = get(&server, &root, "/v1/campaigns").await;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["started_by"], "root", "{list}");
    let report = get(&server, &root, &format!("/v1/campaigns/{id}")).await;
    for role in ["svc_keep", "svc_drop", "svc_silent"] {
        assert_eq!(item(&report, role)["status"], "pending", "{report}");
        assert_eq!(item(&report, role)["owner_team"], "data", "{report}");
    }
    let case_of = |role: &str| item(&report, role)["case_id"].as_str().unwrap().to_owned();
    let (keep, drop, silent) = (
        case_of("svc_keep"),
        case_of("svc_drop"),
        case_of("svc_silent"),
    );

    // The owner team certifies svc_keep: the case closes on the answer.
    let output = site.run_as(
        &server,
        &dana,
        &[
            "campaign",
            "answer",
            &keep,
            "certify",
            "--rationale",
            "nightly reports still read with it",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("certified"), "{}", text(&output));
    let story = get(&server, &root, &format!("/v1/cases/{keep}")).await;
    assert_eq!(story["case"]["state"], "closed", "{story}");
    assert_eq!(
        story["lifecycle"]["compliance"]["by"], "certification",
        "{story}"
    );

    // Someone outside the owner team cannot answer for svc_drop.
    let (status, problem) = post(
        &server,
        &sam,
        &format!("/v1/cases/{drop}/certification"),
        json!({"answer": "revoke", "rationale": "not mine"}),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    // Its owner revokes it: disabled in PostgreSQL and read back.
    let (status, answer) = post(
        &server,
        &dana,
        &format!("/v1/cases/{drop}/certification"),
        json!({"answer": "revoke", "rationale": "the old ETL is gone"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["job_id"].is_string(), "{answer}");
    server
        .wait_for_case_state(&root, &drop, "remediated", Duration::from_secs(30))
        .await;
    assert!(!can_login(&pg, "svc_drop").await);
    assert!(can_login(&pg, "svc_keep").await);
    // An answer on a case that is not a certification is refused.
    let (status, _) = post(
        &server,
        &dana,
        &format!("/v1/cases/{drop}/certification"),
        json!({"answer": "certify", "rationale": "again"}),
    )
    .await;
    assert_eq!(status, 409);

    // Nobody answers for svc_silent: at the deadline it is escalated to security, still able
    // to log in; the revoked one closes on its answer.
    let report = wait_for_item(&server, &root, &id, "svc_silent", "escalated").await;
    assert_eq!(item(&report, "svc_keep")["status"], "certified", "{report}");
    assert!(can_login(&pg, "svc_silent").await);
    // The verified revocation closes on its answer at the deadline.
    let story = server
        .wait_for_case_state(&root, &drop, "closed", Duration::from_secs(30))
        .await;
    assert_eq!(
        story["lifecycle"]["compliance"]["by"], "certification",
        "{story}"
    );
    let report = get(&server, &root, &format!("/v1/campaigns/{id}")).await;
    assert_eq!(item(&report, "svc_drop")["status"], "revoked", "{report}");
    let story = get(&server, &root, &format!("/v1/cases/{silent}")).await;
    assert_eq!(story["case"]["state"], "awaiting_approval", "{story}");
    let kinds: Vec<&str> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"certification_overdue"), "{kinds:?}");
    assert!(
        story
            .to_string()
            .contains("certification-overdue-escalates-to-security"),
        "{story}"
    );
    // Now the owner team alone cannot answer; the security team does.
    let (status, _) = post(
        &server,
        &dana,
        &format!("/v1/cases/{silent}/certification"),
        json!({"answer": "certify", "rationale": "late"}),
    )
    .await;
    assert_eq!(status, 403);
    let output = site.run_as(
        &server,
        &sam,
        &[
            "campaign",
            "answer",
            &silent,
            "revoke",
            "--rationale",
            "unanswered and unused: disable",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    server
        .wait_for_case_state(&root, &silent, "remediated", Duration::from_secs(30))
        .await;
    assert!(!can_login(&pg, "svc_silent").await);

    // Every decision of the campaign's cases replays identically.
    for case in [&keep, &drop, &silent] {
        let replay = get(&server, &root, &format!("/v1/cases/{case}/replay")).await;
        for d in replay["decisions"].as_array().unwrap() {
            assert_eq!(d["replay"], "identical", "{d}");
        }
    }
    let output = site.run_as(&server, &root, &["campaign", "status", &id]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("certified 1"), "{}", text(&output));
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_campaign_certifies_revokes_and_escalates() {
    a_campaign_certifies_revokes_and_escalates(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_campaign_certifies_revokes_and_escalates() {
    a_campaign_certifies_revokes_and_escalates(TestDb::postgres().unwrap()).await;
}
