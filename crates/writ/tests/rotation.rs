//! End-to-end: a leaked PostgreSQL password is rotated through the real binary. The target
//! cluster authenticates with SCRAM over TCP; the new password goes to Secrets Manager (moto),
//! where the application reads it, and nowhere else: it works for logging in, the leaked one no
//! longer does, and neither writ's database, its ledger nor its output holds it. A break-glass
//! rotation whose review rejects it is rotated again (a rotation cannot be rolled back): the
//! password the emergency produced stops working. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Site, text};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use writ_connector_aws::Service;
use writ_testkit::{MotoServer, PgCluster, TestDb};

const LEAKED: &str = "leaked-in-a-public-gist";

async fn can_log_in(port: u16, role: &str, password: &str) -> bool {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(role)
        .password(password)
        .database("postgres");
    match PgConnection::connect_with(&options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(_) => false,
    }
}

/// Every file under `dir`, recursively, as bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The secret writ delivered for PostgreSQL role `role` (JSON: username, password), as the
/// application reads it from Secrets Manager.
async fn delivered_secret(moto_url: &str, role: &str) -> Value {
    let stored = common::moto_client(moto_url)
        .json(
            Service::SecretsManager,
            "secretsmanager.GetSecretValue",
            &json!({ "SecretId": format!("writ/postgres-billing/{role}") }),
        )
        .await
        .unwrap();
    serde_json::from_str(stored["SecretString"].as_str().unwrap()).unwrap()
}

/// A leaked-password finding about PostgreSQL role `role`, written to `file` in the site.
fn write_leak(site: &common::Site, file: &str, role: &str) {
    std::fs::write(
        site.path(file),
        serde_json::to_vec(&json!({
            "finding_type": "leaked_secret",
            "severity": "critical",
            "confidence": 0.97,
            "subject": {"system": "postgres:billing", "external_id": role, "kind": "service_account"},
            "title": format!("password of role {role} found in a public gist"),
            "idempotency_key": format!("gist-scan:{role}"),
        }))
        .unwrap(),
    )
    .unwrap();
}

async fn leaked_password_is_rotated_into_secrets_manager(db: TestDb) {
    let target = tokio::task::spawn_blocking(PgCluster::start_scram)
        .await
        .unwrap()
        .unwrap();
    let mut admin = PgConnection::connect(&target.url("postgres"))
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE app LOGIN PASSWORD '{LEAKED}'; CREATE ROLE batch LOGIN PASSWORD '{LEAKED}'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(can_log_in(target.port(), "app", LEAKED).await);
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();

    let site = Site::new(
        db,
        &format!(
            "[[targets]]\nname = \"billing-db\"\nkind = \"postgres\"\nsystem = \"postgres:billing\"\n\
             url = \"{}\"\nrotation_sink = \"secrets\"\n\n\
             [[targets]]\nname = \"secrets\"\nkind = \"aws_secrets\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            target.url("postgres"),
            moto.url()
        ),
    );
    let with_aws = |args: &[&str]| {
        common::writ(site.dir())
            .args(args)
            .envs(common::aws_env(None))
            .output()
            .unwrap()
    };
    let said = std::cell::RefCell::new(String::new());
    let run = |args: &[&str]| {
        let output = with_aws(args);
        said.borrow_mut().push_str(&text(&output));
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        text(&output)
    };
    // Discovery, ownership rules and votes are principals' API calls to `writ serve`.
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&common::aws_env(None));
    server.wait_ready().await;
    let lead = site.add_principal(
        &server,
        &root,
        &["payments-lead", "--team", "payments", "--role", "approver"],
    );
    let api = |token: &str, args: &[&str]| {
        let output = site.run_as(&server, token, args);
        said.borrow_mut().push_str(&text(&output));
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        text(&output)
    };
    api(&root, &["sync", "billing-db"]);
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\npostgres:billing/app,payments,medium\npostgres:billing/batch,payments,medium\n",
    )
    .unwrap();
    api(&root, &["inventory", "import", "owners.csv"]);
    // The case of a subject, as the API lists it.
    let case_of = |subject: &str| -> Value {
        let listing = api(&lead, &["case", "list", "--json"]);
        let cases: Value = serde_json::from_str(&listing).unwrap();
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["subject"] == subject)
            .unwrap_or_else(|| panic!("no case in {cases}"))
            .clone()
    };
    write_leak(&site, "leak.json", "app");
    run(&["ingest", "--source", "cli", "leak.json"]);
    let case = case_of("postgres:billing/app");
    assert_eq!(case["state"], "awaiting_approval", "{case}");
    let id = case["id"].as_str().unwrap();
    // The owner team approves through the API; `writ serve`'s worker rotates.
    let approved = api(
        &lead,
        &["approve", id, "--rationale", "leaked in a gist; rotate now"],
    );
    assert!(approved.contains("write-back job"), "{approved}");
    server
        .wait_for_case_state(&lead, id, "remediated", std::time::Duration::from_secs(20))
        .await;
    let story = api(&lead, &["case", "show", id]);
    assert!(story.contains("write_back_verified"), "{story}");

    // An on-call engineer rotates batch's password at once (break-glass); the review rejects
    // it, and as a rotation cannot be rolled back, writ rotates it again.
    let oncall = site.add_principal(
        &server,
        &root,
        &["oncall", "--team", "sre", "--role", "break_glass"],
    );
    write_leak(&site, "leak-batch.json", "batch");
    run(&["ingest", "--source", "cli", "leak-batch.json"]);
    let batch_case = case_of("postgres:billing/batch")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api(
        &oncall,
        &[
            "case",
            "break-glass",
            &batch_case,
            "--reason",
            "the gist is public; rotate before review",
            "--incident",
            "INC-42",
        ],
    );
    server
        .wait_for_case_state(
            &lead,
            &batch_case,
            "remediated",
            std::time::Duration::from_secs(20),
        )
        .await;
    let emergency = delivered_secret(&moto.url(), "batch").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(can_log_in(target.port(), "batch", &emergency).await);
    let reviewed = api(
        &lead,
        &[
            "case",
            "review",
            &batch_case,
            "--verdict",
            "rejected",
            "--rationale",
            "the emergency password was pasted into the incident channel",
        ],
    );
    assert!(
        reviewed.contains("rotates the credential again"),
        "{reviewed}"
    );
    server
        .wait_for_case_state(
            &lead,
            &batch_case,
            "remediated",
            std::time::Duration::from_secs(20),
        )
        .await;
    let rotated_again = delivered_secret(&moto.url(), "batch").await["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated_again, emergency, "rotated again");
    assert!(can_log_in(target.port(), "batch", &rotated_again).await);
    assert!(!can_log_in(target.port(), "batch", &emergency).await);
    let story = api(&lead, &["case", "show", &batch_case, "--json"]);
    let detail: Value = serde_json::from_str(&story).unwrap();
    let bypass = &detail["lifecycle"]["bypasses"][0];
    assert_eq!(bypass["review"], "rejected", "{detail}");
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {detail}"))
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "write_back_verified")
            .count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"bypass_reviewed"), "{kinds:?}");
    server.stop();

    // The application's copy: in Secrets Manager, as JSON with the username.
    let value = delivered_secret(&moto.url(), "app").await;
    assert_eq!(value["username"], "app");
    let password = value["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 32, "a strong password");
    assert!(can_log_in(target.port(), "app", &password).await);
    assert!(!can_log_in(target.port(), "app", LEAKED).await);

    // Nowhere in writ: not its files (database, WAL, config, logs), ledger, evidence or output.
    for (path, bytes) in files_under(site.dir()) {
        assert!(
            !contains(&bytes, &password),
            "the password is in {}",
            path.display()
        );
    }
    let store = writ_store::open(&site.url).await.unwrap();
    for entry in store.entries(0, 10_000).await.unwrap() {
        assert!(
            !contains(&entry.leaf, &password),
            "in ledger entry {}",
            entry.seq
        );
    }
    let dump = format!("{:?}", store.projection_dump().await.unwrap());
    assert!(!dump.contains(&password));
    run(&["audit", "verify"]);
    assert!(
        !said.borrow().contains(&password),
        "a command printed the password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_leaked_password_is_rotated_into_secrets_manager() {
    leaked_password_is_rotated_into_secrets_manager(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leaked_password_is_rotated_into_secrets_manager() {
    leaked_password_is_rotated_into_secrets_manager(TestDb::postgres().unwrap()).await;
}
