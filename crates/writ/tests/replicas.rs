//! Three `writ serve` replicas on one PostgreSQL database, under load and faults: findings
//! posted to all three (each retried on the next replica until acknowledged, as a webhook
//! sender does), approvals on one, write-back workers on all; one replica SIGKILLed and
//! restarted again and again, and the database restarted once, during the run. Afterwards:
//! every finding recorded exactly once, every approved change applied exactly once (counted
//! from the target PostgreSQL's own statement log), the ledger verifies and the projections
//! match it. The counts are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, Site, pg_can_login as can_login, text};
use serde_json::json;
use tokio::sync::Mutex;
use writ_testkit::{PgCluster, TestDb};

/// Target roles the findings are about (one case each).
const ROLES: usize = 24;
/// Findings posted in all (several per role: they join the role's open case).
const FINDINGS: usize = 240;

/// Starts replica `index` of the site: replica 0 on the site's port, the others on their own.
fn start_replica(site: &Site, ports: &[u16], index: usize) -> Server {
    let mut server =
        site.spawn_serve(&[("WRIT_SERVER__LISTEN", format!("127.0.0.1:{}", ports[index]))]);
    server.base = format!("http://127.0.0.1:{}", ports[index]);
    server
}

/// Posts finding `n` until a replica acknowledges it, starting at replica `n % 3` and moving on
/// at each failure; returns the finding id and how many attempts it took.
async fn post_until_acknowledged(
    http: &reqwest::Client,
    bases: &[String],
    token: &str,
    n: usize,
) -> (String, u64) {
    let body = json!({
        "finding_type": "inactive_service_account",
        "severity": "medium",
        "confidence": 0.95,
        "subject": {"system": "pg-main", "external_id": format!("svc_{}", n % ROLES)},
        "title": format!("no login for 200 days (scan {n})"),
        "idempotency_key": format!("scan-{n}"),
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempt = 0u64;
    loop {
        let base = &bases[(n + attempt as usize) % bases.len()];
        attempt += 1;
        let answer = http
            .post(format!("{base}/v1/findings"))
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status().as_u16();
            if let Ok(value) = response.json::<serde_json::Value>().await {
                let accepted = value["accepted"][0]["outcome"]["finding_id"].as_str();
                let duplicate = value["duplicates"][0]["outcome"]["finding_id"].as_str();
                if status == 200
                    && let Some(id) = accepted.or(duplicate)
                {
                    return (id.to_owned(), attempt);
                }
                // Every finding of the request a repeat: 409, and the first one's id in the
                // detail; ask again through the list below.
                if status == 409 {
                    let detail = value["detail"].as_str().unwrap_or_default();
                    if let Some(id) = detail
                        .split("(first: finding ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                    {
                        return (id.to_owned(), attempt);
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "finding {n} never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_kills_and_a_database_restart() {
    let target = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let pg = target.url("postgres");
    writ_testkit::exec_sql(&pg, "ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    let mut roles = String::new();
    for r in 0..ROLES {
        roles.push_str(&format!("CREATE ROLE svc_{r} LOGIN;"));
    }
    writ_testkit::exec_sql(&pg, &roles).await.unwrap();
    writ_testkit::exec_sql(&pg, "SELECT pg_reload_conf()")
        .await
        .unwrap();
    let db = tokio::task::spawn_blocking(TestDb::postgres)
        .await
        .unwrap()
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
    let ports = [
        site.port,
        writ_testkit::free_port().unwrap(),
        writ_testkit::free_port().unwrap(),
    ];
    let mut first = start_replica(&site, &ports, 0);
    first.wait_ready().await;
    let omar = site.add_principal(
        &first,
        &root,
        &["omar", "--team", "data", "--role", "approver"],
    );
    let scanner = site.add_principal(
        &first,
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
    site.import_owners_and_sync(&first, &root);
    let mut second = start_replica(&site, &ports, 1);
    second.wait_ready().await;
    let mut third = start_replica(&site, &ports, 2);
    third.wait_ready().await;
    let bases: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|s| s.base.clone())
        .collect();
    let http = reqwest::Client::new();

    // Findings to all three replicas, four senders at once.
    let next = Arc::new(AtomicU64::new(0));
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (http, bases, token) = (http.clone(), bases.clone(), scanner.clone());
        let (next, acknowledged, attempts) = (next.clone(), acknowledged.clone(), attempts.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst) as usize;
                if n >= FINDINGS {
                    return;
                }
                let (id, tries) = post_until_acknowledged(&http, &bases, &token, n).await;
                attempts.fetch_add(tries, Ordering::SeqCst);
                acknowledged.lock().await.insert(n, id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // Approvals on the first replica, as cases come to wait for them.
    let sending = Arc::new(AtomicBool::new(true));
    let approvals = Arc::new(AtomicU64::new(0));
    let approver = {
        let (http, base, token) = (http.clone(), bases[0].clone(), omar.clone());
        let (sending, approvals) = (sending.clone(), approvals.clone());
        tokio::spawn(async move {
            let mut approved = BTreeSet::new();
            loop {
                let done = !sending.load(Ordering::SeqCst);
                let listed = http
                    .get(format!("{base}/v1/cases?state=awaiting_approval&limit=200"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if let Ok(response) = listed
                    && let Ok(cases) = response.json::<serde_json::Value>().await
                {
                    for case in cases.as_array().cloned().unwrap_or_default() {
                        let id = case["id"].as_str().unwrap_or_default().to_owned();
                        if id.is_empty() || approved.contains(&id) {
                            continue;
                        }
                        let voted = http
                            .post(format!("{base}/v1/cases/{id}/approvals"))
                            .bearer_auth(&token)
                            .json(&json!({"verdict": "approve", "rationale": "unused; the team agreed"}))
                            .send()
                            .await;
                        if voted.is_ok_and(|r| r.status().is_success()) {
                            approved.insert(id);
                            approvals.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                if done && approved.len() >= ROLES {
                    return approved;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    // Faults: the third replica killed (SIGKILL) and restarted every two seconds; the
    // database restarted once, in the middle.
    let mut kills = 0;
    let mut database_restarts = 0;
    let mut acknowledged_at_restart = 0;
    let started = Instant::now();
    while acknowledged.lock().await.len() < FINDINGS || kills < 5 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        third.kill();
        kills += 1;
        if kills == 2 {
            acknowledged_at_restart = acknowledged.lock().await.len();
            site.database_cluster().unwrap().restart().unwrap();
            database_restarts += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        third = start_replica(&site, &ports, 2);
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the load never finished: {} acknowledged",
            acknowledged.lock().await.len()
        );
    }
    for sender in senders {
        sender.await.unwrap();
    }
    sending.store(false, Ordering::SeqCst);
    third.wait_ready().await;
    let approved = tokio::time::timeout(Duration::from_secs(120), approver)
        .await
        .expect("every case approved")
        .unwrap();

    // Every approved change lands, once.
    for id in &approved {
        first
            .wait_for_case_state(&root, id, "remediated", Duration::from_secs(120))
            .await;
    }
    for r in 0..ROLES {
        assert!(!can_login(&pg, &format!("svc_{r}")).await, "svc_{r}");
    }
    let log = target.server_log();
    let mut applied = BTreeMap::new();
    for line in log.lines() {
        if let Some(rest) = line.split("statement: ALTER ROLE ").nth(1)
            && rest.trim_end().ends_with("NOLOGIN")
        {
            let role = rest.split_whitespace().next().unwrap_or_default();
            *applied
                .entry(role.trim_matches('"').to_owned())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(applied.len(), ROLES, "{applied:?}");
    assert!(
        applied.values().all(|n| *n == 1),
        "a change applied more than once: {applied:?}"
    );

    // Every finding recorded exactly once.
    let acknowledged = acknowledged.lock().await.clone();
    let ids: BTreeSet<&String> = acknowledged.values().collect();
    assert_eq!(ids.len(), FINDINGS, "each finding its own id");
    let recorded = common::api_get(&first, &root, "/v1/status").await;
    first.stop();
    second.stop();
    third.stop();
    let findings: i64 = {
        use sqlx::Connection as _;
        let mut connection = sqlx::PgConnection::connect(&site.url).await.unwrap();
        // The scanner's (the first sync raised its own about the unowned `postgres` role).
        sqlx::query_scalar("SELECT count(*) FROM findings WHERE source = 'scanner'")
            .fetch_one(&mut connection)
            .await
            .unwrap()
    };
    assert_eq!(findings, FINDINGS as i64, "findings recorded once each");
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    println!(
        "replicas: 3; findings posted {FINDINGS} (attempts {}), acknowledged {}, recorded {findings}; \
         replica kills {kills}, database restarts {database_restarts} (at {acknowledged_at_restart} \
         acknowledged); cases approved {} \
         (votes {}), changes applied in the target {} (each once); ledger entries {}",
        attempts.load(Ordering::SeqCst),
        acknowledged.len(),
        approved.len(),
        approvals.load(Ordering::SeqCst),
        applied.values().sum::<u32>(),
        recorded["ledger_size"]
    );
}
