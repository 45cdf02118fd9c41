//! End to end, the case lifecycle of the seed documents through the HTTP API (and the CLI
//! clients of it) of a real `writ serve`, against moto, on SQLite and PostgreSQL: exceptions
//! that expire and reopen, freezes, rotation exceptions, escalation to a human, break-glass with
//! its overdue review, overrides of automated denials, re-decision by a stronger finding, and
//! compliance closure by a later Prowler scan. Time moves by short durations: an exception of
//! a few seconds, a break-glass review window of two.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, fixture, key_status, text, wait_for_key_status};
use serde_json::{Value, json};
use writ_connector_aws::Service;
use writ_testkit::{MotoServer, TestDb};

const USERS: &[&str] = &[
    "svc-etl",
    "svc-pay",
    "svc-rot",
    "svc-orphan",
    "svc-bg",
    "svc-low",
    "svc-comp",
];

/// The demo bundle, with two changes for the test: break-glass reviews fall due on the
/// configured (short) window rather than the demo's 24 hours, and disabling a low-criticality
/// key is forbidden (an automated deny to override).
fn test_bundle(site: &Site) -> std::path::PathBuf {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    let dir = site.path("policy");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&demo).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = text.replace("@review_within_hours(\"24\")\n", "");
        std::fs::write(dir.join(entry.file_name()), text).unwrap();
    }
    std::fs::write(
        dir.join("low.cedar"),
        "@id(\"never-disable-low-criticality\")\nforbid (principal, action == Writ::Action::\"disable\", resource)\nwhen { resource.criticality == \"low\" };\n",
    )
    .unwrap();
    dir
}

/// The webhook receiver (a Python process verifying with the reference `standardwebhooks`
/// package); killed on drop.
struct Receiver {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(site: &Site, secret: &str) -> (Receiver, u16) {
        let port = writ_testkit::free_port().unwrap();
        let log = site.path("webhooks.log");
        let python = writ_testkit::venv_program("python").unwrap();
        let child = std::process::Command::new(python)
            .arg(fixture_script("webhook_receiver.py"))
            .args([&port.to_string(), secret, log.to_str().unwrap()])
            .spawn()
            .unwrap();
        (Receiver { child, log }, port)
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Waits until a verified delivery of each of `types` has been accepted.
    async fn wait_for(&self, types: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let records = self.records();
            let delivered = |t: &str| {
                records
                    .iter()
                    .any(|r| r["answer"] == 204 && r["type"] == format!("writ.{t}"))
            };
            if types.iter().all(|t| delivered(t)) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "not every notification of {types:?} arrived: {records:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn fixture_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct World {
    receiver: Receiver,
    site: Site,
    server: Server,
    moto: MotoServer,
    http: reqwest::Client,
    root: String,
    alice: String,
    bob: String,
    carol: String,
    paula: String,
    eve: String,
    rita: String,
    prowler: String,
    hunch: String,
}

impl World {
    async fn new(db: TestDb) -> World {
        let moto = tokio::task::spawn_blocking(MotoServer::start)
            .await
            .unwrap()
            .unwrap();
        let client = common::moto_client(&moto.url());
        for user in USERS {
            client
                .query(Service::Iam, "CreateUser", &[("UserName", user)])
                .await
                .unwrap();
            client
                .query(Service::Iam, "CreateAccessKey", &[("UserName", user)])
                .await
                .unwrap();
        }
        let site = Site::new(
            db,
            &format!(
                "[writeback]\ninterval_ms = 150\nbreak_glass_review_seconds = 2\n\n[[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
                moto.url()
            ),
        );
        let bundle = test_bundle(&site);
        // Webhooks: one endpoint that verifies and takes everything (after a first 503 per
        // message, so each is retried), one that answers 410 and must be disabled.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let secret_file = site.path("webhook.secret");
        std::fs::write(&secret_file, secret).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (receiver, hook_port) = Receiver::start(&site, secret);
        let config = std::fs::read_to_string(site.path("writ.toml")).unwrap();
        std::fs::write(
            site.path("writ.toml"),
            format!(
                "{config}\n[policy]\nbundle = \"{}\"\n\n\
                 [[webhooks]]\nname = \"soc\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
                 secret_file = \"{}\"\n\
                 events = [\"approval_due\", \"escalation\", \"break_glass_used\", \"exception_expiring\", \"case_closed\"]\n\
                 retry_schedule_seconds = [1, 1, 1]\n\n\
                 [[webhooks]]\nname = \"retired\"\nurl = \"http://127.0.0.1:{hook_port}/gone\"\n\
                 secret_file = \"{}\"\nevents = [\"case_closed\"]\n",
                bundle.display(),
                secret_file.display(),
                secret_file.display()
            ),
        )
        .unwrap();
        std::fs::write(
            site.path("owners.csv"),
            "pattern,owner_team,criticality,privileged\n\
             aws:123456789012/svc-pay*,payments,business_critical\n\
             aws:123456789012/svc-low*,data,low\n\
             aws:123456789012/svc-orphan*,,medium\n\
             aws:123456789012/svc-*,data,high\n",
        )
        .unwrap();
        let root = site.bootstrap_admin("root");
        let aws_env = common::aws_env(Some(&moto.url()));
        let mut server = site.spawn_serve(&aws_env);
        server.wait_ready().await;
        let add = |args: &[&str]| site.add_principal(&server, &root, args);
        let alice = add(&[
            "alice",
            "--team",
            "data",
            "--role",
            "approver",
            "--role",
            "requester",
        ]);
        let bob = add(&["bob", "--team", "data", "--role", "approver"]);
        let carol = add(&["carol", "--team", "security", "--role", "approver"]);
        let paula = add(&["paula", "--team", "payments", "--role", "approver"]);
        let eve = add(&["eve", "--team", "sre", "--role", "break_glass"]);
        let rita = add(&["rita", "--team", "risk", "--role", "risk_owner"]);
        let prowler = add(&[
            "prowler-ci",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ]);
        let hunch = add(&["hunch", "--service", "--role", "source", "--trust", "low"]);
        for args in [&["sync", "aws"][..], &["inventory", "import", "owners.csv"]] {
            let output = site.run_as(&server, &root, args);
            assert!(output.status.success(), "{}", text(&output));
        }
        World {
            receiver,
            site,
            server,
            moto,
            http: reqwest::Client::new(),
            root,
            alice,
            bob,
            carol,
            paula,
            eve,
            rita,
            prowler,
            hunch,
        }
    }

    /// Calls the API as `token`; returns the status and the JSON answer.
    async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.server.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts findings as `source`; returns the answer's accepted outcomes.
    async fn ingest(&self, source: &str, body: Value) -> Vec<Value> {
        let (status, answer) = self.api(source, "POST", "/v1/findings", Some(body)).await;
        assert_eq!(status, 200, "{answer}");
        answer["accepted"].as_array().cloned().unwrap_or_default()
    }

    /// A native finding about `user`'s first key.
    fn finding(user: &str, finding_type: &str, confidence: f64, title: &str) -> Value {
        json!({
            "finding_type": finding_type,
            "severity": "high",
            "confidence": confidence,
            "subject": {"system": "aws:123456789012", "external_id": format!("{user}/AccessKey1")},
            "title": title,
        })
    }

    /// Opens (or joins) a case with one finding; returns the outcome.
    async fn open(&self, source: &str, finding: Value) -> Value {
        let accepted = self.ingest(source, finding).await;
        assert_eq!(accepted.len(), 1, "{accepted:?}");
        accepted[0]["outcome"].clone()
    }

    async fn case(&self, id: &str) -> Value {
        let (status, story) = self
            .api(&self.root, "GET", &format!("/v1/cases/{id}"), None)
            .await;
        assert_eq!(status, 200, "{story}");
        story
    }

    fn cli(&self, token: &str, args: &[&str]) -> String {
        let output = self.site.run_as(&self.server, token, args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        text(&output)
    }

    async fn key(&self, user: &str) -> String {
        key_status(&self.moto.url(), user).await
    }

    async fn wait_for_key(&self, user: &str, want: &str) {
        wait_for_key_status(&self.moto.url(), user, want).await;
    }

    async fn wait_for_state(&self, id: &str, want: &str) -> Value {
        self.server
            .wait_for_case_state(&self.root, id, want, Duration::from_secs(20))
            .await
    }

    /// Reads case `id` until `count` of its events are of `kind`.
    async fn wait_for_events(&self, id: &str, kind: &str, count: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let story = self.case(id).await;
            let seen = kinds(&story).iter().filter(|k| *k == kind).count();
            if seen >= count {
                return story;
            }
            assert!(
                Instant::now() < deadline,
                "case {id} has {seen} {kind}, not {count}: {story}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The wall clock: the server runs on it, and the test moves along with it.
fn now() -> jiff::Timestamp {
    writ_core::Clock::now(&writ_core::SystemClock)
}

fn kinds(story: &Value) -> Vec<String> {
    story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn id(outcome: &Value) -> String {
    outcome["case_id"].as_str().unwrap().to_owned()
}

/// Seed 1, and seed G7's compliance closure: an inactive key is disabled only after the
/// owner team approves, inside a recorded exception window that expires and reopens the case;
/// a later Prowler scan reporting the check passes closes its compliance side.
async fn exception_window_then_approval_then_a_passing_scan(w: &World) {
    let scan: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("prowler-iam.ocsf.json")).unwrap()).unwrap();
    let unused = scan
        .iter()
        .find(|f| {
            f["status_code"] == "FAIL"
                && f["metadata"]["event_code"] == "iam_user_accesskey_unused"
                && f["resources"][0]["name"] == "svc-etl/AccessKey1"
        })
        .unwrap()
        .clone();
    let accepted = w.ingest(&w.prowler, json!([unused])).await;
    let case = id(&accepted[0]["outcome"]);
    assert_eq!(accepted[0]["outcome"]["case_state"], "awaiting_approval");

    let expires = (now() + jiff::SignedDuration::from_secs(4)).to_string();
    let out = w.cli(
        &w.alice,
        &[
            "exception",
            "request",
            &case,
            "--justification",
            "the quarterly batch still runs with this key",
            "--expires",
            &expires,
            "--control",
            "key limited to one bucket",
            "--follow-up",
            "DATA-42: move the batch to a role",
        ],
    );
    assert!(out.contains("waits for"), "{out}");
    // Who asked never approves it; the owner team does.
    let refused = w.site.run_as(
        &w.server,
        &w.alice,
        &["approve", &case, "--rationale", "ok"],
    );
    assert!(!refused.status.success());
    w.cli(
        &w.bob,
        &[
            "approve",
            &case,
            "--rationale",
            "accepted until the batch moves",
        ],
    );
    let story = w.case(&case).await;
    assert_eq!(story["case"]["state"], "risk_accepted");
    assert_eq!(story["lifecycle"]["exceptions"][0]["state"], "active");
    let listed = w.cli(&w.root, &["exception", "list", "--expiring", "1d"]);
    assert!(listed.contains(&case), "{listed}");
    assert_eq!(
        w.key("svc-etl").await,
        "Active",
        "the exception holds the change back"
    );

    // It expires: the case reopens and is decided again; the owner team's approval applies it.
    let story = w.wait_for_state(&case, "awaiting_approval").await;
    assert!(
        kinds(&story).contains(&"exception_expired".to_owned()),
        "{story}"
    );
    assert_eq!(story["lifecycle"]["exceptions"][0]["state"], "expired");
    w.cli(
        &w.bob,
        &[
            "approve",
            &case,
            "--rationale",
            "the batch moved; disable it",
        ],
    );
    w.wait_for_key("svc-etl", "Inactive").await;
    let story = w.wait_for_state(&case, "remediated").await;
    assert_eq!(story["lifecycle"]["operational"]["remediated"], true);
    assert_eq!(story["lifecycle"]["compliance"]["closed"], false);

    // A later scan: the check passes for the user (Prowler names the user, not the key).
    let mut pass = scan
        .iter()
        .find(|f| {
            f["status_code"] == "PASS" && f["metadata"]["event_code"] == "iam_user_accesskey_unused"
        })
        .unwrap()
        .clone();
    pass["resources"][0]["uid"] = json!("arn:aws:iam::123456789012:user/svc-etl");
    pass["resources"][0]["name"] = json!("svc-etl");
    pass["finding_info"]["uid"] = json!("prowler-later-scan-svc-etl-unused");
    let accepted = w.ingest(&w.prowler, json!([pass])).await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["outcome"]["closed_case"], true);
    let story = w.case(&case).await;
    assert_eq!(story["case"]["state"], "closed");
    assert_eq!(story["case"]["compliance_closed"], true);
    assert_eq!(story["lifecycle"]["compliance"]["by"], "scan");
    assert_eq!(story["lifecycle"]["operational"]["remediated"], true);
}

/// Seed 4: a high-confidence compromise signal on a business-critical identity only opens a
/// case and freezes the approval already pending on it; unfreezing lets it go on.
async fn a_compromise_freezes_pending_approvals_until_unfrozen(w: &World) {
    let pending = id(&w
        .open(
            &w.prowler,
            World::finding(
                "svc-pay",
                "iam_user_accesskey_unused",
                1.0,
                "unused 200 days",
            ),
        )
        .await);
    let compromise = w
        .open(
            &w.prowler,
            World::finding(
                "svc-pay",
                "credential_compromise",
                0.99,
                "used from a botnet",
            ),
        )
        .await;
    assert_eq!(compromise["case_state"], "frozen");
    let story = w.case(&pending).await;
    assert_eq!(story["case"]["state"], "frozen");
    let refused = w.site.run_as(
        &w.server,
        &w.paula,
        &["approve", &pending, "--rationale", "ok"],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("409"), "{}", text(&refused));
    // Only an admin unfreezes, with a rationale.
    let (status, _) = w
        .api(
            &w.paula,
            "POST",
            &format!("/v1/cases/{pending}/unfreeze"),
            Some(json!({"rationale": "fine"})),
        )
        .await;
    assert_eq!(status, 403);
    w.cli(
        &w.root,
        &[
            "case",
            "unfreeze",
            &pending,
            "--rationale",
            "the botnet report was about another key",
        ],
    );
    assert_eq!(w.case(&pending).await["case"]["state"], "awaiting_approval");
    w.cli(
        &w.paula,
        &["approve", &pending, "--rationale", "unused; disable"],
    );
    w.wait_for_key("svc-pay", "Inactive").await;
}

/// Seed: a rotation exception carries justification, expiry, compensating control and
/// follow-up task in the one case.
async fn a_rotation_exception_is_recorded_in_the_case(w: &World) {
    let case = id(&w
        .open(
            &w.prowler,
            World::finding(
                "svc-rot",
                "leaked_secret",
                0.95,
                "key found in a public gist",
            ),
        )
        .await);
    let expires = (now() + jiff::SignedDuration::from_hours(24 * 10)).to_string();
    let (status, answer) = w
        .api(
            &w.alice,
            "POST",
            &format!("/v1/cases/{case}/exception"),
            Some(json!({
                "justification": "the payment batch cannot take a new key before month end",
                "expires_at": expires,
                "compensating_controls": ["key restricted to the batch host's IP", "CloudTrail alert on any other use"],
                "follow_up": "PAY-77: rotate after the month-end run",
            })),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["rule"], "1 of team:security");
    // Longer than the policy allows for a leak (30 days): refused, naming the field.
    let too_long = (now() + jiff::SignedDuration::from_hours(24 * 40)).to_string();
    let (status, problem) = w
        .api(
            &w.bob,
            "POST",
            &format!("/v1/cases/{case}/exception"),
            Some(json!({
                "justification": "x", "expires_at": too_long,
                "compensating_controls": ["y"], "follow_up": "z",
            })),
        )
        .await;
    assert!(status == 409 || status == 422, "{status} {problem}");
    w.cli(
        &w.carol,
        &[
            "approve",
            &case,
            "--rationale",
            "compensated; accepted for ten days",
        ],
    );
    let story = w.case(&case).await;
    assert_eq!(story["case"]["state"], "risk_accepted");
    let exception = &story["lifecycle"]["exceptions"][0];
    assert_eq!(exception["state"], "active");
    assert_eq!(
        exception["justification"],
        "the payment batch cannot take a new key before month end"
    );
    assert_eq!(
        exception["compensating_controls"][1],
        "CloudTrail alert on any other use"
    );
    assert_eq!(
        exception["follow_up"],
        "PAY-77: rotate after the month-end run"
    );
    assert!(
        exception["expires_at"]
            .as_str()
            .unwrap()
            .starts_with(&expires[..10])
    );
    let shown = w.cli(&w.root, &["case", "show", &case]);
    assert!(shown.contains("PAY-77"), "{shown}");
}

/// Seed: a dormant key flagged by automation is escalated to a human, with the original alert
/// and the policy outcome in the case.
async fn a_dormant_key_without_an_owner_goes_to_a_human(w: &World) {
    let outcome = w
        .open(
            &w.prowler,
            World::finding(
                "svc-orphan",
                "iam_user_accesskey_unused",
                1.0,
                "dormant for 400 days",
            ),
        )
        .await;
    assert_eq!(outcome["case_state"], "needs_review");
    assert!(
        outcome["review_reason"]
            .as_str()
            .unwrap()
            .contains("no owner"),
        "{outcome}"
    );
    let story = w.case(&id(&outcome)).await;
    let events = story["events"].as_array().unwrap();
    assert_eq!(
        events[0]["body"]["observation"]["title"],
        "dormant for 400 days"
    );
    assert!(
        events[0]["body"]["finding"]["evidence"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(events[1]["kind"], "decision_recorded");
    assert_eq!(events[1]["body"]["routing"]["to"], "human_review");
    assert!(events[1]["body"]["decision"]["reason"].is_string());
    assert_eq!(w.key("svc-orphan").await, "Active");
}

/// Seed: an emergency bypass is applied at once, its review becomes overdue and escalates
/// (and again at twice the deadline), and the later review is recorded in the same case.
async fn a_break_glass_is_applied_escalated_and_reviewed(w: &World) {
    let case = id(&w
        .open(
            &w.prowler,
            World::finding(
                "svc-bg",
                "iam_user_accesskey_unused",
                1.0,
                "unused 300 days",
            ),
        )
        .await);
    let out = w.cli(
        &w.eve,
        &[
            "case",
            "break-glass",
            &case,
            "--reason",
            "the key is being used by an attacker",
            "--incident",
            "INC-4711",
        ],
    );
    assert!(out.contains("break-glass recorded"), "{out}");
    w.wait_for_key("svc-bg", "Inactive").await;
    // Approvers may not use break-glass.
    let (status, _) = w
        .api(
            &w.bob,
            "POST",
            &format!("/v1/cases/{case}/break-glass"),
            Some(json!({"reason": "r", "incident": "i"})),
        )
        .await;
    assert_eq!(status, 403);
    let story = w.wait_for_events(&case, "bypass_review_overdue", 2).await;
    assert_eq!(story["lifecycle"]["bypasses"][0]["escalations"], 2);
    assert_eq!(story["lifecycle"]["bypasses"][0]["review"], "pending");
    // Who used it cannot review it.
    let (status, _) = w
        .api(
            &w.eve,
            "POST",
            &format!("/v1/cases/{case}/review"),
            Some(json!({"verdict": "upheld", "rationale": "fine"})),
        )
        .await;
    assert_eq!(status, 403);
    w.cli(
        &w.bob,
        &[
            "case",
            "review",
            &case,
            "--verdict",
            "upheld",
            "--rationale",
            "the attacker's calls stopped with it",
        ],
    );
    let story = w.case(&case).await;
    assert_eq!(story["lifecycle"]["bypasses"][0]["review"], "upheld");
    assert_eq!(story["lifecycle"]["bypasses"][0]["reviewer"], "bob");
    let used = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "break_glass_used")
        .unwrap();
    assert_eq!(used["actor"], "user:eve");
    assert_eq!(used["body"]["incident"], "INC-4711");
}

/// Seed: a reviewer overrides an automated deny; the case shows why and who accepted the
/// residual risk.
async fn an_automated_deny_is_overridden(w: &World) {
    let outcome = w
        .open(
            &w.prowler,
            World::finding(
                "svc-low",
                "iam_user_accesskey_unused",
                1.0,
                "unused 500 days",
            ),
        )
        .await;
    assert_eq!(outcome["case_state"], "denied");
    let case = id(&outcome);
    w.cli(
        &w.root,
        &[
            "case",
            "override",
            &case,
            "--rationale",
            "the low rating is stale; the key is unused",
            "--risk-owner",
            "rita",
        ],
    );
    assert_eq!(
        w.key("svc-low").await,
        "Active",
        "nothing on the admin's word"
    );
    let refused = w
        .site
        .run_as(&w.server, &w.bob, &["approve", &case, "--rationale", "ok"]);
    assert!(!refused.status.success());
    w.cli(
        &w.rita,
        &[
            "approve",
            &case,
            "--rationale",
            "I accept the residual risk of disabling it",
        ],
    );
    w.wait_for_key("svc-low", "Inactive").await;
    let story = w.wait_for_state(&case, "remediated").await;
    let decisions = story["lifecycle"]["decisions"].as_array().unwrap();
    assert_eq!(decisions[0]["decision"]["tier"]["tier"], "deny");
    assert_eq!(decisions[0]["superseded"], true);
    assert_eq!(decisions[1]["kind"], "override_requested");
    let events = story["events"].as_array().unwrap();
    let asked = events
        .iter()
        .find(|e| e["kind"] == "override_requested")
        .unwrap();
    assert_eq!(asked["actor"], "user:root");
    assert_eq!(asked["body"]["risk_owner"], "rita");
    let accepted = events
        .iter()
        .find(|e| e["kind"] == "approval_granted")
        .unwrap();
    assert_eq!(accepted["actor"], "user:rita");
    let shown = w.cli(&w.root, &["case", "show", &case]);
    assert!(shown.contains("OVERRIDE by root"), "{shown}");
}

/// Seed G2: a weak finding cannot block a strong one; the strong one's decision is applied.
async fn a_weak_finding_cannot_block_a_strong_one(w: &World) {
    let weak = w
        .open(
            &w.hunch,
            World::finding("svc-comp", "credential_compromise", 0.4, "maybe leaked"),
        )
        .await;
    assert_eq!(weak["case_state"], "awaiting_approval");
    let strong = w
        .open(
            &w.prowler,
            World::finding(
                "svc-comp",
                "credential_compromise",
                0.99,
                "used from a botnet",
            ),
        )
        .await;
    assert_eq!(strong["case_id"], weak["case_id"]);
    assert_eq!(strong["redecided"], true, "{strong}");
    w.wait_for_key("svc-comp", "Inactive").await;
    let story = w.wait_for_state(&id(&weak), "remediated").await;
    let decisions = story["lifecycle"]["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["superseded"], true);
    assert_eq!(decisions[1]["decision"]["tier"]["tier"], "auto");
}

async fn the_case_lifecycle_end_to_end(db: TestDb) {
    let w = World::new(db).await;
    exception_window_then_approval_then_a_passing_scan(&w).await;
    a_compromise_freezes_pending_approvals_until_unfrozen(&w).await;
    a_rotation_exception_is_recorded_in_the_case(&w).await;
    a_dormant_key_without_an_owner_goes_to_a_human(&w).await;
    a_break_glass_is_applied_escalated_and_reviewed(&w).await;
    an_automated_deny_is_overridden(&w).await;
    a_weak_finding_cannot_block_a_strong_one(&w).await;
    // Every notification was signed as Standard Webhooks says (the reference package verified
    // it), retried after a failure, and delivered; the endpoint that answered 410 was sent
    // nothing more.
    let records = w
        .receiver
        .wait_for(&[
            "approval_due",
            "escalation",
            "break_glass_used",
            "case_closed",
        ])
        .await;
    assert!(
        records.iter().all(|r| r.get("bad").is_none()),
        "a notification did not verify: {records:?}"
    );
    for delivered in records.iter().filter(|r| r["answer"] == 204) {
        assert!(
            records
                .iter()
                .any(|r| r["answer"] == 503 && r["id"] == delivered["id"]),
            "{delivered} was not retried after its first failure"
        );
    }
    let gone = records.iter().filter(|r| r["path"] == "gone").count();
    assert_eq!(
        gone, 1,
        "the 410 endpoint was disabled after one answer: {records:?}"
    );
    // The ledger holds: every projection is what the ledger implies.
    let output = w.site.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_case_lifecycle() {
    the_case_lifecycle_end_to_end(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_case_lifecycle() {
    the_case_lifecycle_end_to_end(TestDb::postgres().unwrap()).await;
}
