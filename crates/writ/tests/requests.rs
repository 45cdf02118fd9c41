//! End to end, requested changes through the HTTP API of a real `writ serve`, on SQLite and
//! PostgreSQL, against real targets started by the test: a PostgreSQL cluster (new service
//! accounts) and the real `oidc-provider` from npm (OAuth clients, an AI agent's tools).
//! Nothing is created or changed before the approvals policy asks for; what a request grants
//! for a while ends by itself, read back and recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, Site, text};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use writ_connector_oauth::{Registered, register};
use writ_testkit::{INITIAL_ACCESS_TOKEN, OidcProvider, PgCluster, TestDb};

struct World {
    site: Site,
    server: Server,
    target: PgCluster,
    idp: OidcProvider,
    http: reqwest::Client,
    root: String,
    /// Asks for changes; also an approver of team data (so the test can show a requester's
    /// vote on its own request refused).
    rhea: String,
    /// Approver, team data (owns the reporting app and the new account).
    dana: String,
    /// Approver, team security.
    sam: String,
    /// A findings source (an agent-behaviour detector).
    detector: String,
    reporting: Registered,
    bot: Registered,
}

async fn client(issuer: &str, name: &str) -> Registered {
    register(
        issuer,
        &SecretString::from(INITIAL_ACCESS_TOKEN),
        &json!({
            "client_name": name,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "api:read",
        }),
    )
    .await
    .unwrap()
}

impl World {
    async fn new(db: TestDb) -> World {
        let target = tokio::task::spawn_blocking(PgCluster::start)
            .await
            .unwrap()
            .unwrap();
        let idp = tokio::task::spawn_blocking(OidcProvider::start)
            .await
            .unwrap()
            .unwrap();
        let reporting = client(&idp.issuer(), "reporting").await;
        let bot = client(&idp.issuer(), "support-bot").await;
        let site = Site::new(
            db,
            &format!(
                "[writeback]\ninterval_ms = 150\n\n\
                 [[targets]]\nname = \"pg-main\"\nkind = \"postgres\"\nsystem = \"pg-main\"\nurl = \"{}\"\n\n\
                 [[targets]]\nname = \"idp\"\nkind = \"oauth\"\nissuer = \"{}\"\n\
                 registrations_file = \"registrations.json\"\nagents = [\"{}\"]\n",
                target.url("postgres"),
                idp.issuer(),
                bot.client_id
            ),
        );
        let registrations = site.path("registrations.json");
        std::fs::write(
            &registrations,
            json!({
                reporting.client_id.clone(): reporting.registration_access_token.expose_secret(),
                bot.client_id.clone(): bot.registration_access_token.expose_secret(),
            })
            .to_string(),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&registrations, std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        std::fs::write(
            site.path("owners.csv"),
            format!(
                "pattern,owner_team,criticality\nidp/{},data,medium\nidp/{},support,high\n",
                reporting.client_id, bot.client_id
            ),
        )
        .unwrap();
        let root = site.bootstrap_admin("root");
        let mut server = site.spawn_serve(&[]);
        server.wait_ready().await;
        let add = |args: &[&str]| site.add_principal(&server, &root, args);
        let rhea = add(&[
            "rhea",
            "--team",
            "data",
            "--role",
            "requester",
            "--role",
            "approver",
        ]);
        let dana = add(&["dana", "--team", "data", "--role", "approver"]);
        let sam = add(&["sam", "--team", "security", "--role", "approver"]);
        let detector = add(&[
            "agent-watch",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ]);
        for args in [
            &["sync", "pg-main"][..],
            &["sync", "idp"],
            &["inventory", "import", "owners.csv"],
        ] {
            let output = site.run_as(&server, &root, args);
            assert!(output.status.success(), "{args:?}: {}", text(&output));
        }
        World {
            site,
            server,
            target,
            idp,
            http: reqwest::Client::new(),
            root,
            rhea,
            dana,
            sam,
            detector,
            reporting,
            bot,
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

    async fn request(&self, body: Value) -> (u16, Value) {
        self.api(&self.rhea, "POST", "/v1/requests", Some(body))
            .await
    }

    async fn vote(&self, token: &str, case: &str, verdict: &str) -> (u16, Value) {
        self.api(
            token,
            "POST",
            &format!("/v1/cases/{case}/approvals"),
            Some(json!({"verdict": verdict, "rationale": "checked against the ticket"})),
        )
        .await
    }

    async fn wait_for_state(&self, case: &str, want: &str) -> Value {
        self.server
            .wait_for_case_state(&self.root, case, want, Duration::from_secs(30))
            .await
    }

    /// Reads case `id` until `count` of its events are of `kind`.
    async fn wait_for_events(&self, id: &str, kind: &str, count: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, story) = self
                .api(&self.root, "GET", &format!("/v1/cases/{id}"), None)
                .await;
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

    /// Whether role `name` exists in the target cluster, and whether it may log in.
    async fn role(&self, name: &str) -> Option<bool> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.target.url("postgres"))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap()
    }

    /// A client-credentials grant for `scope`: the token, or the server's error code.
    async fn token(&self, client: &Registered, scope: &str) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/token", self.idp.issuer()))
            .basic_auth(
                &client.client_id,
                Some(client.client_secret.expose_secret()),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .await
            .unwrap();
        let ok = response.status().is_success();
        let body: Value = response.json().await.unwrap();
        if ok {
            Ok(body["access_token"].as_str().unwrap().to_owned())
        } else {
            Err(body["error"].as_str().unwrap_or("?").to_owned())
        }
    }
}

fn kinds(story: &Value) -> Vec<String> {
    story["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {story}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn in_seconds(seconds: i64) -> String {
    (writ_core::Clock::now(&writ_core::SystemClock) + jiff::SignedDuration::from_secs(seconds))
        .to_string()
}

/// Seed: a new service account with owner, purpose and expiry is created only after its owner
/// team approves (never by the requester), recorded in the inventory with its owner, and
/// disabled by itself at its expiry, read back and recorded.
async fn new_service_account_is_created_after_approval_and_disabled_at_expiry(w: World) {
    // A field missing: refused, naming it; nothing recorded.
    let (status, problem) = w
        .request(json!({
            "kind": "new_service_account", "system": "pg-main", "name": "svc_reports",
            "purpose": "nightly reports", "expires_at": in_seconds(60),
        }))
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "owner_team", "{problem}");
    // A target writ does not manage: not found, naming the field.
    let (status, problem) = w
        .request(json!({
            "kind": "new_service_account", "system": "nowhere", "name": "svc_reports",
            "owner_team": "data", "purpose": "nightly reports", "expires_at": in_seconds(60),
        }))
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "system", "{problem}");
    // An expiry past the policy's year: refused, naming it.
    let (status, problem) = w
        .request(json!({
            "kind": "new_service_account", "system": "pg-main", "name": "svc_reports",
            "owner_team": "data", "purpose": "nightly reports",
            "expires_at": in_seconds(400 * 24 * 3600),
        }))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "expires_at", "{problem}");

    // Through the CLI client: waits for the owner team.
    let output = w.site.run_as(
        &w.server,
        &w.rhea,
        &[
            "request",
            "new-service-account",
            "--system",
            "pg-main",
            "--name",
            "svc_reports",
            "--owner-team",
            "data",
            "--purpose",
            "nightly reports",
            "--expires",
            &in_seconds(8),
            "--ticket",
            "CHG-1042",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("waits for \"1 of owner_team\""), "{said}");
    let case = said
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert_eq!(w.role("svc_reports").await, None, "nothing before approval");

    // The requester never counts, even as an approver of the owner team.
    let (status, refused) = w.vote(&w.rhea, &case, "approve").await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("requested the change"),
        "{refused}"
    );
    // A second request for the same account while this one is open: refused.
    let (status, _) = w
        .request(json!({
            "kind": "new_service_account", "system": "pg-main", "name": "svc_reports",
            "owner_team": "data", "purpose": "again", "expires_at": in_seconds(60),
        }))
        .await;
    assert_eq!(status, 409);

    let (status, approved) = w.vote(&w.dana, &case, "approve").await;
    assert_eq!(status, 200, "{approved}");
    w.wait_for_state(&case, "remediated").await;
    assert_eq!(
        w.role("svc_reports").await,
        Some(true),
        "created, able to log in"
    );
    let (_, identities) = w.api(&w.root, "GET", "/v1/identities", None).await;
    let account = identities
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "pg-main" && i["external_id"] == "svc_reports")
        .unwrap_or_else(|| panic!("not in the inventory: {identities}"));
    assert_eq!(account["owner_team"], "data", "{account}");

    // At its expiry it is disabled by itself, read back and recorded.
    let story = w.wait_for_events(&case, "write_back_verified", 2).await;
    let seen = kinds(&story);
    assert!(seen.contains(&"access_expired".to_owned()), "{seen:?}");
    // The request ran its course: its case closed with the read-back as evidence (the case
    // row and the events are read apart, so wait for the row too).
    let story = w.wait_for_state(&case, "closed").await;
    assert_eq!(
        story["lifecycle"]["compliance"]["by"], "request_ended",
        "{story}"
    );
    assert_eq!(
        w.role("svc_reports").await,
        Some(false),
        "disabled at expiry"
    );
    let request = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "request_submitted")
        .unwrap();
    assert_eq!(request["actor"], "user:rhea", "{request}");
    assert_eq!(request["body"]["request"]["spec"]["ticket"], "CHG-1042");

    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = w.site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

/// Seed: an OAuth client asking for a broader scope waits for security; a narrower one for
/// its owner; the scopes in the authorization server change only after approval, and a token
/// for a removed scope is refused.
async fn oauth_scope_changes_wait_for_the_right_approvers(w: World) {
    let reporting = w.reporting.client_id.clone();
    let (status, widen) = w
        .request(json!({
            "kind": "oauth_scope_change", "system": "idp", "client_id": reporting,
            "scopes": ["api:read", "api:write"], "justification": "reports are written back",
        }))
        .await;
    assert_eq!(status, 202, "{widen}");
    assert_eq!(widen["rule"], "1 of team:security", "{widen}");
    assert_eq!(widen["scopes_added"], json!(["api:write"]));
    let case = widen["case_id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.token(&w.reporting, "api:write").await,
        Err("invalid_scope".into()),
        "unchanged before approval"
    );
    // The owner team is not security.
    let (status, refused) = w.vote(&w.dana, &case, "approve").await;
    assert_eq!(status, 403, "{refused}");
    let (status, _) = w.vote(&w.sam, &case, "approve").await;
    assert_eq!(status, 200);
    w.wait_for_state(&case, "remediated").await;
    assert!(w.token(&w.reporting, "api:write").await.is_ok());

    let (status, narrow) = w
        .request(json!({
            "kind": "oauth_scope_change", "system": "idp", "client_id": reporting,
            "scopes": ["api:read"], "justification": "writing is over",
        }))
        .await;
    // The widening's case is still open (remediated, not closed): one request per kind and
    // object at a time. Close it with the reviewer's word, then narrow.
    assert_eq!(status, 409, "{narrow}");
    let (status, closed) = w
        .api(
            &w.dana,
            "POST",
            &format!("/v1/cases/{case}/close"),
            Some(json!({"rationale": "widening done and checked"})),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    let (status, narrow) = w
        .request(json!({
            "kind": "oauth_scope_change", "system": "idp", "client_id": reporting,
            "scopes": ["api:read"], "justification": "writing is over",
        }))
        .await;
    assert_eq!(status, 202, "{narrow}");
    assert_eq!(narrow["rule"], "1 of owner_team", "{narrow}");
    assert_eq!(narrow["scopes_removed"], json!(["api:write"]));
    let case = narrow["case_id"].as_str().unwrap().to_owned();
    assert!(
        w.token(&w.reporting, "api:write").await.is_ok(),
        "unchanged yet"
    );
    let (status, _) = w.vote(&w.dana, &case, "approve").await;
    assert_eq!(status, 200);
    w.wait_for_state(&case, "remediated").await;
    assert_eq!(
        w.token(&w.reporting, "api:write").await,
        Err("invalid_scope".into()),
        "a token for the removed scope is refused"
    );
    assert!(w.token(&w.reporting, "api:read").await.is_ok());
}

/// Seed: an agent gets a tool (scope) for a short time and loses it by itself when the time is
/// up, read back from the authorization server.
async fn agent_tool_access_ends_by_itself(w: World) {
    let bot = w.bot.client_id.clone();
    let (status, problem) = w
        .request(json!({
            "kind": "agent_tool_access", "system": "idp", "agent": bot,
            "scopes": ["tools:search"], "duration_seconds": 48 * 3600,
            "justification": "triage INC-7",
        }))
        .await;
    assert_eq!(status, 422, "longer than the policy's day: {problem}");
    assert_eq!(problem["errors"][0]["field"], "duration_seconds");
    let output = w.site.run_as(
        &w.server,
        &w.rhea,
        &[
            "request",
            "agent-access",
            "--system",
            "idp",
            "--agent",
            &bot,
            "--scope",
            "tools:search",
            "--duration",
            "5s",
            "--justification",
            "triage INC-7",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("waits for \"1 of team:security\""), "{said}");
    let case = said
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert_eq!(
        w.token(&w.bot, "tools:search").await,
        Err("invalid_scope".into())
    );
    let (status, _) = w.vote(&w.sam, &case, "approve").await;
    assert_eq!(status, 200);
    w.wait_for_state(&case, "remediated").await;
    assert!(w.token(&w.bot, "tools:search").await.is_ok(), "granted");
    let story = w.wait_for_events(&case, "write_back_verified", 2).await;
    assert!(kinds(&story).contains(&"access_expired".to_owned()));
    assert_eq!(
        w.token(&w.bot, "tools:search").await,
        Err("invalid_scope".into()),
        "taken away when the time was up"
    );
    assert!(w.token(&w.bot, "api:read").await.is_ok(), "the rest stays");
    w.wait_for_state(&case, "closed").await;

    // Someone gives the tool back outside writ: the next sync reads the verified reduction
    // back, finds that it no longer holds, and raises drift for a person.
    let outside =
        writ_connector_oauth::OauthClients::new(writ_connector_oauth::OauthClientsConfig {
            system: "idp".into(),
            issuer: w.idp.issuer(),
            registrations: writ_connector_oauth::OauthClientsConfig::read_registrations(
                &w.site.path("registrations.json"),
            )
            .unwrap(),
            agents: [bot.clone()].into(),
        })
        .unwrap();
    {
        use writ_connectors::Connector as _;
        let grant = writ_core::change::Action::Grant {
            scopes: vec!["tools:search".into()],
        };
        let plan = outside.plan(&bot, &grant).await.unwrap();
        outside.apply(&plan, "by-hand").await.unwrap();
    }
    assert!(
        w.token(&w.bot, "tools:search").await.is_ok(),
        "back, outside writ"
    );
    let output = w.site.run_as(&w.server, &w.root, &["sync", "idp"]);
    assert!(output.status.success(), "{}", text(&output));
    let (_, cases) = w.api(&w.root, "GET", "/v1/cases?limit=1000", None).await;
    let drift = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["finding_type"] == "drift_regranted" && c["subject"] == format!("idp/{bot}"))
        .unwrap_or_else(|| panic!("no drift case: {cases}"))
        .clone();
    assert_eq!(drift["state"], "needs_review", "{drift}");
    // A second sync of the same state raises nothing new.
    let output = w.site.run_as(&w.server, &w.root, &["sync", "idp"]);
    assert!(output.status.success(), "{}", text(&output));
    let (_, again) = w.api(&w.root, "GET", "/v1/cases?limit=1000", None).await;
    assert_eq!(
        again.as_array().unwrap().len(),
        cases.as_array().unwrap().len(),
        "{again}"
    );

    // Again, for an hour, ending early if the agent is found over-privileged: a finding of that
    // type about the agent revokes it at once.
    let (status, again) = w
        .request(json!({
            "kind": "agent_tool_access", "system": "idp", "agent": bot,
            "scopes": ["tools:deploy"], "duration_seconds": 3600,
            "revoke_on": ["agent_overprivileged"], "justification": "release INC-9",
        }))
        .await;
    assert_eq!(status, 202, "{again}");
    let case = again["case_id"].as_str().unwrap().to_owned();
    let (status, _) = w.vote(&w.sam, &case, "approve").await;
    assert_eq!(status, 200);
    w.wait_for_state(&case, "remediated").await;
    assert!(w.token(&w.bot, "tools:deploy").await.is_ok(), "granted");
    let (status, answer) = w
        .api(
            &w.detector,
            "POST",
            "/v1/findings",
            Some(json!({
                "finding_type": "agent_overprivileged",
                "severity": "high",
                "confidence": 0.9,
                "subject": {"system": "idp", "external_id": bot},
                "title": "support-bot called deploy tools outside its incident",
            })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let story = w.wait_for_state(&case, "closed").await;
    let expired = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "access_expired")
        .unwrap();
    assert_eq!(expired["body"]["reason"], "revoke_on:agent_overprivileged");
    assert_eq!(
        w.token(&w.bot, "tools:deploy").await,
        Err("invalid_scope".into()),
        "revoked when the criterion was met, long before the hour"
    );
}

async fn harness(db: TestDb) -> World {
    World::new(db).await
}

writ_testkit::backend_suite!(
    new_service_account_is_created_after_approval_and_disabled_at_expiry,
    oauth_scope_changes_wait_for_the_right_approvers,
    agent_tool_access_ends_by_itself,
);
