//! [`AwsSecretsManager`]: secrets in one account and region, as the system
//! `aws-secrets:<account>/<region>`. External ids are secret names (an ARN is accepted too).
//!
//! Rotation writes a fresh random value with `PutSecretValue`; the value goes to Secrets
//! Manager and nowhere else (not into plans, outcomes, errors or logs). Pre-images hold only
//! version ids and staging labels, never a value.

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use writ_connectors::{
    ApplyOutcome, Capabilities, Connector, ConnectorError, DiscoveredObject, ObjectState, Plan,
    Verification,
};
use writ_core::change::{Action, Reversibility};

use crate::client::AwsClient;
use crate::config::{AwsConfig, Service};
use crate::error::AwsError;

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
/// Length of a generated secret value.
const VALUE_LEN: usize = 40;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Pages fetched at most from `ListSecrets`.
const MAX_PAGES: usize = 1000;

/// The AWS Secrets Manager connector: rotates secrets with `PutSecretValue` and deletes them
/// with a recovery window.
#[derive(Debug, Clone)]
pub struct AwsSecretsManager {
    client: AwsClient,
    system: String,
    recovery_window_days: u32,
}

fn rejected(reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        reason: reason.into(),
    }
}

/// The `ClientRequestToken` (a version id) for a rotation: a UUID (version 8) derived from
/// the secret and the idempotency key, so a retried apply names the same version.
pub fn rotation_token(secret: &str, idempotency_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"writ-connector-aws/rotate\0");
    hasher.update(secret.as_bytes());
    hasher.update(b"\0");
    hasher.update(idempotency_key.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A random alphanumeric value of [`VALUE_LEN`] characters from the OS generator.
// Secret generation: a new secret value must come from the OS random source.
#[allow(clippy::disallowed_methods)]
fn random_value() -> Result<String, ConnectorError> {
    let mut out = String::with_capacity(VALUE_LEN);
    let mut buf = [0u8; 64];
    while out.len() < VALUE_LEN {
        getrandom::fill(&mut buf)
            .map_err(|e| ConnectorError::Permanent(format!("no randomness: {e}")))?;
        // Rejection sampling keeps the distribution uniform (248 = 4 * 62).
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == VALUE_LEN {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// Replaces `secret` in `text` (so an error can never carry the new value).
fn scrub(text: String, secret: &str) -> String {
    if secret.is_empty() {
        text
    } else {
        text.replace(secret, "[redacted]")
    }
}

/// The version holding `stage` in a `VersionIdsToStages` map.
fn version_with(versions: &Value, stage: &str) -> Option<String> {
    versions.as_object()?.iter().find_map(|(id, stages)| {
        stages
            .as_array()?
            .iter()
            .any(|s| s.as_str() == Some(stage))
            .then(|| id.clone())
    })
}

fn str_attr<'a>(state: &'a ObjectState, name: &str) -> Option<&'a str> {
    state.attributes.get(name).and_then(Value::as_str)
}

fn is_deleted(state: &ObjectState) -> bool {
    state
        .attributes
        .get("deleted_date")
        .is_some_and(|d| !d.is_null())
}

impl AwsSecretsManager {
    /// Connects with `config`, learning the account id from STS unless configured.
    pub async fn connect(config: AwsConfig) -> Result<Self, AwsError> {
        let client = AwsClient::new(config)?;
        let account = client.account_id().await?;
        Ok(Self::new(client, &account))
    }

    /// A connector for `account_id` (and the client's region) over an existing client, with
    /// the default 7-day recovery window.
    pub fn new(client: AwsClient, account_id: &str) -> Self {
        let system = format!("aws-secrets:{account_id}/{}", client.config().region);
        Self {
            client,
            system,
            recovery_window_days: 7,
        }
    }

    /// Sets the recovery window used by deletes (AWS accepts 7 to 30 days).
    pub fn with_recovery_window_days(mut self, days: u32) -> Result<Self, AwsError> {
        if !(7..=30).contains(&days) {
            return Err(AwsError::Config(format!(
                "recovery window must be 7 to 30 days, not {days}"
            )));
        }
        self.recovery_window_days = days;
        Ok(self)
    }

    /// The recovery window used by deletes, in days.
    pub fn recovery_window_days(&self) -> u32 {
        self.recovery_window_days
    }

    /// The underlying signed client.
    pub fn client(&self) -> &AwsClient {
        &self.client
    }

    async fn call(&self, operation: &str, body: Value) -> Result<Value, AwsError> {
        self.client
            .json(
                Service::SecretsManager,
                &format!("secretsmanager.{operation}"),
                &body,
            )
            .await
    }

    /// `DescribeSecret` as an [`ObjectState`] (metadata and staging labels only).
    async fn describe(&self, secret_id: &str) -> Result<ObjectState, AwsError> {
        let d = match self
            .call("DescribeSecret", json!({ "SecretId": secret_id }))
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                return Ok(ObjectState {
                    external_id: secret_id.to_owned(),
                    exists: false,
                    attributes: json!({ "name": secret_id }),
                });
            }
            Err(e) => return Err(e),
        };
        let versions = d
            .get("VersionIdsToStages")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let name = d
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or(secret_id)
            .to_owned();
        Ok(ObjectState {
            external_id: name.clone(),
            exists: true,
            attributes: json!({
                "name": name,
                "arn": d.get("ARN"),
                "current_version_id": version_with(&versions, CURRENT),
                "previous_version_id": version_with(&versions, PREVIOUS),
                "versions": versions,
                "deleted_date": d.get("DeletedDate"),
                "last_changed_date": d.get("LastChangedDate"),
                "rotation_enabled": d.get("RotationEnabled"),
            }),
        })
    }

    /// The new value: a fresh random string, or, when the current value is a JSON object with
    /// a string `password` (the RDS-style layout), that object with only `password` replaced.
    async fn new_value(&self, secret_id: &str) -> Result<String, ConnectorError> {
        let fresh = random_value()?;
        let current = match self
            .call(
                "GetSecretValue",
                json!({ "SecretId": secret_id, "VersionStage": CURRENT }),
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_refusal() => return Ok(fresh),
            Err(e) => return Err(e.into()),
        };
        let parsed = current
            .get("SecretString")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        match parsed {
            Some(Value::Object(mut map)) if map.get("password").is_some_and(Value::is_string) => {
                map.insert("password".to_owned(), Value::String(fresh));
                serde_json::to_string(&Value::Object(map))
                    .map_err(|e| ConnectorError::Permanent(format!("encoding the secret: {e}")))
            }
            _ => Ok(fresh),
        }
    }

    async fn rotate(
        &self,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let name = str_attr(&plan.pre_image, "name").unwrap_or(&plan.external_id);
        let now = self.describe(name).await?;
        if !now.exists {
            return Ok(rejected(format!(
                "ResourceNotFoundException: secret {name} does not exist"
            )));
        }
        if is_deleted(&now) {
            return Ok(rejected(format!(
                "InvalidRequestException: secret {name} is scheduled for deletion"
            )));
        }
        let token = rotation_token(name, idempotency_key);
        if let Some(stages) = now.attributes.get("versions").and_then(|v| v.get(&token)) {
            let current = stages
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(CURRENT)));
            return Ok(if current {
                ApplyOutcome::AlreadyInState
            } else {
                rejected(format!(
                    "version {token} from this idempotency key exists but is no longer {CURRENT}"
                ))
            });
        }
        let value = self.new_value(name).await?;
        let result = self
            .call(
                "PutSecretValue",
                json!({
                    "SecretId": name,
                    "ClientRequestToken": token,
                    "SecretString": value,
                    "VersionStages": [CURRENT],
                }),
            )
            .await;
        match result {
            Ok(_) => Ok(ApplyOutcome::Applied),
            // The same token was used already: an earlier attempt got through.
            Err(e) if e.code() == Some("ResourceExistsException") => {
                Ok(ApplyOutcome::AlreadyInState)
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let refusal = e.is_refusal();
                let message = scrub(e.to_string(), &value);
                if refusal {
                    Ok(rejected(message))
                } else if retryable {
                    Err(ConnectorError::Retryable(message))
                } else {
                    Err(ConnectorError::Permanent(message))
                }
            }
        }
    }

    async fn stage(
        &self,
        name: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<(), AwsError> {
        let mut body = json!({ "SecretId": name, "VersionStage": stage });
        if let Some(v) = move_to {
            body["MoveToVersionId"] = json!(v);
        }
        if let Some(v) = remove_from {
            body["RemoveFromVersionId"] = json!(v);
        }
        self.call("UpdateSecretVersionStage", body)
            .await
            .map(|_| ())
    }

    /// Puts `AWSCURRENT` and `AWSPREVIOUS` back where the pre-image had them.
    async fn restore_stages(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        let pre = &plan.pre_image;
        let name = str_attr(pre, "name").unwrap_or(&plan.external_id);
        let Some(pre_current) = str_attr(pre, "current_version_id") else {
            return Ok(rejected(format!(
                "{name} had no {CURRENT} version before the rotation: nothing to restore"
            )));
        };
        let now = self.describe(name).await?;
        if !now.exists {
            return Ok(rejected(format!(
                "ResourceNotFoundException: secret {name} no longer exists"
            )));
        }
        let mut changed = false;
        let now_current = str_attr(&now, "current_version_id");
        if now_current != Some(pre_current) {
            let result = self
                .stage(name, CURRENT, Some(pre_current), now_current)
                .await;
            if let Err(e) = result {
                return if e.is_refusal() {
                    Ok(rejected(e.to_string()))
                } else {
                    Err(e.into())
                };
            }
            changed = true;
        }
        // Moving AWSCURRENT moves AWSPREVIOUS to the version it left: put it back too.
        let now = self.describe(name).await?;
        let now_previous = str_attr(&now, "previous_version_id");
        let pre_previous = str_attr(pre, "previous_version_id");
        if now_previous != pre_previous {
            let result = match pre_previous {
                Some(p) => self.stage(name, PREVIOUS, Some(p), now_previous).await,
                None => self.stage(name, PREVIOUS, None, now_previous).await,
            };
            if let Err(e) = result {
                return if e.is_refusal() {
                    Ok(rejected(e.to_string()))
                } else {
                    Err(e.into())
                };
            }
            changed = true;
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::AlreadyInState
        })
    }
}

#[async_trait]
impl Connector for AwsSecretsManager {
    fn system(&self) -> &str {
        &self.system
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            actions: vec!["rotate".to_owned(), "delete".to_owned()],
            discovery: true,
        }
    }

    async fn discover(&self) -> Result<Vec<DiscoveredObject>, ConnectorError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = json!({ "MaxResults": 100 });
            if let Some(token) = &next {
                body["NextToken"] = json!(token);
            }
            let page = self.call("ListSecrets", body).await?;
            for s in page
                .get("SecretList")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = s.get("Name").and_then(Value::as_str) else {
                    continue;
                };
                let versions = s
                    .get("SecretVersionsToStages")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                out.push(DiscoveredObject {
                    external_id: name.to_owned(),
                    object_kind: "secret".to_owned(),
                    attributes: json!({
                        "arn": s.get("ARN"),
                        "current_version_id": version_with(&versions, CURRENT),
                        "last_changed_date": s.get("LastChangedDate"),
                        "last_accessed_date": s.get("LastAccessedDate"),
                        "rotation_enabled": s.get("RotationEnabled"),
                        "deleted_date": s.get("DeletedDate"),
                    }),
                });
            }
            next = page
                .get("NextToken")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if next.is_none() {
                return Ok(out);
            }
        }
        Err(ConnectorError::Permanent(format!(
            "ListSecrets: more than {MAX_PAGES} pages"
        )))
    }

    async fn read(&self, external_id: &str) -> Result<ObjectState, ConnectorError> {
        Ok(self.describe(external_id).await?)
    }

    async fn plan(&self, external_id: &str, action: &Action) -> Result<Plan, ConnectorError> {
        let reversibility = match action {
            // The previous version keeps its value under AWSPREVIOUS.
            Action::Rotate => Reversibility::Reversible,
            Action::Delete => Reversibility::ReversibleWithin {
                seconds: u64::from(self.recovery_window_days) * 86_400,
            },
            other => return Err(ConnectorError::Unsupported(other.name().to_owned())),
        };
        Ok(Plan {
            external_id: external_id.to_owned(),
            action: action.clone(),
            pre_image: self.describe(external_id).await?,
            reversibility,
        })
    }

    async fn apply(
        &self,
        plan: &Plan,
        idempotency_key: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        match &plan.action {
            Action::Rotate => self.rotate(plan, idempotency_key).await,
            Action::Delete => {
                let name = str_attr(&plan.pre_image, "name").unwrap_or(&plan.external_id);
                let now = self.describe(name).await?;
                if !now.exists {
                    // Never existed for this plan: refuse; existed and is now gone: done.
                    return Ok(if plan.pre_image.exists {
                        ApplyOutcome::AlreadyInState
                    } else {
                        rejected(format!(
                            "ResourceNotFoundException: secret {name} does not exist"
                        ))
                    });
                }
                if is_deleted(&now) {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                match self
                    .call(
                        "DeleteSecret",
                        json!({
                            "SecretId": name,
                            "RecoveryWindowInDays": self.recovery_window_days,
                        }),
                    )
                    .await
                {
                    Ok(_) => Ok(ApplyOutcome::Applied),
                    Err(e) if e.is_refusal() => Ok(rejected(e.to_string())),
                    Err(e) => Err(e.into()),
                }
            }
            other => Err(ConnectorError::Unsupported(other.name().to_owned())),
        }
    }

    async fn verify(&self, plan: &Plan) -> Result<Verification, ConnectorError> {
        let name = str_attr(&plan.pre_image, "name").unwrap_or(&plan.external_id);
        let observed = self.describe(name).await?;
        let holds = match &plan.action {
            Action::Rotate => {
                let now = str_attr(&observed, "current_version_id");
                observed.exists
                    && !is_deleted(&observed)
                    && now.is_some()
                    && now != str_attr(&plan.pre_image, "current_version_id")
            }
            Action::Delete => plan.pre_image.exists && (!observed.exists || is_deleted(&observed)),
            other => return Err(ConnectorError::Unsupported(other.name().to_owned())),
        };
        Ok(if holds {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    async fn rollback(&self, plan: &Plan) -> Result<ApplyOutcome, ConnectorError> {
        match &plan.action {
            Action::Rotate => self.restore_stages(plan).await,
            Action::Delete => {
                let name = str_attr(&plan.pre_image, "name").unwrap_or(&plan.external_id);
                let now = self.describe(name).await?;
                if !now.exists {
                    return Ok(if plan.pre_image.exists {
                        rejected(format!(
                            "secret {name} is gone: its recovery window has passed"
                        ))
                    } else {
                        ApplyOutcome::AlreadyInState
                    });
                }
                if !is_deleted(&now) {
                    return Ok(ApplyOutcome::AlreadyInState);
                }
                match self
                    .call("RestoreSecret", json!({ "SecretId": name }))
                    .await
                {
                    Ok(_) => Ok(ApplyOutcome::Applied),
                    Err(e) if e.is_refusal() => Ok(rejected(e.to_string())),
                    Err(e) => Err(e.into()),
                }
            }
            other => Err(ConnectorError::Unsupported(other.name().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_uuids() {
        let a = rotation_token("db/password", "change-1");
        assert_eq!(a, rotation_token("db/password", "change-1"));
        assert_ne!(a, rotation_token("db/password", "change-2"));
        assert_ne!(a, rotation_token("db/other", "change-1"));
        assert_eq!(a.len(), 36);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
    }

    #[test]
    fn random_values_are_alphanumeric_and_fresh() {
        let a = random_value().unwrap();
        let b = random_value().unwrap();
        assert_eq!(a.len(), VALUE_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn finds_versions_by_stage_and_scrubs() {
        let versions = json!({ "v1": ["AWSPREVIOUS"], "v2": ["AWSCURRENT", "x"] });
        assert_eq!(version_with(&versions, CURRENT).as_deref(), Some("v2"));
        assert_eq!(version_with(&versions, PREVIOUS).as_deref(), Some("v1"));
        assert_eq!(version_with(&versions, "AWSPENDING"), None);
        assert_eq!(
            scrub("bad value s3cr3t".into(), "s3cr3t"),
            "bad value [redacted]"
        );
    }
}
