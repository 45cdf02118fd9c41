//! Test harness: a real moto server on loopback, started and stopped by the tests, and
//! seeding helpers that go through the crate's own signed client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use writ_connector_aws::{AwsClient, AwsConfig, Service};

/// The account id moto uses by default.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// A moto server from the shared test harness, with helpers for these tests.
#[derive(Debug)]
pub struct MotoServer {
    inner: writ_testkit::MotoServer,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl MotoServer {
    /// Starts moto, waits until it answers, and resets its state.
    pub async fn start() -> Self {
        let inner = tokio::task::spawn_blocking(writ_testkit::MotoServer::start)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let url = inner.url();
        MotoServer { inner, url }
    }

    /// Kills the server now (to test what connectors do when the target goes away).
    pub fn stop(&mut self) {
        self.inner.stop();
    }

    /// Test credentials pointing at this server.
    pub fn config(&self) -> AwsConfig {
        AwsConfig::new("testing", "testing", REGION)
            .with_endpoint(&self.url)
            .unwrap()
            .with_timeout(Duration::from_secs(10))
    }

    /// A signed client for seeding.
    pub fn client(&self) -> AwsClient {
        AwsClient::new(self.config()).unwrap()
    }
}

/// Seeding through the crate's own client.
pub struct Seed<'a>(pub &'a AwsClient);

impl Seed<'_> {
    pub async fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.0
            .query(Service::Iam, action, params)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    pub async fn sm(&self, operation: &str, body: Value) -> Value {
        self.0
            .json(
                Service::SecretsManager,
                &format!("secretsmanager.{operation}"),
                &body,
            )
            .await
            .unwrap_or_else(|e| panic!("{operation}: {e}"))
    }

    pub async fn user(&self, name: &str) {
        self.iam("CreateUser", &[("UserName", name)]).await;
    }

    /// Creates an access key and returns (id, secret).
    pub async fn access_key(&self, user: &str) -> (String, String) {
        let body = self.iam("CreateAccessKey", &[("UserName", user)]).await;
        let doc = roxmltree::Document::parse(&body).unwrap();
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .unwrap()
                .to_owned()
        };
        (text("AccessKeyId"), text("SecretAccessKey"))
    }

    pub async fn key_status(&self, user: &str, key_id: &str) -> Option<String> {
        let body = self.iam("ListAccessKeys", &[("UserName", user)]).await;
        let doc = roxmltree::Document::parse(&body).unwrap();
        doc.descendants()
            .filter(|n| n.tag_name().name() == "member")
            .find(|m| {
                m.children()
                    .any(|c| c.tag_name().name() == "AccessKeyId" && c.text() == Some(key_id))
            })
            .and_then(|m| {
                m.children()
                    .find(|c| c.tag_name().name() == "Status")
                    .and_then(|c| c.text())
                    .map(str::to_owned)
            })
    }

    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        let out = self
            .sm(
                "CreateSecret",
                json!({ "Name": name, "SecretString": value }),
            )
            .await;
        out["VersionId"].as_str().unwrap().to_owned()
    }

    /// `GetSecretValue` at AWSCURRENT: (version id, value), or the error code. The stage is
    /// explicit: without one, moto answers its own "default version", which
    /// `UpdateSecretVersionStage` does not move (real AWS defaults to AWSCURRENT).
    pub async fn current_value(&self, name: &str) -> Result<(String, String), String> {
        self.0
            .json(
                Service::SecretsManager,
                "secretsmanager.GetSecretValue",
                &json!({ "SecretId": name, "VersionStage": "AWSCURRENT" }),
            )
            .await
            .map(|v| {
                (
                    v["VersionId"].as_str().unwrap().to_owned(),
                    v["SecretString"].as_str().unwrap().to_owned(),
                )
            })
            .map_err(|e| e.code().unwrap_or("?").to_owned())
    }
}

/// Uses a key once (STS GetCallerIdentity signed with it), so moto records its last use.
pub async fn use_key(server: &MotoServer, key_id: &str, secret: &str) {
    let mut config = server.config();
    config.access_key_id = key_id.to_owned();
    config.secret_access_key = writ_connector_aws::SecretString::from(secret);
    let client = AwsClient::new(config).unwrap();
    client
        .query(Service::Sts, "GetCallerIdentity", &[])
        .await
        .unwrap();
}
