//! End-to-end: findings in over HTTP and from files, governed decisions out, through the real
//! binary, on SQLite and PostgreSQL. The Prowler file is real Prowler output from a scan of moto.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests may read the wall clock and the OS random source (they drive real processes).
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Site, fixture, text};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use writ_core::event::{EventBody, IdentitySynced};
use writ_core::identity::{Criticality, Identity, IdentityKind};
use writ_core::ids::IdentityId;
use writ_engine::{Draft, Engine};
use writ_testkit::TestDb;

const TOKEN: &str = "writ_test_token_for_prowler_0123456789";
const HMAC_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes-for-ci";

fn site(db: TestDb) -> Site {
    let hash = writ_engine::sources::token_hash(TOKEN);
    let site = Site::new(
        db,
        &format!(
            "[[sources]]\nname = \"prowler\"\ntrust = \"high\"\ntoken_sha256 = \"{hash}\"\n\n[[sources]]\nname = \"ci\"\ntrust = \"medium\"\nhmac_secret_file = \"ci.hmac\"\n\n[server]\n"
        )
        .replace("\n[server]\n", "\n"),
    );
    std::fs::write(site.path("ci.hmac"), HMAC_SECRET).unwrap();
    site
}

/// Records the inventory the Prowler scan's subjects resolve against.
async fn seed_inventory(site: &Site) {
    let store = writ_store::open(&site.url).await.unwrap();
    let key = writ_engine::keys::load_signer(&site.path("ledger.key")).unwrap();
    let sequencer = Engine::builder(store, key).start().await.unwrap().sequencer;
    let now = Timestamp::now();
    let identities = [
        ("svc-etl/AccessKey1", Some("data"), IdentityKind::ApiKey),
        (
            "ci-deployer/AccessKey1",
            Some("platform"),
            IdentityKind::ApiKey,
        ),
        ("svc-backup/AccessKey1", None, IdentityKind::ApiKey),
    ];
    for (n, (external_id, owner, kind)) in identities.into_iter().enumerate() {
        let identity = Identity {
            id: IdentityId(uuid::Uuid::from_u128(n as u128 + 1)),
            system: "aws:123456789012".into(),
            external_id: external_id.into(),
            kind,
            owner_team: owner.map(str::to_owned),
            criticality: Criticality::High,
            privileged: false,
            tags: vec![],
            last_used_at: None,
            reconciled_at: Some(now - SignedDuration::from_mins(5)),
        };
        sequencer
            .append(Draft::new(
                None,
                "sync:aws",
                format!("sync:{external_id}"),
                EventBody::IdentitySynced(IdentitySynced {
                    identity,
                    object_kind: None,
                    reason: None,
                }),
            ))
            .await
            .unwrap();
    }
}

async fn post(url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, String, Value) {
    try_post(url, body, headers).await.unwrap()
}

/// Status, content type and JSON body of a POST, or the transport error.
async fn try_post(
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<(u16, String, Value), reqwest::Error> {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.bytes().await?;
    Ok((
        status,
        content_type,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

fn bearer() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {TOKEN}"))]
}

async fn ledger_size(site: &Site) -> u64 {
    writ_store::open(&site.url)
        .await
        .unwrap()
        .ledger_size()
        .await
        .unwrap()
}

async fn prowler_scan_becomes_governed_cases(db: TestDb) {
    let site = site(db);
    seed_inventory(&site).await;
    // An admin to read cases with (made before `serve` turns [[sources]] into principals).
    let root = site.bootstrap_admin("root");
    let server = site.serve().await;
    let scan = std::fs::read(fixture("prowler-iam.ocsf.json")).unwrap();

    // Unauthenticated or forged: 401, nothing stored.
    let before = ledger_size(&site).await;
    let (status, content_type, problem) =
        post(&server.url("/v1/findings"), scan.clone(), &[]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (401, "application/problem+json")
    );
    assert_eq!(problem["errors"][0]["field"], "Authorization");
    let forged = vec![("authorization", "Bearer not-the-token".to_owned())];
    assert_eq!(
        post(&server.url("/v1/findings"), scan.clone(), &forged)
            .await
            .0,
        401
    );
    let now = Timestamp::now().as_second();
    let bad_signature = vec![
        ("x-writ-source", "ci".to_owned()),
        ("x-writ-timestamp", now.to_string()),
        (
            "x-writ-signature",
            writ_engine::sources::sign_request(
                b"wrong secret of sufficient length!!",
                now,
                findings_request(""),
                &scan,
            )
            .unwrap(),
        ),
    ];
    assert_eq!(
        post(&server.url("/v1/findings"), scan.clone(), &bad_signature)
            .await
            .0,
        401
    );
    assert_eq!(
        ledger_size(&site).await,
        before,
        "refused requests stored nothing"
    );

    // The real Prowler scan: every FAIL becomes a finding in a case, with a decision where
    // policy has a remediation for its type.
    let (status, _, body) = post(&server.url("/v1/findings"), scan.clone(), &bearer()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["format"], "prowler");
    assert_eq!(body["skipped"], 14, "PASS results are not findings");
    let accepted = body["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 10, "{body}");
    let unused = accepted
        .iter()
        .find(|a| a["line"] == 2795)
        .expect("the iam_user_accesskey_unused finding");
    let outcome = &unused["outcome"];
    assert_eq!(outcome["case_state"], "awaiting_approval", "{outcome}");
    assert_eq!(outcome["decision"]["tier"]["tier"], "approval");
    assert_eq!(outcome["decision"]["tier"]["approver_group"], "owner_team");
    assert_eq!(
        outcome["decision"]["determining_policies"],
        json!(["inactive-credential-disable-owner-approval"])
    );
    // Findings about identities writ does not know, or without an owner, wait for a human.
    let unknown = accepted.iter().find(|a| a["line"] == 1).unwrap();
    assert_eq!(unknown["outcome"]["case_state"], "needs_review");

    // The same file again: all duplicates, nothing new, 409.
    let size = ledger_size(&site).await;
    let (status, content_type, problem) =
        post(&server.url("/v1/findings"), scan.clone(), &bearer()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (409, "application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "idempotency_key");
    assert_eq!(ledger_size(&site).await, size);

    // HMAC-signed native finding from the CI source.
    let native = serde_json::to_vec(&json!({
        "finding_type": "iam_user_accesskey_unused",
        "severity": "medium",
        "confidence": 0.8,
        "subject": {"system": "aws:123456789012", "external_id": "ci-deployer/AccessKey1"},
        "title": "key unused for 120 days"
    }))
    .unwrap();
    let now = Timestamp::now().as_second();
    let signed_at = |at: i64| {
        vec![
            ("x-writ-source", "ci".to_owned()),
            ("x-writ-timestamp", at.to_string()),
            (
                "x-writ-signature",
                writ_engine::sources::sign_request(
                    HMAC_SECRET.as_bytes(),
                    at,
                    findings_request("ci-run-42"),
                    &native,
                )
                .unwrap(),
            ),
            ("idempotency-key", "ci-run-42".to_owned()),
        ]
    };
    let signed = signed_at(now);
    // Signed for another idempotency key: refused.
    let mut other_key = signed.clone();
    other_key[3].1 = "ci-run-43".to_owned();
    let (status, _, problem) = post(&server.url("/v1/findings"), native.clone(), &other_key).await;
    assert_eq!(status, 401, "{problem}");
    let (status, _, body) = post(&server.url("/v1/findings"), native.clone(), &signed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "ci");
    assert_eq!(
        body["accepted"][0]["outcome"]["case_state"],
        "awaiting_approval"
    );
    // The same signed request again is a replay; signed anew, the same key is a duplicate.
    let (status, _, problem) = post(&server.url("/v1/findings"), native.clone(), &signed).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "X-Writ-Signature",
        "{problem}"
    );
    let fresh = signed_at(now + 1);
    let (status, _, _) = post(&server.url("/v1/findings"), native, &fresh).await;
    assert_eq!(status, 409, "the same idempotency key twice");

    // The CLI shows the case, with its decision explained.
    let case_id = outcome["case_id"].as_str().unwrap().to_owned();
    let output = site.run_as(&server, &root, &["case", "show", &case_id]);
    assert!(output.status.success(), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("decision_recorded"), "{shown}");
    assert!(
        shown.contains("disable needs 1 approval(s) from owner_team"),
        "{shown}"
    );
    assert!(
        shown.contains("inactive-credential-disable-owner-approval"),
        "{shown}"
    );
    let output = site.run_as(
        &server,
        &root,
        &["case", "list", "--state", "awaiting_approval"],
    );
    assert!(text(&output).contains(&case_id), "{}", text(&output));
    drop(server);
    let output = site.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
}

async fn bad_input_gets_clear_problems(db: TestDb) {
    let site = site(db);
    let server = site.serve().await;
    let url = server.url("/v1/findings");
    let good = json!({
        "finding_type": "leaked_secret",
        "severity": "high",
        "confidence": 0.9,
        "subject": {"system": "git:acme/app", "external_id": "sha1:abc"},
        "title": "secret in repo"
    });

    // Malformed JSON: 400 naming the line.
    let (status, content_type, problem) = post(
        &format!("{url}?format=native"),
        b"[{\"finding_type\": \n\"x\",,}]".to_vec(),
        &[
            ("content-type", "application/json".into()),
            bearer()[0].clone(),
        ],
    )
    .await;
    assert!(status == 400 || status == 422, "{status} {problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem["errors"][0]["field"]
            .as_str()
            .unwrap()
            .contains("line"),
        "{problem}"
    );

    // A wrong schema: 422 naming the field.
    let mut wrong = good.clone();
    wrong["subject"]["external_id"] = json!(42);
    let body = serde_json::to_vec(&json!([wrong])).unwrap();
    let (status, _, problem) = post(&format!("{url}?format=native"), body, &bearer()).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["errors"][0]["field"]
            .as_str()
            .unwrap()
            .contains("subject.external_id"),
        "{problem}"
    );

    // One bad finding in a batch does not lose the good ones.
    let mut second = good.clone();
    second["subject"]["external_id"] = json!("sha1:def");
    let mut typo = good.clone();
    typo["severty"] = json!("high");
    let body = serde_json::to_vec(&json!([good, typo, second])).unwrap();
    let (status, _, response) = post(&format!("{url}?format=native"), body, &bearer()).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["accepted"].as_array().unwrap().len(), 2);
    assert_eq!(response["refused"][0]["index"], 1);
    assert!(
        response["refused"][0]["message"]
            .as_str()
            .unwrap()
            .contains("severty"),
        "{response}"
    );

    // Unknown format.
    let (status, _, problem) = post(&url, b"{\"hello\": 1}".to_vec(), &bearer()).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "format");
    let (status, _, problem) =
        post(&format!("{url}?format=xml"), b"<x/>".to_vec(), &bearer()).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (400, Some("format"))
    );

    // Oversized body (the limit is configurable; the default is 10 MiB). The server answers
    // as soon as it sees the length and closes the connection without reading the body, so
    // the client may still be writing and see a broken pipe instead of the answer: that is a
    // property of HTTP/1.1 clients, not of writ, and the test sends again when it happens.
    let big = vec![b' '; 11 * 1024 * 1024];
    let mut answered = None;
    for _ in 0..5 {
        if let Ok(answer) = try_post(&url, big.clone(), &bearer()).await {
            answered = Some(answer);
            break;
        }
    }
    let (status, content_type, problem) =
        answered.expect("the oversized request was never answered");
    assert_eq!(
        (status, content_type.as_str()),
        (413, "application/problem+json"),
        "{problem}"
    );
    assert_eq!(problem["errors"][0]["field"], "body");
}

async fn cli_ingest_streams_files_and_names_bad_lines(db: TestDb) {
    let site = site(db);
    seed_inventory(&site).await;
    std::fs::write(
        site.path("mixed.ndjson"),
        [
            r#"{"finding_type":"iam_user_accesskey_unused","severity":"low","confidence":1,"subject":{"system":"aws:123456789012","external_id":"svc-etl/AccessKey1"},"title":"unused"}"#,
            r#"{"finding_type":"iam_user_accesskey_unused","severity":"loud","confidence":1,"subject":{"system":"aws:123456789012","external_id":"x"},"title":"bad"}"#,
            r#"{"finding_type":"leaked_secret","severity":"high","confidence":0.9,"subject":{"system":"git:acme","external_id":"sha1:1"},"title":"leak"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let output = site.run(&["ingest", "--source", "prowler", "mixed.ndjson"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(out.contains("mixed.ndjson:2: severity"), "{out}");
    assert!(out.contains("2 new case(s)"), "{out}");

    let scan = fixture("prowler-iam.ocsf.json");
    let output = site.run(&["ingest", "--source", "prowler", scan.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let out = text(&output);
    assert!(out.contains("14 skipped"), "{out}");
    assert!(out.contains("joined an open case"), "{out}");

    let output = site.run(&["ingest", "--source", "nobody", "mixed.ndjson"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("not configured"),
        "{}",
        text(&output)
    );

    // Every other real scanner's output ingests too.
    for file in [
        "detect-secrets-baseline.json",
        "gitleaks-redacted.json",
        "gitleaks-unredacted.json",
        "ocsf-generic.ndjson",
    ] {
        let path = fixture(file);
        let output = site.run(&["ingest", path.to_str().unwrap()]);
        assert!(output.status.success(), "{file}: {}", text(&output));
    }
    // The plaintext secret in the unredacted gitleaks report never reaches the database: not
    // in the evidence, not in the ledger.
    let report: Value =
        serde_json::from_slice(&std::fs::read(fixture("gitleaks-unredacted.json")).unwrap())
            .unwrap();
    let secret = report[0]["Secret"].as_str().unwrap().to_owned();
    assert!(secret.len() > 8 && secret != "REDACTED");
    let output = site.run(&["audit", "export", "--all", "-o", "all.json"]);
    assert!(output.status.success(), "{}", text(&output));
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(site.path("all.json")).unwrap()).unwrap();
    for entry in bundle["entries"].as_array().unwrap() {
        use base64::Engine as _;
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(entry["leaf"].as_str().unwrap())
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&leaf).contains(&secret),
            "a secret reached the ledger"
        );
    }
    for evidence in all_evidence(&site.url).await {
        assert!(
            !String::from_utf8_lossy(&evidence).contains(&secret),
            "a secret reached the evidence store"
        );
    }
    assert!(site.run(&["audit", "verify"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prowler_scan_becomes_governed_cases() {
    prowler_scan_becomes_governed_cases(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prowler_scan_becomes_governed_cases() {
    prowler_scan_becomes_governed_cases(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bad_input_gets_clear_problems() {
    bad_input_gets_clear_problems(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bad_input_gets_clear_problems() {
    bad_input_gets_clear_problems(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cli_ingest_streams_files_and_names_bad_lines() {
    cli_ingest_streams_files_and_names_bad_lines(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cli_ingest_streams_files_and_names_bad_lines() {
    cli_ingest_streams_files_and_names_bad_lines(TestDb::postgres().unwrap()).await;
}

#[test]
fn policy_validate_and_test_commands() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let output = common::writ(dir.path())
        .args(["policy", "validate"])
        .arg(root.join("policies/demo"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let output = common::writ(dir.path())
        .args(["policy", "test"])
        .arg(root.join("policies/demo"))
        .arg(root.join("policies/demo-tests"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let broken = root.join("crates/writ-policy/tests/fixtures/everything_wrong");
    let output = common::writ(dir.path())
        .args(["policy", "validate"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(".cedar:"),
        "errors name their file and line: {}",
        text(&output)
    );
}

async fn all_evidence(url: &str) -> Vec<Vec<u8>> {
    use sqlx::Row as _;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query("SELECT bytes FROM evidence")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("bytes"))
            .collect()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("SELECT bytes FROM evidence")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("bytes"))
            .collect()
    }
}

/// What a v2 signature of a `POST /v1/findings` (no query) with `idempotency_key` covers.
fn findings_request(idempotency_key: &str) -> writ_engine::sources::SignedRequest<'_> {
    writ_engine::sources::SignedRequest {
        method: "POST",
        path: "/v1/findings",
        query: "",
        idempotency_key,
    }
}
