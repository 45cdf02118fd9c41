//! End to end, an exposed IAM access key rotated with cut-over through a real `writ serve`,
//! against moto, on SQLite and PostgreSQL: the new key goes to the Secrets Manager secret its
//! consumer reads; a consumer process that re-reads its key keeps working throughout and moves
//! to the new key; the old key ends inactive, then deleted after the grace period; the case
//! links the old key id, the new key id (never a secret) and the rotation record, and cannot
//! close before. A consumer that never re-reads its key never uses the new one: the rotation
//! escalates to a human and the old key stays active.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, text};
use serde_json::{Value, json};
use writ_connector_aws::Service;
use writ_testkit::{MotoServer, TestDb};

/// A consumer process (Python, boto3); killed on drop.
struct Consumer {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Consumer {
    fn start(site: &Site, moto: &str, secret: &str, name: &str, reread: bool) -> Consumer {
        let log = site.path(&format!("{name}.log"));
        let python = writ_testkit::venv_program("python").unwrap();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/key_consumer.py");
        let mut command = std::process::Command::new(python);
        command
            .arg(script)
            .args([moto, secret, log.to_str().unwrap()]);
        if reread {
            command.arg("--reread");
        }
        Consumer {
            child: command.spawn().unwrap(),
            log,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    async fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.lines().iter().any(|l| l == what) {
            assert!(
                Instant::now() < deadline,
                "the consumer never logged {what:?}: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct World {
    site: Site,
    server: Server,
    moto: MotoServer,
    http: reqwest::Client,
    root: String,
    owner: String,
    scanner: String,
}

/// The access key ids and statuses of `user`, oldest first.
async fn keys(moto: &str, user: &str) -> Vec<(String, String)> {
    let body = common::moto_client(moto)
        .query(Service::Iam, "ListAccessKeys", &[("UserName", user)])
        .await
        .unwrap();
    body.split("<member>")
        .skip(1)
        .map(|m| {
            let field = |name: &str| {
                m.split(&format!("<{name}>"))
                    .nth(1)
                    .and_then(|r| r.split(&format!("</{name}>")).next())
                    .unwrap()
                    .to_owned()
            };
            (field("AccessKeyId"), field("Status"))
        })
        .collect()
}

impl World {
    async fn new(db: TestDb) -> World {
        let moto = tokio::task::spawn_blocking(MotoServer::start)
            .await
            .unwrap()
            .unwrap();
        let client = common::moto_client(&moto.url());
        for user in ["svc-app", "svc-stale", "svc-retired"] {
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
            client
                .json(
                    Service::SecretsManager,
                    "secretsmanager.CreateSecret",
                    &json!({
                        "Name": format!("apps/{user}/aws"),
                        "SecretString": json!({
                            "AccessKeyId": field("AccessKeyId"),
                            "SecretAccessKey": field("SecretAccessKey"),
                            "region": "us-east-1",
                        }).to_string(),
                    }),
                )
                .await
                .unwrap();
        }
        let site = Site::new(
            db,
            &format!(
                "[writeback]\ninterval_ms = 150\nrotation_cutover_seconds = 6\nrotation_grace_seconds = 5\n\n\
                 [[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{url}\"\nregion = \"us-east-1\"\n\
                 rotation_sink = \"secrets\"\nrotation_secret_name = \"apps/{{identity}}/aws\"\n\n\
                 [[targets]]\nname = \"secrets\"\nkind = \"aws_secrets\"\nendpoint = \"{url}\"\nregion = \"us-east-1\"\n",
                url = moto.url()
            ),
        );
        std::fs::write(
            site.path("owners.csv"),
            "pattern,owner_team,criticality\naws:123456789012/svc-*,payments,high\n",
        )
        .unwrap();
        let root = site.bootstrap_admin("root");
        let mut server = site.spawn_serve(&common::aws_env(Some(&moto.url())));
        server.wait_ready().await;
        let owner = site.add_principal(
            &server,
            &root,
            &[
                "pat",
                "--team",
                "payments",
                "--role",
                "approver",
                "--role",
                "requester",
            ],
        );
        let scanner = site.add_principal(
            &server,
            &root,
            &[
                "gitleaks-ci",
                "--service",
                "--role",
                "source",
                "--trust",
                "high",
            ],
        );
        for args in [&["sync", "aws"][..], &["inventory", "import", "owners.csv"]] {
            let output = site.run_as(&server, &root, args);
            assert!(output.status.success(), "{args:?}: {}", text(&output));
        }
        World {
            site,
            server,
            moto,
            http: reqwest::Client::new(),
            root,
            owner,
            scanner,
        }
    }

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

    /// Reports `user`'s key as leaked; the owner approves its rotation. Returns the case id.
    async fn leak_and_approve(&self, user: &str) -> String {
        let (status, answer) = self
            .api(
                &self.scanner,
                "POST",
                "/v1/findings",
                Some(json!({
                    "finding_type": "leaked_secret",
                    "severity": "high",
                    "confidence": 0.97,
                    "subject": {"system": "aws:123456789012", "external_id": format!("{user}/AccessKey1")},
                    "title": format!("{user}'s access key in a public repository"),
                })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let case = answer["accepted"][0]["outcome"]["case_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned();
        let (status, vote) = self
            .api(
                &self.owner,
                "POST",
                &format!("/v1/cases/{case}/approvals"),
                Some(json!({"verdict": "approve", "rationale": "rotate it, consumers read the secret"})),
            )
            .await;
        assert_eq!(status, 200, "{vote}");
        case
    }

    async fn story(&self, case: &str) -> Value {
        let (status, story) = self
            .api(&self.root, "GET", &format!("/v1/cases/{case}"), None)
            .await;
        assert_eq!(status, 200, "{story}");
        story
    }

    /// Reads the case until its job's rotation record reaches `step`.
    async fn wait_for_step(&self, case: &str, step: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let story = self.story(case).await;
            let steps: Vec<String> = story["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| {
                    e["body"]["job"]["rotation"]["step"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            if steps.iter().any(|s| s == step) {
                return story;
            }
            let reached = steps.last();
            assert!(
                Instant::now() < deadline,
                "case {case}'s rotation did not reach {step} (at {reached:?}): {story}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn record(story: &Value) -> Value {
    story["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|e| {
            let rotation = &e["body"]["job"]["rotation"];
            rotation.is_object().then(|| rotation.clone())
        })
        .unwrap()
}

/// Seed: an exposed IAM access key is rotated without breaking its consumer.
async fn exposed_key_rotates_with_cut_over(w: World) {
    let moto = w.moto.url();
    let before = keys(&moto, "svc-app").await;
    assert_eq!(before.len(), 1);
    let old = before[0].0.clone();
    let consumer = Consumer::start(&w.site, &moto, "apps/svc-app/aws", "app", true);
    consumer.wait_for(&format!("ok {old}")).await;

    let case = w.leak_and_approve("svc-app").await;
    let story = w.wait_for_step(&case, "cut_over").await;
    let rotation = record(&story);
    let new = rotation["new_key_id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotation["old_key_id"], old);
    assert_eq!(rotation["secret_name"], "apps/svc-app/aws");
    consumer.wait_for(&format!("ok {new}")).await;

    // Offboarding the old key: its consumer used it minutes ago, so only the rotation's
    // consumer check can show the dependants moved; without it the request is refused.
    let offboard = |cutover: Option<&str>| {
        let mut body = json!({
            "kind": "offboard", "system": "aws:123456789012",
            "principal": "svc-app/AccessKey1", "ticket": "CHG-2002",
            "justification": "the leaked key goes for good",
        });
        if let Some(case) = cutover {
            body["cutover_case"] = json!(case);
        }
        body
    };
    let (status, refused) = w
        .api(&w.owner, "POST", "/v1/requests", Some(offboard(None)))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("dependants still use"),
        "{refused}"
    );
    let (status, asked) = w
        .api(
            &w.owner,
            "POST",
            "/v1/requests",
            Some(offboard(Some(&case))),
        )
        .await;
    assert_eq!(status, 202, "{asked}");
    let offboarding = asked["case_id"].as_str().unwrap().to_owned();
    let story = w.story(&offboarding).await;
    let check = &story["events"][0]["body"]["request"]["dependants"];
    assert_eq!(check["by"], "rotation", "{story}");
    assert_eq!(check["case"], case.as_str());
    assert_eq!(check["new_key_id"], new);
    // The slot is pinned to the key it names now: the old one, whatever the rotation does.
    assert_eq!(
        story["events"][0]["body"]["request"]["spec"]["principal"],
        format!("svc-app/{old}")
    );
    // (Left waiting: the rotation deletes the old key itself after its grace period.)

    w.server
        .wait_for_case_state(&w.root, &case, "remediated", Duration::from_secs(30))
        .await;
    let statuses = keys(&moto, "svc-app").await;
    assert!(
        statuses.contains(&(old.clone(), "Inactive".to_owned())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(new.clone(), "Active".to_owned())),
        "{statuses:?}"
    );
    // Not closable until the old key is gone and the record complete.
    let (status, refused) = w
        .api(
            &w.owner,
            "POST",
            &format!("/v1/cases/{case}/close"),
            Some(json!({"rationale": "rotated"})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("rotation is not complete")
    );

    // After the grace period the old key is deleted.
    let story = w.wait_for_step(&case, "old_deleted").await;
    let statuses = keys(&moto, "svc-app").await;
    assert_eq!(statuses, vec![(new.clone(), "Active".to_owned())]);
    let rotation = record(&story);
    assert_eq!(rotation["old_key_id"], old);
    assert_eq!(rotation["new_key_id"], new);
    assert!(
        rotation["secret_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let (status, closed) = w
        .api(
            &w.owner,
            "POST",
            &format!("/v1/cases/{case}/close"),
            Some(json!({"rationale": "rotated, consumers on the new key, old key deleted"})),
        )
        .await;
    assert_eq!(status, 200, "{closed}");

    // The consumer never failed, and moved to the new key.
    let lines = consumer.lines();
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{lines:?}");
    // Neither the ledger nor the server's output holds the new secret.
    let secret = common::moto_client(&moto)
        .json(
            Service::SecretsManager,
            "secretsmanager.GetSecretValue",
            &json!({"SecretId": "apps/svc-app/aws"}),
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(value["AccessKeyId"], new);
    assert_eq!(value["region"], "us-east-1", "other fields kept");
    let new_secret = value["SecretAccessKey"].as_str().unwrap();
    let (_, export) = w
        .api(&w.root, "GET", &format!("/v1/cases/{case}"), None)
        .await;
    assert!(!export.to_string().contains(new_secret));
    let log = std::fs::read_to_string(w.site.path("serve.log")).unwrap_or_default();
    assert!(!log.contains(new_secret));
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = w.site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

/// Seed: a consumer that never cuts over is escalated to a human, not broken.
async fn a_consumer_that_never_cuts_over_escalates(w: World) {
    let moto = w.moto.url();
    let old = keys(&moto, "svc-stale").await[0].0.clone();
    let consumer = Consumer::start(&w.site, &moto, "apps/svc-stale/aws", "stale", false);
    consumer.wait_for(&format!("ok {old}")).await;
    let case = w.leak_and_approve("svc-stale").await;
    let story = w
        .server
        .wait_for_case_state(&w.root, &case, "write_back_failed", Duration::from_secs(40))
        .await;
    let rotation = record(&story);
    assert_eq!(rotation["step"], "escalated", "{story}");
    let failed = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == "write_back_failed")
        .unwrap();
    assert!(
        failed["body"]["error"]
            .as_str()
            .unwrap()
            .contains("never used the new key"),
        "{failed}"
    );
    // The old key still works, and is still active.
    let statuses = keys(&moto, "svc-stale").await;
    assert!(
        statuses.contains(&(old.clone(), "Active".to_owned())),
        "{statuses:?}"
    );
    let lines = consumer.lines();
    assert!(lines.iter().all(|l| l == &format!("ok {old}")), "{lines:?}");
}

/// Seed: offboarding a service principal links the change ticket, the evidence that its
/// dependants no longer use it, and each step of its removal, in one case; a principal still in
/// use is refused until its dependants cut over.
async fn offboarding_checks_dependants_then_removes(w: World) {
    let moto = w.moto.url();
    // Still in use by its consumer: refused, nothing recorded.
    let stale = keys(&moto, "svc-stale").await[0].0.clone();
    let consumer = Consumer::start(&w.site, &moto, "apps/svc-stale/aws", "stale", false);
    consumer.wait_for(&format!("ok {stale}")).await;
    let (status, refused) = w
        .api(
            &w.owner,
            "POST",
            "/v1/requests",
            Some(json!({
                "kind": "offboard", "system": "aws:123456789012",
                "principal": "svc-stale/AccessKey1", "ticket": "CHG-2001",
                "justification": "retire the batch account",
            })),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    // No ticket: refused, naming it.
    let (status, problem) = w
        .api(
            &w.owner,
            "POST",
            "/v1/requests",
            Some(json!({
                "kind": "offboard", "system": "aws:123456789012",
                "principal": "svc-retired/AccessKey1", "justification": "retired",
            })),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "ticket", "{problem}");

    // Never used: its owner team approves, the key is deleted, read back.
    let retired = keys(&moto, "svc-retired").await[0].0.clone();
    let output = w.site.run_as(
        &w.server,
        &w.owner,
        &[
            "request",
            "offboard",
            "--system",
            "aws:123456789012",
            "--principal",
            "svc-retired/AccessKey1",
            "--ticket",
            "CHG-2001",
            "--justification",
            "the nightly batch was retired",
        ],
    );
    // The requester is an approver of the owner team here, and never approves its own
    // request: a second payments approver does.
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("waits for \"1 of owner_team\""), "{said}");
    let case = said
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let second = w.site.add_principal(
        &w.server,
        &w.root,
        &["quinn", "--team", "payments", "--role", "approver"],
    );
    let (status, refused) = w
        .api(
            &w.owner,
            "POST",
            &format!("/v1/cases/{case}/approvals"),
            Some(json!({"verdict": "approve", "rationale": "mine"})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    let (status, approved) = w
        .api(
            &second,
            "POST",
            &format!("/v1/cases/{case}/approvals"),
            Some(json!({"verdict": "approve", "rationale": "CHG-2001 approved by the CAB"})),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    let story = w
        .server
        .wait_for_case_state(&w.root, &case, "remediated", Duration::from_secs(30))
        .await;
    assert!(keys(&moto, "svc-retired").await.is_empty(), "deleted");
    let events = story["events"].as_array().unwrap();
    let request = &events[0]["body"]["request"];
    assert_eq!(request["spec"]["ticket"], "CHG-2001");
    assert_eq!(request["change"]["action"], "delete");
    assert_eq!(request["dependants"]["by"], "quiet", "{request}");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "write_back_intent",
        "write_back_applied",
        "write_back_verified",
    ] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let intent = events
        .iter()
        .find(|e| e["kind"] == "write_back_intent")
        .unwrap();
    assert_eq!(
        intent["body"]["plan"]["pre_image"]["attributes"]["access_key_id"],
        retired
    );
}

/// Seed: a requested IAM service account is created only after its owner team approves (never
/// by its requester), its first access key delivered straight into the Secrets Manager secret
/// its consumers read (never to writ, never in the ledger), recorded in the inventory with its
/// owner, and turned off by itself at its expiry (every key inactive, read back).
async fn new_iam_service_account_gets_its_key_in_secrets_manager(w: World) {
    let moto = w.moto.url();
    let quinn = w.site.add_principal(
        &w.server,
        &w.root,
        &["quinn", "--team", "payments", "--role", "approver"],
    );
    let expires = (writ_core::Clock::now(&writ_core::SystemClock)
        + jiff::SignedDuration::from_secs(12))
    .to_string();
    let ask = |name: &str| {
        json!({
            "kind": "new_service_account", "system": "aws:123456789012", "name": name,
            "owner_team": "payments", "purpose": "settlement reports",
            "expires_at": expires, "ticket": "CHG-2207",
        })
    };
    // A key slot is not an account the target can create: refused, naming the field.
    let (status, problem) = w
        .api(
            &w.owner,
            "POST",
            "/v1/requests",
            Some(ask("svc-app/AccessKey9")),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");

    let (status, answer) = w
        .api(&w.owner, "POST", "/v1/requests", Some(ask("svc-reports")))
        .await;
    assert_eq!(status, 202, "{answer}");
    let case = answer["case_id"].as_str().unwrap().to_owned();
    let iam = common::moto_client(&moto);
    assert!(
        iam.query(Service::Iam, "GetUser", &[("UserName", "svc-reports")])
            .await
            .is_err(),
        "nothing created before approval"
    );
    let approvals = format!("/v1/cases/{case}/approvals");
    let vote = json!({"verdict": "approve", "rationale": "matches CHG-2207"});
    let (status, _) = w
        .api(&w.owner, "POST", &approvals, Some(vote.clone()))
        .await;
    assert_eq!(status, 403, "the requester never approves its own request");
    let (status, approved) = w.api(&quinn, "POST", &approvals, Some(vote)).await;
    assert_eq!(status, 200, "{approved}");
    w.server
        .wait_for_case_state(&w.root, &case, "remediated", Duration::from_secs(30))
        .await;
    let created = keys(&moto, "svc-reports").await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].1, "Active");
    let secret = iam
        .json(
            Service::SecretsManager,
            "secretsmanager.GetSecretValue",
            &json!({"SecretId": "apps/svc-reports/aws"}),
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(value["AccessKeyId"], created[0].0.as_str());
    let secret_key = value["SecretAccessKey"].as_str().unwrap().to_owned();
    let (_, identities) = w.api(&w.root, "GET", "/v1/identities", None).await;
    let account = identities
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["external_id"] == "svc-reports")
        .unwrap_or_else(|| panic!("not in the inventory: {identities}"));
    assert_eq!(account["owner_team"], "payments", "{account}");

    // At its expiry every key is turned off by itself, read back and recorded.
    let story = w
        .server
        .wait_for_case_state(&w.root, &case, "closed", Duration::from_secs(40))
        .await;
    assert_eq!(keys(&moto, "svc-reports").await[0].1, "Inactive");
    assert!(
        !story.to_string().contains(&secret_key),
        "the secret never reaches the case"
    );
    let output = w.site.run(&["audit", "export", "--all", "-o", "all.json"]);
    assert!(output.status.success(), "{}", text(&output));
    let exported = std::fs::read_to_string(w.site.path("all.json")).unwrap();
    assert!(!exported.contains(&secret_key), "nor the ledger");
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = w.site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

async fn harness(db: TestDb) -> World {
    World::new(db).await
}

writ_testkit::backend_suite!(
    exposed_key_rotates_with_cut_over,
    a_consumer_that_never_cuts_over_escalates,
    offboarding_checks_dependants_then_removes,
    new_iam_service_account_gets_its_key_in_secrets_manager,
);
