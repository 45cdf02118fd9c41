//! [`SecretsManagerSink`]: delivers a secret another connector rotated (a PostgreSQL role's
//! new password, say) to AWS Secrets Manager, where its consumers read it.
//!
//! The secret is named by a template (`writ/{system}/{identity}` by default; characters Secrets
//! Manager does not allow in names become `-`). A missing secret is created as
//! `{"username": <identity>, "password": <secret>}`; an existing one gets a new `AWSCURRENT`
//! version, keeping the other fields of a JSON secret (host, port, dbname ...) and replacing
//! only `password`, or holding just the secret when it was a plain string. The value goes into
//! the request body and nowhere else: errors are scrubbed of it and nothing logs it.

use async_trait::async_trait;
use serde_json::{Value, json};
use writ_connectors::{ConnectorError, SecretSink};

use crate::client::AwsClient;
use crate::config::{AwsConfig, Service};
use crate::error::AwsError;

/// The default secret name template.
pub const DEFAULT_SECRET_NAME: &str = "writ/{system}/{identity}";

/// Delivers rotated secrets to AWS Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerSink {
    client: AwsClient,
    name_template: String,
}

impl SecretsManagerSink {
    /// A sink writing to the Secrets Manager `config` reaches, naming secrets by
    /// `name_template` (`{system}` and `{identity}` are replaced).
    pub fn new(config: AwsConfig, name_template: &str) -> Result<Self, AwsError> {
        Ok(Self {
            client: AwsClient::new(config)?,
            name_template: name_template.to_owned(),
        })
    }

    /// The secret name for `identity` on `system`.
    pub fn secret_name(&self, system: &str, identity: &str) -> String {
        secret_name_from(&self.name_template, system, identity)
    }

    async fn call(&self, operation: &str, body: &Value) -> Result<Value, AwsError> {
        self.client
            .json(
                Service::SecretsManager,
                &format!("secretsmanager.{operation}"),
                body,
            )
            .await
    }

    /// The value to store: the current JSON secret with `password` replaced, or the secret.
    async fn value_for(&self, name: &str, secret: &str) -> Result<Option<String>, AwsError> {
        let current = match self
            .call("GetSecretValue", &json!({ "SecretId": name }))
            .await
        {
            Ok(current) => current,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let parsed = current
            .get("SecretString")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        Ok(Some(match parsed {
            Some(Value::Object(mut map)) => {
                map.insert("password".to_owned(), Value::String(secret.to_owned()));
                Value::Object(map).to_string()
            }
            _ => secret.to_owned(),
        }))
    }
}

/// A fresh random version id (UUID v4) for one delivery.
// Token generation: the version id must be unpredictable and unique across processes.
#[allow(clippy::disallowed_methods)]
fn fresh_token() -> Result<String, ConnectorError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| ConnectorError::Retryable(format!("no randomness: {e}")))?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// An error with every occurrence of `secret` cut out.
fn scrubbed(e: AwsError, secret: &str) -> ConnectorError {
    let message = e.to_string().replace(secret, "[redacted]");
    if e.is_retryable() {
        ConnectorError::Retryable(message)
    } else {
        ConnectorError::Permanent(message)
    }
}

#[async_trait]
impl SecretSink for SecretsManagerSink {
    async fn deliver(
        &self,
        system: &str,
        identity: &str,
        secret: &str,
    ) -> Result<String, ConnectorError> {
        let name = self.secret_name(system, identity);
        let token = fresh_token()?;
        let response = match self
            .value_for(&name, secret)
            .await
            .map_err(|e| scrubbed(e, secret))?
        {
            Some(value) => {
                self.call(
                    "PutSecretValue",
                    &json!({
                        "SecretId": name,
                        "ClientRequestToken": token,
                        "SecretString": value,
                        "VersionStages": ["AWSCURRENT"],
                    }),
                )
                .await
            }
            None => {
                let value = json!({ "username": identity, "password": secret }).to_string();
                self.call(
                    "CreateSecret",
                    &json!({
                        "Name": name,
                        "ClientRequestToken": token,
                        "SecretString": value,
                        "Description": format!("credential of {identity} on {system}, rotated by writ"),
                    }),
                )
                .await
            }
        }
        .map_err(|e| scrubbed(e, secret))?;
        Ok(response
            .get("VersionId")
            .and_then(Value::as_str)
            .map_or(token, str::to_owned))
    }
}

/// The secret name `template` gives `identity` on `system` (`{system}` and `{identity}`
/// replaced; characters Secrets Manager does not take become `-`).
pub(crate) fn secret_name_from(template: &str, system: &str, identity: &str) -> String {
    template
        .replace("{system}", system)
        .replace("{identity}", identity)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/_+=.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_for_secrets_manager() {
        let sink =
            SecretsManagerSink::new(AwsConfig::new("a", "b", "us-east-1"), DEFAULT_SECRET_NAME)
                .unwrap();
        assert_eq!(
            sink.secret_name("postgres:billing", "app user"),
            "writ/postgres-billing/app-user"
        );
    }
}
