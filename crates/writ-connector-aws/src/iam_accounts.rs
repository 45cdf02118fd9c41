//! Requested IAM service accounts ([`Action::Create`] on a user) and turning a whole user off
//! or on ([`Action::Disable`] / [`Action::Enable`] on a user: every access key's status).
//!
//! A created user is tagged `writ:created-by = writ` with its owner team and purpose, and
//! gets one access key whose secret goes straight into the Secrets Manager secret its
//! consumers will read (the `rotation_sink`), never to writ. So creation is offered only where
//! a sink is configured. Crash safety: a user already carrying writ's tag is adopted (its key
//! adopted or made again, as in rotation); a user that exists without it is someone else's
//! and is never touched. Rollback deletes only a user writ created: its keys, then the user.

use serde_json::{Value, json};
use writ_connectors::{ApplyOutcome, ConnectorError, ObjectState, Plan, Verification};

use crate::AwsIam;
use crate::xml;

/// The tag that marks a user writ created, and its value.
const CREATED_BY_TAG: &str = "writ:created-by";
const CREATED_BY: &str = "writ";

fn rejected(reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        reason: reason.into(),
    }
}

impl AwsIam {
    /// The user's tags, or `None` when the user does not exist.
    async fn user_tags(&self, user: &str) -> Result<Option<Vec<(String, String)>>, ConnectorError> {
        match self.call("ListUserTags", &[("UserName", user)]).await {
            Ok(body) => {
                let doc = xml::parse(&body)?;
                Ok(Some(
                    xml::members(doc.root(), "Tags")
                        .into_iter()
                        .filter_map(|m| {
                            Some((xml::child_text(m, "Key")?, xml::child_text(m, "Value")?))
                        })
                        .collect(),
                ))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `user` exists and writ created it: `None` when it does not exist.
    async fn created_by_writ(&self, user: &str) -> Result<Option<bool>, ConnectorError> {
        Ok(self.user_tags(user).await?.map(|tags| {
            tags.iter()
                .any(|(key, value)| key == CREATED_BY_TAG && value == CREATED_BY)
        }))
    }

    /// Creates `user` (tagged with its owner team and purpose) and its first access key,
    /// delivered to the consumers' secret.
    pub(crate) async fn create_user(
        &self,
        user: &str,
        owner_team: &str,
        purpose: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        match self.created_by_writ(user).await? {
            Some(false) => {
                return Ok(rejected(format!(
                    "EntityAlreadyExists: user {user} exists and was not created by writ"
                )));
            }
            // An earlier try created it and stopped: adopt it (its key below).
            Some(true) => {}
            None => {
                // IAM tag values allow letters, digits, spaces and `_ . : / = + - @`.
                let clean = |text: &str| -> String {
                    text.chars()
                        .map(|c| {
                            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .take(256)
                        .collect()
                };
                let (team, why) = (clean(owner_team), clean(purpose));
                let created = self
                    .call(
                        "CreateUser",
                        &[
                            ("UserName", user),
                            ("Tags.member.1.Key", CREATED_BY_TAG),
                            ("Tags.member.1.Value", CREATED_BY),
                            ("Tags.member.2.Key", "writ:owner-team"),
                            ("Tags.member.2.Value", &team),
                            ("Tags.member.3.Key", "writ:purpose"),
                            ("Tags.member.3.Value", &why),
                        ],
                    )
                    .await;
                match created {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => return Err(e.into()),
                    Err(e) => return Ok(rejected(e.to_string())),
                }
            }
        }
        // A key the secret already holds is adopted; one it does not is deleted and made again.
        let delivered = self.issue_key(user, None).await?;
        tracing::info!(system = %self.system, user, key_id = %delivered.key_id, secret = %delivered.secret_name, "created a service account and delivered its access key");
        Ok(ApplyOutcome::Applied)
    }

    /// The created user exists, carries writ's tag, and the consumers' secret holds one of its
    /// active keys.
    pub(crate) async fn verify_created(&self, user: &str) -> Result<Verification, ConnectorError> {
        let observed = self.read_user(user).await?;
        let ours = self.created_by_writ(user).await? == Some(true);
        let held = self.delivered_key_id(user).await?;
        let keys = self.user_keys(user).await?;
        let holds = ours
            && keys
                .iter()
                .any(|(id, status)| Some(id) == held.as_ref() && status == "Active");
        Ok(if holds {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    /// Deletes a user writ created (its keys first); leaves any other user alone.
    pub(crate) async fn remove_created(&self, user: &str) -> Result<ApplyOutcome, ConnectorError> {
        match self.created_by_writ(user).await? {
            None => return Ok(ApplyOutcome::AlreadyInState),
            Some(false) => {
                return Ok(rejected(format!(
                    "user {user} was not created by writ: it is not deleted"
                )));
            }
            Some(true) => {}
        }
        for (key_id, _) in self.user_keys(user).await? {
            self.call(
                "DeleteAccessKey",
                &[("UserName", user), ("AccessKeyId", &key_id)],
            )
            .await?;
        }
        match self.call("DeleteUser", &[("UserName", user)]).await {
            Ok(_) => Ok(ApplyOutcome::Applied),
            Err(e) if e.is_not_found() => Ok(ApplyOutcome::AlreadyInState),
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => Ok(rejected(e.to_string())),
        }
    }

    /// The user's access keys and their statuses (empty when the user is gone).
    pub(crate) async fn user_keys(
        &self,
        user: &str,
    ) -> Result<Vec<(String, String)>, ConnectorError> {
        Ok(self
            .list_keys(user)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|k| (k.id, k.status))
            .collect())
    }

    async fn read_user(&self, user: &str) -> Result<ObjectState, ConnectorError> {
        writ_connectors::Connector::read(self, user).await
    }

    /// Sets every access key of `user` to `status` (a whole account turned off or on).
    pub(crate) async fn set_user_keys(
        &self,
        user: &str,
        status: &str,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let Some(keys) = self.list_keys(user).await? else {
            return Ok(rejected(format!(
                "NoSuchEntity: user {user} does not exist"
            )));
        };
        let mut changed = false;
        for key in keys {
            if key.status != status {
                match self.set_status(user, &key.id, status).await? {
                    ApplyOutcome::Rejected { reason } => return Ok(rejected(reason)),
                    ApplyOutcome::Applied => changed = true,
                    ApplyOutcome::AlreadyInState => {}
                }
            }
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::AlreadyInState
        })
    }

    /// Whether every key of `user` has `status` now (vacuously true for a user with none).
    pub(crate) async fn verify_user_keys(
        &self,
        user: &str,
        status: &str,
    ) -> Result<Verification, ConnectorError> {
        let observed = self.read_user(user).await?;
        let holds = observed.exists
            && self
                .user_keys(user)
                .await?
                .iter()
                .all(|(_, current)| current == status);
        Ok(if holds {
            Verification::Confirmed
        } else {
            Verification::NotInEffect { observed }
        })
    }

    /// Puts each key of the pre-image back to the status it had (`access_key_status`).
    pub(crate) async fn restore_user_keys(
        &self,
        user: &str,
        plan: &Plan,
    ) -> Result<ApplyOutcome, ConnectorError> {
        let Some(before) = plan
            .pre_image
            .attributes
            .get("access_key_status")
            .and_then(Value::as_object)
        else {
            return Ok(rejected("the pre-image has no key statuses"));
        };
        let mut changed = false;
        for (key_id, status) in before {
            let Some(status) = status.as_str() else {
                continue;
            };
            match self.set_status(user, key_id, status).await? {
                ApplyOutcome::Applied => changed = true,
                ApplyOutcome::AlreadyInState => {}
                // A key deleted since: nothing to put back.
                ApplyOutcome::Rejected { .. } => {}
            }
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::AlreadyInState
        })
    }
}

/// The key statuses a user's state carries, for its pre-image.
pub(crate) fn key_statuses(keys: &[crate::iam::KeyMeta]) -> Value {
    Value::Object(
        keys.iter()
            .map(|k| (k.id.clone(), json!(k.status)))
            .collect(),
    )
}
