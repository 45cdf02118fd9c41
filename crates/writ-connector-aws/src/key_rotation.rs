//! Rotation with cut-over for IAM access keys ([`writ_connectors::KeyRotation`]): a new key is
//! created beside the old one and its secret written straight into the Secrets Manager secret
//! the consumers read (`{"AccessKeyId", "SecretAccessKey"}`, other fields of a JSON secret
//! kept); writ learns only the key id and the secret's version. The engine then watches the new
//! key's last use, deactivates the old key, and deletes it after a grace period.
//!
//! Crash safety: the secret is the record of delivery. Called again, [`create_and_deliver`]
//! adopts a second key that the secret already holds, and deletes one it does not hold (its
//! secret was never delivered, so no consumer can be using it) before making a new one.
//!
//! [`create_and_deliver`]: writ_connectors::KeyRotation::create_and_deliver

use async_trait::async_trait;
use serde_json::{Value, json};
use writ_connectors::{ConnectorError, Delivered, KeyRotation};

use crate::{AwsClient, AwsError, AwsIam, Service};
use secrecy::{ExposeSecret as _, SecretString};

/// Where rotated keys go: a Secrets Manager client and the secret name template (`{system}`
/// and `{identity}`, the user name, are replaced).
#[derive(Debug, Clone)]
pub(crate) struct KeyDelivery {
    pub(crate) secrets: AwsClient,
    pub(crate) name_template: String,
}

/// An error whose text has `secret` cut out.
fn scrubbed(e: AwsError, secret: &str) -> ConnectorError {
    let message = e.to_string().replace(secret, "[redacted]");
    if e.is_retryable() {
        ConnectorError::Retryable(message)
    } else {
        ConnectorError::Permanent(message)
    }
}

impl KeyDelivery {
    fn secret_name(&self, system: &str, user: &str) -> String {
        crate::sink::secret_name_from(&self.name_template, system, user)
    }

    async fn call(&self, operation: &str, body: &Value) -> Result<Value, AwsError> {
        self.secrets
            .json(
                Service::SecretsManager,
                &format!("secretsmanager.{operation}"),
                body,
            )
            .await
    }

    /// The secret's current value as JSON, and its version; `None` when there is no secret.
    async fn current(&self, name: &str) -> Result<Option<(Value, String)>, AwsError> {
        match self
            .call(
                "GetSecretValue",
                &json!({ "SecretId": name, "VersionStage": "AWSCURRENT" }),
            )
            .await
        {
            Ok(answer) => {
                let value = answer
                    .get("SecretString")
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                let version = answer
                    .get("VersionId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(Some((value, version)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the key into the secret (creating it if needed); returns the version id.
    async fn deliver(
        &self,
        name: &str,
        current: Option<&Value>,
        key_id: &str,
        secret: &SecretString,
    ) -> Result<String, ConnectorError> {
        let exposed = secret.expose_secret();
        let mut value = match current {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        value.insert("AccessKeyId".into(), Value::String(key_id.to_owned()));
        value.insert("SecretAccessKey".into(), Value::String(exposed.to_owned()));
        let text = Value::Object(value).to_string();
        let answer = if current.is_some() {
            self.call(
                "PutSecretValue",
                &json!({ "SecretId": name, "SecretString": text }),
            )
            .await
        } else {
            self.call(
                "CreateSecret",
                &json!({ "Name": name, "SecretString": text }),
            )
            .await
        }
        .map_err(|e| scrubbed(e, exposed))?;
        Ok(answer
            .get("VersionId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }
}

impl AwsIam {
    fn delivery(&self) -> Result<&KeyDelivery, ConnectorError> {
        self.rotation.as_ref().ok_or_else(|| {
            ConnectorError::Unsupported("rotate (no rotation_sink is configured)".into())
        })
    }

    /// The access key id the secret `user`'s consumers read holds now, if any.
    pub(crate) async fn delivered_key_id(
        &self,
        user: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let delivery = self.delivery()?;
        let name = delivery.secret_name(&self.system, user);
        Ok(delivery.current(&name).await?.and_then(|(value, _)| {
            value
                .get("AccessKeyId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }))
    }

    /// Makes `user` a new access key beside `keep` (the key being rotated out; `None` for a
    /// new account) and writes it into the secret its consumers read. Called again after a
    /// crash, it adopts a key the secret already holds and deletes one it does not hold.
    pub(crate) async fn issue_key(
        &self,
        user: &str,
        keep: Option<&str>,
    ) -> Result<Delivered, ConnectorError> {
        let delivery = self.delivery()?;
        let name = delivery.secret_name(&self.system, user);
        let current = delivery.current(&name).await?;
        let held = current
            .as_ref()
            .and_then(|(value, _)| value.get("AccessKeyId").and_then(Value::as_str))
            .map(str::to_owned);
        let keys = self.list_keys(user).await?.ok_or_else(|| {
            ConnectorError::Permanent(format!("NoSuchEntity: user {user} does not exist"))
        })?;
        if let Some(old_key_id) = keep
            && !keys.iter().any(|k| k.id == old_key_id)
        {
            return Err(ConnectorError::Permanent(format!(
                "access key {old_key_id} of user {user} does not exist"
            )));
        }
        for other in keys.iter().filter(|k| Some(k.id.as_str()) != keep) {
            if held.as_deref() == Some(other.id.as_str()) {
                // Delivered by an earlier try that stopped before it was recorded: adopt it.
                return Ok(Delivered {
                    key_id: other.id.clone(),
                    secret_name: name,
                    secret_version: current.map(|(_, v)| v).unwrap_or_default(),
                });
            }
            // Created but never delivered: nobody can be using it, and its secret is lost.
            self.call(
                "DeleteAccessKey",
                &[("UserName", user), ("AccessKeyId", &other.id)],
            )
            .await?;
            tracing::warn!(system = %self.system, user, key_id = %other.id, "deleted an undelivered access key left by an earlier try");
        }
        let created = self.call("CreateAccessKey", &[("UserName", user)]).await?;
        let doc = crate::xml::parse(&created)?;
        let node = crate::xml::find(doc.root(), "AccessKey").ok_or_else(|| {
            ConnectorError::Permanent("CreateAccessKey answered without an AccessKey".into())
        })?;
        let key_id = crate::xml::child_text(node, "AccessKeyId").ok_or_else(|| {
            ConnectorError::Permanent("CreateAccessKey answered without an AccessKeyId".into())
        })?;
        let secret = SecretString::from(
            crate::xml::child_text(node, "SecretAccessKey").ok_or_else(|| {
                ConnectorError::Permanent(
                    "CreateAccessKey answered without a SecretAccessKey".into(),
                )
            })?,
        );
        drop(created);
        let version = delivery
            .deliver(&name, current.as_ref().map(|(v, _)| v), &key_id, &secret)
            .await?;
        tracing::info!(system = %self.system, user, key_id, secret = %name, version, "created and delivered a new access key");
        Ok(Delivered {
            key_id,
            secret_name: name,
            secret_version: version,
        })
    }
}

#[async_trait]
impl KeyRotation for AwsIam {
    async fn create_and_deliver(
        &self,
        user: &str,
        old_key_id: &str,
    ) -> Result<Delivered, ConnectorError> {
        self.issue_key(user, Some(old_key_id)).await
    }

    async fn last_used(
        &self,
        _user: &str,
        key_id: &str,
    ) -> Result<Option<jiff::Timestamp>, ConnectorError> {
        let used = AwsIam::last_used(self, key_id).await?;
        Ok(used
            .get("date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse().ok()))
    }

    async fn key_status(&self, user: &str, key_id: &str) -> Result<Option<bool>, ConnectorError> {
        Ok(AwsIam::key_status(self, user, key_id)
            .await?
            .map(|status| status == "Active"))
    }

    async fn deactivate(&self, user: &str, key_id: &str) -> Result<(), ConnectorError> {
        match self.set_status(user, key_id, "Inactive").await? {
            writ_connectors::ApplyOutcome::Rejected { reason } => {
                Err(ConnectorError::Permanent(reason))
            }
            _ => Ok(()),
        }
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<(), ConnectorError> {
        match self
            .call(
                "DeleteAccessKey",
                &[("UserName", user), ("AccessKeyId", key_id)],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
