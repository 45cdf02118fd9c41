//! End to end, `GET /metrics` on both backends with a real PostgreSQL target: scraped by a
//! real Prometheus-format parser (the `prometheus_client` parser from PyPI, in the test venv),
//! the counters say what the server did (findings in, decisions, requests by route, ledger
//! commits and their latency, calls to the target by operation) and the gauges what the
//! database holds (cases by state, write-back jobs by system and state); open on loopback by
//! default, a token of an admin or auditor with `metrics_access = "token"`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Site, text};
use serde_json::{Value, json};
use writ_testkit::TestDb;

/// The samples of a scrape, parsed by `prometheus_client.parser`: name, labels, value.
fn parse(scrape: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    let python = writ_testkit::venv_program("python").unwrap();
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, json\n\
             from prometheus_client.parser import text_string_to_metric_families\n\
             out = []\n\
             for family in text_string_to_metric_families(sys.stdin.read()):\n\
             \x20   for s in family.samples:\n\
             \x20       out.append([s.name, s.labels, s.value])\n\
             print(json.dumps(out))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the scrape: {}",
        text(&output)
    );
    let samples: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&output.stdout).unwrap();
    samples
}

fn value(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k) == Some(&json!(v))))
        .map(|(_, _, v)| *v)
}

async fn metrics_are_scraped_by_a_prometheus_parser(db: TestDb) {
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
    let omar = site.add_principal(
        &server,
        &root,
        &["omar", "--team", "data", "--role", "approver"],
    );
    site.import_owners_and_sync(&server, &root);
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
    let http = reqwest::Client::new();
    let answer = http
        .post(server.url("/v1/findings"))
        .bearer_auth(&scanner)
        .json(&json!({
            "finding_type": "leaked_secret",
            "severity": "high",
            "confidence": 0.9,
            "subject": {"system": "pg-main", "external_id": "svc_a"},
            "title": "a key in a public repository",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A change approved, applied and verified: write-back calls to the target.
    let answer: Value = http
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
    let (status, body) = common::api_post(
        &server,
        &omar,
        &format!("/v1/cases/{case}/approvals"),
        json!({"verdict": "approve", "rationale": "unused"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server
        .wait_for_case_state(&root, &case, "remediated", Duration::from_secs(30))
        .await;

    // On loopback, no credentials are needed.
    let response = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let samples = parse(&response.text().await.unwrap());
    assert_eq!(
        value(
            &samples,
            "writ_findings_total",
            &[("source", "scanner"), ("outcome", "new")]
        ),
        Some(2.0),
        "{samples:?}"
    );
    assert!(
        value(
            &samples,
            "writ_http_requests_total",
            &[("route", "/v1/findings"), ("status", "200")]
        )
        .is_some_and(|v| v >= 1.0),
        "{samples:?}"
    );
    assert!(value(&samples, "writ_ledger_entries", &[]).is_some_and(|v| v > 0.0));
    // Cases by state, counted by the database: the leak waits for a person (unknown
    // identity; so does the sync's finding about the unowned `postgres` role), the disable is
    // done.
    assert_eq!(
        value(&samples, "writ_cases", &[("state", "needs_review")]),
        Some(2.0),
        "{samples:?}"
    );
    assert_eq!(
        value(&samples, "writ_cases", &[("state", "remediated")]),
        Some(1.0),
        "{samples:?}"
    );
    // The ledger writer's transactions, and their latency.
    assert!(
        value(&samples, "writ_ledger_commits_total", &[("outcome", "ok")])
            .is_some_and(|v| v >= 1.0),
        "{samples:?}"
    );
    assert!(
        value(&samples, "writ_ledger_appends_total", &[]).is_some_and(|v| v >= 5.0),
        "{samples:?}"
    );
    assert!(
        value(&samples, "writ_ledger_commit_duration_seconds_count", &[]).is_some_and(|v| v >= 1.0),
        "{samples:?}"
    );
    // The target's calls by operation, and the job by system and state.
    for operation in ["discover", "apply", "verify"] {
        assert!(
            value(
                &samples,
                "writ_target_calls_total",
                &[
                    ("system", "pg-main"),
                    ("operation", operation),
                    ("outcome", "ok")
                ]
            )
            .is_some_and(|v| v >= 1.0),
            "{operation}: {samples:?}"
        );
        assert!(
            value(
                &samples,
                "writ_target_call_duration_seconds_count",
                &[("system", "pg-main"), ("operation", operation)]
            )
            .is_some_and(|v| v >= 1.0),
            "{operation}: {samples:?}"
        );
    }
    assert!(
        samples.iter().any(|(n, l, v)| n == "writ_writeback_jobs"
            && l.get("system") == Some(&json!("pg-main"))
            && *v == 1.0),
        "{samples:?}"
    );
    // Route labels are templates, never raw ids.
    assert!(
        samples.iter().all(|(_, l, _)| !l
            .get("route")
            .is_some_and(|r| r.as_str().unwrap_or("").contains("-4"))),
        "{samples:?}"
    );
    server.stop();

    // With metrics_access = "token", a token of an admin or auditor is needed everywhere.
    let config = std::fs::read_to_string(site.path("writ.toml")).unwrap();
    std::fs::write(
        site.path("writ.toml"),
        config.replace("[server]\n", "[server]\nmetrics_access = \"token\"\n"),
    )
    .unwrap();
    let mut server = site.spawn_serve(&[]);
    server.wait_ready().await;
    let response = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = http
        .get(server.url("/metrics"))
        .bearer_auth(&scanner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = http
        .get(server.url("/metrics"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_metrics_are_scraped_by_a_prometheus_parser() {
    metrics_are_scraped_by_a_prometheus_parser(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metrics_are_scraped_by_a_prometheus_parser() {
    metrics_are_scraped_by_a_prometheus_parser(TestDb::postgres().unwrap()).await;
}
