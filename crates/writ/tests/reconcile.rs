//! End to end, reconciliation on real targets (moto IAM and a PostgreSQL cluster), on SQLite and
//! PostgreSQL: a sync compares each target with the inventory and with what writ last
//! verified there, and raises its own findings (source `writ-reconcile`) through the same
//! policy path as any scanner's: an identity with no owner, an account past its expiry that can
//! still log in, a key writ disabled that was re-enabled by hand, an identity that appeared
//! outside writ, a key unused beyond the dormancy threshold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, api_get as get, api_post as post, text};
use serde_json::{Value, json};
use writ_connector_aws::Service;
use writ_testkit::{MotoServer, PgCluster, TestDb};

/// The cases about `subject` of `finding_type`.
fn cases_of<'a>(cases: &'a Value, finding_type: &str, subject: &str) -> Vec<&'a Value> {
    cases
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["finding_type"] == finding_type && c["subject"] == subject)
        .collect()
}

/// Polls the case list until a case of `finding_type` about `subject` exists (30 s at most).
async fn wait_for_case(server: &Server, token: &str, finding_type: &str, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cases = get(server, token, "/v1/cases?limit=1000").await;
        if let Some(case) = cases_of(&cases, finding_type, subject).first() {
            return (*case).clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {finding_type} case about {subject}: {cases}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `user` with one access key; returns the key id and secret.
async fn user_with_key(moto: &str, user: &str) -> (String, String) {
    let client = common::moto_client(moto);
    client
        .query(Service::Iam, "CreateUser", &[("UserName", user)])
        .await
        .unwrap();
    let created = client
        .query(Service::Iam, "CreateAccessKey", &[("UserName", user)])
        .await
        .unwrap();
    let field = |name: &str| {
        created
            .split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{name}>")).next())
            .unwrap()
            .to_owned()
    };
    (field("AccessKeyId"), field("SecretAccessKey"))
}

async fn reconciliation_raises_its_own_findings(db: TestDb) {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let target = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = moto.url();
    let (app_key, _) = user_with_key(&url, "svc-app").await;
    user_with_key(&url, "svc-orphan").await;
    let (used_key, used_secret) = user_with_key(&url, "svc-used").await;
    // svc-used's key signs a request now: its last use is now.
    let mut config = writ_connector_aws::AwsConfig::new(&used_key, &used_secret, "us-east-1")
        .with_endpoint(&url)
        .unwrap();
    config.access_key_id = used_key.clone();
    writ_connector_aws::AwsClient::new(config)
        .unwrap()
        .query(Service::Sts, "GetCallerIdentity", &[])
        .await
        .unwrap();
    writ_testkit::exec_sql(
        &target.url("postgres"),
        "CREATE ROLE svc_expired LOGIN VALID UNTIL '2020-01-01'; CREATE ROLE svc_current LOGIN",
    )
    .await
    .unwrap();

    let site = Site::new(
        db,
        &format!(
            "[ingest]\ndormant_after = \"4s\"\n\n[writeback]\ninterval_ms = 200\n\n\
             [[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{url}\"\nregion = \"us-east-1\"\n#SYNC\n\n\
             [[targets]]\nname = \"pg\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{}\"\n#SYNC\n",
            target.url("postgres")
        ),
    );
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\n\
         aws:123456789012/svc-app*,payments,high\n\
         aws:123456789012/svc-used*,payments,medium\n\
         pg-main/*,data,medium\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let aws_env = common::aws_env(Some(&url));
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    let pat = site.add_principal(
        &server,
        &root,
        &["pat", "--team", "payments", "--role", "approver"],
    );
    let scanner = site.add_principal(
        &server,
        &root,
        &[
            "prowler-ci",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ],
    );
    // Owners first, then the first sync of each target.
    for args in [
        &["inventory", "import", "owners.csv"][..],
        &["sync", "aws"],
        &["sync", "pg"],
    ] {
        let output = site.run_as(&server, &root, args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let cases = get(&server, &root, "/v1/cases?limit=1000").await;
    // No owner rule names svc-orphan: the user and its key are orphaned, waiting for a person.
    let orphan = cases_of(&cases, "orphaned_identity", "aws:123456789012/svc-orphan");
    assert_eq!(orphan.len(), 1, "{cases}");
    assert_eq!(orphan[0]["state"], "needs_review", "{}", orphan[0]);
    assert!(
        cases_of(&cases, "orphaned_identity", "aws:123456789012/svc-app").is_empty(),
        "an owned identity is not orphaned: {cases}"
    );
    // Past its VALID UNTIL and able to log in: disable, once its owner team approves.
    let expired = cases_of(&cases, "expired_but_active", "pg-main/svc_expired");
    assert_eq!(expired.len(), 1, "{cases}");
    assert_eq!(expired[0]["state"], "awaiting_approval", "{}", expired[0]);
    assert!(cases_of(&cases, "expired_but_active", "pg-main/svc_current").is_empty());
    // The first sync of a system finds nothing "unknown": it is all new.
    assert!(!cases.to_string().contains("unknown_identity"), "{cases}");
    // A second sync of an unchanged target raises nothing new.
    let before = cases.as_array().unwrap().len();
    let output = site.run_as(&server, &root, &["sync", "aws"]);
    assert!(output.status.success(), "{}", text(&output));
    let cases = get(&server, &root, "/v1/cases?limit=1000").await;
    assert_eq!(cases.as_array().unwrap().len(), before, "{cases}");

    // A scanner reports svc-app's key unused; its owner approves; writ disables it.
    let (status, answer) = post(
        &server,
        &scanner,
        "/v1/findings",
        json!({
            "finding_type": "iam_user_accesskey_unused",
            "severity": "medium",
            "confidence": 0.95,
            "subject": {"system": "aws:123456789012", "external_id": "svc-app/AccessKey1"},
            "title": "unused for 120 days",
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let case = answer["accepted"][0]["outcome"]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, vote) = post(
        &server,
        &pat,
        &format!("/v1/cases/{case}/approvals"),
        json!({"verdict": "approve", "rationale": "unused, confirmed"}),
    )
    .await;
    assert_eq!(status, 200, "{vote}");
    server
        .wait_for_case_state(&root, &case, "remediated", Duration::from_secs(30))
        .await;
    // Someone re-enables it by hand, outside writ; a user appears outside writ.
    let iam = common::moto_client(&url);
    iam.query(
        Service::Iam,
        "UpdateAccessKey",
        &[
            ("UserName", "svc-app"),
            ("AccessKeyId", &app_key),
            ("Status", "Active"),
        ],
    )
    .await
    .unwrap();
    iam.query(Service::Iam, "CreateUser", &[("UserName", "svc-shadow")])
        .await
        .unwrap();
    server.stop();

    // Now on a schedule: every second.
    let config = std::fs::read_to_string(site.path("writ.toml")).unwrap();
    std::fs::write(
        site.path("writ.toml"),
        config.replace("#SYNC", "sync_every = \"1s\""),
    )
    .unwrap();
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    let drift = wait_for_case(
        &server,
        &root,
        "drift_reverted",
        "aws:123456789012/svc-app/AccessKey1",
    )
    .await;
    assert_eq!(drift["state"], "awaiting_approval", "{drift}");
    let shadow = wait_for_case(
        &server,
        &root,
        "unknown_identity",
        "aws:123456789012/svc-shadow",
    )
    .await;
    assert_eq!(shadow["state"], "needs_review", "{shadow}");
    // svc-used's key, last used at the start, is dormant after 4 s: the owner decides.
    let dormant = wait_for_case(
        &server,
        &root,
        "dormant_identity",
        "aws:123456789012/svc-used/AccessKey1",
    )
    .await;
    assert_eq!(dormant["state"], "awaiting_approval", "{dormant}");
    let story = get(
        &server,
        &root,
        &format!("/v1/cases/{}", drift["id"].as_str().unwrap()),
    )
    .await;
    let received = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "finding_received")
        .unwrap();
    assert_eq!(received["actor"], "source:writ-reconcile", "{received}");
    // Every case replays to identical decisions under the bundle kept by hash.
    let cases = get(&server, &root, "/v1/cases?limit=1000").await;
    for case in cases.as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let replay = get(&server, &root, &format!("/v1/cases/{id}/replay")).await;
        assert_eq!(replay["all_identical"], true, "{replay}");
    }
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

/// Polls `GET /v1/systems` until the first system's pause state is as wanted (30 s at most).
async fn wait_for_pause(server: &Server, token: &str, paused: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let systems = get(server, token, "/v1/systems").await;
        if systems[0]["paused_reason"].is_string() == paused {
            return systems[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "pause never became {paused}: {systems}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status of `user`'s access key `key` in moto.
async fn key_status(moto: &str, user: &str, key: &str) -> String {
    let body = common::moto_client(moto)
        .query(Service::Iam, "ListAccessKeys", &[("UserName", user)])
        .await
        .unwrap();
    let member = body
        .split("<member>")
        .find(|m| m.contains(key))
        .unwrap_or_else(|| panic!("no key {key}: {body}"));
    member
        .split("<Status>")
        .nth(1)
        .and_then(|r| r.split("</Status>").next())
        .unwrap()
        .to_owned()
}

async fn wait_for_key(moto: &str, user: &str, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while key_status(moto, user, key).await != want {
        assert!(
            Instant::now() < deadline,
            "{user}'s key never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Automation pauses on a system where ownership is missing (no automatic tier: findings go to
/// a person, with the pause named; queued jobs wait, each hold in the case) and resumes when
/// the owners are imported; both are ledger events.
async fn automation_pauses_where_ownership_is_missing(db: TestDb) {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    let url = moto.url();
    let (a_key, _) = user_with_key(&url, "svc-a").await;
    let (b_key, _) = user_with_key(&url, "svc-b").await;
    let (c_key, _) = user_with_key(&url, "svc-c").await;
    let site = Site::new(
        db,
        &format!(
            "[writeback]\ninterval_ms = 200\nmin_ownership_share = 0.8\npause_recheck_seconds = 1\n\n\
             [[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{url}\"\nregion = \"us-east-1\"\nsync_every = \"1s\"\n"
        ),
    );
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\naws:123456789012/svc-*,payments,medium\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&common::aws_env(Some(&url)));
    server.wait_ready().await;
    let pat = site.add_principal(
        &server,
        &root,
        &["pat", "--team", "payments", "--role", "approver"],
    );
    let edr = site.add_principal(
        &server,
        &root,
        &["edr", "--service", "--role", "source", "--trust", "high"],
    );
    let compromise = |key: &str| {
        json!({
            "finding_type": "credential_compromise",
            "severity": "critical",
            "confidence": 0.99,
            "subject": {"system": "aws:123456789012", "external_id": key},
            "title": "key used from an unknown network",
        })
    };

    // No owners yet: paused.
    let paused = wait_for_pause(&server, &root, true).await;
    assert!(
        paused["paused_reason"]
            .as_str()
            .unwrap()
            .contains("ownership coverage 0%"),
        "{paused}"
    );
    let output = site.run_as(&server, &root, &["systems"]);
    assert!(
        text(&output).contains("AUTOMATION PAUSED"),
        "{}",
        text(&output)
    );
    // A compromise the demo policy disables at once goes to a person instead, saying why.
    let (status, answer) = post(
        &server,
        &edr,
        "/v1/findings",
        compromise("svc-a/AccessKey1"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let held = answer["accepted"][0]["outcome"]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let story = get(&server, &root, &format!("/v1/cases/{held}")).await;
    assert_eq!(story["case"]["state"], "needs_review", "{story}");
    assert!(
        story
            .to_string()
            .contains("automation paused on aws:123456789012"),
        "{story}"
    );
    assert_eq!(key_status(&url, "svc-a", &a_key).await, "Active");

    // The owners are imported: the next sync finds them all owned, and automation resumes.
    let output = site.run_as(&server, &root, &["inventory", "import", "owners.csv"]);
    assert!(output.status.success(), "{}", text(&output));
    wait_for_pause(&server, &root, false).await;
    let (status, answer) = post(
        &server,
        &edr,
        "/v1/findings",
        compromise("svc-b/AccessKey1"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    wait_for_key(&url, "svc-b", &b_key, "Inactive").await;

    // A change waiting for approval; then unowned identities appear and automation pauses.
    let (status, answer) = post(
        &server,
        &edr,
        "/v1/findings",
        json!({
            "finding_type": "iam_user_accesskey_unused",
            "severity": "medium",
            "confidence": 0.95,
            "subject": {"system": "aws:123456789012", "external_id": "svc-c/AccessKey1"},
            "title": "unused for 120 days",
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let waiting = answer["accepted"][0]["outcome"]["case_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for user in ["tmp-1", "tmp-2", "tmp-3", "tmp-4"] {
        user_with_key(&url, user).await;
    }
    wait_for_pause(&server, &root, true).await;
    let (status, vote) = post(
        &server,
        &pat,
        &format!("/v1/cases/{waiting}/approvals"),
        json!({"verdict": "approve", "rationale": "unused, confirmed"}),
    )
    .await;
    assert_eq!(status, 200, "{vote}");
    // The approved job waits, the hold recorded in its case.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let story = get(&server, &root, &format!("/v1/cases/{waiting}")).await;
        if story.to_string().contains("waiting until it resumes") {
            break;
        }
        assert!(Instant::now() < deadline, "no hold recorded: {story}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(key_status(&url, "svc-c", &c_key).await, "Active");
    // The unowned identities go away in the target: automation resumes, the job goes on.
    let iam = common::moto_client(&url);
    for user in ["tmp-1", "tmp-2", "tmp-3", "tmp-4"] {
        let body = iam
            .query(Service::Iam, "ListAccessKeys", &[("UserName", user)])
            .await
            .unwrap();
        let key = body
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|r| r.split("</AccessKeyId>").next())
            .unwrap()
            .to_owned();
        iam.query(
            Service::Iam,
            "DeleteAccessKey",
            &[("UserName", user), ("AccessKeyId", &key)],
        )
        .await
        .unwrap();
        iam.query(Service::Iam, "DeleteUser", &[("UserName", user)])
            .await
            .unwrap();
    }
    wait_for_pause(&server, &root, false).await;
    wait_for_key(&url, "svc-c", &c_key, "Inactive").await;
    // The same report through the API, for a reader.
    let report = get(&server, &pat, "/v1/reports/controls?framework=owasp-nhi").await;
    assert!(
        report["controls"]["NHI-01"]["events"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        !report["bundle"]["entries"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let response = reqwest::Client::new()
        .get(server.url("/v1/reports/controls?framework=iso-27001"))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }

    // Evidence by control: the pauses are evidence of NIST CSF GV.OV-02, the findings of
    // OWASP NHI-01; every entry named comes with an inclusion proof that checks offline.
    let output = site.run(&[
        "report",
        "controls",
        "--framework",
        "nist-csf-2",
        "-o",
        "nist.json",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report: Value =
        serde_json::from_slice(&std::fs::read(site.path("nist.json")).unwrap()).unwrap();
    let oversight = &report["controls"]["GV.OV-02"];
    let kinds = oversight["kinds"].as_object().unwrap();
    assert!(
        kinds["automation_paused"].as_u64().unwrap() >= 2,
        "{oversight}"
    );
    assert!(
        kinds["automation_resumed"].as_u64().unwrap() >= 2,
        "{oversight}"
    );
    std::fs::write(site.path("nist-bundle.json"), report["bundle"].to_string()).unwrap();
    let output = site.run(&[
        "audit",
        "verify",
        "--bundle",
        "nist-bundle.json",
        "--key",
        "ledger.key.pub",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run(&[
        "report",
        "controls",
        "--framework",
        "owasp-nhi",
        "--csv",
        "-o",
        "nhi.csv",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let csv = std::fs::read_to_string(site.path("nhi.csv")).unwrap();
    assert!(
        csv.starts_with("control,seq,kind,case_id,inclusion_proof,tree_size\n"),
        "{csv}"
    );
    assert!(csv.lines().skip(1).all(|l| l.starts_with("NHI-")), "{csv}");
    // The reconciliation findings (orphaned identities before the owners came) are NHI-01.
    assert!(csv.lines().any(|l| l.starts_with("NHI-01,")), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_automation_pauses_where_ownership_is_missing() {
    automation_pauses_where_ownership_is_missing(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_automation_pauses_where_ownership_is_missing() {
    automation_pauses_where_ownership_is_missing(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reconciliation_raises_its_own_findings() {
    reconciliation_raises_its_own_findings(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconciliation_raises_its_own_findings() {
    reconciliation_raises_its_own_findings(TestDb::postgres().unwrap()).await;
}
